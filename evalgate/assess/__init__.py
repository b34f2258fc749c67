"""What the runs show, decided as one family: regressions, drops and shares.

Pure: snapshots and counts in, an ``Assessment`` out (the gate turns it into
rule results, the reporters into words). ``no_new_failures`` works in three
steps:

1. **Choose** (``screen``): the cases tested are the paired cases that failed
   at least once in this run, chosen on this run alone, never on the history
   they are tested against; the family corrects for all of them.
2. **Re-run**: each tested case that did worse than its history and that
   failing again could decide, or that passed every time before, is re-run
   within the same ``evalgate run``, in rounds, until it passes once or has
   failed its planned number of times; cases that did better are re-run once
   beside them, as probes of how much the system varies.
3. **Decide** (``decide``): a case is a regression when its re-runs are
   significantly worse than its history (Fisher's exact test, judged in one
   family with every other statistical rule), or, when the history is too
   short for that, when nothing varies (``variation``: every *other* case
   that ran twice gave the same outcome and answer each time, as a
   deterministic system does), it passed every time before and now fails
   every time with the same answer. Otherwise it is *flaky* (it passed again
   when re-run) or *inconclusive* (it failed every re-run, but the evidence
   is too thin), named with what would decide it.
"""

from __future__ import annotations

from .decide import ShareData, assess
from .records import NNF, Assessment, CaseVerdict
from .screen import (
                     PROBES,
                     failed_now,
                     has_nnf,
                     probes,
                     screen,
                     statistical_rules,
                     to_confirm,
)
from .variation import Variation, variation

__all__ = ["NNF", "PROBES", "Assessment", "CaseVerdict", "ShareData", "Variation", "assess",
           "failed_now", "has_nnf", "probes", "screen", "statistical_rules", "to_confirm",
           "variation"]
