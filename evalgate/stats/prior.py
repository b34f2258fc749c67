"""How pass rates spread across a suite's cases: a beta prior fitted by moments (empirical Bayes)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .distributions import _log_comb


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
