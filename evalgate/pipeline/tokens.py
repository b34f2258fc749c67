"""Token counts: tiktoken when its encoding is already on disk, else an estimate.

tiktoken downloads an encoding the first time it is used, which fails
without internet. So we look for the cached file ourselves (the same path
tiktoken computes: ``$TIKTOKEN_CACHE_DIR``, ``$DATA_GYM_CACHE_DIR`` or
``<tmp>/data-gym-cache``, named by the SHA-1 of the encoding's URL) and only
then ask tiktoken; otherwise the estimate is ceil(characters / 4).
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ENCODING = "cl100k_base"
_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}
ESTIMATE = "estimate: ceil(chars/4)"


def tiktoken_cache_file(encoding: str = ENCODING) -> Path:
    """Where tiktoken keeps the encoding file once downloaded."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        folder = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        folder = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        folder = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return Path(folder) / hashlib.sha1(_URLS[encoding].encode()).hexdigest()


def estimate(text: str) -> int:
    """About four characters per token (English prose)."""
    return math.ceil(len(text) / 4)


@dataclass(frozen=True)
class TokenCounter:
    """Counts tokens and says how."""

    name: str
    """tiktoken:<encoding>, or the estimate's description."""
    count: Callable[[str], int]


def token_counter(mode: str = "auto", encoding: str = ENCODING) -> TokenCounter:
    """tiktoken when mode is auto and the encoding is cached locally (no download), else the estimate."""
    if mode == "auto" and tiktoken_cache_file(encoding).is_file():
        try:
            import tiktoken

            enc = tiktoken.get_encoding(encoding)
        except Exception:  # a corrupt cache or a missing package: fall back, and say so in the name
            return TokenCounter(ESTIMATE, estimate)
        return TokenCounter(f"tiktoken:{encoding}", lambda text: len(enc.encode(text, disallowed_special=())))
    return TokenCounter(ESTIMATE, estimate)
