"""The gate's statistics: exact and paired tests, one family, intervals on shares.

Everything here is pure arithmetic (no SciPy): the gate calls it with counts
read from the store.

- ``fisher_worse``: is a case's pass rate now lower than in its history?
  (one-sided Fisher exact test on two binomial samples)
- ``paired_drop``: has the pass rate dropped by more than ``max_drop``?
  Paired per case (or per cluster of cases: a conversation and its
  variants); an exact mid-p sign test while few cases flip, a t test on the
  cluster-robust standard error once many do.
- ``share_test``: is a share (pass_rate, route.accuracy, ...) above or below
  a threshold, given how much it varies from run to run?
- ``family``: one multiple-comparison family for the whole gate (a
  graphical Holm procedure): the chance of any false alarm, across every
  rule and every case it names, stays at most 1 − confidence.
- ``BetaPrior``: how pass rates spread across a suite's cases, fitted to the
  history (empirical Bayes), for the run-to-run variance of a share and the
  flips expected by chance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

_POWER_Z = 0.8416  # z for 80 % power
MIN_DISCORDANT = 5
"""Below this many cases that moved, the t test is not used (too few to estimate a spread)."""
EXACT_BELOW = 40
"""While fewer cases than this moved (and every case is pass-or-fail), the exact sign test is used."""


# --- distributions ------------------------------------------------------------

def phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def z_quantile(p: float) -> float:
    """Inverse of the standard normal CDF (Acklam's rational approximation, refined by one Newton step)."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
         -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
         -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
         4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    lo = 0.02425
    if p < lo:
        q = math.sqrt(-2 * math.log(p))
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    elif p > 1 - lo:
        q = math.sqrt(-2 * math.log(1 - p))
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    else:
        q = p - 0.5
        r = q * q
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    e = phi(x) - p
    u = e * math.sqrt(2 * math.pi) * math.exp(x * x / 2)
    return x - u / (1 + x * u / 2)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the regularized incomplete beta function (Lentz's method)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c if abs(1 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c if abs(1 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-12:
            break
    return h


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    x = df / (df + t * t)
    if x >= 1.0:  # |t| is tiny
        return 0.5
    if x <= 0.0:  # |t| is huge
        return 0.0 if t > 0 else 1.0
    a, b = df / 2, 0.5
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    ibeta = front * _betacf(a, b, x) / a if x < (a + 1) / (a + b + 2) else 1 - front * _betacf(b, a, 1 - x) / b
    return ibeta / 2 if t > 0 else 1 - ibeta / 2


def t_quantile(p: float, df: float) -> float:
    """The t value with P(T ≤ t) = p."""
    lo, hi = -60.0, 60.0
    for _ in range(90):
        mid = (lo + hi) / 2
        if 1 - t_sf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def binom_pmf(k: int, n: int, p: float) -> float:
    if k < 0 or k > n:
        return 0.0
    if p <= 0.0:
        return 1.0 if k == 0 else 0.0
    if p >= 1.0:
        return 1.0 if k == n else 0.0
    return math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                    + k * math.log(p) + (n - k) * math.log1p(-p))


def binom_midp_upper(x: int, n: int, p0: float) -> float:
    """Mid-p of seeing ``x`` or more successes of ``n`` when each has probability ``p0``."""
    above = sum(binom_pmf(k, n, p0) for k in range(x + 1, n + 1))
    return min(1.0, above + 0.5 * binom_pmf(x, n, p0))


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_worse(passed_before: int, n_before: int, passed_now: int, n_now: int) -> float:
    """One-sided Fisher exact p-value that the pass rate now is lower than before.

    Given all ``passed_before + passed_now`` passes, the chance that ``passed_now``
    or fewer of them fell among the ``n_now`` runs of now, had nothing changed.
    """
    if n_before <= 0 or n_now <= 0:
        return 1.0
    total, passes = n_before + n_now, passed_before + passed_now
    fails = total - passes
    lo = max(0, n_now - fails)
    denom = _log_comb(total, n_now)
    p = 0.0
    for x in range(lo, min(passed_now, passes, n_now) + 1):
        p += math.exp(_log_comb(passes, x) + _log_comb(fails, n_now - x) - denom)
    return min(1.0, p)


def runs_to_decide(passed_before: int, n_before: int, level: float, most: int) -> int | None:
    """The fewest runs now that, all failing, would be significant at ``level`` (None: more than ``most``)."""
    for k in range(1, most + 1):
        if fisher_worse(passed_before, n_before, 0, k) <= level:
            return k
    return None


# --- one family for the whole gate ----------------------------------------------

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


# --- a drop in pass rate, paired per case --------------------------------------

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


# --- a share against a threshold -------------------------------------------------

@dataclass
class ShareTest:
    """A share (pass rate, accuracy) against a min or max, with its run-to-run uncertainty."""

    value: float
    n: int
    limit: float
    side: str
    """min: the share must be at least the limit; max: at most."""
    low: float
    high: float
    p_value: float
    design: float
    """Variance relative to independent pass-or-fail trials: 0 when nothing varies from run to run."""
    level: float = 0.05
    status: str = "pass"
    """pass (the interval clears the limit), fail (significantly on the wrong side), inconclusive."""

    def needed(self) -> int | None:
        """Roughly how many case runs would decide it, at this distance from the limit."""
        gap = abs(self.value - self.limit)
        if gap < 1e-9 or self.design == 0:
            return None
        z = z_quantile(1 - self.level)
        return math.ceil(self.design * z * z * self.value * (1 - self.value) / (gap * gap)) or None


def binom_cdf(x: int, n: int, p: float) -> float:
    """P(X ≤ x) for X ~ Binomial(n, p)."""
    if x < 0:
        return 0.0
    if x >= n:
        return 1.0
    return min(1.0, sum(binom_pmf(k, n, p) for k in range(0, x + 1)))


def share_test(passed: float, n: int, limit: float, side: str, design: float, level: float = 0.05) -> ShareTest:
    """A share against a limit on ``n / design`` effective trials: a Wilson interval and an exact binomial test.

    ``design`` is 1 for independent pass-or-fail trials, smaller when the
    history shows cases that rarely change outcome, larger when trials move
    together (the turns of one conversation), 0 when nothing varies (a
    deterministic system: the share is what it is). The test is exact on the
    effective trials (rounded down, the cautious way), so small samples and
    limits near 0 or 1 keep their level.
    """
    value = passed / n if n else 0.0
    if n == 0:
        return ShareTest(value, 0, limit, side, 0.0, 1.0, 1.0, design, level, "inconclusive")
    if design <= 0:
        ok = value >= limit if side == "min" else value <= limit
        return ShareTest(value, n, limit, side, value, value, 0.0 if not ok else 1.0, 0.0, level)
    n_eff = n / design
    z = z_quantile(1 - level)
    centre = (value + z * z / (2 * n_eff)) / (1 + z * z / n_eff)
    half = z / (1 + z * z / n_eff) * math.sqrt(value * (1 - value) / n_eff + z * z / (4 * n_eff * n_eff))
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    trials = max(1, int(n_eff))
    hits = int(round(value * trials))
    # H0: the share meets the limit; small p when what was seen is unlikely under the limit itself
    p = binom_cdf(hits, trials, limit) if side == "min" else 1.0 - binom_cdf(hits - 1, trials, limit)
    return ShareTest(value, n, limit, side, low, high, min(1.0, p), design, level)


def finish_share(test: ShareTest, level: float, *, rejected: bool, upper: float | None = None) -> None:
    """Pass, fail or inconclusive at the level the family gave the rule (the interval is recomputed at it).

    ``upper``: the rule's max too, when it has both limits: a pass then needs the interval inside both.
    """
    again = share_test(test.value * test.n, test.n, test.limit, test.side, test.design, level)
    test.low, test.high, test.level = again.low, again.high, level
    inside = (test.low >= test.limit) if test.side == "min" else (test.high <= test.limit)
    if upper is not None:
        inside = inside and test.high <= upper
    test.status = "fail" if rejected else "pass" if inside else "inconclusive"


# --- how pass rates spread across a suite's cases (empirical Bayes) --------------

@dataclass
class BetaPrior:
    """Per-case pass probabilities across a suite, as a Beta(a, b) fitted by moments."""

    a: float
    b: float

    def variance(self, passed: int, n: int) -> float:
        """The expected p(1 − p) of a case that passed ``passed`` of ``n`` runs."""
        a, b = self.a + passed, self.b + n - passed
        s = a + b
        return a * b / (s * (s + 1)) if s > 0 else 0.0

    def mean(self, passed: int, n: int) -> float:
        s = self.a + self.b + n
        return (self.a + passed) / s if s > 0 else 0.5


def fit_prior(counts: Sequence[tuple[int, int]]) -> BetaPrior | None:
    """Fit the spread of pass rates over cases from (passed, runs) per case; None when no case ran twice.

    Method of moments for the beta-binomial: the intra-case correlation ρ is
    what the between-case spread of pass fractions adds beyond binomial
    noise; a = μ(1/ρ − 1), b = (1 − μ)(1/ρ − 1). A deterministic suite (every
    case always passes or always fails) gives ρ → 1: no run-to-run variance.
    """
    counts = [(p, n) for p, n in counts if n > 0]
    total = sum(n for _, n in counts)
    extra = sum(n - 1 for _, n in counts)
    if not counts or extra == 0:
        return None
    mu = sum(p for p, _ in counts) / total
    if mu <= 0.0 or mu >= 1.0:
        return BetaPrior(mu * 1e-6, (1 - mu) * 1e-6)
    s = sum(n * (p / n - mu) ** 2 for p, n in counts)
    rho = (s / (mu * (1 - mu)) - (len(counts) - 1)) / extra
    rho = min(max(rho, 1e-4), 1 - 1e-6)
    k = 1 / rho - 1
    return BetaPrior(mu * k, (1 - mu) * k)


def beta_binom_pmf(x: int, m: int, a: float, b: float) -> float:
    if x < 0 or x > m:
        return 0.0
    if a <= 0 or b <= 0:
        return 0.0
    return math.exp(_log_comb(m, x) + math.lgamma(x + a) + math.lgamma(m - x + b) - math.lgamma(m + a + b)
                    + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b))


def chance_worse(prior: BetaPrior, passed: int, n: int, m: int) -> float:
    """The chance that a case with ``passed`` of ``n`` before does worse than that in ``m`` runs, by chance alone."""
    a, b = prior.a + passed, prior.b + n - passed
    if a <= 1e-9 or b <= 1e-9:  # a case that always passes (or always fails) never does worse by chance
        return 0.0
    rate = passed / n if n else 1.0
    return sum(beta_binom_pmf(x, m, a, b) for x in range(0, m) if x / m < rate - 1e-12)
