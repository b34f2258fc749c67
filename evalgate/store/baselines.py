"""Baselines in the store: a run's outcomes read back as a Snapshot, a version's runs pooled, names set and exported.

A baseline reference names one trusted run; ``version_runs`` finds the other
trusted runs of its version, and ``snapshot`` pools their outcomes per case.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..baseline import BASELINE_FILE_VERSION, MAX_DIGESTS, CaseOutcome, Snapshot
from ..errors import UsageError


EXCERPT_CHARS = 240
"""How much of an answer a baseline keeps for before/after (redacted with every built-in detector)."""


def _excerpt(output: str | None) -> str | None:
    if output is None:
        return None
    from ..redact import build_redactor

    text = " ".join(output.split())
    text = text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"
    return build_redactor().text(text)


def _fingerprint(trace_json: str | None, route: str | None, output: str | None) -> dict[str, Any]:
    """What a turn did, for before/after: route, context ids used, tool names, a hash and a redacted excerpt of the
    answer."""
    trace = json.loads(trace_json) if trace_json else {}
    context = [c["id"] for c in trace.get("context", []) if c.get("used", True)]
    tools = [t["name"] for t in trace.get("tool_calls", [])]
    digest = hashlib.sha1((output or "").strip().encode()).hexdigest()[:12] if output is not None else None
    return {"route": route, "context": context, "tools": tools, "output": digest, "text": _excerpt(output)}


def snapshot(con: Any, run_id: str, pooled: list[str] | None = None, *, turns: bool = True) -> Snapshot:
    """Read stored outcomes: ``run_id``'s, pooled per case with the runs in ``pooled`` (its version).

    Turn fingerprints (for behaviour changes) come from ``run_id``'s first repeat; with ``turns=False`` none are
    read (``add_turns`` reads those of the cases a comparison needs: a 100k-case run's would take ~190 MB).
    """
    run = con.execute("SELECT suite, git_commit, git_branch, summary FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if run is None:
        raise UsageError(f"no run '{run_id}' in the store")
    summary = json.loads(run[3]) if run[3] else {}
    runs = [run_id] + [r for r in (pooled or []) if r != run_id]
    cases = (_one_run_cases(con, run_id) if len(runs) == 1 else None) or _pooled_cases(con, runs)
    snap = Snapshot(run[0], run_id, run[1], run[2], summary.get("metrics", {}), cases, history=runs, turns_read=turns)
    if turns:
        add_turns(con, snap, None)
    return snap


class _Tags:
    """Cases share their tag lists: a few distinct ones per run."""

    def __init__(self) -> None:
        self.lists: dict[tuple[str, ...], list[str]] = {}

    def __call__(self, tags: list[str] | None) -> list[str]:
        key = tuple(tags or ())
        shared = self.lists.get(key)
        if shared is None:
            shared = list(key)
            if len(self.lists) < 10_000:
                self.lists[key] = shared
        return shared


def _pooled_cases(con: Any, runs: list[str]) -> dict[str, CaseOutcome]:
    """Each case's outcomes over ``runs`` and their repeats, in the order of the first run's cases."""
    cases: dict[str, CaseOutcome] = {}
    tags = _Tags()
    cur = con.execute(
        "SELECT case_id, count(*) FILTER (passed), count(*), count(*) FILTER (errored), any_value(tags), "
        "list(DISTINCT digest) FILTER (NOT errored AND digest IS NOT NULL), any_value(variant_of) FROM cases "
        "WHERE list_contains(?, run_id) GROUP BY case_id ORDER BY min(seq)", [runs])
    while rows := cur.fetchmany(10_000):  # a window at a time: a 100k-case run's rows at once cost ~35 MB
        for case_id, passed, n, errored, tag_list, digests, cluster in rows:
            cases[case_id] = CaseOutcome(int(passed), int(n), int(errored), tags(tag_list),
                                         digests=sorted(digests or [])[:MAX_DIGESTS], cluster=cluster)
    return cases


def _one_run_cases(con: Any, run_id: str) -> dict[str, CaseOutcome] | None:
    """A run that ran each case once, read row by row (no grouping: at 286k cases the grouped query alone held
    ~150 MB); None when a case ran more than once (``_pooled_cases`` then)."""
    from array import array

    cases: dict[str, CaseOutcome] = {}
    tags = _Tags()
    seqs = array("q")
    cur = con.execute("SELECT case_id, passed, errored, tags, digest, variant_of, seq FROM cases WHERE run_id = ?",
                      [run_id])
    while rows := cur.fetchmany(10_000):
        for case_id, passed, errored, tag_list, digest, cluster, seq in rows:
            if case_id in cases:
                return None
            cases[case_id] = CaseOutcome(int(bool(passed)), 1, int(bool(errored)), tags(tag_list),
                                         digests=[digest] if digest is not None and not errored else [],
                                         cluster=cluster)
            seqs.append(seq)
    if any(a >= b for a, b in zip(seqs, seqs[1:])):  # in the order of the run's cases, as the grouped query has them
        keys = list(cases)
        cases = {keys[i]: cases[keys[i]] for i in sorted(range(len(keys)), key=seqs.__getitem__)}
    return cases


def turns_to_compare(con: Any, base: Snapshot, cand: Snapshot) -> None:
    """Read the turn fingerprints a comparison of ``cand`` with ``base`` needs, where they were not read."""
    from ..baseline import turns_needed

    needed = turns_needed(base, cand)
    for snap in (base, cand):
        if not snap.turns_read and snap.source == "store":
            add_turns(con, snap, needed)


def add_turns(con: Any, snap: Snapshot, case_ids: list[str] | None) -> None:
    """Read the turn fingerprints of ``case_ids`` (None: every case) into a store snapshot read without them."""
    if case_ids is not None and not case_ids:
        return
    con = con.cursor()  # its own results: the caller's connection may hold an unfinished one
    sql = "SELECT case_id, trace, route, output FROM turns WHERE run_id = ? AND repeat = ?"
    if case_ids is not None:
        import numpy as np

        con.register("wanted_cases", {"case_id": np.array(case_ids, dtype=object)})
        sql += " AND case_id IN (SELECT case_id FROM wanted_cases)"
    first_repeat = con.execute("SELECT min(repeat) FROM cases WHERE run_id = ?", [snap.run_id]).fetchall()[0][0] or 0
    cur = con.execute(sql + " ORDER BY case_id, turn", [snap.run_id, first_repeat])
    cases = snap.cases
    while rows := cur.fetchmany(10_000):  # a window at a time: the trace texts of a large run are large
        for case_id, trace, route, output in rows:
            if case_id in cases:
                cases[case_id].turns.append(_fingerprint(trace, route, output))
    if case_ids is not None:
        con.unregister("wanted_cases")
    con.close()


def version_runs(con: Any, run_id: str, limit: int) -> list[str]:
    """The trusted runs of ``run_id``'s version, newest first: same suite, target, suite text and commit.

    Runs made with uncommitted changes are one version when their changes are
    the same (``git_diff``); without git, every run of the same suite text and
    target is one version.
    """
    row = con.execute("SELECT suite, target, suite_hash, git_commit, coalesce(git_dirty, false), git_diff FROM runs "
                      "WHERE run_id = ?", [run_id]).fetchone()
    if row is None or (row[4] and row[5] is None):
        return [run_id]
    rows = con.execute(
        f"SELECT run_id FROM runs WHERE suite = ? AND target IS NOT DISTINCT FROM ? AND suite_hash IS NOT DISTINCT "
        f"FROM ? AND git_commit IS NOT DISTINCT FROM ? AND coalesce(git_dirty, false) = ? "
        f"AND git_diff IS NOT DISTINCT FROM ? AND {TRUSTED} "
        f"AND started_at <= (SELECT started_at FROM runs WHERE run_id = ?) ORDER BY started_at DESC LIMIT ?",
        [row[0], row[1], row[2], row[3], row[4], row[5], run_id, limit]).fetchall()
    runs = [str(r[0]) for r in rows]
    return runs if run_id in runs else [run_id, *runs[: limit - 1]]


# a run fit to be a baseline: it finished, its verdict can be trusted (exit 0 or 1), and it ran
# every case (no --tags selection)
TRUSTED = ("status = 'completed' AND exit_code IN (0, 1) AND coalesce(len(selected_tags), 0) = 0 "
           "AND parent_run IS NULL AND NOT coalesce(json_extract(options, '$.target_override')::BOOLEAN, false)")
"""(and it ran the suite's own target: a run with --target is another system, never a branch's baseline)"""


def find_run(con: Any, ref: str, suite: str) -> str | None:
    """The run a baseline reference names for ``suite``: a stored name, ``latest``, ``branch:NAME`` or a run id."""
    if con.execute("SELECT 1 FROM runs WHERE run_id = ? AND suite = ?", [ref, suite]).fetchone():
        if not con.execute(f"SELECT 1 FROM runs WHERE run_id = ? AND {TRUSTED}", [ref]).fetchone():
            raise UsageError(f"run {ref} cannot be a baseline: it did not complete with a trusted verdict, "
                             "or it ran only some cases (--tags)")
        return ref
    if ref == "latest":
        row = con.execute(f"SELECT run_id FROM runs WHERE suite = ? AND {TRUSTED} ORDER BY started_at DESC LIMIT 1",
                          [suite]).fetchone()
    elif ref.startswith("branch:"):
        row = con.execute(f"SELECT run_id FROM runs WHERE suite = ? AND git_branch = ? AND {TRUSTED} "
                          "ORDER BY started_at DESC LIMIT 1", [suite, ref.removeprefix("branch:")]).fetchone()
    else:
        row = con.execute("SELECT run_id FROM baselines WHERE name = ? AND suite = ?", [ref, suite]).fetchone()
    return str(row[0]) if row else None


def set_baseline(con: Any, name: str, run_ids: list[str]) -> list[dict[str, str]]:
    """Point ``name`` at each run (one per suite), all or nothing: every run that cannot be a baseline is named, with
    why, and then nothing is set."""
    rows = []
    refused = []
    for run_id in run_ids:
        row = con.execute("SELECT suite, status, exit_code, coalesce(len(selected_tags), 0), "
                          f"coalesce(json_extract(options, '$.target_override')::BOOLEAN, false), {TRUSTED} "
                          "FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if row is None:
            raise UsageError(f"no run '{run_id}' in the store")
        if not row[5]:
            why = ("it ran with --target, not the suite's own target" if row[4] else
                   "it ran only some cases (--tags)" if row[3] else
                   f"it is {row[1]}" if row[1] != "completed" else
                   f"its verdict could not be trusted (exit {row[2]}: errors above max_error_rate, or none ran)")
            refused.append(f"{row[0]} (run {run_id}: {why})")
        rows.append((str(row[0]), run_id))
    if refused:
        raise UsageError(f"baseline '{name}' not set: {len(refused)} of {len(run_ids)} suite(s) have no run that can be "
                         f"a baseline: " + "; ".join(refused),
                         hint="re-run those suites (or name a run with 'baseline set NAME RUN'); nothing was changed")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    con.execute("BEGIN TRANSACTION")
    try:
        for suite, run_id in rows:
            con.execute("INSERT OR REPLACE INTO baselines (name, suite, run_id, created_at) VALUES (?, ?, ?, ?)",
                        [name, suite, run_id, now])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return [{"name": name, "suite": suite, "run_id": run_id} for suite, run_id in rows]


def export(con: Any, name: str, path: Path, history: int = 20) -> dict[str, Any]:
    """Write the named baseline (every suite it covers, each pooled over its version's runs) as a versioned JSON file."""
    rows = con.execute("SELECT suite, run_id FROM baselines WHERE name = ? ORDER BY suite", [name]).fetchall()
    if not rows:
        raise UsageError(f"no baseline named '{name}'", hint="evalgate baseline set NAME [RUN] first; 'baseline show' lists them")
    data = {"evalgate_baseline": BASELINE_FILE_VERSION, "name": name,
            "suites": {suite: snapshot(con, run_id, version_runs(con, run_id, history)).to_dict()
                       for suite, run_id in rows}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return {"name": name, "path": str(path), "suites": [r[0] for r in rows]}
