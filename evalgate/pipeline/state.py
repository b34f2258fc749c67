"""Slots: conversation state filled from the user's messages by regular expressions.

The last value a message gives wins, except values it negates ("not
5512"), so "sorry, it's 5521 not 5512" overwrites order_id with 5521.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .config import SlotSpec


class SlotFiller:
    """Compiled slot rules."""

    def __init__(self, specs: list[SlotSpec]):
        self.specs = specs
        self._compiled = [(s, re.compile(s.pattern, re.IGNORECASE), re.compile(s.negated, re.IGNORECASE) if s.negated else None)
                          for s in specs]

    def extract(self, text: str) -> dict[str, str]:
        """Slot name → the value this message gives (only slots it gives)."""
        lowered = text.lower().replace("\u2019", "'")
        found: dict[str, str] = {}
        for spec, pattern, negated in self._compiled:
            dropped = {_value(m) for m in negated.finditer(lowered)} if negated else set()
            values = [v for v in (_value(m) for m in pattern.finditer(lowered)) if v not in dropped]
            if values:
                found[spec.name] = values[-1]
        return found

    def apply(self, state: dict[str, Any], found: dict[str, str], route: str) -> dict[str, Any]:
        """The state with the slots this route may fill overwritten."""
        out = dict(state)
        for spec in self.specs:
            if spec.name in found and (spec.routes is None or route in spec.routes):
                out[spec.name] = found[spec.name]
        return out


def _value(m: re.Match[str]) -> str:
    return m.group(1) if m.groups() else m.group(0)


def split_structured(output: str) -> tuple[str, dict[str, Any] | None]:
    """A model's JSON answer {"answer": ..., "state": {...}} as (answer, state); plain text as (text, None)."""
    text = output.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return output, None
    if not isinstance(data, dict):
        return output, None
    state = data.get("state")
    return str(data.get("answer", "")), state if isinstance(state, dict) else None
