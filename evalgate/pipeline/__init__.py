"""evalgate's reference pipeline: routing → context → model, with conversation state.

    config.py     the YAML, as pydantic models (extra keys forbidden)
    router.py     ordered rules, an optional LLM classifier, a fallback
    context.py    BM25 retrieval, permission filter, threshold, top-k, token budget
    tokens.py     token counts: tiktoken when cached locally, else an estimate
    state.py      slots filled from messages (corrections overwrite)
    templates.py  sandboxed jinja2 prompts and answers
    model.py      the built-in model, prices, the run's spend
    engine.py     one turn through all of it, as a native trace

Heavy libraries (bm25s, jinja2, openai) load only when a pipeline runs.
"""

from ..errors import RunStopped, TurnFailed
from .config import PipelineSpec
from .engine import Pipeline

__all__ = ["Pipeline", "PipelineSpec", "RunStopped", "TurnFailed"]
