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
    import types

    public = {k for k, v in vars(evalgate).items() if not k.startswith("_") and not isinstance(v, types.ModuleType)}
    public -= {"annotations", "TYPE_CHECKING", "Any"}  # the module's own typing imports
    assert public <= set(evalgate.__all__), public - set(evalgate.__all__)


def test_everything_the_cli_calls_is_public() -> None:
    """The CLI only translates: each library function it calls from evalgate.api is in evalgate.__all__."""
    import ast
    from pathlib import Path

    called = set()
    for path in (Path(evalgate.__file__).parent / "cli").glob("*.py"):
        tree = ast.parse(path.read_text())
        called |= {a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                   and node.module in ("api", "intake") and node.level == 2 for a in node.names}
    assert called and called <= set(evalgate.__all__), called - set(evalgate.__all__)


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


def _commands() -> list[list[str]]:
    """Every command and subcommand of the CLI, walked from typer's own tree."""
    import typer.main

    from evalgate.cli import app

    def walk(cmd, path):
        yield path
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    return [p for p in walk(typer.main.get_command(app), []) if p]


def test_every_command_has_help() -> None:
    import io
    from contextlib import redirect_stdout

    from evalgate.cli import main

    commands = _commands()
    assert len(commands) >= 20 and ["baseline", "export"] in commands and ["feedback", "promote"] in commands
    for command in commands:
        out = io.StringIO()
        with redirect_stdout(out):
            try:
                main([*command, "--help"])
            except SystemExit as exc:
                assert exc.code == 0, command
        assert "Usage: evalgate " + " ".join(command) in out.getvalue(), command
        assert len(out.getvalue().splitlines()) > 3, command  # says what it does and takes
    run_help = subprocess.run([sys.executable, "-m", "evalgate", "run", "--help"], capture_output=True, text=True).stdout
    assert "3  the run could not be trusted" in run_help
