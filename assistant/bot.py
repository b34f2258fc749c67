"""A small customer-support assistant: the system under test in the bundled suites.

It behaves like a production assistant, deterministically and offline:

- a state-aware router over the workflows ``refunds``, ``order_status`` and
  ``account``, plus ``policy_question`` (help-center answers, also for side
  questions in the middle of a workflow), ``smalltalk`` and ``handoff``
  (canned answers, no model) and ``clarify`` (nothing matched);
- lexical retrieval over ``datasets/docs.jsonl``, filtered by the user's
  groups before any document is used, at most two documents per answer;
- a templated "model" that answers from the top passage and the state;
- the tools ``lookup_order`` and ``issue_refund`` (the latter only after the
  user confirmed);
- conversation state (``workflow``, ``order_id``, ``refund``, ``confirmed``)
  that the caller hands back on the next turn.

``respond(request)`` takes one evalgate request and returns one trace in
evalgate's native format. :class:`Behaviour` holds the switches a release
ships with.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOCS_PATH = Path(__file__).resolve().parent.parent / "datasets" / "docs.jsonl"
MODEL_NAME, MODEL_PROVIDER = "builtin-template", "evalgate-example"
WORKFLOWS = ("refunds", "order_status", "account")
MODEL_ROUTES = frozenset({"refunds", "order_status", "account", "policy_question"})
RETRIEVAL_TOPICS = {"refunds": "refund policy", "order_status": "order status tracking",
                    "account": "sign-in password", "policy_question": ""}
"""Routes that retrieve, and the topic words each adds to the user's message."""
MAX_USED_DOCS = 2
MAX_CANDIDATES = 5
MIN_SCORE = 0.3
SYSTEM_PROMPT_TOKENS = 80
PRICE_PER_INPUT_TOKEN = 0.15e-6
PRICE_PER_OUTPUT_TOKEN = 0.60e-6


@dataclass(frozen=True)
class Behaviour:
    """The switches a release of the assistant ships with."""

    state_before_smalltalk: bool = True
    """Consult the current workflow before treating "good", "sorry, ..." as smalltalk."""
    permission_filter: bool = True
    """Drop documents the user's groups may not read before using any."""
    confirm_before_refund: bool = True
    """Ask the user to confirm before calling issue_refund."""


CURRENT = Behaviour()


# --- documents and text --------------------------------------------------------


@dataclass(frozen=True)
class Doc:
    """One help-center document and who may read it."""

    id: str
    title: str
    groups: tuple[str, ...]
    text: str
    terms: frozenset[str]
    title_terms: frozenset[str]
    tokens: int


_STOPWORDS = frozenset(
    "a an the i i'm im me my you your we our us is are was be been it it's its to of in on at for and or "
    "can can't could do does did don't what what's whats how when where which who why this that with from "
    "please want would like need have has get got just not no there their they them so if".split())


def normalise(text: str) -> str:
    """Lower case, straight apostrophes."""
    return text.lower().replace("\u2019", "'")


def words(text: str) -> list[str]:
    """The message's words, lower case (apostrophes kept inside words: it's)."""
    return re.findall(r"[a-z0-9$]+(?:'[a-z]+)?", normalise(text))


def _stem(word: str) -> str:
    word = word.removesuffix("'s")
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def terms(text: str) -> frozenset[str]:
    """Content words, lightly stemmed: what retrieval compares."""
    return frozenset(_stem(w) for w in words(text) if w not in _STOPWORDS)


def estimate_tokens(text: str) -> int:
    """About 1.3 tokens per word."""
    return math.ceil(len(words(text)) * 1.3)


def load_docs(path: Path = DOCS_PATH) -> tuple[Doc, ...]:
    """The document set: one JSON object per line (id, title, groups, text)."""
    docs = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                raw = json.loads(line)
                docs.append(Doc(raw["id"], raw["title"], tuple(raw["groups"]), raw["text"],
                                terms(raw["title"] + " " + raw["text"]), terms(raw["title"]),
                                estimate_tokens(raw["text"])))
    return tuple(docs)


DOCS = load_docs()


def sentences(text: str) -> list[str]:
    """A passage split into sentences."""
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


# --- reading the message ---------------------------------------------------------

_ORDER_ID = re.compile(r"(?<![\d$])(\d{4})(?!\d)")
_NEGATED = re.compile(r"\bnot\s+(?:order\s+)?#?(\d{4})\b")
_ASSERTED = re.compile(r"\b(?:it's|its|it is|is|should be|actually|meant)\s+(?:order\s+)?#?(\d{4})\b")


def order_id_in(text: str) -> str | None:
    """The order number a message gives.

    The number after "it's"/"is" wins ("sorry, it's 5521 not 5512" → 5521);
    otherwise the last number mentioned that is not negated.
    """
    lowered = normalise(text)
    asserted = _ASSERTED.findall(lowered)
    if asserted:
        return str(asserted[-1])
    negated = set(_NEGATED.findall(lowered))
    candidates = [n for n in _ORDER_ID.findall(lowered) if n not in negated]
    return candidates[-1] if candidates else None


_CONFIRM = frozenset({"yes", "yep", "yeah", "ok", "okay", "sure", "good", "great", "confirm", "confirmed",
                      "correct", "perfect", "fine", "go"})
_DENY = frozenset({"no", "nope", "cancel", "stop", "don't", "dont"})
_QUESTION_WORDS = frozenset({"what", "what's", "whats", "how", "when", "where", "which", "why", "do", "does",
                             "is", "are", "can", "could"})
_SMALLTALK = {
    "greeting": frozenset({"hi", "hello", "hey", "morning", "evening"}),
    "thanks": frozenset({"thanks", "thank", "thx", "cheers", "good", "great", "perfect", "awesome"}),
    "apology": frozenset({"sorry", "oops"}),
    "goodbye": frozenset({"bye", "goodbye"}),
}
_SMALLTALK_REPLIES = {
    "greeting": "Hi! I can help with refunds, order status and signing in. What can I do for you?",
    "thanks": "You're welcome! Is there anything else I can help with?",
    "apology": "No problem at all. What can I help you with?",
    "goodbye": "Goodbye, and thanks for contacting us!",
}
_HANDOFF = re.compile(r"\b(human|real person|a person|an agent|agent|representative|operator|"
                      r"talk to someone|speak to someone)\b")
_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("refunds", "refund"), ("refunds", "money back"), ("refunds", "reimburse"),
    ("account", "password"), ("account", "log in"), ("account", "login"), ("account", "sign in"),
    ("account", "locked out"), ("account", "two-factor"), ("account", "2fa"), ("account", "my account"),
    ("order_status", "where is my"), ("order_status", "where's my"), ("order_status", "order status"),
    ("order_status", "track"), ("order_status", "shipped"), ("order_status", "package"),
)


_CONFIRM_PHRASES = ("sounds good", "sounds great", "that works", "works for me", "do it", "please do", "go for it",
                    "that's fine", "that's right", "all good", "alright")


def is_confirmation(ws: list[str]) -> bool:
    """A terse yes: "good", "yes please", "ok go ahead", "sounds good", "that works"."""
    return 0 < len(ws) <= 4 and (ws[0] in _CONFIRM or " ".join(ws).startswith(_CONFIRM_PHRASES))


def is_denial(ws: list[str]) -> bool:
    """A terse no: "no", "cancel that"."""
    return 0 < len(ws) <= 4 and ws[0] in _DENY


def is_question(text: str, ws: list[str]) -> bool:
    """Ends with a question mark or starts with a question word."""
    return text.strip().endswith("?") or (bool(ws) and ws[0] in _QUESTION_WORDS)


def smalltalk_cue(text: str, ws: list[str]) -> tuple[str, str] | None:
    """(kind, cue): greeting, thanks, apology or goodbye, judged by how a short message starts."""
    if not ws or len(ws) > 6:
        return None
    for phrase in ("good morning", "good afternoon", "good evening"):
        if normalise(text).startswith(phrase):
            return "greeting", phrase
    return next(((kind, ws[0]) for kind, first in _SMALLTALK.items() if ws[0] in first), None)


def smalltalk_kind(text: str, ws: list[str]) -> str | None:
    """greeting, thanks, apology or goodbye, or None."""
    cue = smalltalk_cue(text, ws)
    return cue[0] if cue else None


_VOCABULARY = frozenset(
    {w for _, phrase in _KEYWORDS for w in words(phrase)} | _CONFIRM | _DENY | set().union(*_SMALLTALK.values())
    | _QUESTION_WORDS | {"please", "human", "person", "agent", "order", "confirm", "cancel", "refund", "account"})


def _known_words() -> frozenset[str]:
    return frozenset(w for d in DOCS for w in words(d.title + " " + d.text)) | _STOPWORDS | _VOCABULARY


def correct_spelling(text: str) -> str:
    """The message with small typos in the words the router reads fixed ("refnud" → "refund", "humman" → "human").

    A word of four letters or more that the assistant does not know becomes
    the known word (the router's and the help center's) one edit away
    (Damerau-Levenshtein, rapidfuzz) with the same first letter; every other
    word is left as typed.
    """
    from rapidfuzz import process
    from rapidfuzz.distance import DamerauLevenshtein

    def fix(match: re.Match[str]) -> str:
        word = match.group(0)
        lowered = word.lower()
        if len(lowered) < 4 or lowered in _KNOWN:
            return word
        best = process.extractOne(lowered, _SPELL_VOCABULARY, scorer=DamerauLevenshtein.distance, score_cutoff=1)
        return best[0] if best is not None and best[0][0] == lowered[0] else word

    return re.sub(r"[A-Za-z]+", fix, text)


def workflow_keyword(text: str) -> tuple[str, str] | None:
    """(workflow, keyword) for the first workflow keyword in the message."""
    lowered = normalise(text)
    for workflow, phrase in _KEYWORDS:
        if re.search(r"\b" + re.escape(phrase), lowered):
            return workflow, phrase
    return None


# --- routing -----------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """The route chosen for a turn, how sure the router is, and which rule fired."""

    name: str
    confidence: float
    reason: str


def _continue_reason(text: str, ws: list[str], state: dict[str, Any]) -> str | None:
    """Why the message continues the current workflow, or None if it does not."""
    given = order_id_in(text)
    if given is not None:
        if state.get("order_id") and given != state["order_id"]:
            return f"the message corrects the order number to {given}"
        return f"the message gives order number {given}"
    pending = state.get("refund") == "pending"
    if pending and is_confirmation(ws):
        return "terse reply confirms the pending refund"
    if pending and is_denial(ws):
        return "terse reply declines the pending refund"
    if smalltalk_kind(text, ws) or is_question(text, ws):
        return None
    if len(ws) <= 6:
        return "terse reply continues the current workflow"
    return None


def route(text: str, state: dict[str, Any], behaviour: Behaviour = CURRENT) -> Decision:
    """Choose the route for one message, given the conversation state."""
    ws = words(text)
    handoff = _HANDOFF.search(normalise(text))
    if handoff:
        return Decision("handoff", 0.97, f"asked for a person ('{handoff.group(1)}')")
    keyword = workflow_keyword(text)
    if keyword:
        return Decision(keyword[0], 0.9, f"keyword '{keyword[1]}'")
    small = smalltalk_cue(text, ws)
    if small and not behaviour.state_before_smalltalk:
        return Decision("smalltalk", 0.95, f"{small[0]} ('{small[1]}')")
    current = state.get("workflow")
    if current in WORKFLOWS:
        stay = _continue_reason(text, ws, state)
        if stay:
            return Decision(current, 0.8, f"stayed in {current}: {stay}")
        if is_question(text, ws):
            return Decision("policy_question", 0.7, f"side question during {current}; the {current} state is kept")
    if small:
        return Decision("smalltalk", 0.95, f"{small[0]} ('{small[1]}')")
    if order_id_in(text):
        return Decision("order_status", 0.6, "an order number with no workflow: look the order up")
    if is_question(text, ws) or any(score(doc, terms(text)) >= MIN_SCORE for doc in DOCS):
        return Decision("policy_question", 0.6, "no workflow keyword: answer from the help center")
    return Decision("clarify", 0.3, "no rule matched")


# --- context --------------------------------------------------------------------------


def score(doc: Doc, query: frozenset[str]) -> float:
    """Lexical overlap in [0, 1]; words in the title count half again."""
    if not query:
        return 0.0
    hits = len(query & doc.terms) + 0.5 * len(query & doc.title_terms)
    return round(hits / (1.5 * len(query)), 3)


def may_read(doc: Doc, groups: list[str]) -> bool:
    """Whether a user in these groups may read the document."""
    return any(g in doc.groups for g in groups)


def retrieve(query: str, groups: list[str], behaviour: Behaviour = CURRENT) -> list[dict[str, Any]]:
    """The best candidates, each marked used or excluded (permission, budget)."""
    q = terms(query)
    ranked = sorted(((score(d, q), d) for d in DOCS), key=lambda pair: (-pair[0], pair[1].id))
    items: list[dict[str, Any]] = []
    used = 0
    for rank, (value, doc) in enumerate([p for p in ranked if p[0] >= MIN_SCORE][:MAX_CANDIDATES], 1):
        excluded: str | None = None
        if behaviour.permission_filter and not may_read(doc, groups):
            excluded = "permission"
        elif used >= MAX_USED_DOCS:
            excluded = "budget"
        else:
            used += 1
        items.append({"id": doc.id, "score": value, "rank": rank, "groups": list(doc.groups),
                      "tokens": doc.tokens, "used": excluded is None, "excluded": excluded})
    return items


# --- answering --------------------------------------------------------------------------


@dataclass
class TurnInput:
    """What a handler works from."""

    text: str
    words: list[str]
    state: dict[str, Any]
    passages: list[Doc]
    behaviour: Behaviour


@dataclass
class Outcome:
    """What a handler produced."""

    output: str
    state: dict[str, Any]
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


def _sentence(passages: list[Doc], containing: str = "", doc_id: str | None = None) -> str:
    """The first sentence of the used passages that contains the words (or the first sentence)."""
    for doc in passages:
        if doc_id is not None and doc.id != doc_id:
            continue
        for s in sentences(doc.text):
            if containing.lower() in s.lower():
                return s
    return ""


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def issue_refund(order_id: str) -> dict[str, Any]:
    """The refund tool (a stub that always succeeds)."""
    return {"name": "issue_refund", "arguments": {"order_id": order_id},
            "result": {"refund_id": f"RF-{order_id}", "status": "issued"}}


_ORDER_STATUSES = (("processing", "it ships within 2 business days"),
                   ("shipped", "it should arrive within 3 to 5 business days"),
                   ("delivered", "it was delivered; if it has not reached you, let us know"))


def lookup_order(order_id: str) -> dict[str, Any]:
    """The order-lookup tool (a stub: the status follows from the number)."""
    status, detail = _ORDER_STATUSES[int(order_id) % 3]
    return {"name": "lookup_order", "arguments": {"order_id": order_id},
            "result": {"order_id": order_id, "status": status, "detail": detail}}


def _issue(state: dict[str, Any], passages: list[Doc], confirmed: bool) -> Outcome:
    order_id = str(state["order_id"])
    state.update(refund="issued", confirmed=confirmed)
    timing = _sentence(passages, "business days", "kb/refund-policy")
    return Outcome(_join(f"Done: I've issued the refund for order {order_id}.", timing), state, [issue_refund(order_id)])


def _ask_to_confirm(state: dict[str, Any], passages: list[Doc], lead: str) -> Outcome:
    order_id = state["order_id"]
    policy = _sentence(passages, "", "kb/refund-policy")
    return Outcome(_join(lead, policy, f"Shall I go ahead with the refund for order {order_id}? Reply yes to confirm."), state)


def _start_refund(turn: TurnInput, state: dict[str, Any], lead: str) -> Outcome:
    state.update(refund="pending", confirmed=False)
    if not turn.behaviour.confirm_before_refund:
        return _issue(state, turn.passages, confirmed=False)
    return _ask_to_confirm(state, turn.passages, lead)


def answer_refunds(turn: TurnInput) -> Outcome:
    """Collect the order number, ask to confirm, then issue the refund."""
    state = {**turn.state, "workflow": "refunds"}
    given, previous = order_id_in(turn.text), state.get("order_id")
    if given is not None and given != previous:
        state["order_id"] = given
        lead = (f"Thanks for the correction: the refund is now for order {given}." if previous
                else f"I can refund order {given}.")
        return _start_refund(turn, state, lead)
    order_id = state.get("order_id")
    if not order_id:
        policy = _sentence(turn.passages, "", "kb/refund-policy")
        return Outcome(_join("I can help with a refund.", policy, "What's the 4-digit order number?"), state)
    refund = state.get("refund")
    if refund == "issued":
        timing = _sentence(turn.passages, "business days", "kb/refund-policy")
        return Outcome(_join(f"The refund for order {order_id} has already been issued.", timing), state)
    if refund == "cancelled" and not is_confirmation(turn.words):
        return Outcome(f"OK, the refund for order {order_id} stays cancelled. Is there anything else I can help with?",
                       state)
    if refund != "pending":
        return _start_refund(turn, state, f"I can refund order {order_id}.")
    if is_confirmation(turn.words):
        return _issue(state, turn.passages, confirmed=True)
    if is_denial(turn.words):
        state.update(refund="cancelled", confirmed=False)
        return Outcome(f"OK, I won't refund order {order_id}. Is there anything else I can help with?", state)
    return Outcome(f"Just to check before I refund order {order_id}: shall I go ahead? Reply yes to confirm.", state)


def answer_order_status(turn: TurnInput) -> Outcome:
    """Look the order up once the order number is known."""
    state = {**turn.state, "workflow": "order_status"}
    given = order_id_in(turn.text)
    if given is not None and given != state.get("order_id"):
        state["order_id"] = given
        state.pop("refund", None)
        state.pop("confirmed", None)
    order_id = state.get("order_id")
    if not order_id:
        return Outcome("I can check that for you. What's the 4-digit order number?", state)
    call = lookup_order(str(order_id))
    result = call["result"]
    tracking = _sentence(turn.passages, "tracking link") if result["status"] == "shipped" else ""
    return Outcome(_join(f"Order {order_id} is {result['status']}: {result['detail']}.", tracking), state, [call])


def answer_account(turn: TurnInput) -> Outcome:
    """Sign-in help from the top passage."""
    state = {**turn.state, "workflow": "account"}
    if not turn.passages:
        return Outcome("Could you tell me a bit more about the problem signing in?", state)
    steps = " ".join(sentences(turn.passages[0].text)[:2])
    return Outcome(f"Here's how to get back in: {steps}", state)


def answer_policy(turn: TurnInput) -> Outcome:
    """Answer from the help center; a pending refund is kept and mentioned."""
    state = dict(turn.state)
    if turn.passages:
        top = turn.passages[0]
        text = f"{top.title}: {' '.join(sentences(top.text)[:2])}"
    else:
        text = "I couldn't find that in our help center. I can connect you with a person if you like."
    if state.get("refund") == "pending" and state.get("order_id"):
        text += f" Whenever you're ready, I can still refund order {state['order_id']}: just say yes."
    return Outcome(text, state)


def answer_smalltalk(turn: TurnInput) -> Outcome:
    """A canned reply; the state is left as it was."""
    kind = smalltalk_kind(turn.text, turn.words) or "greeting"
    return Outcome(_SMALLTALK_REPLIES[kind], dict(turn.state))


def answer_handoff(turn: TurnInput) -> Outcome:
    """Hand the conversation to a person (canned, no model)."""
    return Outcome("I'm passing you to a person on our support team now. They're available from 8am to 8pm, "
                   "Monday to Saturday.", {**turn.state, "handoff": True})


def answer_clarify(turn: TurnInput) -> Outcome:
    """Ask the user to say more (canned, no model)."""
    return Outcome("Sorry, I didn't quite get that. I can help with refunds, order status and signing in.",
                   dict(turn.state))


HANDLERS: dict[str, Callable[[TurnInput], Outcome]] = {
    "refunds": answer_refunds, "order_status": answer_order_status, "account": answer_account,
    "policy_question": answer_policy, "smalltalk": answer_smalltalk, "handoff": answer_handoff,
    "clarify": answer_clarify,
}


# --- accounting ---------------------------------------------------------------------------


def latency_ms(decision: Decision, context: list[dict[str, Any]], outcome: Outcome) -> dict[str, float]:
    """Time each step reports, computed from the work done (repeatable run to run)."""
    steps: dict[str, float] = {"route": 2.0}
    if decision.name in RETRIEVAL_TOPICS:
        steps["context"] = 12.0 + 3.0 * len(context)
    if decision.name in MODEL_ROUTES:
        steps["model"] = 220.0 + 9.0 * estimate_tokens(outcome.output)
    if outcome.tool_calls:
        steps["tools"] = 45.0 * len(outcome.tool_calls)
    return {"total": sum(steps.values()) + 5.0, **steps}


def usage(decision: Decision, request: dict[str, Any], passages: list[Doc], output: str) -> dict[str, Any]:
    """Tokens and cost of the model step, estimated from word counts."""
    if decision.name not in MODEL_ROUTES:
        return {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
    history = " ".join(str(m.get("content", "")) for m in request.get("history") or [])
    prompt = SYSTEM_PROMPT_TOKENS + estimate_tokens(history) + estimate_tokens(str(request.get("input") or ""))
    prompt += sum(d.tokens for d in passages)
    completion = estimate_tokens(output)
    cost = prompt * PRICE_PER_INPUT_TOKEN + completion * PRICE_PER_OUTPUT_TOKEN
    return {"input_tokens": prompt, "output_tokens": completion, "cost_usd": round(cost, 6)}


# --- the entry point ---------------------------------------------------------------------------

_DOC_BY_ID = {d.id: d for d in DOCS}
_KNOWN = _known_words()
_SPELL_VOCABULARY = tuple(sorted(w for w in _KNOWN if len(w) >= 4 and "'" not in w and w.isalpha()))


def respond(request: dict[str, Any], behaviour: Behaviour = CURRENT) -> dict[str, Any]:
    """Answer one turn: an evalgate request in, one trace (native format) out."""
    typed = str(request.get("input") or "")
    text = correct_spelling(typed)
    state = dict(request.get("state") or {})
    user = request.get("user") or {}
    groups = [str(g) for g in user.get("groups") or []]
    decision = route(text, state, behaviour)
    context: list[dict[str, Any]] = []
    if decision.name in RETRIEVAL_TOPICS:
        context = retrieve(_join(RETRIEVAL_TOPICS[decision.name], text), groups, behaviour)
    passages = [_DOC_BY_ID[item["id"]] for item in context if item["used"]]
    outcome = HANDLERS[decision.name](TurnInput(text, words(text), state, passages, behaviour))
    trace: dict[str, Any] = {
        "v": 1,
        "trace_id": f"{request.get('session_id', 'session')}:{request.get('turn', 1)}",
        "session_id": request.get("session_id"),
        "turn": request.get("turn"),
        "user": {"id": str(user.get("id") or "anonymous"), "groups": groups},
        "input": typed,
        "route": {"name": decision.name, "confidence": decision.confidence, "reason": decision.reason},
        "context": context,
        "tool_calls": outcome.tool_calls,
    }
    if decision.name in MODEL_ROUTES:
        trace["model"] = {"name": MODEL_NAME, "provider": MODEL_PROVIDER, "params": {"temperature": 0}}
    trace.update(output=outcome.output, state=outcome.state,
                 latency_ms=latency_ms(decision, context, outcome),
                 usage=usage(decision, request, passages, outcome.output))
    return trace
