"""The router: ordered rules, an optional LLM classifier, a fallback.

The first rule whose every condition holds decides; its reason names what
fired ("keyword 'refund'", "stayed in refunds: gives order_id"). Rules see
the message, the state before the turn, the slots the message gives, and
the best retrieval score, so "stay in the current workflow unless the user
clearly changes topic" is a rule placed after the topic rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import RouterSpec, RuleSpec

_WORD = re.compile(r"[a-z0-9$]+(?:'[a-z]+)?")
_QUESTION_WORDS = frozenset({"what", "what's", "whats", "how", "when", "where", "which", "why", "do", "does",
                             "is", "are", "can", "could", "who"})


@dataclass(frozen=True, slots=True)
class Decision:
    """The route chosen for a turn, how sure the router is, and which rule fired."""

    route: str
    confidence: float | None
    reason: str


@dataclass(slots=True)
class Message:
    """What the rules look at."""

    text: str
    lowered: str
    words: list[str]
    slots: dict[str, str]
    state: dict[str, Any]

    @classmethod
    def of(cls, text: str, state: dict[str, Any], slots: dict[str, str]) -> Message:
        lowered = text.lower().replace("\u2019", "'")
        return cls(text, lowered, _WORD.findall(lowered), slots, state)

    @property
    def is_question(self) -> bool:
        return self.text.strip().endswith("?") or (bool(self.words) and self.words[0] in _QUESTION_WORDS)


class Router:
    """Rules compiled once; ``decide`` is pure apart from the score callback."""

    def __init__(self, spec: RouterSpec, workflows: list[str]):
        self.spec = spec
        self.workflows = workflows
        self._regex = [re.compile(r.regex) if r.regex else None for r in spec.rules]
        self._keywords = [[(k, re.compile(r"\b" + re.escape(k.lower()))) for k in r.keywords] for r in spec.rules]

    def decide(self, msg: Message, best_score: Callable[[], float]) -> Decision | None:
        """The first rule that fires, or None (then the classifier or the fallback decides)."""
        for i, rule in enumerate(self.spec.rules):
            fired = self._fires(i, rule, msg, best_score)
            if fired is not None:
                route, why = fired
                return Decision(route, rule.confidence, rule.name or why)
        return None

    def _fires(self, i: int, rule: RuleSpec, msg: Message,
               best_score: Callable[[], float]) -> tuple[str, str] | None:
        why: list[str] = []
        route = rule.route
        if rule.stay:
            current = msg.state.get("workflow")
            if current not in self.workflows:
                return None
            route = str(current)
        for key, wanted in rule.state.items():
            have = msg.state.get(key)
            if wanted == "*":
                if have is None:
                    return None
            elif have != wanted:
                return None
            why.append(f"state.{key}={'set' if wanted == '*' else wanted}")
        if rule.keywords:
            hit = next((k for k, pat in self._keywords[i] if pat.search(msg.lowered)), None)
            if hit is None:
                return None
            why.insert(0, f"keyword '{hit}'")
        regex = self._regex[i]
        if regex is not None:
            m = regex.search(msg.lowered)
            if m is None:
                return None
            why.insert(0, f"pattern matched '{m.group(0)}'")
        if rule.slot is not None:
            if rule.slot not in msg.slots:
                return None
            why.append(f"gives {rule.slot} {msg.slots[rule.slot]}")
        if rule.question is not None:
            if msg.is_question != rule.question:
                return None
            why.append("a question" if rule.question else "not a question")
        if rule.max_words is not None:
            if len(msg.words) > rule.max_words:
                return None
            why.append(f"≤ {rule.max_words} words")
        if rule.min_score is not None:
            best = best_score()
            if best < rule.min_score:
                return None
            why.append(f"retrieval score {best:.2f} ≥ {rule.min_score:g}")
        assert route is not None
        text = ", ".join(why) or "always"
        if rule.stay:
            text = f"stayed in {route}: {text}"
        return route, f"rule {i + 1}: {text}"


def parse_classifier_answer(answer: str, routes: list[str]) -> str | None:
    """The route a classifier named: its whole answer, trimmed of quotes and punctuation, must be one."""
    cleaned = answer.strip().strip("\"'`.").strip().lower()
    by_lower = {r.lower(): r for r in routes}
    return by_lower.get(cleaned)
