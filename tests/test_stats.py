"""The gate's statistics against values worked out by hand, and their error rates by simulation."""

from __future__ import annotations

import math
import random

import pytest

from evalgate.stats import (Hypothesis, Pair, binom_midp_upper, family, finish_drop, finish_share, fisher_worse,
                            fit_prior, paired_drop, runs_to_decide, share_test, t_sf, z_quantile)


def test_fisher_exact_matches_the_hypergeometric_by_hand() -> None:
    # always passed 10 of 10 before, failed all 3 now: 1 / C(13, 3)
    assert fisher_worse(10, 10, 0, 3) == pytest.approx(1 / math.comb(13, 3))
    # one baseline run cannot decide: passed 1 of 1, failed 3 of 3 → 1/4
    assert fisher_worse(1, 1, 0, 3) == pytest.approx(0.25)
    # no worse now: nothing to see
    assert fisher_worse(5, 10, 5, 10) > 0.5
    assert fisher_worse(0, 0, 0, 3) == 1.0
    assert runs_to_decide(10, 10, 0.05 / 40, 20) == 4  # C(14, 4) = 1001 ≥ 800
    assert runs_to_decide(1, 1, 0.01, 20) is None


def test_three_drops_among_thirty_cases_is_not_significant() -> None:
    pairs = [Pair(f"c{i}", 1.0, 0.0 if i < 3 else 1.0) for i in range(30)]
    test = paired_drop("pass_rate", pairs, 0.0)
    assert test.method == "exact" and test.discordant == 3
    assert test.p_value == pytest.approx(0.0625)  # mid-p of the exact sign test (exact: 0.125)
    assert binom_midp_upper(3, 3, 0.5) == pytest.approx(0.0625)
    finish_drop(test, 0.05, rejected=False)
    assert not test.fails and "could be noise" in test.describe() and "exact sign test" in test.describe()
    assert "confidence, at least" not in test.describe()  # the t-based bound is not the exact test's


def test_drop_uses_the_t_test_once_many_cases_move_and_clusters_count_once() -> None:
    rng = random.Random(3)
    pairs = [Pair(f"c{i}", rng.choice([0.0, 1 / 3, 2 / 3, 1.0]), rng.choice([0.0, 1 / 3, 2 / 3, 1.0])) for i in range(200)]
    test = paired_drop("pass_rate", pairs, 0.02)
    assert test.method == "t" and test.clusters == 200
    # the same cases as 50 conversations of 4 variants each: a wider standard error, fewer degrees of freedom
    grouped = [Pair(p.case_id, p.before, p.now, f"g{i // 4}") for i, p in enumerate(pairs)]
    clustered = paired_drop("pass_rate", grouped, 0.02)
    assert clustered.clusters == 50 and clustered.drop == pytest.approx(test.drop)
    finish_drop(test, 0.05, rejected=False)
    assert test.detectable is not None and test.detectable > 0.02


def test_too_few_flips_to_test_with_fractions() -> None:
    pairs = [Pair(f"c{i}", 0.5, 0.5) for i in range(50)] + [Pair("x", 1.0, 0.5), Pair("y", 1.0, 0.5)]
    test = paired_drop("pass_rate", pairs, 0.0)
    assert test.method == "none" and test.p_value == 1.0
    finish_drop(test, 0.05, rejected=False)
    assert "too few cases moved to test" in test.describe() and "detects drops" not in test.describe()


def test_family_keeps_the_chance_of_any_false_alarm_at_alpha() -> None:
    """Uniform p-values for every true null: across 4000 simulated gates, at most alpha raise any alarm."""
    rng = random.Random(11)
    alarms = 0
    trials = 4000
    for _ in range(trials):
        hyps = [Hypothesis("nnf", f"c{i}", rng.random()) for i in range(rng.randrange(1, 40))]
        hyps += [Hypothesis(f"rule:{r}", "", rng.random()) for r in range(5)]
        family(hyps, 0.05)
        alarms += any(h.rejected for h in hyps)
    assert alarms / trials <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / trials)


def test_family_passes_weight_on_once_a_rule_is_done() -> None:
    a = Hypothesis("rule:0", "", 0.001)
    b = Hypothesis("rule:1", "", 0.04)
    start = family([a, b], 0.05)
    assert start == pytest.approx(0.025)
    assert a.rejected and b.rejected and b.level == pytest.approx(0.05)  # Holm: the second is judged at the full level
    # two rules: no_new_failures' half (0.025) is split over its two cases; x (0.01 ≤ 0.0125) is accepted,
    # then y is judged at the whole 0.025; the rule done, its weight passes to the other rule (now at 0.05)
    cases = [Hypothesis("nnf", "x", 0.01), Hypothesis("nnf", "y", 0.02), Hypothesis("rule:0", "", 0.5)]
    family(cases, 0.05)
    assert [h.rejected for h in cases] == [True, True, False]
    assert (cases[0].level, cases[1].level, cases[2].level) == pytest.approx((0.0125, 0.025, 0.05))
    tight = [Hypothesis("nnf", "x", 0.013), Hypothesis("nnf", "y", 0.02), Hypothesis("rule:0", "", 0.5)]
    family(tight, 0.05)
    assert [h.rejected for h in tight] == [False, False, False]


def test_share_tests_keep_their_level_on_small_samples() -> None:
    """The exact binomial test: at the limit itself, at most 5 % of samples are called below it."""
    for n, limit in ((20, 0.95), (20, 0.8), (100, 0.99), (50, 0.5)):
        size = sum(math.comb(n, x) * limit ** x * (1 - limit) ** (n - x)
                   for x in range(n + 1) if share_test(x, n, limit, "min", 1.0, 0.05).p_value <= 0.05)
        assert size <= 0.05 + 1e-9, (n, limit, size)


def test_both_limits_pass_only_inside_both() -> None:
    share = share_test(17, 20, 0.5, "min", 1.0, 0.05)
    finish_share(share, 0.05, rejected=False, upper=0.8)
    assert share.status == "inconclusive"  # 85 % is above the max of 80 %


def test_share_intervals_are_wilson_and_nothing_varies_means_the_point() -> None:
    test = share_test(36, 36, 0.95, "min", 1.0, 0.05)
    assert test.low == pytest.approx(36 / (36 + z_quantile(0.95) ** 2), abs=1e-9)
    finish_share(test, 0.05, rejected=False)
    assert test.status == "inconclusive"  # 36 of 36 cannot show a 95 % pass rate with confidence
    steady = share_test(36, 36, 0.95, "min", 0.0, 0.05)
    finish_share(steady, 0.05, rejected=False)
    assert steady.status == "pass" and steady.low == 1.0
    low = share_test(20, 36, 0.95, "min", 1.0, 0.05)
    assert low.p_value < 1e-6


def test_prior_of_a_deterministic_suite_has_no_run_to_run_variance() -> None:
    prior = fit_prior([(5, 5)] * 30 + [(0, 5)] * 10)
    assert prior is not None and prior.variance(5, 5) < 1e-6
    noisy = fit_prior([(random.Random(i).randrange(0, 6), 5) for i in range(200)])
    assert noisy is not None and noisy.variance(3, 5) > 0.1
    assert fit_prior([(1, 1), (0, 1)]) is None  # nothing ran twice: not identifiable


def test_t_and_normal_tails() -> None:
    assert t_sf(0.0, 10) == pytest.approx(0.5)
    assert t_sf(2.228, 10) == pytest.approx(0.025, abs=1e-3)
    assert z_quantile(0.975) == pytest.approx(1.959964, abs=1e-6)


def _snap(run: str, cases: dict[str, tuple[int, int, list[str]]]):
    from evalgate.baseline import CaseOutcome, Snapshot

    return Snapshot("s", run, None, None, {}, {k: CaseOutcome(p, n, 0, [], digests=d) for k, (p, n, d) in cases.items()})


def test_a_case_is_never_its_own_evidence_that_nothing_varies() -> None:
    """One baseline run, one flipped case re-run three times with the same failing label: not enough to convict it."""
    from evalgate.assess import assess
    from evalgate.policy import GateSpec, Rule

    gate = GateSpec(rules=[Rule(no_new_failures=True)])
    base = _snap("b", {"x": (1, 1, ["pass"]), "y": (1, 1, ["ok"])})
    cand = _snap("c", {"x": (0, 1, ["fail"]), "y": (1, 1, ["ok"])})
    alone = assess(gate, cand, base, _snap("k", {"x": (0, 3, ["fail"])}), {}, {})
    assert [(v.case_id, v.kind) for v in alone.cases] == [("x", "inconclusive")]
    # another case re-run beside it gave its same answer again: now the rule of determinism applies
    probed = assess(gate, cand, base, _snap("k", {"x": (0, 3, ["fail"]), "y": (1, 1, ["ok"])}), {}, {})
    assert [(v.case_id, v.kind) for v in probed.cases] == [("x", "regression")]
    # ... unless that other case varied
    varied = assess(gate, cand, base, _snap("k", {"x": (0, 3, ["fail"]), "y": (1, 1, ["ok again"])}), {}, {})
    assert [(v.case_id, v.kind) for v in varied.cases] == [("x", "inconclusive")]


def test_turns_that_move_together_widen_a_share() -> None:
    from evalgate.assess.decide import _cluster_design

    together = [(10, 10)] * 8 + [(0, 10)] * 2  # whole conversations pass or fail
    apart = [(8, 10)] * 10
    assert _cluster_design(together) > 5 and _cluster_design(apart) == 1.0


def test_a_rule_is_a_threshold_or_a_regression_not_both() -> None:
    from pydantic import ValidationError

    from evalgate.policy import Rule

    with pytest.raises(ValidationError, match="either a threshold"):
        Rule(metric="pass_rate", min=0.99, max_drop=0.02)


def test_binomial_cdf_sums_only_the_terms_that_count_and_matches_the_exact_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CDF sums the tail on x's side of the mode, term from term, until the terms no longer count: against
    the exactly rounded sum of every term (math.fsum), within 1e-10, over small and large n and every kind of p;
    and a share over a million turns is one call, not a million terms."""
    from evalgate.stats import binom_cdf, binom_pmf, share

    def exact(x: int, n: int, p: float) -> float:
        return 0.0 if x < 0 else 1.0 if x >= n else min(1.0, math.fsum(binom_pmf(k, n, p) for k in range(x + 1)))

    rng = random.Random(11)
    for _ in range(3000):
        n = rng.choice([1, 2, 3, 7, 30, 100, 1000, 5000, rng.randint(1, 3000)])
        p = rng.choice([1e-9, 1e-4, 0.01, 0.05, 0.3, 0.5, 0.9, 0.99, 0.9999, rng.random()])
        sd = math.sqrt(n * p * (1 - p)) + 1
        x = int(min(n, max(-1, rng.gauss(n * p, sd * rng.choice([0.5, 2, 5, 12])))))
        want, got = exact(x, n, p), binom_cdf(x, n, p)
        assert abs(want - got) <= 1e-10 or abs(want - got) <= 1e-8 * want, (x, n, p, want, got)
        upper = math.fsum(binom_pmf(k, n, p) for k in range(max(0, x), n + 1))  # the max side's p-value
        assert abs(upper - (1.0 - binom_cdf(x - 1, n, p))) <= 1e-10, (x, n, p)
    assert binom_cdf(5, 10, 0.0) == 1.0 and binom_cdf(5, 10, 1.0) == 0.0 and binom_cdf(10, 10, 0.3) == 1.0
    calls = []
    monkeypatch.setattr(share, "binom_pmf", lambda k, n, p: calls.append(k) or binom_pmf(k, n, p))
    assert binom_cdf(810_500, 1_000_000, 0.81) == pytest.approx(0.89901730, abs=1e-7)
    assert binom_cdf(800_000, 1_000_000, 0.81) < 1e-140
    assert len(calls) < 100  # each term from the one before, a term computed afresh every 256: not 1.6M of them
