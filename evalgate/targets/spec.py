"""What a suite writes under ``target:``, validated; and the resolved ``TargetConfig``.

Each kind's model is registered with its target (``@target("http", spec=HttpTargetSpec)``),
so a plugin's kind is checked at its file:line like a built-in one.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..pipeline.config import PipelineSpec


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PythonTargetSpec(_Model):
    python: str
    """package.module:function, sync or async, called with the request."""

    @field_validator("python")
    @classmethod
    def _ref(cls, value: str) -> str:
        if not re.fullmatch(r"[\w.]+:[\w.]+", value):
            raise ValueError("expected package.module:function")
        return value


RESPONSE_FIELDS = ("output", "route", "context", "tool_calls", "state", "usage", "error", "model", "prompt",
                   "latency_ms", "trace_id")
"""Trace fields a response mapping can fill (``extra`` takes any names)."""


class HttpResponseSpec(_Model):
    """How a service's own answer becomes a trace: a JMESPath expression per trace field.

    A plain-text answer is the output. A server-sent-event stream is read event by event: ``delta`` picks each
    event's text (all of the event's data when it is not JSON), and every other field is read from the last
    event where its expression finds something.
    """

    output: str | None = None
    route: str | None = None
    context: str | None = None
    tool_calls: str | None = None
    state: str | None = None
    usage: str | None = None
    error: str | None = None
    model: str | None = None
    prompt: str | None = None
    latency_ms: str | None = None
    trace_id: str | None = None
    extra: dict[str, str] = Field(default_factory=dict)
    """extra.NAME, for custom scorers."""
    delta: str | None = None
    """Streamed answers: the text each event adds, e.g. choices[0].delta.content."""

    @field_validator(*RESPONSE_FIELDS, "delta")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        if value is not None:
            check_expression(value)
        return value

    @field_validator("extra")
    @classmethod
    def _extra_expressions(cls, value: dict[str, str]) -> dict[str, str]:
        for expression in value.values():
            check_expression(expression)
        return value

    def expressions(self) -> dict[str, str]:
        """Trace field (``extra.NAME`` for extras) → expression, the set ones only."""
        named = {name: getattr(self, name) for name in RESPONSE_FIELDS if getattr(self, name) is not None}
        return named | {f"extra.{name}": expression for name, expression in self.extra.items()}


def check_expression(expression: str) -> None:
    """Compile a JMESPath expression once, so a typo is an error at its line when the suite loads."""
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        jmespath.compile(expression)
    except JMESPathError as exc:
        raise ValueError(f"not a JMESPath expression: {expression!r} ({str(exc).splitlines()[0]})") from None


class HttpTargetSpec(_Model):
    http: str
    """URL; the service's own API may take templates ({{ case_id }}) and ${VAR} from the environment."""
    method: Literal["POST", "PUT", "PATCH", "GET"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra headers; ${VAR} is read from the environment (never stored), {{ ... }} is a template over the request."""
    body: Any = None
    """The service's request body: a mapping, list or string whose strings are templates over the request
    (a string that is one ``{{ expression }}`` keeps the value's type). Absent: the request itself (evalgate's own protocol)."""
    response: HttpResponseSpec | None = None
    """How the answer becomes a trace. Absent: the answer is a trace (evalgate's own protocol)."""

    @field_validator("http")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"(https?://|\{\{|\$\{)", value):
            raise ValueError("expected an http:// or https:// URL")
        check_templates(value)
        return value

    @field_validator("headers")
    @classmethod
    def _header_templates(cls, value: dict[str, str]) -> dict[str, str]:
        for text in value.values():
            check_templates(text)
        return value

    @field_validator("body")
    @classmethod
    def _body_templates(cls, value: Any) -> Any:
        check_templates(value)
        return value


def check_templates(value: Any) -> None:
    """Every string in a value compiles as a sandboxed jinja2 template (errors at the suite's line)."""
    from ..pipeline.config import check_template

    if isinstance(value, str):
        if "{{" in value or "{%" in value:
            check_template(value)
    elif isinstance(value, dict):
        for item in value.values():
            check_templates(item)
    elif isinstance(value, list):
        for item in value:
            check_templates(item)


class CommandTargetSpec(_Model):
    command: list[str]
    """argv of a long-lived process: one request per stdin line, one trace per stdout line."""
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, value: Any) -> Any:
        return shlex.split(value) if isinstance(value, str) else value

    @field_validator("command")
    @classmethod
    def _nonempty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("the command is empty")
        return value


class PipelineTargetSpec(_Model):
    pipeline: PipelineSpec
    """evalgate's reference pipeline, inline (or ``pipeline: FILE.yaml``, read by parse_target)."""




@dataclass(frozen=True)
class TargetConfig:
    """The system under test, resolved: its kind, spec and base folder."""

    kind: str
    """replay, python, http, command, pipeline, or a kind a plugin registers."""
    spec: dict[str, Any]
    base_dir: Path

    def describe(self) -> str:
        if self.kind == "replay":
            return "replay"
        if self.kind == "pipeline":
            return f"pipeline: {self.spec['file']}" if self.spec.get("file") else "pipeline (inline)"
        value = self.spec[self.kind]
        return f"{self.kind}: {' '.join(value) if isinstance(value, list) else value}"


BUILTIN_SPECS: dict[str, type[BaseModel]] = {"python": PythonTargetSpec, "http": HttpTargetSpec,
                                             "command": CommandTargetSpec, "pipeline": PipelineTargetSpec}
"""The built-in kinds' models, known without importing the targets themselves."""
