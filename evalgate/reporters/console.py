"""The terminal view: verdict and reasons first, then failing cases and why.

Everything from the system under test (inputs, outputs, explanations) is
untrusted text: it is rendered as ``rich.text.Text``, never as markup.
Colours follow rich's rules: off for NO_COLOR and for a non-terminal stdout.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

_STATUS_STYLE = {"pass": "bold green", "fail": "bold red", "error": "bold yellow"}
_STATUS_WORD = {"pass": "PASS", "fail": "FAIL", "error": "ERROR"}


class ProgressBar:
    """A rich progress bar for one suite's run (used only on a terminal)."""

    def __init__(self, console: Console, label: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True)
        self._label = label
        self._task: Any = None

    def start(self, total: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task(self._label, total=total)

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def stop(self) -> None:
        self._progress.stop()


def recovery_words(metrics: dict[str, float | None]) -> str | None:
    """``recovery 94.1% of variants whose original passed: correction 50.0%, typo 100.0%, …`` (worst first)."""
    if "recovery.rate" not in metrics:
        return None
    per = sorted(((k.rsplit(".", 1)[1], v) for k, v in metrics.items() if k.startswith("recovery.rate.")),
                 key=lambda kv: (kv[1] is None, kv[1] if kv[1] is not None else 0.0, kv[0]))
    head = f"recovery {_pct(metrics['recovery.rate'])} of variants whose original passed"
    return head + (": " + ", ".join(f"{k} {_pct(v)}" for k, v in per) if per else "")


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.1%}"


def _ms(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.1f} ms" if v < 10 else f"{v:.0f} ms"


def render_run(console: Console, report: Any) -> None:
    for s in report.suites:
        _render_suite(console, s)
    if len(report.suites) > 1:
        words = ", ".join(f"{s.suite}: {_STATUS_WORD[s.verdict.status]}" for s in report.suites)
        console.print(Text(f"overall exit code {report.exit_code} ({words})"))
    console.print(Text(f"store: {report.store}", style="dim"))


def _render_suite(console: Console, s: Any) -> None:
    v = s.verdict
    head = Text()
    head.append(f"{_STATUS_WORD[v.status]} ", style=_STATUS_STYLE[v.status])
    head.append(f"{s.suite}", style="bold")
    head.append(f"  run {s.run_id}  ·  {s.cases} case run(s), {s.turns} turn(s) in {s.duration_s:.1f}s  ·  {s.target}")
    console.print(head, soft_wrap=True)
    for reason in v.reasons:
        console.print(Text("  " + reason, style="red" if v.status != "pass" else ""), soft_wrap=True)
    for note in v.notices + s.warnings:
        console.print(Text("  note: " + note, style="yellow"))
    for b in s.bad_lines[:5]:
        console.print(Text(f"  skipped {b['file']}:{b['line']}: {b['message']}", style="yellow"))

    m = s.metrics
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col in ("cases", "passed", "failed", "errors", "pass rate", "latency p50", "latency p95"):
        table.add_column(col, justify="right")
    table.add_row(*(str(int(m.get(k) or 0)) for k in ("cases", "passed", "failed", "errors")),
                  _pct(m.get("pass_rate")), _ms(m.get("latency.p50")), _ms(m.get("latency.p95")))
    console.print(table)
    scorer_rates = [(k.removesuffix(".pass_rate"), val) for k, val in m.items()
                    if k.endswith(".pass_rate") and k.count(".") == 1]
    if scorer_rates:
        console.print(Text("  scorers: " + ", ".join(f"{k} {_pct(val)}" for k, val in scorer_rates)))
    recovery = recovery_words(m)
    if recovery:
        console.print(Text("  " + recovery))
    if getattr(s, "upstreams", None):
        _render_upstreams(console, s.upstreams)

    rules = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    rules.add_column("")
    rules.add_column("rule")
    rules.add_column("result")
    for r in v.rules:
        mark = {"pass": Text("ok", style="green"), "fail": Text("FAIL", style="bold red"),
                "inconclusive": Text("?", style="bold yellow"), "skipped": Text("skip", style="yellow")}[r.status]
        rules.add_row(mark, Text(r.rule), Text(r.detail))
    console.print(rules)

    if s.baseline:
        runs = s.baseline.get("baseline_runs", 1)
        title = (f"against baseline run {s.baseline['baseline_run']}" if runs == 1
                 else f"against {runs} baseline runs (newest {s.baseline['baseline_run']})")
        _render_changes(console, s.baseline, title, s.statistics)
    if s.failing:
        console.print(Text("failing cases:", style="bold"))
        for f in s.failing:
            label = Text("  ")
            label.append(f["case_id"], style="bold")
            if f["repeat"]:
                label.append(f" (repeat {f['repeat']})")
            label.append("  errored" if f["errored"] else "  failed", style="yellow" if f["errored"] else "red")
            if f["critical"]:
                label.append("  critical", style="bold red")
            label.append(f"  {f['source']}", style="dim")
            console.print(label)
            for reason in f["reasons"][:6]:
                console.print(Text("    " + reason))
            if len(f["reasons"]) > 6:
                console.print(Text(f"    … and {len(f['reasons']) - 6} more (evalgate show {s.run_id} {f['case_id']})", style="dim"))
        total_failing = int((m.get("failed") or 0) + (m.get("errors") or 0))
        if total_failing > len(s.failing):
            console.print(Text(f"  … and {total_failing - len(s.failing)} more (evalgate run --json, or query the store)", style="dim"))
        first = s.failing[0]["case_id"]
        console.print(Text(f"  see one: evalgate show {s.run_id} {first}", style="dim"))
    console.print()


def render_validation(console: Console, report: Any) -> None:
    for s in report.suites:
        line = Text()
        line.append("ok ", style="bold green")
        line.append(s["path"], style="bold")
        flags = "" if s["default"] else "  (default: false)"
        line.append(f"  {s['cases']} case(s), {s['turns']} turn(s), target {s['target'] or 'none'}, "
                    f"{s['rules']} gate rule(s)"
                    + (" + permissions.leaks ≤ 0 (every gate)" if s.get("leak_rule") else "") + flags)
        console.print(line)
        for w in s["warnings"]:
            console.print(Text("  warning: " + w, style="yellow"))
        for b in s["bad_lines"][:5]:
            console.print(Text(f"  bad line {b['file']}:{b['line']}: {b['message']}", style="yellow"))


_UPSTREAM_SHOWN = 5
"""Changed, missing and failed upstream calls named under a suite's summary, of each kind."""


def _render_upstreams(console: Console, u: dict[str, Any]) -> None:
    """The upstream proxy's calls in a line, then the ones that changed, had no recording or failed."""
    line = (f"  upstreams ({u['mode']}, {u['file']}): {u['calls']} call(s): {u['recorded']} from recordings, "
            f"{u['live']} live, {u['changed']} changed and {u['missing']} missing (sent live), {u['failed']} failed")
    if u.get("unattributed"):
        line += f"; {u['unattributed']} not attributed to a turn"
    if u.get("saved") is not None:
        line += f"; {u['saved']} recording(s) written"
    console.print(Text(line))
    for label, key in (("changed", "changes"), ("missing", "missing_calls"), ("failed", "failed_calls")):
        listed = u.get(key) or []
        for c in listed[:_UPSTREAM_SHOWN]:
            where = f"case {c['case']} turn {c['turn']} " if c.get("case") is not None else ""
            console.print(Text(f"    {label}: {where}{c['upstream']} {c['call']}: {c.get('note') or ''}",
                               style="magenta" if label == "changed" else "yellow"))
        total = u.get(label) or 0
        if total > _UPSTREAM_SHOWN and listed:
            console.print(Text(f"    … {total - min(len(listed), _UPSTREAM_SHOWN)} more {label}", style="dim"))


def render_story(console: Console, story: dict[str, Any]) -> None:
    for rep in story["repeats"]:
        status = "errored" if rep["errored"] else ("passed" if rep["passed"] else "failed")
        title = Text()
        title.append(story["case_id"], style="bold")
        title.append(f"  repeat {rep['repeat']}  ")
        title.append(status, style={"passed": "green", "failed": "red", "errored": "yellow"}[status])
        title.append(f"  run {story['run_id']} ({story['suite']}, {story['target']})", style="dim")
        tree = Tree(title)
        tree.add(Text(f"user {rep['user']['id']} groups [{', '.join(rep['user']['groups'])}]  ·  tags "
                      f"[{', '.join(rep['tags'])}]  ·  {rep['source']}"))
        if rep.get("variant_of"):
            tree.add(Text(f"variant of {rep['variant_of']}: see it with evalgate show {story['run_id']} {rep['variant_of']}"))
        if rep["error"]:
            tree.add(Text(f"error: {rep['error']}", style="yellow"))
        for t in rep["turns"]:
            mark = "✓" if t["passed"] else ("!" if t["error"] else "✗")
            node = tree.add(Text(f"{mark} turn {t['turn']}: ", style="green" if t["passed"] else "red") + Text(repr(t["input"])))
            route = t.get("route") or {}
            if route:
                conf = f" ({route['confidence']:.2f})" if route.get("confidence") is not None else ""
                why = f" because {route['reason']}" if route.get("reason") else ""
                node.add(Text(f"route {route.get('name')}{conf}{why}"))
            if t["context"]:
                used = [c["id"] for c in t["context"] if c.get("used", True)]
                left = [f"{c['id']} ({c.get('excluded') or 'not used'})" for c in t["context"] if not c.get("used", True)]
                node.add(Text("context used: " + (", ".join(used) or "none")))
                if left:
                    node.add(Text("context left out: " + ", ".join(left), style="dim"))
            for call in t["tool_calls"]:
                node.add(Text(f"tool {call['name']}({json.dumps(call.get('arguments', {}), ensure_ascii=False)})"))
            if t.get("model"):
                m = t["model"]
                name, asked = m.get("name"), m.get("requested")
                if not name:  # the call failed: nothing answered
                    who = f"(none answered; {asked} was asked)" if asked else "(not named)"
                elif asked and asked != name:
                    who = f"{name} (asked for {asked})"
                else:
                    who = name
                node.add(Text(f"model {who} {json.dumps(m.get('params') or {})}", style="dim"))
            if t.get("prompt"):
                _add_prompt(node, t["prompt"])
            if t["error"]:
                node.add(Text(f"error: {t['error']}", style="yellow"))
            if t["output"] is not None:
                node.add(Text("output: ") + Text(t["output"]))
            if t["state"] is not None:
                node.add(Text("state: " + json.dumps(t["state"], ensure_ascii=False)))
            lat = t.get("latency_ms") or {}
            reported = ", ".join(f"{k} {v:g}" for k, v in lat.items()) if lat else "not reported"
            elapsed = f"{t['elapsed_ms']:.1f} ms" if t["elapsed_ms"] is not None else "—"
            node.add(Text(f"elapsed {elapsed}; reported latency (ms): {reported}", style="dim"))
            if t.get("service_spans"):
                spans = node.add(Text(f"the system's own spans (trace {t.get('trace_id')}):", style="dim"))
                for span in t["service_spans"]:
                    failed = f" error: {span['error']}" if span.get("error") else ""
                    spans.add(Text(f"{'  ' * span['depth']}{span['name']} [{span['kind']}] {span['duration_ms']:.1f} ms"
                                   f"{failed}", style="yellow" if failed else "dim"))
            if t.get("feedback"):
                fb = t["feedback"]
                parts = [f"rating {fb['rating']}"] if fb.get("rating") is not None else []
                if fb.get("correction"):
                    parts.append("correction " + json.dumps(fb["correction"], ensure_ascii=False))
                if fb.get("note"):
                    parts.append(f"note {fb['note']!r}")
                node.add(Text("recorded feedback: " + "; ".join(parts), style="cyan"))
            for call in t.get("upstream_calls") or []:
                served = call.get("served")
                style = {"recorded": "dim", "live": "", "changed": "magenta"}.get(str(served), "yellow")
                note = f": {call['note']}" if call.get("note") else ""
                node.add(Text(f"upstream {call.get('upstream')} {call.get('method')} {call.get('path')} "
                              f"{served}{note}", style=style))
            for what, change in (t.get("changes") or {}).items():
                node.add(Text(f"changed vs recording, {what}: " + json.dumps(change, ensure_ascii=False), style="magenta"))
            for sc in t["scores"]:
                ok = sc["passed"] and not sc["error"]
                node.add(Text(f"{'✓' if ok else '✗'} {sc['scorer']}: ", style="green" if ok else "red")
                         + Text(sc["error"] or sc["explanation"] or ""))
        console.print(tree)


_PROMPT_SHOWN = 8
"""Messages of a prompt shown in full-line form; a longer prompt shows its first 2 and its last 5."""


def _first_line(text: str, width: int = 100) -> str:
    """A message's first non-empty line, cut to ``width``; ``…`` when there is more."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    more = len(lines) > 1 or len(first) > width
    return (first[:width].rstrip() + " …") if more else first


def _add_prompt(node: Tree, prompt: list[dict[str, Any]]) -> None:
    """The messages the model received: how many, then role and first line of each."""
    roles: dict[str, int] = {}
    for m in prompt:
        roles[str(m.get("role"))] = roles.get(str(m.get("role")), 0) + 1
    head = node.add(Text(f"prompt: {len(prompt)} message(s) (" + ", ".join(f"{n} {r}" for r, n in roles.items()) + ")"))
    numbered = list(enumerate(prompt, 1))
    if len(prompt) > _PROMPT_SHOWN:
        numbered = numbered[:2] + [(0, {})] + numbered[-5:]
    for i, m in numbered:
        if not i:
            head.add(Text(f"… {len(prompt) - 7} more", style="dim"))
            continue
        line = Text(f"{i}. {m.get('role')}: ", style="dim") + Text(_first_line(str(m.get("content") or "")))
        calls = [str(c.get("name")) for c in m.get("tool_calls") or [] if isinstance(c, dict)]
        if calls:
            line.append(f" [asks for {', '.join(calls)}]", style="dim")
        head.add(line)


_BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float | None], lo: float = 0.0, hi: float = 1.0) -> str:
    """One character per value, oldest first; a gap (space) where a run has no value."""
    span = (hi - lo) or 1.0
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        else:
            out.append(_BLOCKS[min(len(_BLOCKS) - 1, max(0, round((v - lo) / span * (len(_BLOCKS) - 1))))])
    return "".join(out)


def render_history(console: Console, rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("no runs yet")
        return
    by_suite: dict[str, list[dict[str, Any]]] = {}
    for r in reversed(rows):  # oldest first
        by_suite.setdefault(r["suite"], []).append(r)
    width = max(len(name) for name in by_suite)
    for name, runs in by_suite.items():
        rates = [r["pass_rate"] for r in runs]
        known = [v for v in rates if v is not None]
        span = f"  {_pct(known[0])} → {_pct(known[-1])}" if known else ""
        console.print(Text(f"{name:<{width}}  pass rate  ") + Text(sparkline(rates), style="cyan")
                      + Text(f"{span}  ({len(runs)} run(s), oldest first)", style="dim"))
    console.print()
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col in ("run", "suite", "verdict", "cases", "errors", "pass rate", "p95", "commit", "started"):
        table.add_column(col, no_wrap=col in ("run", "verdict", "started"))
    for r in rows:
        verdict = r["verdict"] or r["status"]
        commit = (r["git_commit"] or "")[:8] + (f" ({r['git_branch']})" if r["git_branch"] else "")
        table.add_row(r["run_id"], r["suite"], Text(verdict, style=_STATUS_STYLE.get(verdict, "")),
                      str(r["cases_done"]), str(r["errors"]), _pct(r["pass_rate"]), _ms(r["latency_p95"]),
                      commit, (r["started_at"] or "")[5:16])
    console.print(table)


def scorer_rows() -> list[dict[str, Any]]:
    from ..scorers import available

    rows = []
    for info in available():
        try:
            params = inspect.signature(info.factory).parameters
            args = []
            for name, p in params.items():
                if p.kind is p.VAR_KEYWORD:
                    args.append("<slot>=value")
                elif p.kind is not p.VAR_POSITIONAL:
                    args.append(name if p.default is p.empty else f"{name}={p.default!r}")
        except (TypeError, ValueError):
            args = []
        rows.append({"name": info.name, "arguments": args, "shorthand": info.shorthand, "help": info.help,
                     "source": info.source, "stats": list(info.stats)})
    return rows


def render_scorers(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col in ("scorer", "arguments", "help", "metrics", "from"):
        table.add_column(col)
    for r in rows:
        table.add_row(Text(r["name"], style="bold"), Text(", ".join(r["arguments"])), Text(r["help"]),
                      Text(", ".join(f"{r['name']}.{s}" for s in r.get("stats", []))), Text(r["source"]))
    console.print(table)
    console.print(Group(Text("In a suite: expect: {<scorer>: <arguments>}; a user scorer is named package.module:function. "
                             "Every scorer also gives <scorer>.pass_rate, .mean and .failures.", style="dim")))


def _render_changes(console: Console, cmp: dict[str, Any], title: str, stats: dict[str, Any] | None = None) -> None:
    line = Text(f"{title}: ", style="bold")
    line.append(f"{len(cmp['new_failures'])} new failure(s), {len(cmp['fixed'])} fixed, "
                f"{len(cmp['still_failing'])} still failing, {len(cmp['flaky'])} flaky, "
                f"{len(cmp['new_cases'])} new, {len(cmp['removed_cases'])} removed, {len(cmp.get('errored', []))} errored, "
                f"{len(cmp['changed'])} changed behaviour, over {cmp['paired']} paired case(s)")
    console.print(line)
    if stats and stats.get("flipped"):
        console.print(Text("  " + stats["words"]), soft_wrap=True)
    verdicts = {c["case_id"]: c for c in (stats or {}).get("cases", [])}
    for label, key, style in (("new failure", "new_failures", "red"), ("fixed", "fixed", "green"),
                              ("inconclusive", "inconclusive", "yellow")):
        ids = cmp.get(key, [])
        shown_why: set[str] = set()
        for case_id in ids[:10]:
            v = verdicts.get(case_id)
            why = v.get("why", "") if v else ""
            reason = why.split(": ", 1)[-1] if "; " in why else why  # the same reason for many cases is said once
            text = f"  {label}: {case_id}"
            if why and reason not in shown_why:
                text += f": {why}"
                shown_why.add(reason)
            if v and v.get("decide"):
                text += f"; decided by {v['decide']}"
            console.print(Text(text, style=style), soft_wrap=True)
        if len(ids) > 10:
            console.print(Text(f"  … and {len(ids) - 10} more ({label}): " + ", ".join(ids[10:20])
                               + (" …" if len(ids) > 20 else ""), style="dim"), soft_wrap=True)
    rates = (stats or {}).get("flaky", {})
    if cmp["flaky"]:
        shown = [f"{c} ({rates[c]})" if c in rates else c for c in cmp["flaky"][:10]]
        console.print(Text("  flaky: " + ", ".join(shown) + (" …" if len(cmp["flaky"]) > 10 else ""), style="yellow"),
                      soft_wrap=True)
    for case_id, what in list(cmp["changed"].items())[:10]:
        console.print(Text(f"  changed {case_id}: " + "; ".join(what[:4])))
    if len(cmp["changed"]) > 10:
        console.print(Text(f"  … and {len(cmp['changed']) - 10} more changed", style="dim"))


def _delta(metric: str, a: float, b: float) -> str:
    """B − A in the metric's own unit: points for rates, ms for times, dollars for cost."""
    d = b - a
    if metric.endswith(("rate", "accuracy")) or metric in ("pass@k", "pass^k"):
        return f"{d * 100:+.1f} pts"
    if metric.startswith(("latency.", "elapsed.", "first_token.")):
        return f"{d:+.1f} ms" if abs(d) < 10 else f"{d:+.0f} ms"
    if metric.startswith("cost."):
        from ..gate import money

        return ("-" if d < 0 else "+") + money(abs(d))
    return f"{d:+g}"


def render_comparison(console: Console, data: dict[str, Any]) -> None:
    _render_changes(console, data, f"{data['suite']}: run {data['run_a']} → {data['run_b']}")
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col in ("metric", "A", "B", "change"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    from ..gate import _fmt

    for name, v in data["metrics"].items():
        a, b = v["a"], v["b"]
        change = _delta(name, a, b) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a != b else ""
        table.add_row(name, "—" if a is None else _fmt(a, name), "—" if b is None else _fmt(b, name), change)
    console.print(table)


def render_baselines(console: Console, rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("no baselines yet: evalgate baseline set NAME [RUN]")
        return
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col in ("name", "suite", "run", "verdict", "commit", "set at"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["suite"], r["run_id"], r["verdict"] or "", (r["git_commit"] or "")[:8],
                      r["created_at"][:19])
    console.print(table)


def render_routes(console: Console, data: dict[str, Any]) -> None:
    """Expected route (rows) × route taken (columns), then precision, recall and F1 per route; accuracy and macro-F1."""
    labels = data["labels"]
    if not labels:
        console.print(f"run {data['run_id']}: no route was scored (expect route: in the suite)", markup=False)
        return
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False,
                  title=f"routes of run {data['run_id']}: expected (rows) × taken (columns)", title_justify="left")
    table.add_column("expected")
    for label in labels:
        table.add_column(label, justify="right")
    table.add_column("precision", justify="right")
    table.add_column("recall", justify="right")
    table.add_column("F1", justify="right")
    for label in labels:
        row = data["matrix"].get(label, {})
        stats = data["per_route"][label]
        cells = [str(row.get(t, 0)) if row.get(t) else "·" for t in labels]
        table.add_row(Text(label, style="bold"), *cells, _pct(stats["precision"]), _pct(stats["recall"]),
                      _pct(stats["f1"]))
    console.print(table)
    routes = sum(1 for label in labels if label != "(none)")
    console.print(f"accuracy {_pct(data['accuracy'])} over {data['turns']} turn(s); "
                  f"macro-F1 {_pct(data['macro_f1'])} over {routes} route(s)", markup=False)


def _counts(items: dict[str, int], limit: int = 20) -> str:
    shown = [f"{k} {v:,}" for k, v in list(items.items())[:limit]]
    more = len(items) - limit
    return ", ".join(shown) + (f", and {more} more" if more > 0 else "")


def render_import(console: Console, s: dict[str, Any]) -> None:
    """What an OTLP import read, made, redacted and could not map."""
    tok = s["tokens"]
    logs = f", {s['log_records']:,} log records" if s["log_records"] else ""
    console.print(f"read {len(s['files'])} file(s): {s['spans']:,} spans{logs}", markup=False)
    errors = f" ({s['error_turns']:,} with errors)" if s["error_turns"] else ""
    console.print(f"made {s['traces']:,} traces → {s['turns']:,} turns{errors} in {s['sessions']:,} sessions; "
                  f"{s['documents']:,} documents, {s['tool_calls']:,} tool calls, {s.get('prompts', 0):,} prompts, "
                  f"{tok['input']:,} input + {tok['output']:,} output tokens", markup=False)
    if s["models"]:
        console.print(f"models: {_counts(s['models'])}", markup=False)
    redacted = s.get("redacted") or {}
    console.print("redacted: " + (_counts(redacted) if redacted else "nothing found"), markup=False)
    if s.get("late_spans"):
        console.print(f"spans that arrived after their trace was finished (not used): {s['late_spans']:,}", markup=False)
    if s["log_records_unattached"]:
        console.print(f"log records not tied to a span: {s['log_records_unattached']:,}", markup=False)
    if s["unmapped"]:
        console.print(f"not mapped (name: spans): {_counts(s['unmapped'])}", markup=False)
    console.print(f"wrote {s['out']}", markup=False)


def render_feedback(console: Console, rows: list[dict[str, Any]]) -> None:
    """Stored feedback as a table."""
    if not rows:
        console.print("no feedback stored", markup=False)
        return
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col in ("id", "turn", "rating", "correction", "note", "by", "at", "case"):
        table.add_column(col, no_wrap=col in ("id", "turn"))
    for r in rows:
        turn = r["trace_id"] or f"{r['case_id']}#{r['turn']}"
        correction = json.dumps(r["correction"], ensure_ascii=False) if r["correction"] else ""
        table.add_row(*(Text(str(v or "")) for v in (r["feedback_id"], turn, r["rating"], correction, r["note"],
                                                     r["author"], r["at"], r["promoted_case"])))
    console.print(table)
