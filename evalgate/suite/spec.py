"""What a suite file says, as written: pydantic models with extra="forbid" (a misspelt key is an error at its line)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..cases import _Model, run_as_label
from ..errors import did_you_mean
from ..policy import GateSpec, _split_tags
from ..recovery.operators import OPERATORS
from ..traces import User
from .gold import DEFAULT_KEY, key_path_problem

SUITE_VERSION = 1


class CasesFile(_Model):
    """Cases read from a dataset file (YAML list, JSONL or CSV)."""

    file: str
    tags: list[str] = Field(default_factory=list)
    """Tags added to every case of the file."""

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        return _split_tags(value)


class GoldSpec(_Model):
    """Per-turn expectations, tags and meta from a file, joined to the recorded turns on a key."""

    file: str
    """A YAML list, JSONL or CSV file of rows {key, expect, tags, meta}, relative to the suite."""
    key: list[str] = Field(default_factory=lambda: list(DEFAULT_KEY))
    """The trace fields a turn's key is made of (dotted paths: extra.app_turn_id, user.id; several joined with
    +); a row's key gives their values, separated by ':' (s-9:2) or as a list."""

    @field_validator("key", mode="before")
    @classmethod
    def _key(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [p.strip() for p in value.split("+")]
        return value

    @field_validator("key")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("key names at least one trace field, e.g. extra.app_turn_id or session_id+turn")
        for path in value:
            problem = key_path_problem(path)
            if problem is not None:
                raise ValueError(problem)
        if len(set(value)) < len(value):
            raise ValueError("key names a field twice")
        return value


class TracesSource(_Model):
    """Recorded sessions (native JSONL, or OTLP JSON converted on load) replayed as cases."""

    file: str
    format: Literal["auto", "native", "otlp"] = "auto"
    """auto: OTLP when the name ends in .otlp.json(l) or the file holds resourceSpans, else native."""
    mapping: str | dict[str, Any] | None = None
    """OTLP only: where route, state, user groups, ... live in your attributes (inline, or a YAML file)."""
    tags: list[str] = Field(default_factory=list)
    expect: dict[str, Any] = Field(default_factory=dict)
    """Expectations applied to every turn of these sessions."""
    gold: GoldSpec | None = None
    """Each turn's own expectations, tags and meta from a file joined on a key: a path (joined on session_id+turn)
    or {file, key}."""

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        return _split_tags(value)

    @field_validator("gold", mode="before")
    @classmethod
    def _gold(cls, value: Any) -> Any:
        return {"file": value} if isinstance(value, str) else value


class RedactSpec(_Model):
    """What is redacted from recorded traces before they are run, stored or reported."""

    detectors: list[str] | None = None
    """Built-in detectors: email, phone, card, api_key, bearer (default: all)."""
    patterns: dict[str, str] = Field(default_factory=dict)
    """Your own: name → regex; matches become <NAME_n>."""
    python: str | None = None
    """module:function(text) returning the (kind, value) pairs it finds."""

    @field_validator("python")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[\w.]+:[\w.]+", value):
            raise ValueError("expected package.module:function")
        return value


class ScorerAlias(_Model):
    """A named scorer configuration: ``use`` a scorer with preset arguments."""

    use: str
    """A registered scorer name, an entry point, or package.module:function."""
    args: dict[str, Any] = Field(default_factory=dict)


class PermissionsSpec(_Model):
    """Where the truth about who may read a document comes from."""

    file: str | None = None
    """A file of document ids → groups (YAML/JSON mapping, JSONL or CSV)."""
    python: str | None = None
    """module:function(user, doc_id) -> bool."""

    @model_validator(mode="after")
    def _one(self) -> PermissionsSpec:
        if (self.file is None) == (self.python is None):
            raise ValueError("permissions take exactly one of: file (ids → groups) or python (module:function)")
        if self.python is not None and not re.fullmatch(r"[\w.]+:[\w.]+", self.python):
            raise ValueError("expected package.module:function")
        return self


class DocumentsSpec(_Model):
    """The document set, and how its documents say who may read them."""

    file: str
    """A .jsonl file or a folder of .md files (front matter), relative to the suite."""
    acl_field: str = Field(default="groups", min_length=1)
    """The key (JSONL) or front-matter field (Markdown) listing the groups that may read a document."""
    unlisted: Literal["private", "public"] | None = None
    """What a document without that field means: private (readable by nobody) or public (by everyone).
    Unset, such a document is an error at its line while the set decides who may read what."""

    @field_validator("acl_field")
    @classmethod
    def _acl_field(cls, value: str) -> str:
        if value in ("id", "title", "text", "content"):
            raise ValueError(f"acl_field '{value}' is the document's {value}, not who may read it")
        return value


class UsersSpec(_Model):
    """Where a user's groups come from when a case or recorded trace gives only their id."""

    file: str | None = None
    """A file of user ids → groups (YAML/JSON mapping, JSONL {id, groups}, or CSV id,groups with ; or |)."""
    python: str | None = None
    """module:function(user_id) -> list[str] (None: a user it does not know)."""

    @model_validator(mode="after")
    def _one(self) -> UsersSpec:
        if (self.file is None) == (self.python is None):
            raise ValueError("users take exactly one of: file (user ids → groups) or python (module:function)")
        if self.python is not None and not re.fullmatch(r"[\w.]+:[\w.]+", self.python):
            raise ValueError("expected package.module:function")
        return self


class VariantsSpec(_Model):
    """Recovery variants: conversations derived from each written one, the ways a real user strays."""

    operators: list[str] = Field(default_factory=lambda: list(OPERATORS))
    """Which operators to apply (default all): confirmation, correction, side_question, leave_and_return, repeat, typo."""
    per_operator: int = Field(1, ge=1, le=20)
    """Variants per case and operator, at most (fewer when the case offers fewer places to apply it)."""
    seed: int = 0
    """Changing the seed draws other variants; the same seed always draws the same ones."""
    tags: list[str] | None = None
    """Only cases with any of these tags get variants (default: every written case)."""
    questions: list[str] | None = None
    """The side questions to ask (default: a few generic ones); write ones your system should answer."""
    carry_state: bool = True
    """leave_and_return: the resumed session starts from the state the system last returned (false: the case's
    starting state, for a system that must restore its workflow itself)."""

    @field_validator("operators")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in OPERATORS:
                hint = did_you_mean(name, OPERATORS)
                raise ValueError(f"unknown variant operator '{name}'" + (f" ({hint})" if hint else "")
                                 + f"; operators: {', '.join(OPERATORS)}")
        if not value:
            raise ValueError("operators is empty: name at least one, or leave it out for all")
        return list(dict.fromkeys(value))

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        return _split_tags(value)


UPSTREAM_NAME = re.compile(r"[a-z][a-z0-9_]*")
"""An upstream's name: it becomes EVALGATE_UPSTREAM_<NAME> in the target's environment."""


class UpstreamSpec(_Model):
    """An HTTP API the system under test calls (its model endpoint, a search service), served by evalgate's
    record/replay proxy on 127.0.0.1 during a run."""

    url: str = Field(min_length=1)
    """The real upstream's base URL; ``${VAR}`` is read from the environment when the run starts."""
    openai: bool = False
    """An OpenAI-compatible endpoint: python and command targets also get OPENAI_BASE_URL, and requests are
    matched on their JSON body without volatile fields (stream, stream_options, user, metadata)."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Added to every call that reaches the upstream (``${VAR}`` from the environment); never recorded, stored or
    printed, and scrubbed from errors and answers."""
    port: int = Field(0, ge=0, le=65535)
    """The proxy's port for this upstream on 127.0.0.1 (0: any free one). A service started before the run needs a
    fixed one to point its base URL at."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"(https?://|\$\{)", value):
            raise ValueError("url is an http:// or https:// URL (or ${VAR} naming one)")
        return value


class RecordingSpec(_Model):
    """How the upstream proxy records and replays calls."""

    mode: Literal["record", "replay", "live"] | None = None
    """record (pass through, keep every call), replay (serve recorded calls) or live (pass through, keep nothing).
    Default: replay when the recordings file exists, else record; ``run --upstreams`` overrides it."""
    on_change: Literal["live", "fail"] = "live"
    """In replay, a call whose request changed since it was recorded: goes live (reported), or fails its turn."""
    file: str | None = None
    """The recordings file, relative to the project root (default .evalgate/recordings/<suite name>.jsonl)."""


class SuiteSpec(_Model):
    """A suite file, as written."""

    version: int = SUITE_VERSION
    name: str | None = None
    description: str | None = None
    default: bool = True
    """False keeps the suite out of a bare ``evalgate run``."""
    target: Any = None
    cases: list[Any] = Field(default_factory=list)
    traces: list[Any] = Field(default_factory=list)
    expect: dict[str, Any] = Field(default_factory=dict)
    """Expectations applied to every turn of every case."""
    scorers: dict[str, ScorerAlias] = Field(default_factory=dict)
    repeat: int = Field(1, ge=1, le=1000)
    concurrency: int | None = Field(None, ge=1, le=10_000)
    timeout_s: float | None = Field(None, gt=0)
    baseline: str | None = None
    documents: DocumentsSpec | None = None
    """The document set the system retrieves from: a path (a .jsonl file or a folder of .md files), or
    {file, acl_field, unlisted}."""
    permissions: PermissionsSpec | None = None
    """Who may read each document, when not the document set's own groups."""
    users: UsersSpec | None = None
    """Users' groups, for a case or recorded trace whose user has only an id."""
    run_as: list[str | User] | None = None
    """Replay every case as each of these users (a group name, or {id, groups}); ids get ``@<who>``."""
    redact: bool | RedactSpec = True
    """Redaction of recorded traces (on by default with every built-in detector; false turns it off)."""
    variants: VariantsSpec | None = None
    """Recovery variants of the written cases (``<case>~<operator>-<n>``), scored on reaching the same end."""
    gate: GateSpec | None = None
    upstreams: dict[str, UpstreamSpec] = Field(default_factory=dict)
    """HTTP APIs the system under test calls, each served by evalgate's record/replay proxy during a run."""
    recording: RecordingSpec | None = None
    """How the upstream proxy records and replays: mode, on_change, file."""

    @field_validator("documents", mode="before")
    @classmethod
    def _documents(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"file": value}
        if value is not None and not isinstance(value, dict):
            raise ValueError("documents is a path (docs.jsonl, or a folder of .md files) or "
                             "{file: PATH, acl_field: groups, unlisted: private | public}")
        return value

    @field_validator("run_as")
    @classmethod
    def _run_as(cls, value: list[str | User] | None) -> list[str | User] | None:
        if value is not None:
            if not value:
                raise ValueError("run_as needs at least one group name or user")
            labels = [run_as_label(v) for v in value]
            dup = next((x for x in labels if labels.count(x) > 1), None)
            if dup is not None:
                raise ValueError(f"run_as names '{dup}' twice")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != SUITE_VERSION:
            raise ValueError(f"suite format version {value} is not one this evalgate reads (it reads {SUITE_VERSION})")
        return value
