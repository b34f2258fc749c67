"""Importing an OTLP export whose structure is not what OTLP promises: a clear error, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import SuiteError
from .assemble import import_otlp
from .turns import ImportStats
from .read import _SHAPE_HINT

_STRUCTURE = (TypeError, AttributeError, KeyError, IndexError, ValueError, RecursionError)


def checked_import(paths: list[Path], out: Path, **options: Any) -> ImportStats:
    """``import_otlp``; a value of the wrong kind anywhere in the export (a list where spans are, a number for an
    id) is a SuiteError naming the files, whatever part of the reader met it first."""
    try:
        return import_otlp(paths, out, **options)
    except SuiteError:
        raise
    except _STRUCTURE as exc:
        names = ", ".join(str(p) for p in paths)
        raise SuiteError(f"{names}: not a valid OTLP export ({type(exc).__name__}: {str(exc)[:160]})",
                         hint=_SHAPE_HINT) from None
