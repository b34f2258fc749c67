"""Upstreams: the HTTP APIs a system under test calls, served by a record/replay proxy during ``evalgate run``.

    prepare(suites, ...)   the run's upstreams and each suite's recordings (read now: a bad file is exit 2)
    serving(upstreams)     the proxy listening on 127.0.0.1, its URLs in the environment targets start in
    Upstreams.visit(...)   one turn: registered while it runs, its calls attached to its trace afterwards
    Upstreams.finish(s)    a suite's summary; in record mode its recordings file rewritten

A call is attributed to a turn, in this order: the ``X-Evalgate-Case``/``-Turn``/``-Repeat`` headers it
carries; a W3C ``traceparent`` whose trace id is a turn's; the per-turn URL it was sent to
(``request["upstreams"][NAME]``, ``/_t/<trace id>/…``); the one turn in flight, when only one is. A call none of
these claims is unattributed: replayed by its request hash alone, recorded under it alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import UsageError, display_path
from . import recordings
from .book import Book, Mode, Secrets, Upstream, Visit, seed_from

__all__ = ["Book", "TurnVisit", "Upstream", "Upstreams", "prepare", "recordings_of", "serving"]

MODES = ("record", "replay", "live")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_OFFLINE_KEY = "evalgate-upstream-proxy"
"""OPENAI_API_KEY for a target's openai client when none is set: the proxy answers, or adds the real headers."""


class Upstreams:
    """The run's upstream proxy: its upstreams, every suite's book, and the turns in flight."""

    def __init__(self, upstreams: list[Upstream], books: dict[str, Book], secrets: Secrets):
        from .proxy import Proxy

        self.upstreams = upstreams
        self.books = books
        self.secrets = secrets
        self._lock = threading.Lock()
        self._by_trace: dict[str, Visit] = {}
        self._by_key: dict[tuple[str, int, int], Visit] = {}
        self._claimed: dict[tuple[str, int, int], Visit] = {}
        """Turns named by a call's headers that no runner opened (a service's own retries after the turn)."""
        self._idle = Book("", Path(os.devnull), "live", secrets=secrets)
        self._current = self._idle
        self.proxy = Proxy(upstreams, self, secrets)

    # --- the run ---------------------------------------------------------------

    def start(self) -> None:
        self.proxy.start()

    def stop(self) -> None:
        self.proxy.stop()

    @property
    def urls(self) -> dict[str, str]:
        """Each upstream's proxy base URL, the real URL's path kept: http://127.0.0.1:PORT/v1."""
        return {up.name: self.proxy.urls[up.name] + up.base_path for up in self.upstreams if up.name in self.proxy.urls}

    def env(self) -> dict[str, str]:
        """What python and command targets start with: EVALGATE_UPSTREAM_<NAME>, and OPENAI_BASE_URL."""
        urls = self.urls
        out = {f"EVALGATE_UPSTREAM_{name.upper()}": url for name, url in urls.items()}
        for up in self.upstreams:
            if up.openai:
                out["OPENAI_BASE_URL"] = urls[up.name]
                if not os.environ.get("OPENAI_API_KEY"):
                    out["OPENAI_API_KEY"] = _OFFLINE_KEY
        return out

    def describe(self) -> list[str]:
        """A line per upstream: its proxy URL and where calls go, for the console at the run's start."""
        lines = []
        modes = sorted({b.mode for b in self.books.values()})
        for up in self.upstreams:
            lines.append(f"upstream {up.name}: {self.urls.get(up.name, '?')} → {self.secrets.text(_shown(up.url))} "
                         f"({', '.join(modes)})")
        return lines

    def activate(self, suite: str) -> None:
        """Calls no turn claims go to this suite's book from now on."""
        self._current = self.books.get(suite, self._idle)

    def visit(self, suite: str, case_id: str, repeat: int, turn: int, request: dict[str, Any],
              recorded: Any = None) -> TurnVisit | None:
        """One turn of a suite that names upstreams (else None): a context manager around the target's call."""
        from ..traces import marker_headers, traceparent

        book = self.books.get(suite)
        if book is None:
            return None
        trace_id = traceparent(request).split("-")[1]
        seed = seed_from(recorded) if book.mode == "replay" and any(u.openai for u in self.upstreams) else None
        return TurnVisit(self, Visit(book, case_id, repeat, turn, trace_id, seed, markers=marker_headers(request)), request)

    def finish(self, suite: str) -> dict[str, Any] | None:
        """The suite's summary of calls; in record mode its recordings file is rewritten first."""
        book = self.books.get(suite)
        if book is None:
            return None
        try:
            book.save()
        except OSError as exc:
            from ..errors import RunError

            raise RunError(f"cannot write the recordings file {display_path(book.path)}: {exc.strerror or exc}") from None
        return book.summary()

    # --- attribution (the proxy's thread) ----------------------------------------

    def _open(self, visit: Visit) -> None:
        with self._lock:
            self._by_trace[visit.trace_id] = visit
            self._by_key[(visit.case, visit.repeat, visit.turn)] = visit
            self._current = visit.book

    def _close(self, visit: Visit) -> None:
        with self._lock:
            if self._by_trace.get(visit.trace_id) is visit:
                del self._by_trace[visit.trace_id]
            key = (visit.case, visit.repeat, visit.turn)
            if self._by_key.get(key) is visit:
                del self._by_key[key]

    def attribute(self, headers: Mapping[str, str], trace_id: str | None) -> tuple[Visit | None, Book]:
        """The turn a call belongs to (headers, traceparent, per-turn path, the only turn in flight) and its book."""
        with self._lock:
            case, turn = headers.get("X-Evalgate-Case"), headers.get("X-Evalgate-Turn") or ""
            repeat = headers.get("X-Evalgate-Repeat") or "0"
            if case and turn.isdigit() and repeat.isdigit():
                key = (case, int(repeat), int(turn))
                found = self._by_key.get(key) or self._claimed.get(key)
                if found is None and self._current is not self._idle and len(self._claimed) < 10_000:
                    found = self._claimed[key] = Visit(self._current, case, int(repeat), int(turn), "")
                if found is not None:
                    return found, found.book
            m = _TRACEPARENT.fullmatch((headers.get("traceparent") or "").strip())
            for tid in (m.group(1) if m else None, trace_id):
                if tid is not None and tid in self._by_trace:
                    found = self._by_trace[tid]
                    return found, found.book
            if len(self._by_trace) == 1:
                only = next(iter(self._by_trace.values()))
                return only, only.book
            return None, self._current


class TurnVisit:
    """One turn in flight: registered on entry (its per-turn URLs put in the request), its calls read on exit."""

    def __init__(self, upstreams: Upstreams, visit: Visit, request: dict[str, Any]):
        self._upstreams = upstreams
        self.visit = visit
        self._request = request

    def __enter__(self) -> TurnVisit:
        u = self._upstreams
        self._request["upstreams"] = {up.name: f"{u.proxy.urls[up.name]}/_t/{self.visit.trace_id}{up.base_path}"
                                      for up in u.upstreams if up.name in u.proxy.urls}
        u._open(self.visit)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._upstreams._close(self.visit)

    def calls(self) -> list[dict[str, Any]]:
        """The turn's calls so far: upstream, order, method, path, served, request_hash, note."""
        with self.visit.book._lock:
            return [{k: v for k, v in c.items() if v is not None} for c in self.visit.calls]

    def attach(self, result: Any) -> None:
        """Put the turn's calls in its trace (``extra.upstream_calls``); a failed call becomes the turn's error."""
        from ..traces import Trace

        calls = self.calls()
        if not calls:
            return
        if result.trace is None:  # the target failed: a trace that only says so keeps the calls with the turn
            result.trace = Trace(error=result.error)
        result.trace.extra["upstream_calls"] = calls
        failed = [c for c in calls if c["served"] == "failed"]
        if failed:
            first, v = failed[0], self.visit
            message = (f"upstream {first['upstream']} call {first.get('order', 0) + 1} {first['method']} {first['path']} "
                       f"(case {v.case}, turn {v.turn}): {first.get('note') or 'failed'}")
            if len(failed) > 1:
                message += f"; and {len(failed) - 1} more failed call(s)"
            if result.error and "evalgate upstream proxy" not in result.error:  # not the proxy's own 502 again
                message += f" (then the target: {result.error[:200]})"
            result.error = message
            if result.trace.error is not None and result.trace.output is None:
                result.trace.error = message


def prepare(suites: list[Any], *, mode: str | None = None, offline: bool = False,
            root: Path | None = None) -> Upstreams | None:
    """The upstreams the suites name (one proxy for the run), each suite's book with its recordings read.

    None when no suite names upstreams. A suite's recordings file that is not valid, an upstream two suites
    define differently, or a header naming an unset variable is a UsageError (exit 2) before anything runs.
    """
    named = [s for s in suites if s.spec.upstreams]
    if not named:
        return None
    if mode is not None and mode not in MODES:
        from ..errors import did_you_mean

        raise UsageError(f"unknown --upstreams mode '{mode}'", hint=did_you_mean(mode, MODES) or "record, replay or live")
    if offline and mode in ("record", "live"):
        raise UsageError(f"--offline lets no call reach an upstream, and --upstreams {mode} passes every call through",
                         hint="drop --offline, or use --upstreams replay")
    root = root or Path.cwd()
    defined: dict[str, tuple[Any, str]] = {}
    upstreams: list[Upstream] = []
    for s in named:
        for name, spec in s.spec.upstreams.items():
            if name in defined:
                other, where = defined[name]
                if other != spec:
                    raise UsageError(f"upstream {name} is defined differently in {where} and {display_path(s.path)}",
                                     hint="one run serves one set of upstreams: define it the same in both, or "
                                          "give one another name")
                continue
            defined[name] = (spec, display_path(s.path))
            upstreams.append(Upstream(name, _expand(spec.url, f"upstreams.{name}.url", offline),
                                      spec.openai, {k: _expand(v, f"upstreams.{name}.headers.{k}", offline)
                                                    for k, v in spec.headers.items()}, spec.port))
    marked = [u.name for u in upstreams if u.openai]
    if len(marked) > 1:
        raise UsageError(f"upstreams {marked[0]} and {marked[1]} are both openai: true in this run; one gets "
                         "OPENAI_BASE_URL", hint="run the suites separately, or mark one")
    secrets = Secrets(upstreams)
    books = {}
    for s in named:
        rec = s.spec.recording
        path = _recordings_path(s, root)
        chosen = mode or (rec.mode if rec is not None else None)
        if offline and chosen in ("record", "live"):
            raise UsageError(f"suite {s.name} records or passes upstream calls through (recording.mode: {chosen}), "
                             "and --offline lets none go live", hint="run with --upstreams replay, or without --offline")
        # recorded production sessions answer their own turns' model calls: a suite of them replays by default
        production = bool(getattr(s, "trace_sources", None))
        suite_mode: Mode = chosen or (  # type: ignore[assignment]
            "replay" if path.exists() or offline or production else "record")
        existing = recordings.read(path) if path.exists() and suite_mode != "live" else []
        books[s.name] = Book(s.name, path, suite_mode, on_change=rec.on_change if rec is not None else "live",
                             offline=offline, existing=existing, secrets=secrets)
    return Upstreams(upstreams, books, secrets)


def recordings_of(suite: Any, root: Path) -> dict[str, Any]:
    """A suite's upstreams and its recordings file, read (a line that is not a recorded call is a SuiteError)."""
    path = _recordings_path(suite, root)
    return {"names": sorted(suite.spec.upstreams), "file": display_path(path),
            "recordings": len(recordings.read(path)) if path.exists() else None}


@contextlib.contextmanager
def serving(upstreams: Upstreams | None, announce: Callable[[str], None] | None = None) -> Iterator[None]:
    """The proxy listening, its URLs in the environment (for targets that start now), put back afterwards."""
    if upstreams is None:
        yield
        return
    upstreams.start()
    env = upstreams.env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        if announce is not None:
            for line in upstreams.describe():
                announce(line)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        upstreams.stop()


def _recordings_path(suite: Any, root: Path) -> Path:
    rec = suite.spec.recording
    return root / rec.file if rec is not None and rec.file else recordings.default_path(root, suite.name)


def _expand(value: str, used_in: str, offline: bool) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in os.environ:
            return os.environ[name]
        if offline:  # no call reaches the upstream: nothing needs the value
            return ""
        raise UsageError(f"environment variable {name} is not set (used in {used_in})",
                         hint=f"export {name}=... before running, or run --offline from recordings")
    return _VAR.sub(sub, value)


def _shown(url: str) -> str:
    """A URL without its user info and query, which may hold credentials."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
