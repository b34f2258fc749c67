"""What every command shares: the typer app, common options, the console, JSON output."""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from typing import Annotated, Any, Optional

import typer

app = typer.Typer(
    name="evalgate",
    help="Evaluate an AI system (routing, context, state, output) on suites and recorded traces; "
         "store every run in DuckDB and gate releases on the results.",
    rich_markup_mode=None,
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DbOption = Annotated[Optional[str], typer.Option("--db", help="Store path (default: .evalgate/evalgate.duckdb, or EVALGATE_DB).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of the terminal view.")]


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_WORKFLOW_COMMAND = re.compile(r"(^|\n)((?:\x1b\[[0-9;]*m)*)::")


def _controls_escaped(text: str) -> str:
    """Control characters shown escaped: from a target they could recolour, retitle or write to the clipboard."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


@functools.cache
def _safe_console_class() -> Any:
    from rich.console import Console
    from rich.segment import Segment

    class SafeConsole(Console):
        """A console whose text cannot drive the terminal: only its own styles reach it as escape codes."""

        def _render_buffer(self, buffer: Any) -> str:
            clean = (seg if seg.control else Segment(_controls_escaped(seg.text), seg.style) for seg in buffer)
            # no printed line may start a GitHub workflow command (::set-output, ::add-mask, ...)
            return _WORKFLOW_COMMAND.sub("\\1\\2:\u200b:", super()._render_buffer(clean))

    return SafeConsole


def _console(stderr: bool = False) -> Any:
    stream = sys.stderr if stderr else sys.stdout
    # piped output is read in files and CI logs, not an 80-column terminal
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    console = _safe_console_class()(stderr=stderr, highlight=False, soft_wrap=False, width=width)

    def reader_left() -> None:  # rich would exit 1 here; a closed pipe is not a failed gate
        console.quiet = True
        _stdout_closed()

    console.on_broken_pipe = reader_left
    return console


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out = [t for v in values for t in v.replace(" ", ",").split(",") if t]
    return out or None


def _store(db: str | None) -> Any:
    from ..config import find_config
    from ..store import Store

    return Store(db or find_config().store)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _stdout_closed() -> None:
    """The reader of stdout went away (a closed pipe): send what is left nowhere, quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file descriptor (tests, embedding)
        pass
