"""Suites: a YAML file → a validated ``Suite`` with its cases, target and gate.

``spec`` holds what a suite file says as written; ``loader`` turns it into the
runnable ``Suite``. The cases themselves live in ``evalgate.cases``, dataset
files in ``evalgate.datasets``, the gate's rules in ``evalgate.policy``.
"""

from __future__ import annotations

from ..cases import (
           CRITICAL_TAG,
           Case,
           CaseSpec,
           Turn,
           TurnSpec,
           correction_to_expect,
           derive_case_id,
)
from ..policy import GateSpec, Rule, Where
from ..targets.spec import TargetConfig
from .loader import Suite, discover, is_default, load_suite, parse_target
from .spec import (
           SUITE_VERSION,
           CasesFile,
           PermissionsSpec,
           RedactSpec,
           ScorerAlias,
           SuiteSpec,
           TracesSource,
)

__all__ = ["CRITICAL_TAG", "SUITE_VERSION", "Case", "CaseSpec", "CasesFile", "GateSpec", "LoadNotes", "PermissionsSpec",
           "RedactSpec", "Rule", "ScorerAlias", "Suite", "SuiteSpec", "TargetConfig", "TracesSource", "Turn", "TurnSpec",
           "Where", "correction_to_expect", "derive_case_id", "discover", "is_default", "load_suite", "parse_target"]
