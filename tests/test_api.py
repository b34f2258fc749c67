"""The public API and the cost of starting up."""

from __future__ import annotations

import subprocess
import sys

import evalgate

HEAVY = ("openai", "pandas", "pyarrow", "duckdb", "jinja2", "numpy", "httpx", "pydantic", "yaml", "rich.progress",
         "bm25s", "tiktoken", "Stemmer")


def test_every_exported_name_resolves() -> None:
    for name in evalgate.__all__:
        assert getattr(evalgate, name) is not None, name
    assert set(evalgate.__all__) == set(evalgate._LAZY) | {"__version__"}  # nothing lazy is left unexported


def test_help_leaves_heavy_modules_unimported() -> None:
    code = ("import sys\nfrom evalgate.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0, e.code\nprint(','.join(sorted(m for m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.strip().splitlines()[-1].split(","))
    assert "Usage: evalgate" in out
    assert not [m for m in HEAVY if m in loaded], [m for m in HEAVY if m in loaded]


def test_python_dash_m_and_version() -> None:
    out = subprocess.run([sys.executable, "-m", "evalgate", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"evalgate {evalgate.__version__}"


def test_every_command_has_help() -> None:
    for command in ("run", "validate", "show", "history", "scorers"):
        out = subprocess.run([sys.executable, "-m", "evalgate", command, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "Usage: evalgate " + command in out.stdout, command
    run_help = subprocess.run([sys.executable, "-m", "evalgate", "run", "--help"], capture_output=True, text=True).stdout
    assert "3  the run could not be trusted" in run_help
