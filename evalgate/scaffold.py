"""``evalgate init``: a starter project that runs, offline, on the first try.

It writes a configuration, a suite, a small reference pipeline, a document set
with one staff-only document, a handful of cases (multi-turn, a correction, a
permission check) and a Python adapter template for the user's own system.
Existing files are never overwritten unless asked.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

# template file → where it goes in the project
FILES = {
    "evalgate.toml": "evalgate.toml",
    "starter-suite.yaml": "suites/starter.yaml",
    "starter-pipeline.yaml": "pipelines/starter.yaml",
    "docs.jsonl": "datasets/docs.jsonl",
    "cases.yaml": "datasets/cases.yaml",
    "my_target.py": "my_target.py",
}


def init_project(root: Path | str, *, force: bool = False) -> dict[str, Any]:
    """Write the starter files under ``root``; returns what was created and what was left alone."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    created: list[str] = []
    skipped: list[str] = []
    has_config = (root / "evalgate.toml").exists() or _pyproject_has_table(root / "pyproject.toml")
    for template, rel in FILES.items():
        dest = root / rel
        if template == "evalgate.toml" and has_config and not force:
            skipped.append(rel)
            continue
        if dest.exists() and not force:
            skipped.append(rel)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(files("evalgate").joinpath("templates", "init", template).read_text(encoding="utf-8"),
                        encoding="utf-8")
        created.append(rel)
    return {"root": str(root), "created": created, "skipped": skipped,
            "next": ["evalgate run", "evalgate run --html report.html", "evalgate baseline set main"]}


def _pyproject_has_table(path: Path) -> bool:
    if not path.is_file():
        return False
    import tomllib

    try:
        return "evalgate" in tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {})
    except tomllib.TOMLDecodeError:
        return False
