"""Scorers: the extension point that turns what a target did into verdicts.

A scorer is a *factory* registered under a name. The suite's YAML names it
and gives its arguments; evalgate checks those arguments against the
factory's signature when the suite loads (so a typo is reported at its
line), calls the factory once, and gets back a check: a function (sync or
async) from a :class:`ScoreContext` to a :class:`Score`.

Built-ins register with :func:`scorer` exactly as third-party ones do;
others come from the ``evalgate.scorers`` entry-point group (loaded only
when a suite names them) or from a ``package.module:function`` reference.

    from evalgate import Score, scorer

    @scorer("polite", help="the answer says please")
    def polite(min_count: int = 1):
        def check(ctx):
            n = (ctx.trace.output or "").lower().count("please")
            return Score(n >= min_count, n, f"'please' appears {n} time(s)")
        return check
"""

from __future__ import annotations

import functools
import importlib
import inspect
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import did_you_mean

if TYPE_CHECKING:
    from ..documents import DocumentSet, Permissions
    from ..traces import Trace, User

ENTRY_POINT_GROUP = "evalgate.scorers"
_BUILTIN_MODULES = ("output", "route", "state", "context", "prompt", "tools", "permissions", "budget", "judge",
                    "recovery")


@dataclass(slots=True)
class Score:
    """One scorer's verdict on one turn: pass/fail, a value and why."""

    passed: bool
    value: float | None = None
    explanation: str = ""
    error: str | None = None
    scorer: str = ""
    metrics: dict[str, float] | None = None
    """Named values that roll up into run metrics ``<scorer>.<name>`` (e.g. ``recall@5``), mean over turns."""
    detail: dict[str, Any] | None = None
    """Anything else worth keeping with the score (stored as JSON): votes, leaked ids, ..."""


class CaseView(Protocol):
    """What a scorer sees of the case it scores (``cases.Case`` is one)."""

    id: str
    user: User
    tags: tuple[str, ...]
    meta: dict[str, Any]


@dataclass(slots=True)
class ScoreContext:
    """Everything a scorer may look at for one turn."""

    case: CaseView
    turn: int  # 1-based
    request: dict[str, Any]
    trace: Trace
    recorded: Trace | None = None
    previous: Trace | None = None
    documents: DocumentSet | None = None
    """The suite's document set, if it names one."""
    permissions: Permissions | None = None
    """The truth about who may read what (never what the system reports)."""
    elapsed_ms: float | None = None
    """The turn's time as evalgate measured it around the target call (None in replay)."""
    models: Any = None
    """The run's model options (models.ModelOptions: cache, cache mode, offline, spend): a scorer that calls a
    model (the judge) calls it the way the run says, like the target's own model calls."""
    earlier: tuple[Trace, ...] = ()
    """The traces of this conversation's earlier turns, oldest first (a check on the whole conversation reads them)."""


Check = Callable[[ScoreContext], Score | Awaitable[Score]]
Factory = Callable[..., Check]


@dataclass(frozen=True)
class ScorerInfo:
    """A registered scorer factory and how YAML addresses it."""

    name: str
    factory: Factory
    help: str = ""
    shorthand: str | None = None  # parameter that a non-mapping YAML value fills
    source: str = "built-in"
    stats: tuple[str, ...] = ()
    """Named values the scorer reports (``recall@k``: any k), usable as metrics ``<scorer>.<stat>``."""


class ScorerArgError(ValueError):
    """A scorer's YAML arguments do not fit its factory; ``path`` is where."""

    def __init__(self, message: str, path: tuple[str | int, ...] = (), hint: str | None = None, *, at_key: bool = False):
        super().__init__(message)
        self.path = path
        self.hint = hint
        self.at_key = at_key
        """True when the problem is the argument's name, not its value."""


@dataclass(frozen=True)
class BoundScorer:
    """A scorer with its arguments applied: ready to check turns."""

    name: str
    check: Check
    is_async: bool
    args: Any = field(default=None, compare=False)
    user_code: bool = field(default=False, compare=False)
    """A plugin's or the project's own scorer (not a built-in): a sync one runs on a thread, bounded by --timeout."""

    async def run(self, ctx: ScoreContext) -> Score:
        """Check one turn; an exception becomes an error score, never a crash."""
        try:
            result = self.check(ctx)
            if self.is_async or inspect.isawaitable(result):
                result = await result  # type: ignore[misc]
            score = _coerce(result)
        except Exception as exc:  # a user scorer's bug is data, not a crash
            return Score(False, None, f"scorer raised {type(exc).__name__}", f"{type(exc).__name__}: {exc}", self.name)
        score.scorer = self.name
        return score

    def run_sync(self, ctx: ScoreContext) -> Score:
        """Fast path for synchronous checks (no event-loop round trip)."""
        try:
            score = _coerce(self.check(ctx))
        except Exception as exc:
            return Score(False, None, f"scorer raised {type(exc).__name__}", f"{type(exc).__name__}: {exc}", self.name)
        score.scorer = self.name
        return score


def _coerce(result: Any) -> Score:
    if isinstance(result, Score):
        if not isinstance(result.explanation, str) or not isinstance(result.value, (int, float, type(None))):
            raise TypeError(f"a Score's explanation must be text and its value a number or None, got "
                            f"{type(result.explanation).__name__} and {type(result.value).__name__}")
        return result
    if isinstance(result, bool):
        return Score(result, float(result), "passed" if result else "failed")
    raise TypeError(f"a scorer check must return Score or bool, got {type(result).__name__}")


_registry: dict[str, ScorerInfo] = {}
_builtins_loaded = False


def scorer(name: str, *, help: str = "", shorthand: str | None = None,
           stats: tuple[str, ...] = ()) -> Callable[[Factory], Factory]:
    """Register a scorer factory under ``name`` (built-ins and plugins alike).

    ``stats`` names the values its scores report in ``Score.metrics``, so a
    gate rule may name ``<name>.<stat>``; ``@k`` in a stat stands for any k.
    """

    def register(factory: Factory) -> Factory:
        doc = help or (inspect.getdoc(factory) or "").split("\n")[0]
        _registry[name] = ScorerInfo(name, factory, doc, shorthand, _source_of(factory), stats)
        factory.__evalgate_scorer__ = _registry[name]  # type: ignore[attr-defined]
        return factory

    return register


def _source_of(factory: Factory) -> str:
    module = getattr(factory, "__module__", "") or ""
    return "built-in" if module.startswith("evalgate.scorers") else module


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for mod in _BUILTIN_MODULES:
            importlib.import_module(f"{__name__}.{mod}")


def _entry_points() -> dict[str, Any]:
    from ..plugins import installed

    return installed(ENTRY_POINT_GROUP)


def available() -> list[ScorerInfo]:
    """Every scorer a suite can name: built-ins, then installed plugins."""
    _load_builtins()
    infos = dict(_registry)
    for name, ep in _entry_points().items():
        if name not in infos:
            try:
                info = lookup(name)
            except ScorerArgError as exc:
                info = ScorerInfo(name, lambda: None, f"(cannot load: {exc})", None, ep.value)  # type: ignore[arg-type,return-value]
            infos[name] = info
    return sorted(infos.values(), key=lambda i: (i.source != "built-in", i.name))


def known_names() -> set[str]:
    """Names a suite can use, without importing any plugin: built-ins and entry-point names."""
    _load_builtins()
    return set(_registry) | set(_entry_points())


def declared_stats(name: str) -> tuple[str, ...]:
    """The named values a scorer declares it reports (``@scorer(..., stats=...)``); () for an alias or unknown name."""
    try:
        return lookup(name).stats
    except ScorerArgError:
        return ()


def lookup(name: str) -> ScorerInfo:
    """Find a scorer by registered name, entry point, or ``module:function``."""
    _load_builtins()
    if name in _registry:
        return _registry[name]
    if ":" in name:
        return _from_reference(name)
    eps = _entry_points()
    if name in eps:
        try:
            factory = eps[name].load()
        except Exception as exc:
            raise ScorerArgError(f"scorer plugin '{name}' failed to load: {type(exc).__name__}: {exc}") from None
        return getattr(factory, "__evalgate_scorer__", None) or ScorerInfo(name, factory, _doc(factory), None, eps[name].value)
    known = list(_registry) + list(eps)
    raise ScorerArgError(
        f"unknown scorer '{name}'",
        hint=did_you_mean(name, known) or "run 'evalgate scorers' for the list, or name a user scorer as package.module:function",
    )


def _doc(obj: Any) -> str:
    return (inspect.getdoc(obj) or "").split("\n")[0]


def _from_reference(ref: str) -> ScorerInfo:
    from ..references import import_reference

    try:
        factory = import_reference(ref)
    except Exception as exc:
        raise ScorerArgError(f"cannot import scorer '{ref}': {exc}",
                             hint="the module must be importable from the project root; use package.module:function") from None
    info = getattr(factory, "__evalgate_scorer__", None)
    return info or ScorerInfo(ref, factory, _doc(factory), None, ref)


def bind(name: str, args: Any, *, aliases: Mapping[str, tuple[str, Any]] | None = None) -> BoundScorer:
    """Resolve ``name`` and apply YAML ``args``, checking them against the factory.

    Raises ScorerArgError (with the path inside ``args``) when they do not fit.
    """
    if aliases and name in aliases:
        target, base_args = aliases[name]
        info = lookup(target)
        if isinstance(base_args, dict) and isinstance(args, dict):
            args = {**base_args, **args}
        elif args is None:
            args = base_args
    else:
        info = lookup(name)
    kwargs = _arguments(info, args)
    try:
        check = info.factory(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ScorerArgError(f"scorer '{name}': {exc}") from None
    if not callable(check):
        raise ScorerArgError(f"scorer '{name}' factory returned {type(check).__name__}, not a check function",
                             hint="a scorer factory takes the YAML arguments and returns check(ctx) -> Score")
    is_async = inspect.iscoroutinefunction(check) or inspect.iscoroutinefunction(getattr(check, "__call__", None))
    return BoundScorer(name, check, is_async, args, user_code=info.source != "built-in")


def _value_path(loc: tuple[Any, ...], value: Any, kind: str = "") -> list[str | int]:
    """The part of a pydantic error location that exists in the YAML value (union branch names dropped)."""
    out: list[str | int] = []
    node = value
    for part in loc:
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        elif (isinstance(node, dict) and isinstance(part, str) and part == loc[-1]
              and kind in ("missing", "extra_forbidden")):
            out.append(part)  # a missing or unknown key: name it
            break
        else:
            continue
        out.append(part)
    return out


@functools.lru_cache(maxsize=None)
def _shape(factory: Factory) -> tuple[Mapping[str, inspect.Parameter], dict[str, Any], bool]:
    """A factory's parameters and type hints, read once: binding runs for every case of a dataset."""
    params = inspect.signature(factory).parameters
    try:
        hints = typing.get_type_hints(factory)
    except Exception:
        hints = {}
    return params, hints, any(p.kind is p.VAR_KEYWORD for p in params.values())


def _adapter(hint: Any) -> Any:
    """One pydantic TypeAdapter per argument type (building one costs far more than validating)."""
    try:
        return _cached_adapter(hint)
    except TypeError:  # an unhashable annotation: build it each time
        from pydantic import TypeAdapter

        return TypeAdapter(hint)


@functools.lru_cache(maxsize=None)
def _cached_adapter(hint: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(hint)


def _arguments(info: ScorerInfo, args: Any) -> dict[str, Any]:
    """Map YAML arguments onto the factory's parameters, validating types."""
    from pydantic import ValidationError

    params, hints, var_kw = _shape(info.factory)
    if args is None or args is True:
        args = {}
    if not isinstance(args, dict):
        if info.shorthand is None:
            raise ScorerArgError(f"scorer '{info.name}' takes a mapping of arguments, got {type(args).__name__}",
                                 hint=f"write {info.name}: {{{', '.join(list(params)[:2])}: ...}}")
        args = {info.shorthand: args}
    out: dict[str, Any] = {}
    for key, value in args.items():
        key = str(key)
        param = params.get(key)
        if param is None or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            if var_kw:
                out[key] = value
                continue
            names = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            raise ScorerArgError(f"scorer '{info.name}' has no argument '{key}'", (key,),
                                 hint=did_you_mean(key, names) or f"its arguments are: {', '.join(names) or '(none)'}",
                                 at_key=True)
        hint = hints.get(key)
        if hint is not None:
            try:
                value = _adapter(hint).validate_python(value)
            except ValidationError as exc:
                # of a union's branches, the error that reaches deepest into the value says most
                first = max(exc.errors(), key=lambda e: len(_value_path(e["loc"], value, e["type"])))
                inner = _value_path(first["loc"], value, first["type"])
                where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in inner)
                msg = first["msg"] if first["type"] != "extra_forbidden" else "unknown key"
                raise ScorerArgError(f"scorer '{info.name}' argument '{key}{where}': {msg}", (key, *inner),
                                     at_key=first["type"] == "extra_forbidden") from None
        out[key] = value
    missing = [n for n, p in params.items()
               if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in out]
    if missing:
        raise ScorerArgError(f"scorer '{info.name}' needs argument(s): {', '.join(missing)}")
    return out
