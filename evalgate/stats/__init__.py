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

from .distributions import (
                            binom_midp_upper,
                            binom_pmf,
                            fisher_worse,
                            phi,
                            runs_to_decide,
                            t_quantile,
                            t_sf,
                            z_quantile,
)
from .drop import EXACT_BELOW, MIN_DISCORDANT, DropTest, Pair, finish_drop, paired_drop
from .family import Hypothesis, family
from .prior import BetaPrior, beta_binom_pmf, chance_worse, fit_prior
from .share import ShareTest, binom_cdf, finish_share, share_test

__all__ = ["EXACT_BELOW", "MIN_DISCORDANT", "BetaPrior", "DropTest", "Hypothesis", "Pair", "ShareTest", "beta_binom_pmf",
           "binom_cdf", "binom_midp_upper", "binom_pmf", "chance_worse", "family", "finish_drop", "finish_share",
           "fisher_worse", "fit_prior", "paired_drop", "phi", "runs_to_decide", "share_test", "t_quantile", "t_sf",
           "z_quantile"]
