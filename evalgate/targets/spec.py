"""What a suite writes under ``target:``, validated; and the resolved ``TargetConfig``.

Each kind's model is registered with its target (``@target("http", spec=HttpTargetSpec)``),
so a plugin's kind is checked at its file:line like a built-in one.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


class HttpTargetSpec(_Model):
    http: str
    """URL that takes the request as a JSON POST and answers with a trace."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra headers; ${VAR} is read from the environment (never stored)."""

    @field_validator("http")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"https?://", value):
            raise ValueError("expected an http:// or https:// URL")
        return value


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
