"""The router: ordered rules, an optional LLM classifier, a fallback.

The first rule whose every condition holds decides; its reason names what
fired ("keyword 'refund'", "stayed in refunds: gives order_id"). A scored
rule counts keyword hits per route instead: the most hits wins, a tie goes
to the route listed first, and a message with no hit falls through to the
next rule ("2 keyword hits for refunds: refund, money back"). Rules see
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
        self._keywords = [[(k, _keyword(k)) for k in r.keywords] for r in spec.rules]
        self._scored = [{route: [(k, _keyword(k)) for k in words] for route, words in (r.scored or {}).items()}
                        for r in spec.rules]

    def decide(self, msg: Message, best_score: Callable[[str], float]) -> Decision | None:
        """The first rule that fires, or None (then the classifier or the fallback decides).

        ``best_score(route)`` is the best retrieval score among documents the user may read, in that route's
        collection (asked only by a rule with ``min_score``)."""
        for i, rule in enumerate(self.spec.rules):
            fired = self._fires(i, rule, msg, best_score)
            if fired is not None:
                route, why = fired
                return Decision(route, rule.confidence, rule.name or why)
        return None

    def _fires(self, i: int, rule: RuleSpec, msg: Message,
               best_score: Callable[[str], float]) -> tuple[str, str] | None:
        why: list[str] = []
        route = rule.route
        if rule.stay:
            current = msg.state.get("workflow")
            if current not in self.workflows:
                return None
            route = str(current)
        if rule.scored is not None:
            scored = _score(self._scored[i], msg.lowered)
            if scored is None:
                return None
            route, hits = scored
            why.append(hits)
        assert route is not None
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
            best = best_score(route)
            if best < rule.min_score:
                return None
            why.append(f"retrieval score {best:.2f} ≥ {rule.min_score:g}")
        text = ", ".join(why) or "always"
        if rule.stay:
            text = f"stayed in {route}: {text}"
        return route, f"rule {i + 1}: {text}"


def _keyword(word: str) -> re.Pattern[str]:
    """A keyword or phrase that starts a word of the lower-cased message."""
    return re.compile(r"\b" + re.escape(word.lower()))


def _score(routes: dict[str, list[tuple[str, re.Pattern[str]]]], lowered: str) -> tuple[str, str] | None:
    """The route with the most keyword hits (ties: the one listed first) and why, or None when nothing hit."""
    hits = {route: [k for k, pat in words if pat.search(lowered)] for route, words in routes.items()}
    ranked = sorted((r for r in hits if hits[r]), key=lambda r: -len(hits[r]))  # stable: ties keep their order
    if not ranked:
        return None
    best, n = ranked[0], len(hits[ranked[0]])
    text = f"{n} keyword hit{'s' if n != 1 else ''} for {best}: {', '.join(hits[best])}"
    tied = [r for r in ranked[1:] if len(hits[r]) == n]
    if tied:
        text += f" (tied with {', '.join(tied)}: {best} is listed first)"
    elif len(ranked) > 1:
        text += f" (next: {ranked[1]} {len(hits[ranked[1]])})"
    return best, text


def parse_classifier_answer(answer: str, routes: list[str]) -> str | None:
    """The route a classifier named: its whole answer, trimmed of quotes and punctuation, must be one."""
    cleaned = answer.strip().strip("\"'`.").strip().lower()
    by_lower = {r.lower(): r for r in routes}
    return by_lower.get(cleaned)
