"""Where a conversation's turns come from: as written, or said one by one by a simulated user."""

from __future__ import annotations

from typing import Any

from ..cases import Turn
from ..scorers import BoundScorer, Score, ScoreContext
from ..traces import Trace
from .simulate import Simulation, Simulator


class WrittenTurns:
    """The turns as written, in order."""

    def __init__(self, turns: list[Turn]):
        self.turns = turns

    async def next(self, index: int, transcript: list[tuple[str, str]]) -> Turn | None:
        return self.turns[index - 1] if index <= len(self.turns) else None

    def ends_after(self, index: int, trace: Trace) -> bool:
        return False

    def closing(self) -> BoundScorer | None:
        return None


class SimulatedTurns:
    """Turns the simulated user says, one after another, until the conversation ends."""

    def __init__(self, simulation: Simulation, models: Any, repeat: int):
        self.simulation = simulation
        self.simulator = Simulator(simulation.spec, models)
        self.repeat = repeat
        self.ended = ""
        self.ok = False

    async def next(self, index: int, transcript: list[tuple[str, str]]) -> Turn | None:
        spec = self.simulation.spec
        if index > spec.max_turns:
            self.ended = f"max_turns ({spec.max_turns}) passed without reaching the goal"
            return None
        text = await self.simulator.next(transcript, self.repeat)
        if text is None:
            self.ended = f"the simulated user stopped after {len(transcript)} turn(s)"
            self.ok = spec.stop_when is None  # with no goal state, a user who is done is a conversation done
            return None
        return Turn(text, self.simulation.checks, self.simulation.expect)

    def ends_after(self, index: int, trace: Trace) -> bool:
        spec = self.simulation.spec
        if spec.reached(trace.state):
            self.ended, self.ok = f"the goal was reached in {index} turn(s)", True
            return True
        if trace.route is not None and trace.route.name in spec.handoff:
            self.ended = f"the target handed off at turn {index} (route {trace.route.name})"
            return True
        return False

    def closing(self) -> BoundScorer | None:
        goal, ended, ok, has_state = self.simulation.goal, self.ended, self.ok, self.simulation.spec.stop_when is not None

        def check(ctx: ScoreContext) -> Score:
            score = goal.run_sync(ctx)
            score.passed = score.passed if has_state else ok
            score.explanation = f"{ended}: {score.explanation}" if has_state else ended
            score.metrics = {"turns": float(ctx.turn)}
            return score

        return BoundScorer("goal", check, False)
