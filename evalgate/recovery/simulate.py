"""A simulated user: a case written as a goal, played against the target turn by turn.

The simulator sees the conversation so far and says the user's next message,
or nothing when the user has nothing more to say. Two simulators:

- ``builtin`` (the default), deterministic and offline: it opens with the
  goal, answers a question that names one of its slots with the slot's value
  ("what's the order number?" → "it's 7714"), says yes when asked to confirm,
  and stops when it has nothing to add;
- a model (``simulator: {model, base_url, api_key_env}``), through the run's
  shared model client and response cache: its calls are keyed by the repeat,
  so a re-run with a warm cache replays the same conversation offline.

The conversation ends when the state reaches ``stop_when``, the target hands
off (a route in ``handoff``), the simulator stops, or ``max_turns`` pass.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from ..scorers import BoundScorer

DONE = "DONE"
"""What a model simulator answers when the user would stop."""
_ASKS_TO_CONFIRM = re.compile(r"\b(shall i|should i|do you want me to|would you like me to|confirm|go ahead)\b", re.I)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSimulator(_Model):
    """An OpenAI-compatible model that plays the user."""

    model: str | None = None
    """Default: the EVALGATE_SIMULATOR_MODEL environment variable."""
    base_url: str | None = None
    """Default: the EVALGATE_SIMULATOR_BASE_URL environment variable."""
    api_key_env: str | None = None
    temperature: float = 0.0
    max_tokens: int = Field(200, ge=1, le=4000)


class StopWhen(_Model):
    """When the goal is reached: every slot of ``state`` has its value in the state the target returned."""

    state: dict[str, Any] = Field(default_factory=dict)


class SimulateSpec(_Model):
    """A conversation given as a goal: a simulated user plays it against the target."""

    goal: str
    """What the user wants, in their words ("get a refund for order 7714")."""
    opening: str | None = None
    """The first message (default: the built-in simulator says the goal; a model writes its own)."""
    persona: str | None = None
    """How the user talks (a model simulator is told; the built-in one ignores it)."""
    slots: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """What the user knows and gives when asked: {order_id: "7714"}."""
    stop_when: StopWhen | None = None
    """The goal reached (without it, the conversation runs until the user stops or max_turns)."""
    max_turns: int = Field(8, ge=1, le=50)
    handoff: list[str] = Field(default_factory=lambda: ["handoff"])
    """Routes that hand the conversation to a person: it ends there."""
    simulator: str | ModelSimulator = "builtin"

    @model_validator(mode="after")
    def _known(self) -> SimulateSpec:
        if isinstance(self.simulator, str) and self.simulator != "builtin":
            raise ValueError("simulator is 'builtin' or {model, base_url, api_key_env}")
        if isinstance(self.simulator, ModelSimulator):  # found when the suite loads, not mid-run
            sim = self.simulator
            if not (sim.model or os.environ.get("EVALGATE_SIMULATOR_MODEL")) or not (
                    sim.base_url or os.environ.get("EVALGATE_SIMULATOR_BASE_URL")):
                raise ValueError("the simulated user needs a model and an endpoint: give simulator: {model, base_url}, "
                                 "or set EVALGATE_SIMULATOR_MODEL and EVALGATE_SIMULATOR_BASE_URL")
            if sim.api_key_env and sim.api_key_env not in os.environ:
                raise ValueError(f"environment variable {sim.api_key_env} (the simulator's API key) is not set")
        if not self.goal.strip():
            raise ValueError("the goal is empty")
        return self

    def reached(self, state: dict[str, Any] | None) -> bool:
        want = self.stop_when.state if self.stop_when is not None else {}
        return bool(want) and all((state or {}).get(k) == v for k, v in want.items())


def _words_of(slot: str) -> list[str]:
    """``order_id`` → ``["order"]``: the words a question about the slot would use."""
    return [w for w in re.split(r"[_\W]+", slot.lower()) if len(w) > 2 and w not in ("the", "number")]


def builtin_next(spec: SimulateSpec, transcript: list[tuple[str, str]]) -> str | None:
    """The built-in user's next message, or None: the goal first, then slots when asked, yes when asked to confirm."""
    if not transcript:
        return spec.opening or spec.goal
    said = {text for text, _ in transcript}
    answer = transcript[-1][1] or ""
    if _ASKS_TO_CONFIRM.search(answer) and "?" in answer:
        return "yes please" if "yes please" not in said else "yes"
    if "?" in answer:
        asked = answer.lower()
        for slot, value in spec.slots.items():
            reply = f"it's {value}"
            if any(w in asked for w in _words_of(slot)) and reply not in said:
                return reply
    return None


class Simulator:
    """Plays one simulated conversation's user, turn after turn."""

    def __init__(self, spec: SimulateSpec, models: Any = None):
        self.spec = spec
        self.models = models

    async def next(self, transcript: list[tuple[str, str]], repeat: int) -> str | None:
        """The user's next message after ``transcript`` (pairs of user message, answer), or None to stop."""
        if isinstance(self.spec.simulator, str):
            return builtin_next(self.spec, transcript)
        return await self._model_next(self.spec.simulator, transcript, repeat)

    async def _model_next(self, sim: ModelSimulator, transcript: list[tuple[str, str]], repeat: int) -> str | None:
        from ..errors import TurnFailed
        from ..models import ModelError, ModelRequest
        from ..models.shared import shared_client

        if not transcript and self.spec.opening:
            return self.spec.opening
        model = sim.model or os.environ.get("EVALGATE_SIMULATOR_MODEL")
        base_url = sim.base_url or os.environ.get("EVALGATE_SIMULATOR_BASE_URL")
        if not model or not base_url:
            raise TurnFailed("the simulated user needs a model and an endpoint: give simulator: {model, base_url}, "
                             "or set EVALGATE_SIMULATOR_MODEL and EVALGATE_SIMULATOR_BASE_URL")
        messages = [{"role": "system", "content": self._system_prompt()},
                    {"role": "user", "content": "(the conversation starts: write your first message)"}]
        for said, answer in transcript:  # the simulator is the user: the target's answers are what it reads
            messages += [{"role": "assistant", "content": said}, {"role": "user", "content": answer or ""}]
        client = shared_client(base_url, sim.api_key_env, 4, 60.0, True, self.models)
        try:
            response = await client.complete(ModelRequest(model, messages, {"temperature": sim.temperature,
                                                                            "max_tokens": sim.max_tokens}, repeat))
        except ModelError as exc:
            if isinstance(exc, TurnFailed):  # offline with no cached answer: the run stops
                raise
            raise TurnFailed(f"the simulated user's model {model}: {exc}") from None
        text = response.text.strip().strip('"')
        return None if not text or text.upper().startswith(DONE) else text

    def _system_prompt(self) -> str:
        facts = "; ".join(f"{k}: {v}" for k, v in self.spec.slots.items()) or "none"
        return (f"You are a user talking to a customer-support assistant. Your goal: {self.spec.goal}. "
                + (f"How you talk: {self.spec.persona}. " if self.spec.persona else "")
                + f"What you know, to give when asked: {facts}. Write only your next message, as you would type it. "
                f"When your goal is reached, or you would give up, answer exactly {DONE}.")


@dataclass
class Simulation:
    """A case's simulated user, ready to run: the spec, the checks on every turn, the goal check."""

    spec: SimulateSpec
    checks: list[BoundScorer]
    expect: dict[str, Any]
    goal: BoundScorer
    notes: list[str] = field(default_factory=list)
