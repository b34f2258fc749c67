"""One multiple-comparison family for the whole gate: a graphical Holm procedure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Hypothesis:
    """One statistical claim the gate may make: "case X regressed", "rule R's drop is real"."""

    group: str
    """The rule it belongs to: its weight is shared with the other claims of the same rule first."""
    key: str
    p: float
    rejected: bool = False
    level: float = 0.0
    """The significance level it was judged at (α × its weight when last examined)."""


def family(hypotheses: Sequence[Hypothesis], alpha: float) -> float:
    """Decide every claim together, keeping the chance of any false alarm at most ``alpha``.

    A graphical Holm procedure (Bretz et al., 2009): each rule starts with an
    equal share of ``alpha``, split equally among its claims (e.g. the cases
    ``no_new_failures`` tests). A claim is accepted as real when its p-value is
    at most ``alpha`` × its weight; its weight then passes to the other claims
    of its rule, or, when none is left, equally to the other rules. Returns
    each rule's starting level.
    """
    groups: dict[str, list[Hypothesis]] = {}
    for h in hypotheses:
        groups.setdefault(h.group, []).append(h)
    if not groups:
        return alpha
    start = 1.0 / len(groups)
    weight = dict.fromkeys(groups, start)
    queue = {g: sorted(hs, key=lambda h: h.p) for g, hs in groups.items()}
    done = dict.fromkeys(groups, 0)
    progress = True
    while progress:
        progress = False
        for g, hs in queue.items():
            while done[g] < len(hs) and hs[done[g]].p <= alpha * weight[g] / (len(hs) - done[g]) + 1e-15:
                h = hs[done[g]]
                h.rejected, h.level = True, alpha * weight[g] / (len(hs) - done[g])
                done[g] += 1
                progress = True
            if done[g] == len(hs) and weight[g] > 0:  # every claim of this rule is accepted: its weight moves on
                heirs = [o for o in queue if o != g and done[o] < len(queue[o])]
                for o in heirs:
                    weight[o] += weight[g] / len(heirs)
                weight[g] = 0.0
    for g, hs in queue.items():
        left = len(hs) - done[g]
        for h in hs[done[g]:]:
            h.level = alpha * weight[g] / left
    return alpha * start
