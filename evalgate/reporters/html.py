"""The HTML report: one self-contained file that tells the story of a stored run.

The verdict, rules, metrics, slices, regressions and trends are rendered on
the server side with jinja2 (autoescaped: readable without JavaScript and in
print). Every case's story is embedded as gzip-compressed JSON in base64, in
chunks: the page parses a small index at load, lists it in pages, and inflates
a chunk only when a case in it is opened, so a run of 100,000 cases opens in
about a second. The page builds the case list with ``textContent`` only, and
a Content-Security-Policy allows nothing but its own inline script and style
(by hash) and requires Trusted Types for HTML sinks: model output, inputs and
documents are untrusted and stay inert.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from ..store import queries
from ..store import spans as service_spans
from .story_codec import _chunk, _columns, _pack, unchunk
from .svg import trend_svg

__all__ = ["build", "iter_cases", "trend_svg", "unchunk"]

CHUNK_CASES = 2000
"""Cases per compressed chunk of stories."""
TREND_RUNS = 30
_CONTEXT_KEYS = ("id", "title", "score", "rank", "tokens", "used", "excluded")
_TEXT_LIMIT = 4000
"""Longest input or output kept per turn; the store keeps the whole text."""
_PROMPT_TEXT_LIMIT = 1000
"""Longest text kept per prompt message (history repeats turn after turn); the store keeps the whole text."""


@dataclass
class _CaseAcc:
    """One case id's repeats as they stream in."""

    id: str
    seq: int
    tags: list[str]
    user: str
    groups: list[str]
    critical: bool
    source: str
    session: str | None
    reps: list[dict[str, Any]] = field(default_factory=list)


def _json_load(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) and value else value


def _cap(text: Any) -> Any:
    if isinstance(text, str) and len(text) > _TEXT_LIMIT:
        return text[:_TEXT_LIMIT] + f"… [{len(text) - _TEXT_LIMIT} more characters in the store]"
    return text


def _turn_record(row: tuple[Any, ...], scores: list[dict[str, Any]]) -> dict[str, Any]:
    (turn, text, route_name, output, state, elapsed, latency, passed, error, trace_raw, recorded_raw, changes_raw,
     in_tok, out_tok, cost) = row
    trace = _json_load(trace_raw) or {}
    recorded = _json_load(recorded_raw) if recorded_raw else None
    context = [{k: c.get(k) for k in _CONTEXT_KEYS if c.get(k) is not None and not (k == "used" and c[k] is True)}
               for c in trace.get("context") or []]
    feedback = (recorded or trace).get("feedback")
    out: dict[str, Any] = {"n": turn, "in": _cap(text), "route": trace.get("route") or ({"name": route_name} if route_name else None),
                           "out": _cap(output), "ok": bool(passed), "err": error, "ms": elapsed, "lat": trace.get("latency_ms"),
                           "ctx": context, "tools": trace.get("tool_calls") or [], "model": trace.get("model"),
                           "state": state, "sc": sorted(scores, key=lambda sc: sc["s"])}
    prompt = trace.get("prompt")
    if isinstance(prompt, list) and prompt:
        out["prompt"] = [_prompt_message(m) for m in prompt if isinstance(m, dict)]
    usage = {k: v for k, v in (("input_tokens", in_tok), ("output_tokens", out_tok), ("cost_usd", cost)) if v is not None}
    if usage:
        out["usage"] = usage
    if trace.get("trace_id"):
        out["tid"] = trace["trace_id"]
    changes = _json_load(changes_raw)
    if changes:
        out["chg"] = changes
    calls = (trace.get("extra") or {}).get("upstream_calls")
    if isinstance(calls, list) and calls:  # which upstream calls were served from recordings, which went live
        out["up"] = [{"u": c.get("upstream"), "call": f"{c.get('method')} {c.get('path')}", "s": c.get("served"),
                      "note": c.get("note")} for c in calls if isinstance(c, dict)]
    if feedback:
        out["fb"] = feedback
    return {k: v for k, v in out.items() if v not in (None, [], {})}


def _prompt_message(m: dict[str, Any]) -> dict[str, Any]:
    """A prompt message for the page: role, text (cut), and the names of the tools it asked for."""
    text = m.get("content") or ""
    if isinstance(text, str) and len(text) > _PROMPT_TEXT_LIMIT:
        text = text[:_PROMPT_TEXT_LIMIT] + f"… [{len(text) - _PROMPT_TEXT_LIMIT} more characters in the store]"
    out = {"role": m.get("role"), "content": text}
    calls = [str(c.get("name")) for c in m.get("tool_calls") or [] if isinstance(c, dict)]
    if calls:
        out["calls"] = ", ".join(calls)
    return out


class _OutOfOrder(Exception):
    """The three tables were not written in the same order; read them sorted instead."""


def iter_cases(con: Any, run_id: str, *, repeats: int = 1, ordered: bool = False,
               batch: int = 2000) -> Iterator[_CaseAcc]:
    """Every case of a run with its repeats, turns and scores, one case at a time.

    The writer appends a batch's cases, turns and scores in the same order, so
    three cursors in insertion order are merged without sorting (memory stays
    flat, whatever the run's size). If the tables disagree (a store written
    some other way), :class:`_OutOfOrder` is raised and the caller reads again
    with ``ordered=True``, which sorts by case id (and may spill to disk).
    """
    rows = queries.run_rows(con, run_id, ordered=ordered, batch=batch)
    turn_rows, score_rows = rows.turns, rows.scores
    pending_turn = next(turn_rows, None)
    pending_score = next(score_rows, None)
    done: set[tuple[str, int]] = set()
    spans = _joined_spans(con, run_id)
    open_cases: dict[str, _CaseAcc] = {}  # repeats of a case finish at different times
    for (case_id, repeat, seq, tags, user, groups, critical, source, session, passed, errored, error,
         elapsed, n_turns) in rows.cases:
        current = open_cases.get(case_id)
        if current is None:
            current = open_cases[case_id] = _CaseAcc(case_id, seq, list(tags or []), user or "", list(groups or []),
                                                     bool(critical), source or "", session)
        key = (case_id, repeat)
        rep_scores: dict[int, list[dict[str, Any]]] = {}
        while pending_score is not None and (pending_score[0], pending_score[1]) == key:
            _, _, turn, scorer, s_passed, value, explanation, s_error = pending_score
            rep_scores.setdefault(turn, []).append(
                {k: v for k, v in (("s", scorer), ("ok", bool(s_passed) and s_error is None), ("v", value),
                                   ("x", explanation), ("err", s_error)) if v is not None})
            pending_score = next(score_rows, None)
        rep_turns = []
        while pending_turn is not None and (pending_turn[0], pending_turn[1]) == key:
            record = _turn_record(pending_turn[2:], rep_scores.get(pending_turn[2], []))
            joined = spans.get((case_id, repeat, pending_turn[2]))
            if joined:
                record["spans"] = joined
            rep_turns.append(record)
            pending_turn = next(turn_rows, None)
        done.add(key)
        if len(rep_turns) != (n_turns or 0) or any(
                p is not None and (p[0], p[1]) in done for p in (pending_turn, pending_score)):
            if ordered:
                raise RuntimeError(f"the store's turns of case {case_id} (repeat {repeat}) do not match its case row")
            raise _OutOfOrder(case_id)
        status = "error" if errored else ("pass" if passed else "fail")
        current.reps.append({k: v for k, v in (("r", repeat), ("st", status), ("err", error), ("ms", elapsed),
                                               ("turns", rep_turns)) if v is not None})
        if len(current.reps) >= repeats:
            del open_cases[case_id]
            current.reps.sort(key=lambda r: r["r"])
            yield current
    for rest in open_cases.values():  # an interrupted run may lack some repeats
        rest.reps.sort(key=lambda r: r["r"])
        yield rest
    if pending_turn is not None or pending_score is not None:
        if ordered:
            raise RuntimeError("the store has turns or scores without a case row")
        raise _OutOfOrder("")


def _joined_spans(con: Any, run_id: str) -> dict[tuple[str, int, int], list[dict[str, Any]]]:
    """The system's own spans joined to this run's turns (``traces join``), for the turn story: name, kind, depth,
    duration and error of each (attributes stay in the store and in ``show --json``)."""
    if not queries.has_table(con, "service_spans"):
        return {}
    out: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for case_id, repeat in con.execute("SELECT DISTINCT case_id, repeat FROM service_spans WHERE run_id = ?",
                                       [run_id]).fetchall():
        for turn, joined in service_spans.turn_spans(con, run_id, case_id, repeat).items():
            out[(case_id, repeat, turn)] = [
                {k: v for k, v in (("name", s["name"]), ("kind", s["kind"]), ("d", s["depth"]),
                                   ("ms", round(s["duration_ms"], 1)), ("err", s["error"])) if v is not None}
                for s in joined]
    return out


def _case_entry(acc: _CaseAcc, chunk: int, regressed: set[str], fixed: set[str],
                changed: dict[str, list[str]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The index entry (for filters) and the full story of one case."""
    statuses = {r["st"] for r in acc.reps}
    judged = statuses - {"error"}
    if judged == {"pass", "fail"}:
        status = "flaky"
    elif "fail" in judged:
        status = "fail"
    elif "pass" in judged:
        status = "pass"
    else:
        status = "error"
    routes: list[str] = []
    scorers: list[str] = []
    failing: list[str] = []
    inputs: list[str] = []
    for rep in acc.reps:
        for t in rep.get("turns", []):
            name = (t.get("route") or {}).get("name")
            if name and name not in routes:
                routes.append(name)
            if rep is acc.reps[0] and isinstance(t.get("in"), str):
                inputs.append(t["in"][:200])
            for s in t.get("sc", []):
                if s["s"] not in scorers:
                    scorers.append(s["s"])
                if not s.get("ok") and s["s"] not in failing:
                    failing.append(s["s"])
    index = {"id": acc.id, "seq": acc.seq, "st": status, "k": chunk, "tags": acc.tags, "routes": routes, "sc": scorers,
             "fsc": failing, "n": len(acc.reps), "q": " ".join(inputs)[:240]}
    if acc.critical:
        index["crit"] = 1
    if acc.id in regressed:
        index["reg"] = 1
    if acc.id in fixed:
        index["fix"] = 1
    if acc.id in changed:
        index["chg"] = changed[acc.id]
    if any(r["st"] == "error" for r in acc.reps):
        index["erred"] = 1
    story = {"id": acc.id, "user": acc.user, "groups": acc.groups, "src": acc.source, "session": acc.session,
             "reps": acc.reps}
    return index, story


def build(store: Any, run_ref: str | None, path: Path | str, *, trace_url: str | None = None,
          title: str | None = None) -> dict[str, Any]:
    """Write the report of one stored run to ``path``; returns what went in."""
    import jinja2

    run_id = store.resolve_run(run_ref)
    with store.connect(read_only=True) as con:
        info = queries.report_run(con, run_id)
        summary = info.summary
        verdict = summary.get("verdict") or {"status": info.verdict or info.status, "rules": [],
                                             "reasons": [f"the run is {info.status} and has no verdict yet"],
                                             "notices": []}
        comparison = summary.get("baseline")
        statistics = summary.get("statistics") or {}
        warnings = summary.get("warnings") or []
        regressed = set((comparison or {}).get("new_failures", []))
        if not statistics.get("judged"):  # no statistics judged the flips: flaky after passing every time counts
            regressed |= set((comparison or {}).get("flaky_regressed", []))
        fixed = set((comparison or {}).get("fixed", []))
        changed = (comparison or {}).get("changed", {})
        slices = {"route": queries.route_slices(con, run_id), "tag": queries.tag_slices(con, run_id),
                  "group": queries.group_slices(con, run_id)}
        scorer_stats = queries.scorer_rows(con, run_id)
        recovery = queries.recovery_rows(con, run_id)
        trend = [p.to_dict() for p in queries.trend(con, info.suite, run_id, info.started_at, TREND_RUNS)]
        confusion = _confusion(con, run_id)

        try:
            packed = _pack_cases(iter_cases(con, run_id, repeats=info.repeat or 1), regressed, fixed, changed)
        except _OutOfOrder:
            queries.spill_to_temp(con)
            packed = _pack_cases(iter_cases(con, run_id, repeats=info.repeat or 1, ordered=True),
                                 regressed, fixed, changed)
        index, chunks, counts, failing_preview = packed

    metrics = summary.get("metrics") or {}
    env = jinja2.Environment(loader=jinja2.PackageLoader("evalgate", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v: "—" if v is None else f"{v:.1%}"
    env.filters["ms"] = _ms
    env.filters["num"] = _num
    script = _resource("report.js")
    style = _resource("report.css")
    meta = {"run_id": run_id, "suite": info.suite, "trace_url": trace_url if _safe_template(trace_url) else None,
            "chunks": len(chunks), "cases": len(index)}
    page = env.get_template("report.html.j2").render(
        title=title or f"evalgate · {info.suite} · {verdict['status'].upper()}",
        run_id=run_id, info=info, verdict=verdict, metrics=metrics, slices=slices, scorers=scorer_stats, recovery=recovery,
        comparison=comparison, statistics=statistics, warnings=warnings, upstreams=summary.get("upstreams"), trend=trend, confusion=confusion, counts=counts, failing=failing_preview,
        trend_pass=trend_svg(trend, "pass_rate", percent=True), trend_p95=trend_svg(trend, "p95", percent=False),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), version=__version__,
        script=script, style=style, csp=_csp(script, style),
        meta_json=_safe_json(meta), index_blob=_pack({"n": len(index), "c": _columns(index, frozenset(), frozenset())}),
        chunks=chunks)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return {"path": str(out), "run_id": run_id, "suite": info.suite, "cases": len(index), "chunks": len(chunks),
            "bytes": out.stat().st_size, "counts": counts}


def _pack_cases(cases: Iterator[_CaseAcc], regressed: set[str], fixed: set[str], changed: dict[str, list[str]]
                ) -> tuple[list[dict[str, Any]], list[str], dict[str, int], list[dict[str, Any]]]:
    """The case index (in suite order), the compressed story chunks, counts and the first failures."""
    index: list[dict[str, Any]] = []
    packing: list[Future[str]] = []
    pending: list[dict[str, Any]] = []
    counts = {"pass": 0, "fail": 0, "flaky": 0, "error": 0}
    failing: list[tuple[int, dict[str, Any]]] = []
    with ThreadPoolExecutor(max_workers=1) as pool:  # zlib lets go of the GIL: compress while reading on
        for acc in cases:
            entry, story = _case_entry(acc, len(packing), regressed, fixed, changed)
            counts[entry["st"]] += 1
            index.append(entry)
            pending.append(story)
            if entry["st"] != "pass":
                failing.append((acc.seq, {"id": acc.id, "status": entry["st"], "scorers": entry["fsc"],
                                          "reasons": _reasons(story)}))
                if len(failing) > 400:
                    failing = sorted(failing, key=lambda f: f[0])[:200]
            if len(pending) == CHUNK_CASES:
                packing.append(pool.submit(_pack, _chunk(pending)))
                pending = []
        if pending:
            packing.append(pool.submit(_pack, _chunk(pending)))
        chunks = [f.result() for f in packing]
    index.sort(key=lambda e: e.pop("seq"))
    return index, chunks, counts, [f for _, f in sorted(failing, key=lambda f: f[0])[:200]]


def _confusion(con: Any, run_id: str) -> dict[str, Any] | None:
    """Expected × taken route counts with per-route precision, recall and F1, when the run scored routes."""
    from ..store.metrics import route_confusion

    data = route_confusion(con, run_id)
    if not data["labels"]:
        return None
    labels = data["labels"]
    return {"labels": labels, "rows": [[data["matrix"].get(e, {}).get(a, 0) for a in labels] for e in labels],
            "per_route": data["per_route"], "accuracy": data["accuracy"], "macro_f1": data["macro_f1"],
            "turns": data["turns"]}


def _reasons(story: dict[str, Any]) -> list[str]:
    out = []
    for rep in story["reps"]:
        if rep.get("err"):
            out.append(f"repeat {rep['r']}: error: {rep['err']}")
        for t in rep.get("turns", []):
            if t.get("err"):
                out.append(f"turn {t['n']}: error: {t['err']}")
            for s in t.get("sc", []):
                if not s.get("ok"):
                    out.append(f"turn {t['n']} {s['s']}: {s.get('err') or s.get('x') or 'failed'}")
        if out:
            break
    return out[:6]


def _resource(name: str) -> str:
    from importlib.resources import files

    return files("evalgate").joinpath("templates", name).read_text(encoding="utf-8")


def _ms(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.2f} ms" if v < 10 else f"{v:,.0f} ms"


def _num(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _safe_template(url: str | None) -> bool:
    return url is not None and url.startswith(("https://", "http://")) and "{trace_id}" in url


def _safe_json(obj: Any) -> str:
    """JSON that cannot end its <script> element or open a comment inside it."""
    text = json.dumps(obj, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _csp(script: str, style: str) -> str:
    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    return (f"default-src 'none'; script-src {digest(script)}; style-src {digest(style)}; "
            "base-uri 'none'; form-action 'none'; require-trusted-types-for 'script'")
