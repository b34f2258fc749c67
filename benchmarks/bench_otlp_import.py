"""OTLP import throughput and memory: ``evalgate traces import`` on large generated files.

For each size, generates (once, cached in the work folder) an OTLP JSON file
of OpenInference spans: traces of 5 spans (a CHAIN root, a route step, a
RETRIEVER with 3 documents, a TOOL, an LLM with messages and token counts),
sessions of 1-6 turns whose traces interleave like a live export, 500 spans
per export request. ``--format lines`` writes the collector's JSON lines
(one request per line), ``--format document`` one large document. Then it
runs ``evalgate traces import FILE --out OUT --json`` as a subprocess several
times, measuring wall time and peak RSS of the child (``os.wait4``).

    python benchmarks/bench_otlp_import.py [--sizes 100000,1000000] [--runs 3] [--format lines|document]

Targets checked:
  * throughput ≥ 20,000 spans/s at the largest size (whole command, wall clock);
  * peak RSS ≤ 300 MB;
  * memory flat: peak RSS at the largest size ÷ at the smallest ≤ 1.25.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
import versions

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TARGET_SPANS_PER_S = 20_000
TARGET_PEAK_MB = 300
SPANS_PER_TURN = 5
SPANS_PER_REQUEST = 500
T0 = 1_763_200_000_000_000_000


def _v(x: Any) -> dict[str, Any]:
    if isinstance(x, bool):
        return {"boolValue": x}
    if isinstance(x, int):
        return {"intValue": str(x)}
    if isinstance(x, float):
        return {"doubleValue": x}
    return {"stringValue": str(x)}


def _attrs(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _v(v)} for k, v in d.items()]


def _turn_spans(rng: random.Random, n: int, session: str, start_ns: int) -> list[dict[str, Any]]:
    tid = f"{n:032x}"
    root = f"{n:012x}0001"
    q = f"where is my order {rng.randint(1000, 9999)}? (request {n})"
    a = f"Order {rng.randint(1000, 9999)} has shipped and should arrive in {rng.randint(1, 5)} days."
    docs = {f"retrieval.documents.{i}.document.{k}": v for i in range(3)
            for k, v in (("id", f"kb/doc-{rng.randint(0, 500)}"), ("score", round(rng.random(), 3)))}

    def span(sid: str, parent: str, name: str, off_ms: int, dur_ms: int, attrs: dict[str, Any]) -> dict[str, Any]:
        s = start_ns + off_ms * 1_000_000
        return {"traceId": tid, "spanId": sid, "parentSpanId": parent, "name": name, "kind": 1,
                "startTimeUnixNano": str(s), "endTimeUnixNano": str(s + dur_ms * 1_000_000),
                "attributes": _attrs(attrs), "status": {}}

    # children end (and are exported) before their root, as a batch span processor sends them
    return [
        span(f"{n:012x}0002", root, "route_decision", 1, 2, {"openinference.span.kind": "CHAIN", "app.route": "order_status"}),
        span(f"{n:012x}0003", root, "retrieve", 5, 40, {"openinference.span.kind": "RETRIEVER", "input.value": q, **docs}),
        span(f"{n:012x}0004", root, "lookup_order", 50, 10, {"openinference.span.kind": "TOOL", "tool.name": "lookup_order",
                                                             "input.value": '{"order_id": "5512"}', "output.value": "shipped"}),
        span(f"{n:012x}0005", root, "ChatCompletion", 100, 780, {
            "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "llm.provider": "openai",
            "llm.input_messages.0.message.role": "system", "llm.input_messages.0.message.content": "You are a support assistant.",
            "llm.input_messages.1.message.role": "user", "llm.input_messages.1.message.content": q,
            "llm.output_messages.0.message.role": "assistant", "llm.output_messages.0.message.content": a,
            "llm.token_count.prompt": rng.randint(80, 400), "llm.token_count.completion": rng.randint(5, 60)}),
        span(root, "", "support_request", 0, 900, {"openinference.span.kind": "CHAIN", "input.value": q, "output.value": a,
                                                   "session.id": session, "user.id": f"u-{rng.randint(1, 5000)}"}),
    ]


def _requests(spans: int, seed: int) -> Any:
    """Export requests of SPANS_PER_REQUEST spans, 64 sessions open at a time."""
    rng = random.Random(seed)
    open_sessions: list[list[Any]] = []  # [session id, turns left, next start]
    batch: list[dict[str, Any]] = []
    s_count = 0
    for n in range(spans // SPANS_PER_TURN):
        while len(open_sessions) < 64:
            s_count += 1
            open_sessions.append([f"s-{s_count}", rng.randint(1, 6), T0 + s_count * 10_000_000_000])
        i = rng.randrange(len(open_sessions))
        sess = open_sessions[i]
        batch.extend(_turn_spans(rng, n, sess[0], sess[2]))
        sess[1] -= 1
        sess[2] += 30_000_000_000
        if sess[1] == 0:
            open_sessions.pop(i)
        if len(batch) >= SPANS_PER_REQUEST:
            yield batch
            batch = []
    if batch:
        yield batch


def _request(batch: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceSpans": [{"resource": {"attributes": _attrs({"service.name": "support-bot"})},
                               "scopeSpans": [{"scope": {"name": "openinference.instrumentation.openai"}, "spans": batch}]}]}


def generate(path: Path, spans: int, fmt: str, seed: int = 1) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        if fmt == "lines":
            for batch in _requests(spans, seed):
                fh.write(json.dumps(_request(batch), separators=(",", ":")) + "\n")
        else:
            _write_document(fh, _requests(spans, seed))
    tmp.replace(path)


def _write_document(fh: TextIO, batches: Any) -> None:
    fh.write('{"resourceSpans": [\n')
    for i, batch in enumerate(batches):
        body = json.dumps(_request(batch)["resourceSpans"][0], indent=1)
        fh.write(("," if i else "") + body + "\n")
    fh.write("]}\n")


def run_once(src: Path, out: Path) -> tuple[float, float, dict[str, Any]]:
    """(seconds, peak RSS in MB, the import's JSON summary) of one import in a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "evalgate", "traces", "import", str(src), "--out", str(out), "--json"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    stdout = proc.stdout.read()
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write(stderr.decode())
        raise SystemExit(f"import failed on {src}")
    return elapsed, usage.ru_maxrss / 1024, json.loads(stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000", help="span counts, comma-separated")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--format", choices=("lines", "document"), default="lines")
    ap.add_argument("--workdir", default=os.path.join(os.environ.get("EVALGATE_BENCH_DIR", "/tmp/evalgate-bench"), "otlp"),
                    help="where generated files are kept (default: $EVALGATE_BENCH_DIR/otlp or /tmp/evalgate-bench/otlp)")
    args = ap.parse_args()
    versions.print_header()  # what the figures below were measured with
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, tuple[float, float]] = {}
    for size in sizes:
        ext = "jsonl" if args.format == "lines" else "json"
        src = work / f"spans-{size}.otlp.{ext}"
        if not src.exists():
            t = time.perf_counter()
            generate(src, size, args.format)
            print(f"generated {src.name}: {src.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t:.0f}s", flush=True)
        times, peaks = [], []
        for _ in range(args.runs):
            elapsed, peak, summary = run_once(src, work / f"out-{size}.jsonl")
            times.append(elapsed)
            peaks.append(peak)
            assert summary["spans"] == size, summary["spans"]
        med_t, med_p = statistics.median(times), statistics.median(peaks)
        results[size] = (size / med_t, med_p)
        print(f"{size:>9,} spans ({args.format}): median {med_t:.1f}s = {size / med_t:,.0f} spans/s, "
              f"peak RSS {med_p:.0f} MB; turns {summary['turns']:,}, sessions {summary['sessions']:,} "
              f"(runs: {', '.join(f'{t:.1f}s' for t in times)})", flush=True)
    big, small = max(sizes), min(sizes)
    rate, peak = results[big]
    flat = results[big][1] / results[small][1]
    print("targets:")
    print(f"  throughput ≥ {TARGET_SPANS_PER_S:,} spans/s at {big:,}: {rate:,.0f}  {'PASS' if rate >= TARGET_SPANS_PER_S else 'MISS'}")
    print(f"  peak RSS ≤ {TARGET_PEAK_MB} MB: {max(p for _, p in results.values()):.0f}  "
          f"{'PASS' if max(p for _, p in results.values()) <= TARGET_PEAK_MB else 'MISS'}")
    print(f"  memory flat (peak at {big:,} ÷ at {small:,} ≤ 1.25): {flat:.2f}  {'PASS' if flat <= 1.25 else 'MISS'}")


if __name__ == "__main__":
    main()
