"""The gate on a nondeterministic system, through the real product: seeded trials, each a fresh store.

A python target passes each case with a known probability, drawn afresh on
every run (seeded by run, case and repeat); a baseline history of stored
runs, then a candidate run, judged by the realistic gate of
``evalgate._simulate.GATE``. ``benchmarks/bench_gate_soundness.py`` runs the
full tables; these are small cells of it, sized for two cores.
"""

from __future__ import annotations

import pytest

from evalgate._simulate import trial


def test_nothing_changed_rarely_fails_the_whole_gate() -> None:
    """Beta(4, 1) pass probabilities, canned answers: 16 unchanged releases, at most one alarm."""
    cells = [dict(cases=60, repeat=1, history=1), dict(cases=60, repeat=1, history=4), dict(cases=40, repeat=3, history=3)]
    alarms = []
    for cell in cells:
        for seed in range(5 if cell["repeat"] == 1 else 6):
            t = trial(seed=seed, **cell)
            assert t.exit_code in (0, 1), t
            if t.exit_code == 1:
                alarms.append((cell, seed, t.failed_rules))
    assert len(alarms) <= 1, alarms


def test_a_real_drop_is_caught_and_its_size_reported() -> None:
    """A 25-point drop on 120 cases against 4 stored runs: the drop rule fires every time."""
    for seed in range(3):
        t = trial(cases=120, repeat=1, history=4, scenario="drop", drop=0.25, seed=seed)
        assert t.exit_code == 1 and t.drop_rule_failed, t
        assert t.detectable is not None and 0.02 < t.detectable < 0.25


def test_broken_cases_are_confirmed_and_only_they_are_named() -> None:
    """70 % of cases always pass; three of them break. Re-run to confirm, only those three are regressions."""
    for seed in range(3):
        t = trial(cases=90, repeat=2, history=3, profile="steady", scenario="break3", seed=seed)
        assert t.exit_code == 1 and "no new failures" in t.failed_rules, t
        assert sorted(t.regressions) == sorted(t.truly_broken) and len(t.truly_broken) == 3
        assert t.confirm_runs >= 3 * 3  # each broken case failed every one of its confirmation runs


def test_history_names_the_flaky_cases() -> None:
    t = trial(cases=60, repeat=1, history=6, seed=4)
    named = set(t.flaky) & set(t.nondeterministic)
    assert set(t.mixed) <= set(t.flaky) | set(t.regressions)  # every case seen both ways is named
    assert len(named) >= 0.5 * len(t.nondeterministic)


@pytest.mark.parametrize("vary", [False, True])
def test_one_baseline_run_cannot_convict_a_noisy_case(vary: bool) -> None:
    """With one stored run and answers that vary (or not), a flip is inconclusive or flaky, never a regression."""
    for seed in range(3):
        t = trial(cases=60, repeat=1, history=1, seed=seed, vary=vary)
        assert t.regressions == [] and "no new failures" not in t.failed_rules, t
