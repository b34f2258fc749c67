"""How often the gate's regression rules fire, by true drop in pass probability.

    .venv/bin/python benchmarks/bench_gate_soundness.py [--cases 300] [--repeat 3] [--trials 200]

Prints the false-alarm rate (drop 0) and the power curve for a gate of three
max_drop rules (all cases and two tag slices, Holm-corrected) at confidence 0.95.
Targets: false alarms ≤ 5 %; at a 10-point drop with 300 cases and repeat 3, ≥ 80 %.
"""

from __future__ import annotations

import argparse

from evalgate._simulate import alarm_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--max-drop", type=float, default=0.02)
    args = ap.parse_args()
    print(f"{args.trials} simulated baseline/candidate pairs, {args.cases} cases, repeat {args.repeat}, "
          f"max_drop {args.max_drop}, confidence 0.95")
    print(f"{'true drop':>10}  {'gate failed':>11}")
    for drop in (0.0, 0.02, 0.04, 0.06, 0.08, 0.10, 0.15):
        rate = alarm_rate(drop, cases=args.cases, repeat=args.repeat, trials=args.trials, max_drop=args.max_drop)
        print(f"{drop:>10.0%}  {rate:>11.1%}")
    null0 = alarm_rate(0.0, cases=args.cases, repeat=args.repeat, trials=args.trials, max_drop=0.0)
    print(f"false alarms with max_drop 0: {null0:.1%} (target ≤ 5 %)")


if __name__ == "__main__":
    main()
