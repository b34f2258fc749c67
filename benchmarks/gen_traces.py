"""Generate a deterministic file of native evalgate traces (JSONL, ``v`` 1).

Sessions of 1-6 turns with realistic content: a user with groups, the
input, a route {name, confidence, reason}, 2-4 context items (some left out
for permission), occasional tool calls, the model, a 20-40 word answer,
state with an order id, latency, usage, and about 5% of turns carrying a
feedback correction. Lines are written as they are generated (nothing is
held in memory), so any size can be produced.

    python benchmarks/gen_traces.py OUT.jsonl --turns 100000 [--interleave] [--seed 1]

By default each session's turns are contiguous (the usual export order);
``--interleave`` keeps up to ``--open`` sessions open at once and writes
their turns interleaved, the way a live log would.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROUTES = ["refunds", "order_status", "account", "smalltalk"]
ROUTE_WEIGHTS = [0.30, 0.35, 0.20, 0.15]
# a few turns land on routes the benchmark suite does not allow, so the route scorer fails sometimes
RARE_ROUTES = ["escalation", "billing"]

GROUPS = [["customer"], ["customer"], ["customer"], ["customer", "beta"], ["support"], ["support", "finance"]]

INPUTS = {
    "refunds": [
        "I want a refund for order {order}",
        "sorry, it's {order} not {other}",
        "can I get my money back for {order}?",
        "the item in order {order} arrived broken, refund please",
        "how long does a refund take for {order}",
    ],
    "order_status": [
        "where is my order {order}?",
        "has {order} shipped yet",
        "tracking for order {order} please",
        "my package {order} is late",
        "when will {order} arrive",
    ],
    "account": [
        "I can't log in to my account",
        "how do I change my email address",
        "reset my password please",
        "delete my account",
        "update the shipping address on my profile",
    ],
    "smalltalk": [
        "thanks!",
        "good",
        "hello there",
        "you're very helpful",
        "ok great, bye",
    ],
}

REASONS = {
    "refunds": ["keyword 'refund' in session", "classifier: refunds", "previous turn was refunds"],
    "order_status": ["keyword 'order' + tracking intent", "classifier: order_status", "order id in message"],
    "account": ["keyword 'account'", "classifier: account", "login intent"],
    "smalltalk": ["no intent detected", "classifier: smalltalk", "short acknowledgement"],
    "escalation": ["angry tone detected"],
    "billing": ["keyword 'charge'"],
}

DOCS = {
    "refunds": ["kb/refund-policy", "kb/refund-timelines", "kb/damaged-items", "kb/returns-portal"],
    "order_status": ["kb/shipping-times", "kb/tracking-help", "kb/carrier-delays", "kb/order-lookup"],
    "account": ["kb/password-reset", "kb/change-email", "kb/account-deletion", "kb/login-troubleshooting"],
    "smalltalk": ["kb/brand-voice", "kb/greetings"],
    "escalation": ["kb/escalation-matrix"],
    "billing": ["kb/billing-faq"],
}
# documents only some groups may read; the system under test usually excludes them
RESTRICTED = ["kb/internal-fraud-rules", "kb/agent-macros", "kb/finance-ledger-notes"]

TOOLS = {
    "refunds": ["update_refund", "issue_refund", "lookup_order"],
    "order_status": ["lookup_order", "track_shipment"],
    "account": ["send_reset_link", "update_profile"],
}

MODELS = [
    {"name": "gpt-4o-mini", "provider": "openai", "params": {"temperature": 0}},
    {"name": "gpt-4o-mini", "provider": "openai", "params": {"temperature": 0.2}},
    {"name": "llama-3.1-8b-instruct", "provider": "vllm", "params": {"temperature": 0, "max_tokens": 256}},
]

WORDS = ("your order is on its way and should arrive within the window we quoted we have updated the "
         "record so you will receive an email confirmation shortly if anything else looks wrong let me know "
         "and I can check again the refund will appear on your statement after the bank processes it "
         "you can also follow the tracking link in your account page thanks for your patience").split()
OPENERS = {
    "refunds": "I've updated the refund for order {order}.",
    "order_status": "Order {order} is in transit.",
    "account": "I've sent the instructions to your email.",
    "smalltalk": "You're welcome!",
    "escalation": "I'm passing this to a colleague.",
    "billing": "I've checked the charge on order {order}.",
}


def _order(rng: random.Random) -> str:
    return str(rng.randint(1000, 99999))


def _output(rng: random.Random, route: str, order: str) -> str:
    n = rng.randint(20, 40)
    opener = OPENERS[route].format(order=order)
    have = len(opener.split())
    start = rng.randrange(len(WORDS))
    body = [WORDS[(start + i) % len(WORDS)] for i in range(max(0, n - have))]
    text = opener + " " + " ".join(body) + "."
    if rng.random() < 0.01:  # the odd answer that leaks internal wording
        text += " (internal note: check fraud score)"
    return text


def _context(rng: random.Random, route: str, groups: list[str]) -> list[dict[str, Any]]:
    pool = DOCS[route]
    k = rng.randint(2, 4)
    items: list[dict[str, Any]] = []
    picked = rng.sample(pool, min(len(pool), k))
    while len(picked) < k:  # small pools: top up with restricted documents
        picked.append(rng.choice(RESTRICTED))
    if rng.random() < 0.3:  # a restricted document retrieved, usually excluded for permission
        picked[-1] = rng.choice(RESTRICTED)
    score = round(rng.uniform(0.75, 0.95), 2)
    for rank, doc in enumerate(picked, 1):
        item: dict[str, Any] = {"id": doc, "score": score, "rank": rank}
        score = round(score - rng.uniform(0.01, 0.08), 2)
        if doc in RESTRICTED:
            item["groups"] = ["support", "finance"] if doc == "kb/finance-ledger-notes" else ["support"]
            # support staff may read the macros and ledger notes; the fraud rules are excluded for
            # everyone, except in a rare leak (which the suite's context check catches)
            allowed = doc != "kb/internal-fraud-rules" and any(g in groups for g in item["groups"])
            if allowed or rng.random() < 0.005:
                item["used"] = True
                item["tokens"] = rng.randint(150, 600)
            else:
                item["used"] = False
                item["excluded"] = "permission"
        else:
            item["groups"] = ["customer", "support"]
            if rank == 4 and rng.random() < 0.5:
                item["used"] = False
                item["excluded"] = "budget"
            else:
                item["used"] = True
                item["tokens"] = rng.randint(120, 700)
        items.append(item)
    return items


class _Session:
    __slots__ = ("sid", "user", "groups", "turns", "next", "order", "route", "channel")

    def __init__(self, sid: str, user: str, groups: list[str], turns: int, order: str, route: str, channel: str):
        self.sid, self.user, self.groups, self.turns = sid, user, groups, turns
        self.next = 1
        self.order = order
        self.route = route
        self.channel = channel


def _turn(rng: random.Random, s: _Session, trace_id: int, ts: float) -> dict[str, Any]:
    # mostly stay on the session's topic; sometimes drift (or land on a rare route)
    r = rng.random()
    if s.next > 1 and r < 0.25:
        route = "smalltalk"
    elif r < 0.03:
        route = rng.choice(RARE_ROUTES)
    else:
        route = s.route
    other = s.order
    if route == "refunds" and s.next > 1 and rng.random() < 0.2:  # the user fixes the order number
        other, s.order = s.order, _order(rng)
    text = rng.choice(INPUTS.get(route, INPUTS["refunds"])).format(order=s.order, other=other)
    lat_route = rng.randint(1, 8)
    lat_ctx = rng.randint(15, 90)
    lat_model = int(rng.lognormvariate(6.4, 0.45))
    in_tok = rng.randint(300, 1800)
    out_tok = rng.randint(25, 80)
    rec: dict[str, Any] = {
        "v": 1,
        "trace_id": f"t-{trace_id}",
        "session_id": s.sid,
        "turn": s.next,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)),
        "user": {"id": s.user, "groups": s.groups},
        "input": text,
        "route": {"name": route, "confidence": round(rng.uniform(0.55, 0.99), 2),
                  "reason": rng.choice(REASONS[route])},
        "context": _context(rng, route, s.groups),
    }
    if route in TOOLS and rng.random() < 0.3:
        tool = rng.choice(TOOLS[route])
        call: dict[str, Any] = {"name": tool, "arguments": {"order_id": s.order}}
        if rng.random() < 0.05:
            call["error"] = "timeout after 5s"
        else:
            call["result"] = "ok"
        rec["tool_calls"] = [call]
    rec["model"] = rng.choice(MODELS)
    rec["output"] = _output(rng, route, s.order)
    state: dict[str, Any] = {"order_id": s.order, "topic": route, "channel": s.channel}
    if route == "escalation":
        state["escalated"] = True
    if route == "smalltalk" and s.next > 1 and rng.random() < 0.5:
        state["confirmed"] = True
    rec["state"] = state
    rec["latency_ms"] = {"total": lat_route + lat_ctx + lat_model + rng.randint(2, 20), "route": lat_route,
                         "context": lat_ctx, "model": lat_model}
    rec["usage"] = {"input_tokens": in_tok, "output_tokens": out_tok,
                    "cost_usd": round(in_tok * 0.15e-6 + out_tok * 0.6e-6, 6)}
    if rng.random() < 0.05:
        right = rng.choice([r for r in ROUTES if r != route])
        # most corrections disagree with the recorded route (those turns fail); some confirm it
        if rng.random() < 0.3:
            right = route if route in ROUTES else right
        rec["feedback"] = {"rating": "down", "correction": {"route": right},
                           "note": "wrong workflow" if right != route else "right route, poor answer",
                           "by": "reviewer-" + str(rng.randint(1, 9))}
    if rng.random() < 0.02:
        rec["extra"] = {"experiment": "ranker-v2", "shard": rng.randint(0, 15)}
    s.next += 1
    return rec


def generate(turns: int, *, seed: int = 1, interleave: bool = False, open_sessions: int = 64) -> Iterator[dict[str, Any]]:
    """Yield ``turns`` trace dicts, session by session (or interleaved)."""
    rng = random.Random(seed)
    ts = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    unassigned = turns  # turns not yet given to a session
    n_sessions = 0
    made = 0
    live: list[_Session] = []
    width = open_sessions if interleave else 1
    while unassigned or live:
        while len(live) < width and unassigned:
            n_sessions += 1
            length = min(rng.randint(1, 6), unassigned)
            unassigned -= length
            uid = rng.randint(1, max(10, turns // 8))
            user, groups = f"u-{uid}", GROUPS[uid % len(GROUPS)]  # a user keeps their groups
            route = rng.choices(ROUTES, ROUTE_WEIGHTS)[0]
            live.append(_Session(f"s-{seed}-{n_sessions}", user, groups, length, _order(rng), route,
                                 "web" if rng.random() < 0.98 else "app"))
        i = rng.randrange(len(live)) if interleave else 0
        s = live[i]
        ts += rng.uniform(0.05, 2.0)
        made += 1
        yield _turn(rng, s, made, ts)
        if s.next > s.turns:
            live.pop(i)


def write(path: Path | str, turns: int, *, seed: int = 1, interleave: bool = False) -> int:
    """Write the traces to ``path``; returns the number of sessions written."""
    n_sessions = 0
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with open(path, "w", encoding="utf-8", buffering=1 << 20) as fh:
        for rec in generate(turns, seed=seed, interleave=interleave):
            if rec["turn"] == 1:
                n_sessions += 1
            fh.write(dumps(rec))
            fh.write("\n")
    return n_sessions


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output JSONL file")
    ap.add_argument("--turns", type=int, default=100_000, help="number of turns (lines) to write")
    ap.add_argument("--seed", type=int, default=1, help="random seed (same seed, same file)")
    ap.add_argument("--interleave", action="store_true", help="interleave the turns of concurrent sessions")
    args = ap.parse_args(argv)
    if args.turns < 1:
        ap.error("--turns must be at least 1")
    t0 = time.perf_counter()
    sessions = write(args.out, args.turns, seed=args.seed, interleave=args.interleave)
    dt = time.perf_counter() - t0
    size = Path(args.out).stat().st_size
    print(f"wrote {args.turns} turns in {sessions} sessions to {args.out} "
          f"({size / 1e6:.1f} MB, {dt:.1f}s{', interleaved' if args.interleave else ''})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
