"""Simulated baseline/candidate pairs, to measure how often the gate's regression rules fire.

Used by the soundness test and ``benchmarks/bench_gate_soundness.py``: cases
pass with known, varied probabilities; the candidate's are lower by ``drop``.
"""

from __future__ import annotations

import random

from .stats import holm, paired_drop


def alarm_rate(drop: float, *, cases: int = 300, repeat: int = 3, trials: int = 200, max_drop: float = 0.02,
               confidence: float = 0.95, seed: int = 7) -> float:
    """Share of trials in which a gate of three rules (all cases, two tag slices) fails."""
    rng = random.Random(seed)
    fired = 0
    for _ in range(trials):
        probs = [rng.uniform(0.5, 0.99) for _ in range(cases)]
        before = [sum(rng.random() < p for _ in range(repeat)) / repeat for p in probs]
        after = [sum(rng.random() < max(p - drop, 0.0) for _ in range(repeat)) / repeat for p in probs]
        pairs = [(f"c{i}", b, a) for i, (b, a) in enumerate(zip(before, after))]
        tests = [paired_drop("pass_rate", pairs, max_drop, confidence),
                 paired_drop("pass_rate", pairs[0::2], max_drop, confidence),
                 paired_drop("pass_rate", pairs[1::2], max_drop, confidence)]
        holm(tests)
        fired += any(t.fails for t in tests)
    return fired / trials
