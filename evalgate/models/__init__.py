"""Model calls: one client for the reference pipeline and the LLM judge.

Any OpenAI-compatible endpoint, through the ``openai`` package's async
client, with bounded concurrency across the whole run, a per-request
timeout, retries with exponential backoff and jitter on 429, 5xx and
connection errors (honouring ``Retry-After``), and a response cache kept
apart from the results.
"""

from .cache import ResponseCache
from .client import (
    CACHE_MODES,
    CacheMiss,
    ModelClient,
    ModelError,
    ModelRequest,
    ModelResponse,
)

__all__ = ["CACHE_MODES", "CacheMiss", "ModelClient", "ModelError", "ModelRequest", "ModelResponse", "ResponseCache"]
