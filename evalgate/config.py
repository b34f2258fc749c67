"""Project configuration: ``[tool.evalgate]`` in pyproject.toml or ``evalgate.toml``.

Found by walking up from the working directory, so evalgate works from a
subfolder of a monorepo. Command-line options override it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Location, UsageError, did_you_mean

DEFAULT_STORE = ".evalgate/evalgate.duckdb"
DEFAULT_CACHE = ".evalgate/cache.sqlite"
_KEYS = {"suites", "store", "cache", "target", "baseline", "concurrency", "timeout_s", "trace_url", "executor"}


@dataclass(frozen=True)
class Config:
    """Where things are, with paths resolved against the project root."""

    root: Path
    suites: Path
    store: Path
    cache: Path = Path(DEFAULT_CACHE)
    """The model response cache (kept apart from the results store)."""
    source: str | None = None
    """The file the settings came from, or None for defaults."""
    target: Any = None
    baseline: str | None = None
    concurrency: int | None = None
    timeout_s: float | None = None
    trace_url: str | None = None
    """Link template to the team's trace viewer, e.g. https://traces.example.com/trace/{trace_id}."""
    executor: str | None = None
    """Where case runs run: local (the default), ray or ray:ADDRESS (docs/ray.md); --executor overrides it."""
    raw: dict[str, Any] = field(default_factory=dict)


def find_config(start: Path | None = None) -> Config:
    """The nearest configuration above ``start`` (defaults when there is none)."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        toml = folder / "evalgate.toml"
        if toml.is_file():
            return _from_table(folder, _read(toml), str(toml), top_level=True)
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            data = _read(pyproject)
            table = data.get("tool", {}).get("evalgate")
            if table is not None:
                return _from_table(folder, table, str(pyproject), top_level=False)
    return _from_table(start, {}, None, top_level=True)


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UsageError("not UTF-8 text", location=Location(str(path)), hint="save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"invalid TOML: {exc}", location=Location(str(path))) from None


def _from_table(root: Path, table: dict[str, Any], source: str | None, *, top_level: bool) -> Config:
    if top_level and "tool" in table and "evalgate" in table.get("tool", {}):
        table = table["tool"]["evalgate"]
    for key in table:
        if key not in _KEYS:
            where = "[tool.evalgate]" if not top_level else "evalgate.toml"
            raise UsageError(f"unknown setting '{key}' in {where}", location=Location(source or str(root)),
                             hint=did_you_mean(key, _KEYS) or f"known settings: {', '.join(sorted(_KEYS))}")
    at = Location(source or str(root))
    if "target" in table and not isinstance(table["target"], (str, dict)):
        raise UsageError(f"setting 'target' must be text or a table, not {type(table['target']).__name__}", location=at,
                         hint='e.g. target = "python:pkg.module:respond" or target = {python = "pkg.module:respond"}')
    for key in ("suites", "store", "cache", "baseline", "executor"):
        if key in table and not isinstance(table[key], str):
            raise UsageError(f"setting '{key}' must be text, not {type(table[key]).__name__}", location=at,
                             hint=f'e.g. {key} = "..." (a quoted string)')
    concurrency = table.get("concurrency")
    if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int)
                                    or not 1 <= concurrency <= 10_000):
        raise UsageError(f"concurrency must be a whole number from 1 to 10000, not {concurrency!r}", location=at,
                         hint="e.g. concurrency = 8")
    timeout_s = table.get("timeout_s")
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                  or not 0 < timeout_s <= 86_400):
        raise UsageError(f"timeout_s must be a number of seconds above 0 (at most a day), not {timeout_s!r}",
                         location=at, hint="e.g. timeout_s = 60")
    store_env = os.environ.get("EVALGATE_DB")
    store = Path(store_env) if store_env else root / table.get("store", DEFAULT_STORE)
    return Config(
        root=root,
        suites=root / table.get("suites", "suites"),
        store=store,
        cache=Path(os.environ["EVALGATE_CACHE"]) if os.environ.get("EVALGATE_CACHE") else root / table.get("cache", DEFAULT_CACHE),
        source=source,
        target=table.get("target"),
        baseline=table.get("baseline"),
        concurrency=table.get("concurrency"),
        timeout_s=table.get("timeout_s"),
        trace_url=_trace_url(table.get("trace_url"), source or str(root)),
        executor=table.get("executor"),
        raw=dict(table),
    )


def _trace_url(value: Any, source: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("https://", "http://")) or "{trace_id}" not in value:
        raise UsageError("trace_url must be an http(s) URL containing {trace_id}", location=Location(source),
                         hint='e.g. trace_url = "https://traces.example.com/trace/{trace_id}"')
    return value
