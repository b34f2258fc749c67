"""The example assistant with its model sampled at temperature 0.7: answers vary from run to run.

The routing, retrieval, tools and state are :mod:`assistant.bot`'s. Only the
"model" step changes, the way a sampled model changes an answer: the words
differ every run, and now and then the answer leaves out the order number it
should repeat (some conversations more often than others). Seeded by run,
case, repeat and turn: every new run draws afresh, which is what makes
history, flaky cases and confirmation runs worth having; with
``ASSISTANT_SAMPLE_SEED`` set, the run's draws come from that seed instead
(a test replays the same runs every time).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from typing import Any

from . import bot

OPENINGS = ("", "Sure. ", "Of course. ", "Happy to help. ", "Thanks for waiting. ")
TEMPERATURE = 0.7


def _slip_rate(case_id: str) -> float:
    """How often this conversation's answers leave out the order number: most never, a few often."""
    h = int(hashlib.sha256(case_id.encode()).hexdigest()[:8], 16) % 10
    return {0: 0.35, 1: 0.15}.get(h, 0.0)


def respond(request: dict[str, Any]) -> dict[str, Any]:
    """Answer one turn as the current release does, with the model's answer sampled."""
    trace = bot.respond(request)
    if "model" not in trace:
        return trace  # routes with no model step (smalltalk, handoff, clarify) are deterministic
    run = os.environ.get("ASSISTANT_SAMPLE_SEED") or request.get("run_id")  # a fixed seed replays a run exactly
    rng = random.Random(f"{run}|{request.get('case_id')}|{request.get('repeat')}|{request.get('turn')}")
    output = str(trace.get("output") or "")
    if rng.random() < _slip_rate(str(request.get("case_id"))):
        output = re.sub(r"\border (\d{4})\b", "your order", output)
    trace["output"] = rng.choice(OPENINGS) + output
    trace["model"] = {**trace["model"], "params": {"temperature": TEMPERATURE}}
    return trace
