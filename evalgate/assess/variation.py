"""Whether anything varies from run to run in these versions, and who ran twice to show it."""

from __future__ import annotations

from dataclasses import dataclass

from ..baseline import Snapshot


@dataclass
class Variation:
    """What the runs show about run-to-run variation in these versions."""

    varies: bool
    """Some case gave different outcomes or answers across runs of one version."""
    observed: set[str]
    """Cases that ran at least twice within one version (history, repeats or re-runs)."""
    observed_before_confirming: set[str]
    """The same, from the history and this run's repeats only (no confirmation run)."""

    def steady_for(self, case_id: str) -> bool:
        """Nothing varies, and some *other* case shows it: a case is never its own evidence of determinism."""
        return not self.varies and bool(self.observed - {case_id})

    @property
    def measured(self) -> bool | None:
        """For shares: True (varies), False (measured steady without the re-runs), None (not measured)."""
        if self.varies:
            return True
        return False if self.observed_before_confirming else None


def variation(base: Snapshot | None, cand: Snapshot, confirm: Snapshot | None) -> Variation:
    """Any case of these versions with different outcomes or answers across its runs, and who ran twice."""
    out = Variation(False, set(), set())
    for snap in (base, cand):
        if snap is None:
            continue
        for case_id, c in snap.cases.items():
            if c.judged >= 2:
                out.observed.add(case_id)
                out.observed_before_confirming.add(case_id)
            runs, passed, digests = c.judged, c.passed, set(c.digests)
            if snap is cand and confirm is not None and case_id in confirm.cases:
                more = confirm.cases[case_id]
                runs, passed, digests = runs + more.judged, passed + more.passed, digests | set(more.digests)
                if runs >= 2:
                    out.observed.add(case_id)
            if 0 < passed < runs or len(digests) > 1:
                out.varies = True
    return out
