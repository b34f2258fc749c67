"""Cases and turns: as written (``CaseSpec``, ``TurnSpec``) and ready to run (``Case``, ``Turn``: scorers bound,
ids stable, derived from user and inputs only), run-as copies, and a feedback correction turned into a turn's
expectations."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .policy import _split_tags
from .recovery.simulate import SimulateSpec, Simulation
from .scorers import BoundScorer, Score
from .traces import Trace, User


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TurnSpec(_Model):
    """One user message and what should happen."""

    input: str
    """The user's message."""
    expect: dict[str, Any] = Field(default_factory=dict)
    """Scorer name → arguments, e.g. {route: refunds, output: {contains: ["5521"]}}."""
    resume: bool = False
    """The user left and comes back with this message: a new session, no history (the request says ``resumed``)."""
    tags: list[str] = Field(default_factory=list)
    """The turn's own tags: gate rules slice on them with where: {turn_tags: [...]}."""

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        return _split_tags(value)


class CaseSpec(_Model):
    """A conversation, as written in a suite or dataset file."""

    id: str | None = None
    """Stable id; derived from the user and inputs when absent."""
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    user: User = Field(default_factory=User)
    state: dict[str, Any] = Field(default_factory=dict)
    """Conversation state before the first turn."""
    turns: list[TurnSpec] | None = None
    input: str | None = None
    """Single-turn shorthand for ``turns: [{input, expect}]``."""
    expect: dict[str, Any] | None = None
    """With ``input``: that turn's expectations; with ``simulate``: every simulated turn's."""
    simulate: SimulateSpec | None = None
    """A goal instead of a script: a simulated user plays the conversation (see ``recovery.simulate``)."""
    variant_of: str | None = None
    """Groups variants of one conversation."""
    meta: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    """The case's own fields (locale, tier, difficulty, ...): gate rules slice on them with where: {meta: ...}."""

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        return _split_tags(value)

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _one_form(self) -> CaseSpec:
        forms = [k for k in ("turns", "input", "simulate") if getattr(self, k) is not None]
        if not forms:
            raise ValueError("a case needs 'turns' (a list of {input, expect}), a single 'input', or 'simulate' (a goal)")
        if len(forms) > 1:
            raise ValueError(f"give one of 'turns', 'input' (single-turn shorthand) or 'simulate', not {' and '.join(forms)}")
        if self.turns is not None and not self.turns:
            raise ValueError("'turns' is empty: a case needs at least one turn")
        if self.expect is not None and self.turns is not None:
            raise ValueError("'expect' at case level goes with 'input' or 'simulate'; put it on each turn instead")
        if self.turns and self.turns[0].resume:
            raise ValueError("the first turn cannot resume: 'resume: true' marks a later turn where the user comes back")
        return self

    def turn_specs(self) -> list[TurnSpec]:
        if self.simulate is not None:
            return []
        if self.turns is not None:
            return self.turns
        return [TurnSpec(input=self.input or "", expect=self.expect or {})]


CRITICAL_TAG = "critical"


@dataclass(slots=True)
class Turn:
    """One turn, ready to run: the input and the bound checks."""

    input: str
    checks: list[BoundScorer]
    expect: dict[str, Any]
    recorded: Trace | None = None
    resume: bool = False
    """The turn opens a new session: no history; the state is the one the system last returned, unless ``fresh``."""
    fresh: bool = False
    """With ``resume``: the new session starts from the case's starting state, not the system's last one."""
    tags: tuple[str, ...] = ()
    """The turn's own tags (written, or from a gold file), stored with the turn for slicing."""


@dataclass(slots=True)
class Case:
    """A conversation, ready to run."""

    id: str
    seq: int
    turns: list[Turn]
    user: User
    state: dict[str, Any]
    tags: tuple[str, ...]
    source: str
    """file:line where the case was defined (or recorded)."""
    description: str | None = None
    variant_of: str | None = None
    derived_id: bool = False
    session_id: str | None = None
    """The recorded session this case replays, if any."""
    meta: dict[str, Any] = field(default_factory=dict)
    """The case's own fields, for slicing."""
    simulation: Simulation | None = None
    """A simulated user plays the turns (``turns`` is empty)."""

    @property
    def critical(self) -> bool:
        return CRITICAL_TAG in self.tags


def run_as_label(who: str | User) -> str:
    """How a run-as identity appears in case ids: the group name, or the user's id."""
    return who if isinstance(who, str) else who.id


def run_as_user(who: str | User) -> User:
    """A group name runs as a user of that name in that one group."""
    return User(id=who, groups=[who]) if isinstance(who, str) else who


def expand_run_as(case: Case, users: Sequence[User], seq0: int) -> list[Case]:
    """One copy of the case per run-as user: id ``<case>@<user>``, that user in every request."""
    out = []
    for i, user in enumerate(users):
        out.append(dataclasses.replace(case, id=f"{case.id}@{user.id}", seq=seq0 + i, user=user,
                                       variant_of=f"{case.variant_of}@{user.id}" if case.variant_of else None,
                                       tags=tuple(dict.fromkeys([*case.tags, f"run-as:{user.id}"]))))
    return out


def correction_to_expect(c: Any) -> dict[str, Any]:
    """A feedback correction → that turn's expectations (scorer → arguments)."""
    expect: dict[str, Any] = {}
    if c.route is not None:
        expect["route"] = c.route
    if c.output is not None:
        expect["output"] = {"equals": c.output} if isinstance(c.output, str) else c.output
    if c.context is not None:
        expect["context"] = {"must_include": c.context} if isinstance(c.context, list) else c.context
    if c.state is not None:
        expect["state"] = c.state
    if c.tool_calls is not None:
        expect["tool_calls"] = c.tool_calls
    return expect


def _error_check(name: str, message: str) -> BoundScorer:
    def check(ctx: Any) -> Score:
        return Score(False, None, message, message)

    return BoundScorer(name, check, False)


def _add_tag(tags: list[str], tag: str) -> None:
    if tag not in tags:
        tags.append(tag)


def _selected(case_tags: Sequence[str], wanted: Sequence[str] | None) -> bool:
    return not wanted or any(t in case_tags for t in wanted)


def _merge_checks(base: list[BoundScorer], more: list[BoundScorer]) -> list[BoundScorer]:
    """Turn-level checks replace suite-level checks of the same scorer name."""
    if not more:
        return base
    names = {c.name for c in more}
    return [c for c in base if c.name not in names] + more


def derive_case_id(user: User, inputs: Sequence[str]) -> str:
    """A stable id from the user and the inputs only (never the expectations)."""
    blob = json.dumps([user.id, sorted(user.groups), list(inputs)], ensure_ascii=False, separators=(",", ":"))
    return "c-" + hashlib.sha1(blob.encode()).hexdigest()[:10]
