"""A drop in pass rate, paired per case (or per cluster): an exact mid-p sign test, or a cluster-robust t test."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .distributions import binom_midp_upper, t_quantile, t_sf

_POWER_Z = 0.8416  # z for 80 % power


MIN_DISCORDANT = 5
"""Below this many cases that moved, the t test is not used (too few to estimate a spread)."""


EXACT_BELOW = 40
"""While fewer cases than this moved (and every case is pass-or-fail), the exact sign test is used."""


@dataclass
class Pair:
    """One case in both runs: its pass fraction in the baseline's history and now."""

    case_id: str
    before: float
    now: float
    cluster: str = ""
    """Cases of one cluster (a conversation and its variants) are not independent."""


@dataclass
class DropTest:
    """A paired test of one max_drop rule, in words a release manager can read."""

    metric: str
    max_drop: float
    confidence: float
    n: int
    base: float
    now: float
    drop: float
    p_value: float
    method: str = "none"
    """exact (mid-p sign test on the cases that flipped), t (cluster-robust), or none (too few flipped)."""
    discordant: int = 0
    """Cases whose pass fraction differs between the runs."""
    worse: int = 0
    better: int = 0
    clusters: int = 0
    se: float = 0.0
    level: float = 0.05
    """The level the family judged this rule at."""
    low: float = 0.0
    """One-sided lower confidence bound on the drop at that level."""
    detectable: float | None = None
    """The smallest drop this test detects 4 times in 5, at its corrected level."""
    needed: int | None = None
    """Paired cases (clusters) it would take, at this spread, to detect a drop twice the margin 4 times in 5."""
    fails: bool = False
    cases: list[str] = field(default_factory=list)
    """Cases that did worse than in the baseline."""
    runs_behind: str = ""
    """How many runs and repeats back the comparison ("5 baseline runs, 15 case runs each")."""

    def describe(self) -> str:
        if self.n == 0:
            return "not measured: no case without errors is in both runs (in this slice)"
        conf = f"{1 - self.level:.1%}".replace(".0%", "%")
        text = (f"{self.metric} {self.base:.1%} → {self.now:.1%} over {self.n} paired case(s)"
                + (f" in {self.clusters} cluster(s)" if self.clusters and self.clusters < self.n else "")
                + f"{self.runs_behind}: drop {self.drop:+.1%}; {self.worse} case(s) did worse, {self.better} better")
        p_text = f"p = {self.p_value:.3g} at the corrected level {self.level:.3g}"
        if self.method == "t":
            text += f" (at {conf} confidence, at least {self.low:+.1%})"
        text += "; "
        if self.fails:
            text += f"a drop beyond {self.max_drop:.1%} is significant ({p_text}, {self._method_name()})"
        elif self.method == "none" and self.drop > self.max_drop:
            text += (f"too few cases moved to test ({self.discordant}; at least {MIN_DISCORDANT}, in 2 or more "
                     "clusters, are needed)")
        elif self.drop > self.max_drop:
            text += f"larger than {self.max_drop:.1%} but could be noise ({p_text}, {self._method_name()})"
        else:
            text += f"within the allowed {self.max_drop:.1%}"
        if self.detectable is not None:
            text += f"; this test detects drops of about {self.detectable:.1%} or more (4 times in 5)"
            if self.needed and self.needed > max(self.clusters, self.n) and self.max_drop > 0:
                text += f"; one of {2 * self.max_drop:.1%} would take about {self.needed} paired cases"
        return text

    def _method_name(self) -> str:
        return {"exact": "exact sign test", "t": "paired t test"}.get(self.method, self.method)


def paired_drop(metric: str, pairs: Sequence[Pair], max_drop: float, confidence: float = 0.95) -> DropTest:
    """Test H0 "the mean drop (before − now) is at most max_drop" over paired cases.

    Call ``finish_drop`` with the level the family gives the rule to get the
    interval and the smallest detectable drop at that level.
    """
    n = len(pairs)
    if n == 0:
        return DropTest(metric, max_drop, confidence, 0, 0.0, 0.0, 0.0, 1.0)
    diffs = [p.before - p.now for p in pairs]
    base = sum(p.before for p in pairs) / n
    now = sum(p.now for p in pairs) / n
    mean = sum(diffs) / n
    worse = [p.case_id for p, d in zip(pairs, diffs) if d > 1e-12]
    better = sum(1 for d in diffs if d < -1e-12)
    discordant = len(worse) + better
    clusters: dict[str, float] = {}
    for p, d in zip(pairs, diffs):
        key = p.cluster or p.case_id
        clusters[key] = clusters.get(key, 0.0) + (d - mean)
    g = len(clusters)
    se = math.sqrt(g / (g - 1) * sum(v * v for v in clusters.values())) / n if g > 1 else 0.0
    if se == 0.0 and discordant:
        # every case moved alike: assume the spread a real change would show, rather than claim certainty
        se = math.sqrt(max(base * (1 - base), 0.05 * 0.95) / n)
    binary = all(p.before in (0.0, 1.0) and p.now in (0.0, 1.0) for p in pairs)
    singletons = g == n
    test = DropTest(metric, max_drop, confidence, n, base, now, mean, 1.0, discordant=discordant,
                    worse=len(worse), better=better, clusters=g, se=se, cases=worse)
    if discordant == 0:
        test.method, test.p_value = "exact", 1.0
    elif binary and singletons and discordant < EXACT_BELOW:
        # McNemar's exact test with a margin: of the cases that flipped, the share that got worse;
        # a mean drop of max_drop means that share is (1 + max_drop · n / flipped) / 2
        share = min(1.0, (1 + max_drop * n / discordant) / 2)
        test.method = "exact"
        test.p_value = binom_midp_upper(len(worse), discordant, share) if share < 1 else 1.0
    elif discordant >= MIN_DISCORDANT and g > 1:
        test.method = "t"
        test.p_value = t_sf((mean - max_drop) / se, g - 1)
    else:
        test.method, test.p_value = "none", 1.0
    return test


def finish_drop(test: DropTest, level: float, *, rejected: bool) -> None:
    """The rule's verdict, interval and smallest detectable drop at the level the family gave it."""
    test.level = level
    test.fails = rejected and test.drop > test.max_drop
    if test.n == 0:
        return
    df = max(test.clusters - 1, 1)
    test.low = test.drop - t_quantile(1 - level, df) * test.se
    if test.se > 0 and test.method != "none":
        # the drop at which this test, at this level, fires 4 times in 5
        reach = t_quantile(1 - level, df) + _POWER_Z
        test.detectable = min(1.0, test.max_drop + reach * test.se)
        if test.max_drop > 0:  # the spread per cluster stays; the standard error shrinks with √clusters
            spread = test.se * math.sqrt(max(test.clusters, 1))
            test.needed = math.ceil((reach * spread / test.max_drop) ** 2)
