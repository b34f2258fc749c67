"""``evalgate init``: a starter project that runs, offline, on the first try, or a suite for a system that exists.

Without a system it writes a configuration, a suite, a small reference
pipeline, a document set with one staff-only document, a handful of cases
(multi-turn, a correction, a permission check) and a Python adapter template.
With one (``--http URL``, ``--python module:function``, ``--command ...``) it
writes a suite for that system, with the request template and response
mapping to fill in, a ``.gitignore`` entry for ``.evalgate/`` and a CI
workflow that uses the action. Existing files are never overwritten unless asked.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

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
        dest.write_text(_template(template), encoding="utf-8")
        created.append(rel)
    return {"root": str(root), "created": created, "skipped": skipped,
            "next": ["evalgate run", "evalgate run --html report.html", "evalgate baseline set main"]}


@dataclass(frozen=True)
class System:
    """The system a suite is written for: its kind and how to reach it."""

    kind: Literal["http", "python", "command"]
    value: str

    def check(self) -> None:
        """A usage error for a value that cannot be that kind of target."""
        from .errors import UsageError

        if self.kind == "http" and not re.match(r"https?://[^\s]+$", self.value):
            raise UsageError(f"--http {self.value!r} is not a URL", hint="e.g. --http http://127.0.0.1:8000/v1/chat")
        if self.kind == "python" and not re.fullmatch(r"[\w.]+:[\w.]+", self.value):
            raise UsageError(f"--python {self.value!r} is not module:function", hint="e.g. --python my_app.bot:answer")
        if self.kind == "command" and not self.value.strip():
            raise UsageError("--command is empty", hint="e.g. --command 'python -m my_app.serve_stdio'")


def init_system(root: Path | str, system: System, *, name: str = "service", force: bool = False) -> dict[str, Any]:
    """Write a suite for an existing system, a CI workflow and a ``.gitignore`` entry under ``root``."""
    system.check()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    created: list[str] = []
    skipped: list[str] = []
    has_config = (root / "evalgate.toml").exists() or _pyproject_has_table(root / "pyproject.toml")
    suite_path = f"suites/{name}.yaml"
    describe = {"http": f"the service at {system.value}", "python": f"{system.value}",
                "command": f"the command {system.value}"}[system.kind]
    values = {"kind": system.kind, "name": name, "describe": describe, "url": system.value, "ref": system.value,
              "command": json.dumps(shlex.split(system.value)), "suite_path": suite_path}
    outputs = {"evalgate.toml": _template("evalgate.toml"),
               suite_path: _render("system/suite.yaml.j2", values),
               ".github/workflows/evalgate.yml": _render("system/workflow.yml", values)}
    for rel, text in outputs.items():
        dest = root / rel
        if (dest.exists() or (rel == "evalgate.toml" and has_config)) and not force:
            skipped.append(rel)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
        created.append(rel)
    if _ignore(root / ".gitignore", ".evalgate/"):
        created.append(".gitignore (.evalgate/)")
    fill_in = f"fill in the places marked TODO in {suite_path}"
    return {"root": str(root), "created": created, "skipped": skipped,
            "next": [fill_in, "evalgate validate", "evalgate run", "evalgate baseline set main"]}


def _template(name: str) -> str:
    return files("evalgate").joinpath("templates", "init", name).read_text(encoding="utf-8")


def _render(name: str, values: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    return env.from_string(_template(name)).render(**values)


def _ignore(path: Path, entry: str) -> bool:
    """Add ``entry`` to a .gitignore unless it is there; True when it was added."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if any(line.strip() in (entry, entry.rstrip("/"), "/" + entry) for line in text.splitlines()):
        return False
    path.write_text(text + ("" if not text or text.endswith("\n") else "\n") + entry + "\n", encoding="utf-8")
    return True


def _pyproject_has_table(path: Path) -> bool:
    if not path.is_file():
        return False
    import tomllib

    try:
        return "evalgate" in tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {})
    except tomllib.TOMLDecodeError:
        return False
