"""Rebuild ``datasets/traces.jsonl``: recorded production sessions of the example assistant.

The sessions below are what customers, agents and finance staff said to the
assistant over a few releases. Each session is run, turn by turn, through the
release that was live at the time (``assistant.bot`` with that release's
:class:`~assistant.bot.Behaviour`), and every turn is written as one trace in
evalgate's native format (v1). Reviewers' feedback is attached to the turns
they rated; a correction says what the turn should have done.

Three older releases had bugs the current one fixed, so their recordings hold
mistakes that reviewers corrected:

- 2025.05.1 used internal documents for customers (no permission filter);
- 2025.06.1 issued refunds before the customer confirmed;
- 2025.06.2 treated "good" and "sorry, it's ..." as smalltalk mid-refund.

Replaying the sessions through the current release passes every correction;
scoring the recordings as they are fails exactly on the corrected turns.

Run from the repository root: ``python datasets/make_traces.py``. The output is
deterministic (no clock, no randomness).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant import bot  # noqa: E402

OUT = ROOT / "datasets" / "traces.jsonl"
CURRENT = "2025.07.1"
RELEASES: dict[str, tuple[bot.Behaviour, datetime]] = {
    "2025.05.1": (bot.Behaviour(permission_filter=False), datetime(2025, 5, 20, 9, 0, tzinfo=timezone.utc)),
    "2025.06.1": (bot.Behaviour(confirm_before_refund=False), datetime(2025, 6, 10, 9, 0, tzinfo=timezone.utc)),
    "2025.06.2": (bot.Behaviour(state_before_smalltalk=False), datetime(2025, 6, 24, 9, 0, tzinfo=timezone.utc)),
    CURRENT: (bot.CURRENT, datetime(2025, 7, 8, 9, 0, tzinfo=timezone.utc)),
}
CUSTOMER = ["customer"]


@dataclass
class Session:
    """A scripted conversation: who, on which release, what they said, and reviewers' feedback by turn."""

    user: str
    turns: list[str]
    groups: list[str] = field(default_factory=lambda: list(CUSTOMER))
    release: str = CURRENT
    feedback: dict[int, dict[str, Any]] = field(default_factory=dict)
    channel: str = "web"


def _down(note: str, **correction: Any) -> dict[str, Any]:
    fb: dict[str, Any] = {"rating": "down", "note": note, "by": "support-review"}
    if correction:
        fb["correction"] = correction
    return fb


UP = {"rating": "up"}

SESSIONS: list[Session] = [
    Session("u-101", ["hi", "where is my order 5512?", "thanks!"], feedback={2: UP}),
    Session("u-102", ["I need a refund for order 4100", "what's your return window?", "ok go ahead"], feedback={3: UP}),
    Session("u-17", ["I want a refund for order 5512", "sorry, it's 5521 not 5512", "good", "thanks"],
            release="2025.06.2",
            feedback={2: _down("the customer corrected the order number; the bot answered with smalltalk and kept 5512",
                               route="refunds", state={"order_id": "5521"}),
                      3: _down("'good' confirmed the refund, but nothing was issued",
                               state={"confirmed": True}, tool_calls={"must_include": ["issue_refund"]})}),
    Session("u-104", ["I can't log in, I forgot my password", "it says the link expired", "thanks, that worked"]),
    Session("agent-3", ["customer wants a refund for order 9034", "which orders get flagged for fraud review?",
                        "ok go ahead"], groups=["support"], channel="agent-console", feedback={2: UP}),
    Session("u-106", ["has my package shipped?", "it's 3303", "I want a refund for it", "no"]),
    Session("u-107", ["which orders get flagged for fraud review?", "ok, can I get a refund for order 2207?", "yes"],
            release="2025.05.1",
            feedback={1: _down("internal fraud thresholds shown to a customer",
                               context={"must_exclude": ["kb/internal-fraud-rules"]},
                               output={"not_contains": ["$500"]}),
                      2: _down("internal fraud rules used to answer a customer",
                               context={"must_include": ["kb/refund-policy"],
                                        "must_exclude": ["kb/internal-fraud-rules"]})}),
    Session("u-108", ["I want to talk to a human"], channel="mobile"),
    Session("u-109", ["I'm locked out of my account", "how long does express shipping take?", "bye"]),
    Session("u-110", ["my item arrived damaged", "I'd like my money back", "it's 6631", "yes please"], feedback={4: UP}),
    Session("u-111", ["refund order 6120 please", "wait, I didn't confirm that", "ok, go ahead then"],
            release="2025.06.1",
            feedback={1: _down("refund issued before the customer confirmed",
                               tool_calls={"must_exclude": ["issue_refund"]})}),
    Session("u-112", ["7730", "I lost my phone and can't get my two-factor code"], channel="mobile"),
    Session("u-113", ["hello", "what's your return window?", "my item arrived damaged", "I'd like my money back",
                      "it's 5290", "confirm"]),
    Session("u-114", ["good morning", "where is my order?", "it's 5107", "thanks"]),
    Session("u-115", ["how is the ledger reconciled against chargebacks?", "can I talk to someone?"],
            feedback={1: _down("no answer; the customer wanted to know about a chargeback")}),
    Session("fin-1", ["how is the ledger reconciled against chargebacks?"], groups=["finance"],
            channel="agent-console", feedback={1: UP}),
    Session("u-117", ["refund for order 8812 please", "not 8812, 8821", "yes"]),
]


def _timestamp(release: str, session_no: int, turn: int) -> str:
    start = RELEASES[release][1] + timedelta(minutes=37 * session_no, seconds=45 * (turn - 1))
    return start.strftime("%Y-%m-%dT%H:%M:%SZ")


def record(session: Session, session_no: int, first_trace_no: int) -> list[dict[str, Any]]:
    """Run one session through its release; one trace per turn, with feedback attached."""
    behaviour = RELEASES[session.release][0]
    session_id = f"s-{session_no:04d}"
    state: dict[str, Any] = {}
    history: list[dict[str, str]] = []
    traces = []
    for turn, text in enumerate(session.turns, 1):
        request = {"v": 1, "session_id": session_id, "turn": turn, "input": text, "history": list(history),
                   "state": state, "user": {"id": session.user, "groups": session.groups}}
        trace = bot.respond(request, behaviour)
        trace["trace_id"] = f"t-{first_trace_no + turn - 1:04d}"
        trace["timestamp"] = _timestamp(session.release, session_no, turn)
        if turn in session.feedback:
            trace["feedback"] = {**session.feedback[turn], "at": _timestamp(session.release, session_no, turn + 1)}
        trace["extra"] = {"release": session.release, "channel": session.channel}
        traces.append(_ordered(trace))
        state = trace["state"]
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": trace["output"]}]
    return traces


_FIELDS = ("v", "trace_id", "session_id", "turn", "timestamp", "user", "input", "route", "context", "tool_calls",
           "model", "output", "state", "latency_ms", "usage", "feedback", "extra")


def _ordered(trace: dict[str, Any]) -> dict[str, Any]:
    return {k: trace[k] for k in _FIELDS if k in trace}


def main() -> None:
    """Write every session's traces, one JSON object per line."""
    lines = []
    trace_no = 1
    for session_no, session in enumerate(SESSIONS, 1):
        for trace in record(session, session_no, trace_no):
            lines.append(json.dumps(trace, ensure_ascii=False))
        trace_no += len(session.turns)
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} turns in {len(SESSIONS)} sessions to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
