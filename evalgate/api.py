"""The library functions behind every command. The CLI only translates.

    run(paths)        load suites → run → metrics → gate → stored verdict
    validate(paths)   load and check suites and the files they name
    case_story(...)   one case of a stored run, turn by turn
    history(...)      the runs in the store
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import gate as gate_mod
from . import metrics
from .config import Config, find_config
from .errors import EXIT_PASS, EXIT_RUN_ERROR, UsageError
from .results import RunOutcome
from .runner import Progress, Runner, RunOptions, config_hash
from .store import Store
from .suite import Suite, discover, is_default, load_suite


@dataclass
class SuiteReport:
    """One suite's run: outcome, verdict, headline metrics and failing cases."""

    suite: str
    path: str
    run_id: str
    status: str
    verdict: gate_mod.Verdict
    metrics: dict[str, float | None]
    failing: list[dict[str, Any]]
    warnings: list[str]
    bad_lines: list[dict[str, Any]]
    duration_s: float
    cases: int
    turns: int
    target: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = self.verdict.to_dict()
        return d


@dataclass
class RunReport:
    """Every suite run by one ``evalgate run``, and the exit code they add up to."""

    store: str
    suites: list[SuiteReport] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        codes = [s.verdict.exit_code for s in self.suites]
        if EXIT_RUN_ERROR in codes:
            return EXIT_RUN_ERROR
        return max(codes, default=EXIT_PASS)

    def to_dict(self) -> dict[str, Any]:
        return {"store": self.store, "exit_code": self.exit_code, "suites": [s.to_dict() for s in self.suites]}


def load_suites(paths: list[str] | None, config: Config, *, strict: bool = False,
                target: str | None = None) -> list[Suite]:
    """Suites named on the command line, or the configured folder's default ones."""
    files = discover(paths or [], config)
    if not paths:
        files = [f for f in files if is_default(f)]
    if not files:
        raise UsageError("no suite files found", hint=f"add YAML suites to {config.suites} or pass suite paths")
    return [load_suite(f, config, strict=strict, target_override=target) for f in files]


def run(paths: list[str] | None = None, *, config: Config | None = None, store_path: str | Path | None = None,
        options: RunOptions | None = None, target: str | None = None,
        progress_factory: Any = None) -> RunReport:
    """Load, run, score, store and gate every suite; returns the report.

    Everything that can be checked before the first turn is checked first
    (suites, datasets, traces, scorers, target imports), so usage errors
    exit 2 without running anything.
    """
    config = config or find_config()
    options = options or RunOptions()
    options.root = options.root or config.root
    if options.concurrency is None and config.concurrency:
        options.concurrency = config.concurrency
    if options.timeout_s is None and config.timeout_s:
        options.timeout_s = config.timeout_s
    suites = load_suites(paths, config, strict=options.strict, target=target)
    store = Store(store_path or config.store)
    if options.tags and not any(s.count_cases(options.tags) for s in suites):
        raise UsageError(f"no case has any of the tags {', '.join(options.tags)}", hint="check --tags")
    report = RunReport(str(store.path))

    async def go() -> None:
        runners = [Runner(s, store, _options_for(s, options), None) for s in suites]
        targets = [r.make_target() for r in runners]
        started = []
        try:
            for t in targets:  # all imports and spawns before the first turn: exit 2 stays honest
                await t.start()
                started.append(t)
            for suite, runner, tgt in zip(suites, runners, targets):
                if options.tags and not suite.count_cases(options.tags):
                    continue
                runner.progress = progress_factory(suite) if progress_factory else Progress()
                outcome = await runner.run(tgt)
                report.suites.append(finish(store, suite, outcome))
                if outcome.status == "interrupted":
                    break
        finally:
            for t in started:
                await t.close()

    asyncio.run(go())
    return report


def _options_for(suite: Suite, options: RunOptions) -> RunOptions:
    opts = RunOptions(**{**options.__dict__})
    opts.config_hash = config_hash(suite, options)
    return opts


def finish(store: Store, suite: Suite, outcome: RunOutcome) -> SuiteReport:
    """Compute metrics and the verdict of a finished run, and store them."""
    with store.connect() as con:
        head = metrics.headline(con, outcome.run_id)
        data = metrics.rule_data(con, outcome.run_id, list(suite.gate.rules))
        critical = metrics.critical_failures(con, outcome.run_id)
        failed_ids = [r[0] for r in con.execute(
            "SELECT case_id, min(seq) s FROM cases WHERE run_id = ? AND NOT passed AND NOT errored GROUP BY case_id ORDER BY s",
            [outcome.run_id]).fetchall()]
        inputs = gate_mod.GateInputs(suite.gate, suite.gated, outcome.status, outcome.cases, outcome.errors,
                                     data, critical, failed_ids,
                                     outcome.bad_lines, outcome.failure)
        verdict = gate_mod.evaluate(inputs)
        failing = metrics.failing_cases(con, outcome.run_id)
        summary = {"metrics": head, "verdict": verdict.to_dict()}
        con.execute("UPDATE runs SET verdict = ?, exit_code = ?, summary = ? WHERE run_id = ?",
                    [verdict.status, verdict.exit_code, json.dumps(summary, default=str), outcome.run_id])
    bad = [{"file": b.path, "line": b.line, "message": b.message} for b in suite.notes.bad_lines]
    return SuiteReport(suite.name, str(suite.path), outcome.run_id, outcome.status, verdict, head, failing,
                       list(suite.notes.warnings), bad, outcome.duration_s, outcome.cases, outcome.turns,
                       suite.target.describe() if suite.target else "")


@dataclass
class ValidationReport:
    """What ``validate`` found: per suite, its cases, turns, sources and warnings."""

    suites: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"suites": self.suites, "ok": True}


def validate(paths: list[str] | None = None, *, config: Config | None = None, strict: bool = False,
             check_target: bool = True) -> ValidationReport:
    """Load every suite and the files it names, without running anything.

    Raises SuiteError (exit 2) on the first problem; warnings are returned.
    """
    config = config or find_config()
    suites = load_suites(paths, config, strict=strict)
    out = []
    for s in suites:
        if check_target and s.target is not None and s.target.kind == "python":
            from .targets.python import import_reference

            try:
                import_reference(s.target.spec["python"], [config.root, s.path.parent])
            except Exception as exc:
                raise UsageError(f"suite {s.path}: target '{s.target.spec['python']}' does not import: {exc}") from None
        sessions, bad_total, bad_msgs = _stream_recorded(s, strict)
        warnings = list(s.notes.warnings)
        if bad_total:
            warnings.append(f"{bad_total} bad trace line(s) will be skipped (run with --strict to make them fatal)")
        out.append({"suite": s.name, "path": str(s.path), "default": s.spec.default,
                    "target": s.target.describe() if s.target else None,
                    "cases": s.count_cases(), "turns": s.count_turns(), "recorded_sessions": sessions,
                    "repeat": s.repeat, "gated": s.gated, "rules": len(s.gate.rules),
                    "warnings": warnings, "bad_lines": bad_msgs})
    return ValidationReport(out)


def _stream_recorded(suite: Suite, strict: bool) -> tuple[int, int, list[dict[str, Any]]]:
    """Read every recorded session in full (the scan pass only checks lines cheaply)."""
    from .errors import Location, SuiteError

    bad_total = suite.notes.bad_line_count
    bad_msgs = [{"file": b.path, "line": b.line, "message": b.message} for b in suite.notes.bad_lines]

    def on_bad(b: Any) -> None:
        nonlocal bad_total
        bad_total += 1
        if strict:
            raise SuiteError(f"bad trace line: {b.message}", location=Location(b.path, b.line))
        if len(bad_msgs) < 50:
            bad_msgs.append({"file": b.path, "line": b.line, "message": b.message})

    sessions = sum(1 for case in suite.iter_cases(on_bad=on_bad) if case.session_id is not None)
    return sessions, bad_total, bad_msgs


def case_story(store: Store, run_ref: str | None, case_id: str, repeat: int | None = None) -> dict[str, Any]:
    """One case of a stored run, turn by turn, with every score.

    ``latest`` means the latest run that has this case.
    """
    if run_ref in (None, "latest", "last"):
        rows = store.query("SELECT r.run_id FROM runs r WHERE EXISTS (SELECT 1 FROM cases c WHERE c.run_id = r.run_id "
                           "AND c.case_id = ?) ORDER BY r.started_at DESC LIMIT 1", [case_id])
        run_id = str(rows[0][0]) if rows else store.resolve_run(None)
    else:
        run_id = store.resolve_run(run_ref)
    with store.connect(read_only=True) as con:
        cases = con.execute(
            "SELECT case_id, repeat, tags, user_id, user_groups, passed, errored, error, source, elapsed_ms, session_id "
            "FROM cases WHERE run_id = ? AND case_id = ? ORDER BY repeat", [run_id, case_id]).fetchall()
        if not cases:
            like = [r[0] for r in con.execute("SELECT DISTINCT case_id FROM cases WHERE run_id = ? AND case_id ILIKE ? LIMIT 5",
                                              [run_id, f"%{case_id}%"]).fetchall()]
            from .errors import did_you_mean

            raise UsageError(f"run {run_id} has no case '{case_id}'",
                             hint=(f"cases like it: {', '.join(like)}" if like else None) or did_you_mean(case_id, like))
        run = con.execute("SELECT suite, target, status, verdict FROM runs WHERE run_id = ?", [run_id]).fetchone()
        story = {"run_id": run_id, "suite": run[0], "target": run[1], "run_status": run[2], "run_verdict": run[3],
                 "case_id": case_id, "repeats": []}
        for c in cases:
            if repeat is not None and c[1] != repeat:
                continue
            rep = {"repeat": c[1], "tags": list(c[2] or []), "user": {"id": c[3], "groups": list(c[4] or [])},
                   "passed": bool(c[5]), "errored": bool(c[6]), "error": c[7], "source": c[8],
                   "elapsed_ms": c[9], "session_id": c[10], "turns": []}
            turns = con.execute(
                "SELECT turn, input, route, output, state_in, state, elapsed_ms, latency_ms, passed, error, trace, "
                "recorded, changes FROM turns WHERE run_id = ? AND case_id = ? AND repeat = ? ORDER BY turn",
                [run_id, case_id, c[1]]).fetchall()
            for t in turns:
                trace = json.loads(t[10]) if t[10] else {}
                scores = con.execute(
                    "SELECT scorer, passed, value, explanation, error FROM scores WHERE run_id = ? AND case_id = ? "
                    "AND repeat = ? AND turn = ? ORDER BY scorer", [run_id, case_id, c[1], t[0]]).fetchall()
                rep["turns"].append({
                    "turn": t[0], "input": t[1], "route": trace.get("route"), "output": t[3],
                    "context": trace.get("context", []), "tool_calls": trace.get("tool_calls", []),
                    "model": trace.get("model"), "state_in": json.loads(t[4]) if t[4] else {},
                    "state": json.loads(t[5]) if t[5] else None, "elapsed_ms": t[6], "latency_ms": trace.get("latency_ms"),
                    "usage": trace.get("usage"), "passed": bool(t[8]), "error": t[9],
                    "feedback": (json.loads(t[11]) if t[11] else trace).get("feedback"),
                    "changes": json.loads(t[12]) if t[12] else None,
                    "scores": [{"scorer": s[0], "passed": bool(s[1]), "value": s[2], "explanation": s[3], "error": s[4]}
                               for s in scores]})
            story["repeats"].append(rep)
    return story


def history(store: Store, suite: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Recent runs, newest first, with verdicts and headline metrics."""
    where, params = ("WHERE suite = ?", [suite]) if suite else ("", [])
    rows = store.query_dicts(
        f"SELECT run_id, suite, status, verdict, exit_code, started_at, finished_at, git_commit, git_branch, "
        f"cases_done, turns_done, errors, bad_lines, summary FROM runs {where} ORDER BY started_at DESC LIMIT ?",
        [*params, limit])
    for r in rows:
        summary = json.loads(r.pop("summary")) if r.get("summary") else {}
        m = summary.get("metrics", {})
        r["pass_rate"] = m.get("pass_rate")
        r["latency_p95"] = m.get("latency.p95")
        r["started_at"] = str(r["started_at"]) if r["started_at"] else None
        r["finished_at"] = str(r["finished_at"]) if r["finished_at"] else None
    return rows
