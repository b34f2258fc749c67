"""``package.module:attr`` references to a team's own code: targets, scorers, permissions, redaction hooks.

A reference is imported with the project's folders importable *while it
imports* (its own imports of modules beside it resolve), and ``sys.path`` is
put back afterwards: loading one suite never changes what another process
component imports. ``search_paths()`` names the folders for everything a
suite loads (the project root, the suite's folder); an explicit list wins.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

_FOLDERS: ContextVar[tuple[str, ...]] = ContextVar("evalgate_reference_folders", default=())


@contextlib.contextmanager
def search_paths(*folders: Path | str) -> Iterator[None]:
    """References imported inside this block look in ``folders`` first."""
    token = _FOLDERS.set(tuple(str(Path(f).resolve()) for f in folders) + _FOLDERS.get())
    try:
        yield
    finally:
        _FOLDERS.reset(token)


@contextlib.contextmanager
def _importable(folders: Sequence[str]) -> Iterator[None]:
    added = [f for f in dict.fromkeys(folders) if f not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for f in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(f)


def import_reference(ref: str, search_paths: Sequence[Path | str] = ()) -> Any:
    """The object ``package.module:attr.path`` names; ValueError when it is not of that form."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ValueError(f"'{ref}' is not package.module:function")
    folders = [str(Path(f).resolve()) for f in search_paths] + list(_FOLDERS.get()) + [str(Path.cwd())]
    with _importable(folders):
        module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
