"""The model step's helpers: the built-in model, prices and the run's spend.

The built-in model is deterministic and needs no network: it answers with
an optional lead (a template over the state) and the first sentences of the
top passage, so the bundled example's scores mean something offline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import RunStopped
from .templates import render

_NO_PASSAGE = "I couldn't find that in our help center. I can connect you with a person if you like."


def sentences(text: str) -> list[str]:
    """A passage split into sentences."""
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def builtin_answer(params: dict[str, Any], variables: dict[str, Any]) -> str:
    """Lead (template) + the top passage's title and first ``sentences`` sentences (default 2)."""
    n = int(params.get("sentences", 2))
    lead = render(str(params["lead"]), variables).strip() if params.get("lead") else ""
    context = variables.get("context") or []
    if context:
        top = context[0]
        body = f"{top['title']}: {' '.join(sentences(top['text'])[:n])}"
    else:
        body = render(str(params["empty"]), variables).strip() if "empty" in params else _NO_PASSAGE
    return " ".join(p for p in (lead, body) if p)


@dataclass
class Prices:
    """USD per million tokens by model name."""

    table: dict[str, tuple[float, float]]

    def cost(self, model: str, input_tokens: int | None, output_tokens: int | None) -> float | None:
        """The call's cost, or None when the model has no price."""
        price = self.table.get(model)
        if price is None:
            return None
        return ((input_tokens or 0) * price[0] + (output_tokens or 0) * price[1]) / 1e6


class BudgetReached(RunStopped):
    """The run's spend reached --max-cost: no new model call is started."""


class SpendMeter:
    """What the run spent on model calls (cached answers cost nothing now), against --max-cost."""

    def __init__(self, max_cost: float | None):
        self.max_cost = max_cost
        self.spent = 0.0
        self.calls = 0

    def check(self) -> None:
        if self.max_cost is not None and self.spent >= self.max_cost:
            raise BudgetReached(f"--max-cost ${self.max_cost:g} reached (spent ${self.spent:.6f} on {self.calls} "
                                "model call(s)); no new model calls were started")

    def add(self, cost: float | None) -> None:
        self.calls += 1
        self.spent += cost or 0.0
