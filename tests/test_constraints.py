"""constraints.txt holds the versions the figures and CI are measured with, inside pyproject's ranges.

A figure can move with a dependency's version (openai 2 against 3: seven times the CPU per pipeline turn;
benchmarks/README.md, "Dependencies and reproducibility"), so CI installs from constraints.txt and fails here
when what it runs with is anything else.
"""

from __future__ import annotations

import sys
import tomllib

from conftest import REPO
from packaging.requirements import Requirement

sys.path.insert(0, str(REPO / "benchmarks"))
import versions

FIX = ("reinstall with `.venv/bin/pip install -q -e '.[test,ray]' -c constraints.txt`, or, updating a dependency on "
       "purpose, regenerate constraints.txt and re-measure (benchmarks/README.md, 'Dependencies and reproducibility')")


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["test"] + extras["ray"]]


def test_every_declared_dependency_is_pinned_inside_its_range() -> None:
    pins = versions.read_constraints()
    assert pins, "constraints.txt is missing or pins nothing"
    outside = [f"{r.name}: {pins.get(versions.canonical(r.name), 'not pinned')} (pyproject: {r.specifier or 'any'})"
               for r in _declared()
               if pins.get(versions.canonical(r.name)) is None or not r.specifier.contains(pins[versions.canonical(r.name)])]
    assert not outside, "constraints.txt disagrees with pyproject.toml: " + "; ".join(outside)


def test_installed_versions_are_the_constraints() -> None:
    differ = versions.drift()
    assert not differ, ("installed versions differ from constraints.txt: "
                        + ", ".join(f"{d.name} {d.installed or 'not installed'} (pinned {d.pinned})" for d in differ)
                        + f"; {FIX}")


def test_a_version_other_than_the_pin_is_named() -> None:
    pins = versions.read_constraints()
    differ = versions.drift({**pins, "duckdb": "0.0.1"})
    assert [(d.name, d.pinned) for d in differ] == [("duckdb", "0.0.1")]
    assert [d.name for d in versions.drift({k: v for k, v in pins.items() if k != "duckdb"})] == ["duckdb"]
