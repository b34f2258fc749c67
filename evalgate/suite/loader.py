"""Loading a suite: YAML → validated ``Suite`` with its cases, target, gate and sources (file:line errors).

The runnable form is plain dataclasses with scorers already bound, so a bad
scorer argument is reported when the suite loads, never mid-run. Cases come
from four places, yielded in this order with a stable ``seq``: inline in the
suite, dataset files (YAML, JSONL, CSV), and recorded trace files, which are
streamed (a session becomes one multi-turn case); an OTLP source is converted
once to native traces and kept beside the store.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import _json
from .. import scorers as scorer_registry
from .._files import read_text
from .._validation import _hint, _message, _parse_loc, _validate
from .._yaml import YamlDoc, load_yaml
from ..cases import (
    Case,
    CaseSpec,
    Turn,
    _add_tag,
    _error_check,
    _merge_checks,
    _selected,
    correction_to_expect,
    expand_run_as,
    run_as_user,
)
from ..config import Config
from ..datasets import _bind_all, _build_case, _load_dataset
from ..documents import DocumentSet, Permissions
from ..errors import Location, SuiteError, UsageError, did_you_mean, display_path
from ..pipeline.config import PipelineSpec
from ..policy import GateSpec, check_rule_metrics
from ..recovery.derive import derive as derive_variants
from ..recovery.operators import OPERATORS, Options
from ..redact import Redactor
from ..references import search_paths
from ..scorers import BoundScorer, ScorerArgError
from ..targets.base import known_kinds, spec_model
from ..targets.spec import PipelineTargetSpec, TargetConfig
from ..traces import (
    BadLine,
    RecordedSession,
    Trace,
    TraceFileInfo,
    User,
    iter_sessions,
    scan,
)
from .gold import Gold, load_gold
from .sources import (
    LoadNotes,
    _converted_otlp,
    _load_documents,
    _redactor,
    _source_format,
)
from .spec import UPSTREAM_NAME, CasesFile, SuiteSpec, TracesSource, VariantsSpec


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
    for name, route in pspec.routes.items():
        if isinstance(route.documents, str):
            data["routes"][name]["documents"] = found = os.path.normpath(folder / route.documents)
            if not Path(found).exists():
                raise SuiteError(f"routes.{name}: document collection not found: {display_path(found)}",
                                 location=loc(("pipeline", "routes", name, "documents")) if file is None
                                 else Location(file),
                                 hint="a .jsonl file or a folder of .md files, relative to the file that names it")
    return TargetConfig("pipeline", {"pipeline": data, "file": file}, base_dir)




@dataclass
class RecordedSource:
    """A traces source, scanned: its file's shape, its bound expectations and its gold rows."""

    spec: TracesSource
    info: TraceFileInfo
    checks: list[BoundScorer]
    """The source's ``expect``, bound."""
    gold: Gold | None = None
    reported: list[str] = field(default_factory=list)
    """The gold warnings the last full pass added to the suite's notes."""


@dataclass(kw_only=True)
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
    trace_sources: list[RecordedSource]
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
        for rec in self.trace_sources:
            if _selected(tuple(rec.spec.tags) + ("recorded",), tags):
                n += rec.info.sessions * len(self.run_as or [None])
        return n

    def count_turns(self, tags: Sequence[str] | None = None) -> int:
        n = sum(len(c.turns) for c in self.static_cases if _selected(c.tags, tags))
        for rec in self.trace_sources:
            if _selected(tuple(rec.spec.tags) + ("recorded",), tags):
                n += rec.info.turns * len(self.run_as or [None])
        return n

    def iter_cases(self, tags: Sequence[str] | None = None, on_bad: Callable[[BadLine], None] | None = None) -> Iterator[Case]:
        """Every selected case in a stable order; recorded sessions are streamed."""
        seq = len(self.static_cases)
        ids = {c.id for c in self.static_cases}
        for case in self.static_cases:
            if _selected(case.tags, tags):
                yield case
        for rec in self.trace_sources:
            if rec.gold is not None:
                rec.gold.start()
            for session in iter_sessions(rec.info, on_bad=on_bad):
                for one in self.session_cases(session, rec, seq, ids):
                    seq += 1
                    if _selected(one.tags, tags):
                        yield one
            if rec.gold is not None:  # only a full pass knows which rows matched nothing
                self._note_gold(rec)

    def session_cases(self, session: RecordedSession, rec: RecordedSource, seq: int, ids: set[str], *,
                      redact: bool = True) -> list[Case]:
        """The case runs one recorded session makes, numbered from ``seq`` (one per ``run_as`` user, else one);
        ``ids`` holds the case ids so far: a session id that collides with one is made the file's own. ``redact``
        False: ``needs_redaction`` said the session holds nothing to redact."""
        case = self._case_from_session(session, rec, seq, redact)
        if case.id in ids:
            case.id = f"{case.id}@{Path(rec.info.path).stem}"
        ids.add(case.id)
        return expand_run_as(case, self.run_as, seq) if self.run_as else [case]

    def needs_redaction(self, session: RecordedSession) -> bool:
        """Whether the suite's redactor would change anything in the session (its numbering must then see it)."""
        r = self.redactor
        if r is None or not r.enabled:
            return False
        return r.finds(session.session_id) or any(self._finds_in(t) for t in session.turns)

    def _finds_in(self, trace: Trace) -> bool:
        """Whether the redactor finds anything in a recorded line, as written or with its JSON escapes decoded."""
        assert self.redactor is not None
        raw = trace._raw if trace._raw is not None else trace.to_json().encode()
        if self.redactor.finds(raw):
            return True
        # an escaped character (\u0040 is "@", \/ is "/") hides a value from a look at the bytes: look at the
        # decoded text (other escapes, \n or \", cannot join or split what a detector matches)
        return (b"\\u" in raw or b"\\/" in raw) and self.redactor.finds(_json.dumps(_json.loads(raw)))

    def _case_from_session(self, session: RecordedSession, rec: RecordedSource, seq: int, redact: bool = True) -> Case:
        base = _merge_checks(self.suite_checks, rec.checks)
        tags = list(rec.spec.tags) + ["recorded"]
        turns: list[Turn] = []
        meta: dict[str, Any] = {}
        session_id = session.session_id
        if self.redactor is not None and redact:
            session_id = self.redactor.text(session_id)
        for position, recorded in enumerate(session.turns, 1):
            trace = self._redact(recorded) if redact else recorded
            checks, expect = base, {}
            fb = trace.feedback
            if fb is not None:
                if fb.rating in ("down", -1, 0, "bad"):
                    _add_tag(tags, "feedback:down")
                if fb.correction is not None:
                    expect = correction_to_expect(fb.correction)
                    _add_tag(tags, "corrected")
                    checks = _merge_checks(base, self._bind_lenient(expect))
            # joined on the values as recorded: the gold file is written against the recording, not its placeholders
            gold = rec.gold.match(recorded, session.session_id, position) if rec.gold is not None else None
            turn_tags: tuple[str, ...] = ()
            if gold is not None:  # the gold file is the suite's word: it replaces a correction's same scorer
                expect = {**expect, **gold.expect}
                checks = _merge_checks(checks, gold.checks)
                turn_tags = gold.tags
                for name, value in gold.meta.items():
                    meta.setdefault(name, value)
                _add_tag(tags, "gold")
            turns.append(Turn(trace.input or "", checks, expect, trace, tags=turn_tags))
        first = turns[0].recorded
        return Case(id=session_id, seq=seq, turns=turns, user=(first.user if first else None) or User(), state={},
                    tags=tuple(tags), source=f"{_shown(session.path)}:{session.first_line}",
                    session_id=session_id, meta=meta)

    def _note_gold(self, rec: RecordedSource) -> None:
        """The gold join's warnings for this pass, replacing the last pass's (a run may read the traces again)."""
        assert rec.gold is not None
        shown = self.redactor.text if self.redactor is not None else str
        warnings = rec.gold.warnings(display_path(os.path.normpath(self.path.parent / rec.spec.file)), shown)
        self.notes.warnings = [w for w in self.notes.warnings if w not in rec.reported] + warnings
        rec.reported = warnings

    def _redact(self, trace: Trace) -> Trace:
        """The trace with personal data and secrets replaced; the same object when there was none."""
        if self.redactor is None or not self.redactor.enabled:
            return trace
        if not self._finds_in(trace):
            return trace
        raw = trace._raw if trace._raw is not None else trace.to_json().encode()
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


def load_suite(path: Path | str, config: Config | None = None, *, strict: bool = False,
               target_override: str | None = None) -> Suite:
    """Load and fully check one suite file (datasets and trace files too)."""
    from ..config import find_config

    path = Path(path)
    config = config or find_config(path.parent)
    # module:function references (scorers, permissions, hooks) import from the project root, then the suite's folder
    with search_paths(config.root, path.parent):
        return _load_suite(path, config, strict, target_override)


def _load_suite(path: Path, config: Config, strict: bool, target_override: str | None) -> Suite:
    if not path.is_file():
        raise SuiteError(f"suite file not found: {path}", hint="evalgate run [PATHS] takes suite files or folders")
    text = read_text(path)
    doc = load_yaml(path, text)
    if not isinstance(doc.data, dict):
        raise SuiteError("a suite file is a YAML mapping (name, target, cases, gate, ...)", location=Location(str(path), 1))
    spec: SuiteSpec = _validate(SuiteSpec, doc.data, doc, (), str(path))
    _check_upstreams(spec, doc)
    base = path.parent
    notes = LoadNotes()
    documents, permissions = _load_documents(spec, doc, base, str(path), (config.root, base))

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
        if case.simulation is not None:
            scorer_names.update([*(c.name for c in case.simulation.checks), "goal"])
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
        gold = None
        if src.gold is not None:
            try:
                gold = load_gold(Path(os.path.normpath(base / src.gold.file)), src.gold.key, aliases)
            except SuiteError as exc:
                if exc.location is None:  # the file itself: point at the suite's gold:
                    exc.location = doc.locate(("traces", i, "gold"))
                raise
            scorer_names.update(c.name for entry in gold.rows.values() for c in entry.checks)
        trace_sources.append(RecordedSource(src, info, src_checks, gold))

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
                                     scorer_registry.declared_stats, OPERATORS)
        if problem:
            raise SuiteError(problem[0], location=doc.locate(("gate", "rules", i, "metric")), hint=problem[1])
    if gated:
        derived = [c.id for c in static if c.derived_id]
        if derived:
            notes.warnings.append(f"{len(derived)} case(s) have derived ids (e.g. {derived[0]}); give them ids so "
                                  "editing an input keeps them paired with the baseline")
    if spec.variants is not None:
        for case in _variants(static, spec.variants, aliases, suite_checks, str(path)):
            add(case)
        static = _grouped(static)
    run_as = [run_as_user(w) for w in spec.run_as] if spec.run_as else None
    if run_as:
        static = [one for case in static for one in expand_run_as(case, run_as, 0)]
        for i, case in enumerate(static):
            case.seq = i
    name = spec.name or path.stem
    redactor = _redactor(spec, doc) if trace_sources else None
    return Suite(name=name, path=path, spec=spec, target=target, gate=gate, gated=gated,
                 text_hash=hashlib.sha256(text.encode()).hexdigest()[:16], static_cases=static,
                 trace_sources=trace_sources, suite_checks=suite_checks, aliases=aliases, scorer_names=scorer_names,
                 notes=notes, documents=documents, permissions=permissions, run_as=run_as, redactor=redactor)


def _check_upstreams(spec: SuiteSpec, doc: YamlDoc) -> None:
    """Upstream names that can become environment variables, one OpenAI-compatible upstream, recording beside them."""
    for name in spec.upstreams:
        if not UPSTREAM_NAME.fullmatch(name):
            raise SuiteError(f"upstream name '{name}' is not a lower-case name", location=doc.locate(("upstreams", name), key=True),
                             hint="names are [a-z][a-z0-9_]* (it becomes EVALGATE_UPSTREAM_<NAME>), e.g. model, search")
    marked = [name for name, up in spec.upstreams.items() if up.openai]
    if len(marked) > 1:
        raise SuiteError(f"upstreams {marked[0]} and {marked[1]} are both openai: true; one gets OPENAI_BASE_URL",
                         location=doc.locate(("upstreams", marked[1], "openai")),
                         hint="mark the model endpoint the system's openai client uses; point others at EVALGATE_UPSTREAM_<NAME>")
    if spec.recording is not None and not spec.upstreams:
        raise SuiteError("recording: applies to upstreams, and this suite names none", location=doc.locate(("recording",), key=True),
                         hint="add upstreams: {model: {url: ..., openai: true}}, or remove recording:")


def _variants(written: list[Case], spec: VariantsSpec, aliases: dict[str, tuple[str, Any]],
              suite_checks: list[BoundScorer], path: str) -> list[Case]:
    """Recovery variants of the written cases the suite's ``variants`` selects."""
    options = Options(tuple(spec.questions)) if spec.questions else Options()

    def bind(expect: dict[str, Any]) -> list[BoundScorer]:
        return _merge_checks(suite_checks, _bind_all(expect, aliases, None, (), path))

    out: list[Case] = []
    for case in written:
        if case.variant_of is None and case.turns and _selected(case.tags, spec.tags):
            out.extend(derive_variants(case, spec.operators, spec.per_operator, spec.seed, options, bind,
                                       fresh=not spec.carry_state))
    return out


def _grouped(cases: list[Case]) -> list[Case]:
    """Each written case followed by its variants, renumbered: every listing shows a variant under its original."""
    variants: dict[str, list[Case]] = {}
    for case in cases:
        if case.variant_of is not None:
            variants.setdefault(case.variant_of, []).append(case)
    placed = {id(v) for vs in variants.values() for v in vs}
    out: list[Case] = []
    for case in cases:
        if id(case) not in placed:
            out.append(case)
            out.extend(variants.pop(case.id, []))
    out.extend(v for vs in variants.values() for v in vs)  # variants written by hand of a case not in this suite
    for i, case in enumerate(out):
        case.seq = i
    return out


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
