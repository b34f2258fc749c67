"""Suites: YAML → validated Suite with its Cases, Turns, target and gate.

What users write is parsed into pydantic models with ``extra="forbid"`` (a
misspelt key is an error with a did-you-mean hint at its file:line); the
runnable form is plain dataclasses with scorers already bound, so a bad
scorer argument is reported when the suite loads, never mid-run.

Cases come from four places, yielded in this order with a stable ``seq``:
inline in the suite, dataset files (YAML, JSONL, CSV), and recorded trace
files, which are streamed (a session becomes one multi-turn case).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import json
import os
import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import scorers as scorer_registry
from ._yaml import YamlDoc, load_yaml
from .config import Config
from .documents import DocumentSet, FunctionPermissions, GroupPermissions, Permissions
from .errors import Location, SuiteError, UsageError, did_you_mean, display_path
from .references import search_paths
from .targets.base import known_kinds
from .targets.spec import PipelineTargetSpec, TargetConfig, spec_model
from .policy import GateSpec, _split_tags, check_rule_metrics
from .pipeline.config import PipelineSpec
from .scorers import BoundScorer, Score, ScorerArgError
from .redact import Redactor
from .traces import BadLine, RecordedSession, Trace, TraceFileInfo, User, iter_sessions, scan

SUITE_VERSION = 1
CRITICAL_TAG = "critical"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TurnSpec(_Model):
    """One user message and what should happen."""

    input: str
    """The user's message."""
    expect: dict[str, Any] = Field(default_factory=dict)
    """Scorer name → arguments, e.g. {route: refunds, output: {contains: ["5521"]}}."""


class CaseSpec(_Model):
    """A conversation, as written in a suite or dataset file."""

    id: str | None = None
    """Stable id; derived from the user and inputs when absent."""
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    user: User = Field(default_factory=User)
    state: dict[str, Any] = Field(default_factory=dict)
    """Conversation state before the first turn."""
    turns: list[TurnSpec] | None = None
    input: str | None = None
    """Single-turn shorthand for ``turns: [{input, expect}]``."""
    expect: dict[str, Any] | None = None
    variant_of: str | None = None
    """Groups variants of one conversation."""
    meta: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    """The case's own fields (locale, tier, difficulty, ...): gate rules slice on them with where: {meta: ...}."""

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        return _split_tags(value)

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _one_form(self) -> CaseSpec:
        if self.turns is None and self.input is None:
            raise ValueError("a case needs 'turns' (a list of {input, expect}) or a single 'input'")
        if self.turns is not None and self.input is not None:
            raise ValueError("give either 'turns' or 'input' (single-turn shorthand), not both")
        if self.turns is not None and not self.turns:
            raise ValueError("'turns' is empty: a case needs at least one turn")
        if self.expect is not None and self.input is None:
            raise ValueError("'expect' at case level goes with 'input'; put it on each turn instead")
        return self

    def turn_specs(self) -> list[TurnSpec]:
        if self.turns is not None:
            return self.turns
        return [TurnSpec(input=self.input or "", expect=self.expect or {})]


class CasesFile(_Model):
    """Cases read from a dataset file (YAML list, JSONL or CSV)."""

    file: str
    tags: list[str] = Field(default_factory=list)
    """Tags added to every case of the file."""

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        return _split_tags(value)


class TracesSource(_Model):
    """Recorded sessions (native JSONL, or OTLP JSON converted on load) replayed as cases."""

    file: str
    format: Literal["auto", "native", "otlp"] = "auto"
    """auto: OTLP when the name ends in .otlp.json(l) or the file holds resourceSpans, else native."""
    mapping: str | dict[str, Any] | None = None
    """OTLP only: where route, state, user groups, ... live in your attributes (inline, or a YAML file)."""
    tags: list[str] = Field(default_factory=list)
    expect: dict[str, Any] = Field(default_factory=dict)
    """Expectations applied to every turn of these sessions."""

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        return _split_tags(value)


class RedactSpec(_Model):
    """What is redacted from recorded traces before they are run, stored or reported."""

    detectors: list[str] | None = None
    """Built-in detectors: email, phone, card, api_key, bearer (default: all)."""
    patterns: dict[str, str] = Field(default_factory=dict)
    """Your own: name → regex; matches become <NAME_n>."""
    python: str | None = None
    """module:function(text) returning the (kind, value) pairs it finds."""

    @field_validator("python")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[\w.]+:[\w.]+", value):
            raise ValueError("expected package.module:function")
        return value


class ScorerAlias(_Model):
    """A named scorer configuration: ``use`` a scorer with preset arguments."""

    use: str
    """A registered scorer name, an entry point, or package.module:function."""
    args: dict[str, Any] = Field(default_factory=dict)


class PermissionsSpec(_Model):
    """Where the truth about who may read a document comes from."""

    file: str | None = None
    """A file of document ids → groups (YAML/JSON mapping, JSONL or CSV)."""
    python: str | None = None
    """module:function(user, doc_id) -> bool."""

    @model_validator(mode="after")
    def _one(self) -> PermissionsSpec:
        if (self.file is None) == (self.python is None):
            raise ValueError("permissions take exactly one of: file (ids → groups) or python (module:function)")
        if self.python is not None and not re.fullmatch(r"[\w.]+:[\w.]+", self.python):
            raise ValueError("expected package.module:function")
        return self


class SuiteSpec(_Model):
    """A suite file, as written."""

    version: int = SUITE_VERSION
    name: str | None = None
    description: str | None = None
    default: bool = True
    """False keeps the suite out of a bare ``evalgate run``."""
    target: Any = None
    cases: list[Any] = Field(default_factory=list)
    traces: list[Any] = Field(default_factory=list)
    expect: dict[str, Any] = Field(default_factory=dict)
    """Expectations applied to every turn of every case."""
    scorers: dict[str, ScorerAlias] = Field(default_factory=dict)
    repeat: int = Field(1, ge=1, le=1000)
    concurrency: int | None = Field(None, ge=1, le=10_000)
    timeout_s: float | None = Field(None, gt=0)
    baseline: str | None = None
    documents: str | None = None
    """The document set (a .jsonl file or a folder of .md files) the system retrieves from."""
    permissions: PermissionsSpec | None = None
    """Who may read each document, when not the document set's own groups."""
    run_as: list[str | User] | None = None
    """Replay every case as each of these users (a group name, or {id, groups}); ids get ``@<who>``."""
    redact: bool | RedactSpec = True
    """Redaction of recorded traces (on by default with every built-in detector; false turns it off)."""
    gate: GateSpec | None = None

    @field_validator("run_as")
    @classmethod
    def _run_as(cls, value: list[str | User] | None) -> list[str | User] | None:
        if value is not None:
            if not value:
                raise ValueError("run_as needs at least one group name or user")
            labels = [run_as_label(v) for v in value]
            dup = next((x for x in labels if labels.count(x) > 1), None)
            if dup is not None:
                raise ValueError(f"run_as names '{dup}' twice")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != SUITE_VERSION:
            raise ValueError(f"suite format version {value} is not one this evalgate reads (it reads {SUITE_VERSION})")
        return value


# --- targets ----------------------------------------------------------------

def parse_target(value: Any, base_dir: Path, where: Callable[..., Location] | None = None) -> TargetConfig:
    """A target from YAML, configuration, or ``--target kind:value``."""

    def loc(path: tuple[Any, ...], key: bool = False) -> Location | None:
        return where(("target", *path), key=key) if where else None

    if isinstance(value, str):
        if value == "replay":
            return TargetConfig("replay", {}, base_dir)
        kind, sep, rest = value.partition(":")
        if sep and kind in known_kinds() and kind != "replay":
            value = {kind: rest if kind != "command" else shlex.split(rest)}
        else:
            raise SuiteError(f"unknown target '{value}'", location=loc(()),
                             hint="use replay, {python: pkg.module:function}, {http: URL} or {command: [argv...]}")
    if not isinstance(value, dict):
        raise SuiteError("target must be 'replay' or a mapping", location=loc(()),
                         hint="e.g. target: {python: assistant.bot:respond}")
    if value.get("replay") is True and len(value) == 1:
        return TargetConfig("replay", {}, base_dir)
    known = [k for k in known_kinds() if k != "replay"]
    kinds = [k for k in value if k in known]
    if len(kinds) != 1:
        unknown = [k for k in value if k not in known]
        hint = did_you_mean(unknown[0], known + ["replay"]) if unknown else None
        raise SuiteError(f"target needs exactly one of: {', '.join(known)} (or the word replay)",
                         location=loc((unknown[0],) if unknown else (), key=bool(unknown)), hint=hint)
    kind = kinds[0]
    if kind == "pipeline":
        return _parse_pipeline(value, base_dir, loc)
    try:
        model = spec_model(kind)
    except Exception as exc:  # a plugin that does not load
        raise SuiteError(f"target kind '{kind}' failed to load: {type(exc).__name__}: {exc}", location=loc((kind,), key=True),
                         hint=f"check the package that registers '{kind}' in the evalgate.targets entry points") from None
    if model is None:
        return TargetConfig(kind, dict(value), base_dir)
    try:
        spec = model.model_validate(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise SuiteError(f"target: {_message(err, model)}",
                         location=loc(tuple(err["loc"]), key=err["type"] == "extra_forbidden"),
                         hint=_hint(err, model)) from None
    return TargetConfig(kind, spec.model_dump(), base_dir)


def _parse_pipeline(value: dict[str, Any], base_dir: Path, loc: Callable[..., Location | None]) -> TargetConfig:
    """``pipeline: {...}`` inline (paths relative to the suite) or ``pipeline: FILE`` (relative to that file)."""
    extra = [k for k in value if k != "pipeline"]
    if extra:
        raise SuiteError(f"target: unknown key '{extra[0]}' beside pipeline", location=loc((extra[0],), True),
                         hint="the pipeline's settings go under pipeline:")
    inner = value["pipeline"]
    file: str | None = None
    if isinstance(inner, str):
        path = Path(os.path.normpath(base_dir / inner))
        doc = load_yaml(path)
        if not isinstance(doc.data, dict):
            raise SuiteError("a pipeline file is a YAML mapping (router, routes, slots, ...)", location=Location(str(path), 1))
        pspec: PipelineSpec = _validate(PipelineSpec, doc.data, doc, (), str(path))
        file, folder = display_path(path), path.parent
    else:
        try:
            pspec = PipelineTargetSpec.model_validate(value).pipeline
        except ValidationError as exc:
            err = exc.errors()[0]
            raise SuiteError(f"target: {_message(err, PipelineTargetSpec)}",
                             location=loc(tuple(err["loc"]), key=err["type"] == "extra_forbidden"),
                             hint=_hint(err, PipelineTargetSpec)) from None
        folder = base_dir
    data = pspec.model_dump()
    if pspec.documents is not None:
        data["documents"] = os.path.normpath(folder / pspec.documents)
        if not Path(data["documents"]).exists():
            raise SuiteError(f"pipeline document set not found: {display_path(data['documents'])}",
                             location=loc(("pipeline", "documents")) if file is None else Location(file),
                             hint="a .jsonl file or a folder of .md files, relative to the file that names it")
    return TargetConfig("pipeline", {"pipeline": data, "file": file}, base_dir)


# --- the runnable form --------------------------------------------------------


@dataclass(slots=True)
class Turn:
    """One turn, ready to run: the input and the bound checks."""

    input: str
    checks: list[BoundScorer]
    expect: dict[str, Any]
    recorded: Trace | None = None


@dataclass(slots=True)
class Case:
    """A conversation, ready to run."""

    id: str
    seq: int
    turns: list[Turn]
    user: User
    state: dict[str, Any]
    tags: tuple[str, ...]
    source: str
    """file:line where the case was defined (or recorded)."""
    description: str | None = None
    variant_of: str | None = None
    derived_id: bool = False
    session_id: str | None = None
    """The recorded session this case replays, if any."""
    meta: dict[str, Any] = field(default_factory=dict)
    """The case's own fields, for slicing."""

    @property
    def critical(self) -> bool:
        return CRITICAL_TAG in self.tags


@dataclass
class LoadNotes:
    """Things worth telling the user that are not errors."""

    warnings: list[str] = field(default_factory=list)
    bad_lines: list[BadLine] = field(default_factory=list)
    bad_line_count: int = 0


@dataclass
class Suite:
    """A loaded suite: its settings, target, gate and case sources."""

    name: str
    path: Path
    spec: SuiteSpec
    target: TargetConfig | None
    gate: GateSpec
    gated: bool
    """True when the suite wrote a gate (else every case must pass)."""
    text_hash: str
    static_cases: list[Case]
    trace_sources: list[tuple[TracesSource, TraceFileInfo, list[BoundScorer]]]
    suite_checks: list[BoundScorer]
    aliases: dict[str, tuple[str, Any]]
    scorer_names: set[str]
    notes: LoadNotes
    documents: DocumentSet | None = None
    permissions: Permissions | None = None
    """The truth about who may read what (the suite's permission source, else the document set)."""
    run_as: list[User] | None = None
    """Every case runs once as each of these users."""
    redactor: Redactor | None = None
    """Applied to every recorded turn before it is run, stored or reported."""
    _correction_cache: dict[tuple[str, str], BoundScorer] = field(default_factory=dict, repr=False)

    @property
    def repeat(self) -> int:
        return self.spec.repeat

    def count_cases(self, tags: Sequence[str] | None = None) -> int:
        """Cases (not repeats) the run will execute, without reading traces again."""
        n = sum(1 for c in self.static_cases if _selected(c.tags, tags))
        for src, info, _ in self.trace_sources:
            if _selected(tuple(src.tags) + ("recorded",), tags):
                n += info.sessions * len(self.run_as or [None])
        return n

    def count_turns(self, tags: Sequence[str] | None = None) -> int:
        n = sum(len(c.turns) for c in self.static_cases if _selected(c.tags, tags))
        for src, info, _ in self.trace_sources:
            if _selected(tuple(src.tags) + ("recorded",), tags):
                n += info.turns * len(self.run_as or [None])
        return n

    def iter_cases(self, tags: Sequence[str] | None = None, on_bad: Callable[[BadLine], None] | None = None) -> Iterator[Case]:
        """Every selected case in a stable order; recorded sessions are streamed."""
        seq = len(self.static_cases)
        ids = {c.id for c in self.static_cases}
        for case in self.static_cases:
            if _selected(case.tags, tags):
                yield case
        for src, info, src_checks in self.trace_sources:
            for session in iter_sessions(info, on_bad=on_bad):
                case = self._case_from_session(session, src, seq, src_checks)
                if case.id in ids:  # a session id that collides with another case
                    case.id = f"{case.id}@{Path(info.path).stem}"
                ids.add(case.id)
                for one in (expand_run_as(case, self.run_as, seq) if self.run_as else [case]):
                    seq += 1
                    if _selected(one.tags, tags):
                        yield one

    def _case_from_session(self, session: RecordedSession, src: TracesSource, seq: int,
                           src_checks: list[BoundScorer]) -> Case:
        base = _merge_checks(self.suite_checks, src_checks)
        tags = list(src.tags) + ["recorded"]
        turns: list[Turn] = []
        session_id = session.session_id
        if self.redactor is not None:
            session_id = self.redactor.text(session_id)
        for trace in session.turns:
            trace = self._redact(trace)
            checks, expect = base, {}
            fb = trace.feedback
            if fb is not None:
                if fb.rating in ("down", -1, 0, "bad"):
                    _add_tag(tags, "feedback:down")
                if fb.correction is not None:
                    expect = correction_to_expect(fb.correction)
                    _add_tag(tags, "corrected")
                    checks = _merge_checks(base, self._bind_lenient(expect))
            turns.append(Turn(trace.input or "", checks, expect, trace))
        first = turns[0].recorded
        return Case(id=session_id, seq=seq, turns=turns, user=(first.user if first else None) or User(), state={},
                    tags=tuple(tags), source=f"{_shown(session.path)}:{session.first_line}",
                    session_id=session_id)

    def _redact(self, trace: Trace) -> Trace:
        """The trace with personal data and secrets replaced; the same object when there was none."""
        if self.redactor is None or not self.redactor.enabled:
            return trace
        raw = trace._raw if trace._raw is not None else trace.to_json().encode()
        if not self.redactor.finds(raw):
            return trace
        return Trace.model_validate(self.redactor.value(json.loads(raw)))

    def _bind_lenient(self, expect: dict[str, Any]) -> list[BoundScorer]:
        """Bind a correction's expectations; one that cannot bind becomes an error check.

        Corrections repeat a handful of values (route names, mostly), so bound
        checks are cached by their arguments.
        """
        bound = []
        for name, args in expect.items():
            key = (name, json.dumps(args, sort_keys=True, default=str))
            check = self._correction_cache.get(key)
            if check is None:
                try:
                    check = scorer_registry.bind(name, args, aliases=self.aliases)
                except ScorerArgError as exc:
                    check = _error_check(name, f"correction could not become an expectation: {exc}")
                if len(self._correction_cache) < 10_000:
                    self._correction_cache[key] = check
            bound.append(check)
        return bound


@functools.lru_cache(maxsize=256)
def _shown(path: str) -> str:
    return display_path(path)


def run_as_label(who: str | User) -> str:
    """How a run-as identity appears in case ids: the group name, or the user's id."""
    return who if isinstance(who, str) else who.id


def run_as_user(who: str | User) -> User:
    """A group name runs as a user of that name in that one group."""
    return User(id=who, groups=[who]) if isinstance(who, str) else who


def expand_run_as(case: Case, users: Sequence[User], seq0: int) -> list[Case]:
    """One copy of the case per run-as user: id ``<case>@<user>``, that user in every request."""
    out = []
    for i, user in enumerate(users):
        out.append(dataclasses.replace(case, id=f"{case.id}@{user.id}", seq=seq0 + i, user=user,
                                       tags=tuple(dict.fromkeys([*case.tags, f"run-as:{user.id}"]))))
    return out


def correction_to_expect(c: Any) -> dict[str, Any]:
    """A feedback correction → that turn's expectations (scorer → arguments)."""
    expect: dict[str, Any] = {}
    if c.route is not None:
        expect["route"] = c.route
    if c.output is not None:
        expect["output"] = {"equals": c.output} if isinstance(c.output, str) else c.output
    if c.context is not None:
        expect["context"] = {"must_include": c.context} if isinstance(c.context, list) else c.context
    if c.state is not None:
        expect["state"] = c.state
    if c.tool_calls is not None:
        expect["tool_calls"] = c.tool_calls
    return expect


def _error_check(name: str, message: str) -> BoundScorer:
    def check(ctx: Any) -> Score:
        return Score(False, None, message, message)

    return BoundScorer(name, check, False)


def _add_tag(tags: list[str], tag: str) -> None:
    if tag not in tags:
        tags.append(tag)


def _selected(case_tags: Sequence[str], wanted: Sequence[str] | None) -> bool:
    return not wanted or any(t in case_tags for t in wanted)


def _merge_checks(base: list[BoundScorer], more: list[BoundScorer]) -> list[BoundScorer]:
    """Turn-level checks replace suite-level checks of the same scorer name."""
    if not more:
        return base
    names = {c.name for c in more}
    return [c for c in base if c.name not in names] + more


def derive_case_id(user: User, inputs: Sequence[str]) -> str:
    """A stable id from the user and the inputs only (never the expectations)."""
    blob = json.dumps([user.id, sorted(user.groups), list(inputs)], ensure_ascii=False, separators=(",", ":"))
    return "c-" + hashlib.sha1(blob.encode()).hexdigest()[:10]


# --- loading ------------------------------------------------------------------


def _message(err: Any, model: type[BaseModel] | None = None) -> str:
    loc = err.get("loc", ())
    if err["type"] == "extra_forbidden":
        return f"unknown key '{loc[-1]}'"
    if err["type"] == "missing":
        return f"missing required key '{loc[-1]}'"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    return f"'{loc[-1]}': {msg}" if loc and isinstance(loc[-1], str) else msg


def _hint(err: Any, model: type[BaseModel] | None) -> str | None:
    if err["type"] != "extra_forbidden" or model is None:
        return None
    loc = err["loc"]
    fields = _fields_at(model, loc[:-1])
    return did_you_mean(str(loc[-1]), fields) or (f"allowed keys: {', '.join(fields)}" if fields else None)


def _fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """Field names of the nested model at ``loc`` (for did-you-mean hints)."""
    import typing

    current: Any = model
    mapping = False
    for part in loc:
        if isinstance(part, int):
            continue
        if mapping:  # a key of dict[str, Model]: the model is already current
            mapping = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return []
        ann = current.model_fields[part].annotation
        mapping = typing.get_origin(ann) is dict
        current = _unwrap(ann, typing)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(ann: Any, typing: Any) -> Any:
    for arg in (typing.get_args(ann) or ()):
        inner = _unwrap(arg, typing)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return ann


def _validate(model: type[BaseModel], data: Any, doc: YamlDoc | None, prefix: tuple[Any, ...], path: str, line: int | None = None) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        if doc is not None:
            location = doc.locate(prefix + loc, key=err["type"] == "extra_forbidden")
        else:
            location = Location(path, line)
        where = ".".join(str(p) for p in loc[:-1])
        message = _message(err, model) + (f" (in {where})" if where else "")
        more = len(exc.errors()) - 1
        if more:
            message += f"; {more} more problem(s) after fixing this one"
        raise SuiteError(message, location=location, hint=_hint(err, model)) from None


def load_suite(path: Path | str, config: Config | None = None, *, strict: bool = False,
               target_override: str | None = None) -> Suite:
    """Load and fully check one suite file (datasets and trace files too)."""
    from .config import find_config

    path = Path(path)
    config = config or find_config(path.parent)
    # module:function references (scorers, permissions, hooks) import from the project root, then the suite's folder
    with search_paths(config.root, path.parent):
        return _load_suite(path, config, strict, target_override)


def _load_suite(path: Path, config: Config, strict: bool, target_override: str | None) -> Suite:
    if not path.is_file():
        raise SuiteError(f"suite file not found: {path}", hint="evalgate run [PATHS] takes suite files or folders")
    text = path.read_text(encoding="utf-8")
    doc = load_yaml(path, text)
    if not isinstance(doc.data, dict):
        raise SuiteError("a suite file is a YAML mapping (name, target, cases, gate, ...)", location=Location(str(path), 1))
    spec: SuiteSpec = _validate(SuiteSpec, doc.data, doc, (), str(path))
    base = path.parent
    notes = LoadNotes()
    documents, permissions = _load_documents(spec, doc, base, str(path))

    target_value = target_override if target_override is not None else (spec.target if spec.target is not None else config.target)
    target = None
    if target_value is not None:
        where = doc.locate if target_override is None and spec.target is not None else None
        target = parse_target(target_value, config.root if where is None else base, where)

    aliases: dict[str, tuple[str, Any]] = {}
    for alias, cfg in spec.scorers.items():
        aliases[alias] = (cfg.use, cfg.args)
        _bind_all({alias: None}, aliases, doc, ("scorers", alias), str(path))
    suite_checks = _bind_all(spec.expect, aliases, doc, ("expect",), str(path))
    if permissions is not None and not any(c.name == "permissions" for c in suite_checks):
        # leaks are checked on every turn of a suite that knows who may read what
        suite_checks.append(scorer_registry.bind("permissions", None))
    scorer_names = {c.name for c in suite_checks}

    static: list[Case] = []
    seen: dict[str, str] = {}

    def add(case: Case) -> None:
        if case.id in seen:
            raise SuiteError(f"duplicate case id '{case.id}' (first defined at {seen[case.id]})",
                             location=_parse_loc(case.source), hint="case ids must be unique within a suite")
        seen[case.id] = case.source
        scorer_names.update(c.name for t in case.turns for c in t.checks)
        static.append(case)

    for i, item in enumerate(spec.cases):
        if isinstance(item, dict) and "file" in item:
            ref: CasesFile = _validate(CasesFile, item, doc, ("cases", i), str(path))
            for case in _load_dataset(Path(os.path.normpath(base / ref.file)), ref.tags, aliases, suite_checks, len(static)):
                add(case)
        else:
            cspec: CaseSpec = _validate(CaseSpec, item, doc, ("cases", i), str(path))
            loc = doc.locate(("cases", i))
            add(_build_case(cspec, len(static), f"{loc}", aliases, suite_checks, doc, ("cases", i)))

    trace_sources = []
    for i, item in enumerate(spec.traces):
        if isinstance(item, str):
            item = {"file": item}
        src: TracesSource = _validate(TracesSource, item, doc, ("traces", i), str(path))
        src_checks = _bind_all(src.expect, aliases, doc, ("traces", i, "expect"), str(path))
        scorer_names.update(c.name for c in src_checks)
        trace_path = os.path.normpath(base / src.file)
        if _source_format(src, trace_path, doc, i) == "otlp":
            trace_path = _converted_otlp(src, Path(trace_path), base, config, spec, doc, i, notes)
        info = scan(trace_path, strict=strict)
        notes.bad_lines.extend(info.bad)
        notes.bad_line_count += info.bad_count
        trace_sources.append((src, info, src_checks))

    if target is not None and target.kind == "replay" and static:
        first = static[0]
        raise SuiteError("the replay target scores recorded traces, but this suite has written cases "
                         f"(e.g. '{first.id}') with nothing recorded to replay",
                         location=_parse_loc(first.source),
                         hint="give the suite a python, http or command target, or move the cases to another suite")
    if target is not None and target.kind == "replay" and spec.run_as:
        raise SuiteError("run_as replays cases through a target as other users, but the replay target runs nothing",
                         location=doc.locate(("run_as",)),
                         hint="give the suite a python, http or command target to replay the sessions through")
    gated = spec.gate is not None and bool(spec.gate.rules)  # a gate without rules still needs every case to pass
    gate = spec.gate or GateSpec(max_error_rate=0.0)
    for i, rule in enumerate(gate.rules):
        problem = check_rule_metrics(rule, scorer_registry.known_names() | scorer_names | set(aliases), aliases,
                                     scorer_registry.declared_stats)
        if problem:
            raise SuiteError(problem[0], location=doc.locate(("gate", "rules", i, "metric")), hint=problem[1])
    if gated:
        derived = [c.id for c in static if c.derived_id]
        if derived:
            notes.warnings.append(f"{len(derived)} case(s) have derived ids (e.g. {derived[0]}); give them ids so "
                                  "editing an input keeps them paired with the baseline")
    run_as = [run_as_user(w) for w in spec.run_as] if spec.run_as else None
    if run_as:
        static = [one for case in static for one in expand_run_as(case, run_as, 0)]
        for i, case in enumerate(static):
            case.seq = i
    name = spec.name or path.stem
    redactor = _redactor(spec, doc) if trace_sources else None
    return Suite(name, path, spec, target, gate, gated, hashlib.sha256(text.encode()).hexdigest()[:16],
                 static, trace_sources, suite_checks, aliases, scorer_names, notes, documents, permissions, run_as, redactor)


def _redactor(spec: SuiteSpec, doc: YamlDoc) -> Redactor | None:
    """The suite's redactor: every built-in detector unless ``redact:`` says otherwise."""
    from .redact import build_redactor

    if spec.redact is False:
        return None
    rs = spec.redact if isinstance(spec.redact, RedactSpec) else RedactSpec()
    try:
        return build_redactor(rs.detectors, rs.patterns, rs.python)
    except ValueError as exc:
        raise SuiteError(str(exc), location=doc.locate(("redact",)),
                         hint="redact: {detectors: [email, phone, card, api_key, bearer], patterns: {NAME: REGEX}, "
                              "python: module:function}, or redact: false") from None


def _source_format(src: TracesSource, path: str, doc: YamlDoc, i: int) -> str:
    from .otlp import is_otlp

    fmt = src.format
    if fmt == "auto":
        fmt = "otlp" if is_otlp(path) else "native"
    if fmt == "native" and src.mapping is not None:
        raise SuiteError("'mapping' applies to OTLP trace files, and this one is native JSONL",
                         location=doc.locate(("traces", i, "mapping"), key=True),
                         hint="remove mapping, or set format: otlp if the file is OTLP JSON")
    return fmt


def _converted_otlp(src: TracesSource, path: Path, base: Path, config: Config, spec: SuiteSpec, doc: YamlDoc,
                    i: int, notes: LoadNotes) -> str:
    """An OTLP source converted (and redacted) to native JSONL under the store's folder, reused while unchanged."""
    from . import __version__, otlp
    from .redact import build_redactor

    if not path.is_file():
        raise SuiteError(f"trace file not found: {path}", location=doc.locate(("traces", i)),
                         hint="paths in a suite are relative to the suite's folder")
    if isinstance(src.mapping, str):
        mapping_path = Path(os.path.normpath(base / src.mapping))
        mapping = otlp.load_mapping(mapping_path)
        mapping_key: Any = mapping_path.read_text(encoding="utf-8")
    else:
        try:
            mapping = otlp.parse_mapping(src.mapping)
        except ValueError as exc:
            raise SuiteError(str(exc), location=doc.locate(("traces", i, "mapping")),
                             hint="e.g. mapping: {route: {span_name: route_decision, attribute: app.route}}") from None
        mapping_key = src.mapping
    redact = spec.redact if isinstance(spec.redact, RedactSpec) else (RedactSpec() if spec.redact else None)
    st = path.stat()
    key = hashlib.sha256(json.dumps([str(path.resolve()), st.st_size, st.st_mtime_ns, mapping_key,
                                     redact.model_dump() if redact else None, __version__],
                                    sort_keys=True, default=str).encode()).hexdigest()[:16]
    out = config.store.parent / "otlp" / f"{path.name}.{key}.jsonl"
    summary_path = out.with_name(out.name + ".summary.json")
    if not out.is_file() or not summary_path.is_file():
        redactor = None
        if redact is not None:
            try:
                redactor = build_redactor(redact.detectors, redact.patterns, redact.python)
            except ValueError as exc:
                raise SuiteError(str(exc), location=doc.locate(("redact",))) from None
        stats = otlp.import_otlp([path], out, mapping=mapping, redactor=redactor)
        summary_path.write_text(json.dumps({"unmapped": dict(stats.unmapped.most_common()),
                                            "redacted": stats.redacted}), encoding="utf-8")
    # said on every run that uses the converted copy, not only the one that converted it
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    if summary["unmapped"]:
        shown = ", ".join(f"{k} ({v})" for k, v in list(summary["unmapped"].items())[:5])
        notes.warnings.append(f"{display_path(path)}: {len(summary['unmapped'])} OTLP attribute(s) not mapped: {shown}")
    if summary["redacted"]:
        notes.warnings.append(f"{display_path(path)}: redacted on import: "
                              + ", ".join(f"{kind} {n}" for kind, n in summary["redacted"].items()))
    return str(out)


def _load_documents(spec: SuiteSpec, doc: YamlDoc, base: Path,
                    path: str) -> tuple[DocumentSet | None, Permissions | None]:
    """The suite's document set and permission source (errors point at the YAML key)."""
    documents: DocumentSet | None = None
    permissions: Permissions | None = None
    try:
        if spec.documents is not None:
            documents = DocumentSet.load(Path(os.path.normpath(base / spec.documents)))
            permissions = GroupPermissions.of(documents)
        if spec.permissions is not None:
            if spec.permissions.file is not None:
                permissions = GroupPermissions.load(Path(os.path.normpath(base / spec.permissions.file)))
            elif spec.permissions.python is not None:
                permissions = FunctionPermissions.load(spec.permissions.python)
    except SuiteError as exc:
        if exc.location is None:
            key = "documents" if documents is None and spec.documents is not None else "permissions"
            exc.location = doc.locate((key,))
        raise
    return documents, permissions


def _parse_loc(source: str) -> Location:
    path, _, rest = source.partition(":")
    line, _, col = rest.partition(":")
    return Location(path, int(line) if line.isdigit() else None, int(col) if col.isdigit() else None)


def _bind_all(expect: dict[str, Any], aliases: dict[str, tuple[str, Any]], doc: YamlDoc | None,
              prefix: tuple[Any, ...], path: str, line: int | None = None) -> list[BoundScorer]:
    bound = []
    for name, args in expect.items():
        try:
            bound.append(scorer_registry.bind(str(name), args, aliases=aliases))
        except ScorerArgError as exc:
            if doc is not None:
                location = doc.locate(prefix + (name,) + exc.path, key=not exc.path or exc.at_key)
            else:
                location = Location(path, line)
            raise SuiteError(str(exc), location=location, hint=exc.hint) from None
    return bound


def _build_case(spec: CaseSpec, seq: int, source: str, aliases: dict[str, tuple[str, Any]],
                suite_checks: list[BoundScorer], doc: YamlDoc | None, prefix: tuple[Any, ...],
                extra_tags: Sequence[str] = (), path: str = "", line: int | None = None) -> Case:
    specs = spec.turn_specs()
    turns = []
    for t, tspec in enumerate(specs):
        tprefix = prefix + (("turns", t, "expect") if spec.turns is not None else ("expect",))
        checks = _bind_all(tspec.expect, aliases, doc, tprefix, path, line)
        turns.append(Turn(tspec.input, _merge_checks(suite_checks, checks), tspec.expect))
    derived = spec.id is None
    case_id = spec.id if spec.id is not None else derive_case_id(spec.user, [t.input for t in specs])
    tags = tuple(dict.fromkeys([*spec.tags, *extra_tags]))
    return Case(case_id, seq, turns, spec.user, spec.state, tags, source, spec.description,
                spec.variant_of, derived, meta=dict(spec.meta))


def _load_dataset(path: Path, tags: Sequence[str], aliases: dict[str, tuple[str, Any]],
                  suite_checks: list[BoundScorer], seq0: int) -> Iterator[Case]:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise SuiteError(f"dataset file not found: {path}", hint="paths in a suite are relative to the suite's folder")
    if suffix in (".yaml", ".yml"):
        doc = load_yaml(path)
        items = doc.data
        prefix0: tuple[str, ...] = ()
        if isinstance(items, dict) and "cases" in items:
            items, prefix0 = items["cases"], ("cases",)
        if not isinstance(items, list):
            raise SuiteError("a YAML dataset is a list of cases (or a mapping with 'cases:')", location=Location(str(path), 1))
        for i, item in enumerate(items):
            cspec = _validate(CaseSpec, item, doc, prefix0 + (i,), str(path))
            yield _build_case(cspec, seq0 + i, str(doc.locate(prefix0 + (i,))), aliases, suite_checks, doc,
                              prefix0 + (i,), tags, str(path))
    elif suffix == ".jsonl":
        with open(path, encoding="utf-8") as fh:
            n = 0
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except ValueError as exc:
                    raise SuiteError(f"not valid JSON: {exc}", location=Location(str(path), lineno)) from None
                cspec = _validate(CaseSpec, item, None, (), str(path), lineno)
                yield _build_case(cspec, seq0 + n, f"{display_path(path)}:{lineno}", aliases, suite_checks, None, (),
                                  tags, str(path), lineno)
                n += 1
    elif suffix == ".csv":
        yield from _load_csv(path, tags, aliases, suite_checks, seq0)
    else:
        raise SuiteError(f"unsupported dataset format '{suffix}': {path}", hint="use .yaml, .jsonl or .csv")


_CSV_COLUMNS = {"id", "input", "tags", "user", "groups", "description", "variant_of", "turn"}


def _load_csv(path: Path, tags: Sequence[str], aliases: dict[str, tuple[str, Any]],
              suite_checks: list[BoundScorer], seq0: int) -> Iterator[Case]:
    """CSV: one turn per row; rows sharing an ``id`` are the turns of one case.

    Columns: id, input, tags, user, groups, description, variant_of, and
    ``expect.<scorer>`` or ``expect.<scorer>.<argument>`` cells (YAML values).
    """
    import yaml

    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        for col in columns:
            if col not in _CSV_COLUMNS and not col.startswith(("expect.", "meta.")):
                raise SuiteError(f"unknown CSV column '{col}'", location=Location(str(path), 1),
                                 hint=did_you_mean(col, _CSV_COLUMNS) or "columns: id, input, tags, user, groups, expect.<scorer>[.<arg>], meta.<field>")
        if "input" not in columns:
            raise SuiteError("a CSV dataset needs an 'input' column", location=Location(str(path), 1))
        grouped: dict[str, tuple[int, dict[str, Any]]] = {}
        order: list[str] = []
        for row in reader:
            lineno = reader.line_num
            expect: dict[str, Any] = {}
            for col, cell in row.items():
                if col is None or not col.startswith("expect.") or cell in (None, ""):
                    continue
                value = _csv_value(cell, yaml)
                parts = col.split(".")[1:]
                if len(parts) == 1:
                    expect[parts[0]] = value
                else:
                    expect.setdefault(parts[0], {})[parts[1]] = value
            key = row.get("id") or f"__row{lineno}"
            turn = {"input": row.get("input") or "", "expect": expect}
            if key not in grouped:
                case: dict[str, Any] = {"turns": [turn]}
                if row.get("id"):
                    case["id"] = row["id"]
                for name in ("tags", "description", "variant_of"):
                    if row.get(name):
                        case[name] = row[name]
                meta = {col[5:]: cell for col, cell in row.items() if col and col.startswith("meta.") and cell not in (None, "")}
                if meta:
                    case["meta"] = meta
                if row.get("user") or row.get("groups"):
                    case["user"] = {"id": row.get("user") or "anonymous", "groups": _split_tags(row.get("groups") or "")}
                grouped[key] = (lineno, case)
                order.append(key)
            else:
                grouped[key][1]["turns"].append(turn)
        for n, key in enumerate(order):
            lineno, item = grouped[key]
            cspec = _validate(CaseSpec, item, None, (), str(path), lineno)
            yield _build_case(cspec, seq0 + n, f"{display_path(path)}:{lineno}", aliases, suite_checks, None, (), tags,
                              str(path), lineno)


def _csv_value(cell: str, yaml: Any) -> Any:
    """CSV cells are text, except YAML lists/mappings (``[a, b]``) and true/false."""
    text = cell.strip()
    if text in ("true", "false"):
        return text == "true"
    if text.startswith(("[", "{")):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return cell
    return cell


def discover(paths: Sequence[Path | str], config: Config) -> list[Path]:
    """Suite files named on the command line, or the configured folder's defaults."""
    if not paths:
        folder = config.suites
        if not folder.is_dir():
            raise UsageError(f"no suites folder at {folder}", hint="pass suite files, or set suites = '...' in [tool.evalgate]")
        return sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(q for q in p.glob("*.y*ml") if q.suffix in (".yaml", ".yml")))
        elif p.exists():
            found.append(p)
        else:
            raise UsageError(f"no such suite file or folder: {p}")
    return found


def is_default(path: Path) -> bool:
    """Whether a bare ``evalgate run`` includes this suite (``default: false`` opts out)."""
    doc = load_yaml(path)
    return not (isinstance(doc.data, dict) and doc.data.get("default") is False)
