"""Recovery operators: the ways a real user strays from a written conversation.

Each operator reads a written conversation (its turns' inputs and
expectations) and proposes *edits*: where to change it and how. An edit is
a list of draft turns, each remembering which written turn it stands for,
so the expectations that must still hold can follow it (``derive.py``).
Operators are pure and seeded: the same case, seed and operator always
give the same variants.

    confirmation      the written confirmation ("ok go ahead") said another way ("yep", "sure thing")
    correction        a value the user gave (a slot of the expected state) restated with another one next turn
    side_question     an unrelated question asked before a turn, then the conversation resumes
    leave_and_return  the conversation continues in a new session: no history, the request says it resumed
    repeat            the same message sent twice
    typo              small typos in the user's words
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

OPERATORS = ("confirmation", "correction", "side_question", "leave_and_return", "repeat", "typo")

CONFIRMATIONS = ("good", "ok", "yep", "sure thing", "yes please", "sounds good", "go for it", "perfect", "alright",
                 "yeah do it", "that works", "okay, go ahead")
"""How users say yes: the written confirmation is replaced by one of these."""
_CONFIRM_START = frozenset({"yes", "yep", "yeah", "yup", "ok", "okay", "k", "sure", "good", "great", "confirm",
                            "confirmed", "correct", "perfect", "fine", "go", "alright", "sounds", "looks"})
_CONFIRM_PHRASES = ("please do", "please go ahead", "do it", "that's right", "that's fine", "that works")
CORRECTIONS = ("sorry, it's {new} not {old}", "actually make that {new}", "no wait — {new}", "I meant {new}, not {old}",
               "correction: {new}")
"""How users correct a value they gave; {old} and {new} are the values."""
SIDE_QUESTIONS = ("what are your opening hours?", "how do I contact support by email?",
                  "do you have a phone number I can call?", "is my personal data kept private?")
"""Asked in the middle of a conversation, unless the suite gives its own (``variants.questions``)."""

_WORD = re.compile(r"\b[A-Za-z]{4,}\b")
_KEYBOARD_NEIGHBOURS = {
    "a": "sq", "b": "vn", "c": "xv", "d": "sf", "e": "wr", "f": "dg", "g": "fh", "h": "gj", "i": "uo", "j": "hk",
    "k": "jl", "l": "k", "m": "n", "n": "bm", "o": "ip", "p": "o", "q": "w", "r": "et", "s": "ad", "t": "ry",
    "u": "yi", "v": "cb", "w": "qe", "x": "zc", "y": "tu", "z": "x",
}


@dataclass(frozen=True)
class DraftTurn:
    """One turn of a variant as drafted: its input, and the written turn it stands for."""

    input: str
    origin: int
    """0-based index of the written turn whose expectations it inherits: its own, or the one before an insertion."""
    kind: str = "mapped"
    """mapped (the written turn, perhaps reworded), inserted (a new turn: a side question, a correction, a repeat)."""
    resume: bool = False
    """The turn opens a new session (leave and return)."""


@dataclass(frozen=True)
class Edit:
    """One variant as an operator drafted it: the turns, what it did (for explanations), values it swapped."""

    turns: tuple[DraftTurn, ...]
    step: str
    """What the user did differently, as a person would say it: "turn 2: 'actually make that 5839'"."""
    swap: tuple[Any, Any] | None = None
    """(old, new): a corrected value; every later expectation of the old value expects the new one."""
    swap_from: int = 0
    """The first draft turn whose expectations take the new value."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Written:
    """A written conversation, as operators read it."""

    inputs: tuple[str, ...]
    expects: tuple[dict[str, Any], ...]
    resumes: tuple[bool, ...] = ()
    """Turns written with ``resume: true``: a variant keeps them resuming."""


@dataclass(frozen=True)
class Options:
    """What the suite says about its variants beyond which operators to apply."""

    questions: tuple[str, ...] = SIDE_QUESTIONS


def _same(written: Written) -> list[DraftTurn]:
    return [DraftTurn(text, i, resume=i < len(written.resumes) and written.resumes[i])
            for i, text in enumerate(written.inputs)]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def is_confirmation(text: str) -> bool:
    """A short yes: "good", "ok go ahead", "yes please", "looks good"."""
    ws = _words(text)
    if not 0 < len(ws) <= 4 or "?" in text or re.search(r"\d", text):
        return False
    return ws[0] in _CONFIRM_START or " ".join(ws).startswith(_CONFIRM_PHRASES)


def _pick(rng: random.Random, choices: Sequence[Any], n: int) -> list[Any]:
    """Up to ``n`` distinct choices, in a seeded order."""
    pool = list(choices)
    rng.shuffle(pool)
    return pool[:n]


def confirmation(written: Written, rng: random.Random, n: int, options: Options) -> list[Edit]:
    """The written confirmation said another way: the turn and its expectations stay."""
    spots = [(i, phrase) for i, text in enumerate(written.inputs) if is_confirmation(text)
             for phrase in CONFIRMATIONS if phrase != text.strip().lower()]
    edits: list[Edit] = []
    for i, phrase in _pick(rng, spots, n):
        turns = _same(written)
        turns[i] = replace(turns[i], input=phrase)
        edits.append(Edit(tuple(turns), f"turn {i + 1}: '{phrase}' in place of '{written.inputs[i]}'"))
    return edits


def _given_values(written: Written) -> list[tuple[int, str, Any]]:
    """(turn, slot, value): a slot of the expected state whose value the user typed in that turn, first time only."""
    seen: set[str] = set()
    found = []
    for i, (text, expect) in enumerate(zip(written.inputs, written.expects)):
        state = expect.get("state")
        if not isinstance(state, dict):
            continue
        for slot, value in state.items():
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                continue
            token = str(value)
            if not re.search(r"\d", token) or token in seen:
                continue  # only values with digits (order numbers, amounts, codes) can be changed without knowing the domain
            if re.search(rf"(?<![\w]){re.escape(token)}(?![\w])", text, re.IGNORECASE):
                seen.add(token)
                found.append((i, slot, value))
    return found


def _new_value(value: Any, rng: random.Random, avoid: str) -> Any:
    """A value of the same shape (the digits changed) that appears nowhere in the conversation."""
    token = str(value)
    for _ in range(50):
        candidate = "".join(str(rng.randint(1 if j == 0 and c.isdigit() else 0, 9)) if c.isdigit() else c
                            for j, c in enumerate(token))
        if candidate != token and candidate not in avoid:
            return int(candidate) if isinstance(value, int) else candidate
    return None


def correction(written: Written, rng: random.Random, n: int, options: Options) -> list[Edit]:
    """A value the user gave, restated with another one in the next turn; later turns expect the new value."""
    every_word = " ".join(written.inputs) + " " + repr(written.expects)
    spots = [(i, slot, value, phrase) for i, slot, value in _given_values(written) for phrase in CORRECTIONS]
    edits: list[Edit] = []
    for i, slot, old, phrase in _pick(rng, spots, n):
        new = _new_value(old, rng, every_word)
        if new is None:
            continue
        said = phrase.format(new=new, old=old)
        turns = _same(written)
        turns.insert(i + 1, DraftTurn(said, i, "inserted"))
        edits.append(Edit(tuple(turns), f"turn {i + 2}: '{said}' ({slot} {old!r} → {new!r})", (old, new), i + 1,
                          {"slot": slot}))
    return edits


def side_question(written: Written, rng: random.Random, n: int, options: Options) -> list[Edit]:
    """An unrelated question before a later turn; the conversation then goes on as written."""
    spots = [(i, q) for i in range(1, len(written.inputs)) for q in options.questions]
    edits: list[Edit] = []
    for i, question in _pick(rng, spots, n):
        turns = _same(written)
        turns.insert(i, DraftTurn(question, i - 1, "inserted"))
        edits.append(Edit(tuple(turns), f"turn {i + 1}: side question '{question}'"))
    return edits


def leave_and_return(written: Written, rng: random.Random, n: int, options: Options) -> list[Edit]:
    """The user leaves after a turn and comes back later: the next turn opens a new session."""
    edits: list[Edit] = []
    for i in _pick(rng, range(1, len(written.inputs)), n):
        turns = _same(written)
        turns[i] = replace(turns[i], resume=True)
        edits.append(Edit(tuple(turns), f"turn {i + 1}: the user left and came back in a new session"))
    return edits


def repeat(written: Written, rng: random.Random, n: int, options: Options) -> list[Edit]:
    """One message sent twice in a row (a double click, a resend after a slow answer)."""
    edits: list[Edit] = []
    for i in _pick(rng, range(len(written.inputs)), n):
        turns = _same(written)
        turns.insert(i + 1, DraftTurn(written.inputs[i], i, "inserted"))
        edits.append(Edit(tuple(turns), f"turn {i + 2}: '{written.inputs[i]}' sent again"))
    return edits


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)  # keep the first and last letters, as most real typos do
    kind = rng.choice(("swap", "drop", "double", "neighbour"))
    if kind == "swap" and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == "drop":
        return word[:i] + word[i + 1:]
    if kind == "neighbour" and word[i].lower() in _KEYBOARD_NEIGHBOURS:
        return word[:i] + rng.choice(_KEYBOARD_NEIGHBOURS[word[i].lower()]) + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def typos_in(text: str, rng: random.Random, count: int = 1) -> str:
    """``text`` with ``count`` words of four letters or more mistyped (numbers and short words are left alone)."""
    spans = [m.span() for m in _WORD.finditer(text)]
    for start, end in sorted(_pick(rng, spans, count), reverse=True):
        text = text[:start] + _typo(text[start:end], rng) + text[end:]
    return text


def typo(written: Written, rng: random.Random, n: int, options: Options) -> list[Edit]:
    """Small typos (a swapped, dropped, doubled or neighbouring letter) in one of the user's messages."""
    spots = [i for i, text in enumerate(written.inputs) if _WORD.search(text)]
    edits: list[Edit] = []
    for i in _pick(rng, spots * n, n):
        turns = _same(written)
        mistyped = typos_in(written.inputs[i], rng)
        if mistyped == written.inputs[i] or any(t.input == mistyped for e in edits for t in e.turns):
            continue
        turns[i] = replace(turns[i], input=mistyped)
        edits.append(Edit(tuple(turns), f"turn {i + 1}: '{mistyped}' (typed as '{written.inputs[i]}')"))
    return edits


APPLY: dict[str, Callable[[Written, random.Random, int, Options], list[Edit]]] = {
    "confirmation": confirmation, "correction": correction, "side_question": side_question,
    "leave_and_return": leave_and_return, "repeat": repeat, "typo": typo,
}
