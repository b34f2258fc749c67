"""The pipeline as written in YAML: router rules, routes, context, model, slots, prices.

Every model forbids unknown keys, so a misspelt key is an error at its
file:line with a did-you-mean hint. Regular expressions and jinja2
templates are compiled here, when the suite loads, never mid-run.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PIPELINE_VERSION = 1
BUILTIN_MODEL = "builtin"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


def check_template(value: str | None) -> str | None:
    """Compile a jinja2 template once to report syntax errors at load time."""
    if value is not None:
        from .templates import compile_template

        compile_template(value)
    return value


class SlotSpec(_Model):
    """A slot of the conversation state filled from the user's message."""

    name: str
    """The state key, e.g. order_id."""
    pattern: str
    """Regex; group 1 (or the whole match) is the value. The last match not negated wins."""
    negated: str | None = None
    """Regex whose group 1 values are dropped ("not 5512"), so a correction overwrites the slot."""
    routes: list[str] | None = None
    """Only fill the slot on these routes (default: every route)."""

    @field_validator("pattern", "negated")
    @classmethod
    def _check(cls, value: Any) -> Any:
        return _check_regex(value)


class RuleSpec(_Model):
    """One router rule: every condition given must hold; the first rule that fires decides."""

    route: str | None = None
    """The route this rule chooses (omit with ``stay: true`` or ``scored``)."""
    scored: dict[str, list[str]] | None = None
    """Route → keywords: each route scores one hit per keyword or phrase that starts a word in the message; the
    route with the most hits wins, a tie goes to the route listed first, no hit at all: the rule does not fire."""
    name: str | None = None
    """Shown as the decision's reason instead of the conditions."""
    keywords: list[str] = Field(default_factory=list)
    """Any of these words or phrases starts a word in the message (case-insensitive)."""
    regex: str | None = None
    """A regular expression searched in the lower-cased message."""
    state: dict[str, Any] = Field(default_factory=dict)
    """State conditions: key → value (null: absent or null; "*": present and not null)."""
    stay: bool = False
    """Choose the current workflow (``state.workflow``) when it is a route: stay unless another rule fired first."""
    slot: str | None = None
    """The message gives this slot (a slot rule matches it)."""
    question: bool | None = None
    """The message is (true) or is not (false) a question."""
    max_words: int | None = Field(None, ge=1)
    """At most this many words."""
    min_score: float | None = None
    """The best retrieval score among documents the user may read is at least this."""
    confidence: float = Field(0.9, ge=0, le=1)

    @field_validator("regex")
    @classmethod
    def _check(cls, value: Any) -> Any:
        return _check_regex(value)

    @model_validator(mode="after")
    def _target(self) -> RuleSpec:
        chooses = sum((self.route is not None, self.stay, self.scored is not None))
        if chooses != 1:
            raise ValueError("a rule names a route, says stay: true (keep the current workflow) or scores keywords "
                             "(scored: {route: [keywords]}): exactly one of them")
        if self.scored is not None:
            if self.keywords:
                raise ValueError("a scored rule's keywords go under scored: {route: [...]}, not keywords:")
            if not any(self.scored.values()):
                raise ValueError("scored: gives no keyword: add route: [keywords, ...]")
        return self


class ClassifierSpec(_Model):
    """An LLM route classifier, asked when no rule fired; its answer must be a route name."""

    model: str
    routes: list[str]
    """The route names it may answer with."""
    prompt: str = ("Classify the user's message into one of these routes: {{ routes | join(', ') }}. "
                   "Answer with the route name only.")
    params: dict[str, Any] = Field(default_factory=lambda: {"temperature": 0})

    @field_validator("prompt")
    @classmethod
    def _check(cls, value: Any) -> Any:
        return check_template(value)


class RouterSpec(_Model):
    """Ordered rules, an optional classifier, and the route when nothing matched."""

    rules: list[RuleSpec] = Field(default_factory=list)
    classifier: ClassifierSpec | None = None
    fallback: str
    """The route when no rule fired (and the classifier, if any, gave no valid answer)."""
    workflows: list[str] | None = None
    """Routes that set ``state.workflow``, the workflow a ``stay`` rule keeps (default: none)."""


class DocumentSubset(_Model):
    """The documents of the pipeline's set whose fields match (a route's collection as a subset)."""

    where: dict[str, Any]
    """Document field (a JSONL key or front-matter key beside id, title, groups, text) → a value, or a list of
    values (any of them); a field that holds a list (tags) matches when it contains one of them."""

    @field_validator("where")
    @classmethod
    def _some(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("where: names at least one document field, e.g. {collection: refunds}")
        return value

    def matches(self, metadata: Any) -> bool:
        """Every field given matches the document's metadata."""
        for key, wanted in self.where.items():
            have = metadata.get(key)
            options = wanted if isinstance(wanted, list) else [wanted]
            values = have if isinstance(have, list) else [have]
            if have is None or not any(v in options for v in values):
                return False
        return True


class ContextSpec(_Model):
    """Retrieval for one route."""

    query: str = "{{ input }}"
    """Template of the retrieval query (message, state, history)."""
    top_k: int = Field(3, ge=1)
    """At most this many documents reach the model (the rest: excluded 'rank')."""
    min_score: float = 0.0
    """BM25 score below which a document is excluded ('threshold')."""
    max_tokens: int | None = Field(None, ge=1)
    """Token budget for the passages; lowest-ranked documents are trimmed first ('budget')."""

    @field_validator("query")
    @classmethod
    def _check(cls, value: Any) -> Any:
        return check_template(value)


class ModelStepSpec(_Model):
    """The model call of one route."""

    name: str = BUILTIN_MODEL
    """A model name at the endpoint, or builtin (deterministic, no network)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Sent with the request (temperature, max_tokens, ...); for builtin: sentences, lead, empty."""
    prompt: str = ("You answer customer questions using only the passages below.\n"
                   "{% for doc in context %}[{{ doc.id }}] {{ doc.title }}: {{ doc.text }}\n{% endfor %}"
                   "State: {{ state | tojson }}")
    """jinja2 template of the system message (message, history, state, context, user, route)."""
    state_from_output: bool = False
    """The model answers JSON {"answer": ..., "state": {...}}: its state updates the conversation's."""

    @field_validator("prompt")
    @classmethod
    def _check(cls, value: Any) -> Any:
        return check_template(value)

    @field_validator("params")
    @classmethod
    def _lead(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in ("lead", "empty"):
            if isinstance(value.get(key), str):
                check_template(value[key])
        return value


class AnswerSpec(_Model):
    """A canned or templated answer, the first whose ``when`` matches."""

    text: str
    """jinja2 template (message, state, context, user)."""
    when: str | None = None
    """Regex searched in the lower-cased message; none means always."""

    @field_validator("when")
    @classmethod
    def _check(cls, value: Any) -> Any:
        return _check_regex(value)
    @field_validator("text")
    @classmethod
    def _tpl(cls, value: Any) -> Any:
        return check_template(value)


class StateUpdateSpec(_Model):
    """What a route does to the state, after slots are filled."""

    set: dict[str, Any] = Field(default_factory=dict)
    clear: list[str] = Field(default_factory=list)


class RouteSpec(_Model):
    """One route: retrieval, then a model step or a canned answer."""

    documents: str | DocumentSubset | None = None
    """This route's own collection, searched instead of the pipeline's set: a .jsonl file or a folder of .md
    (relative to the file that names it), or {where: {field: value}}, a subset of the pipeline's set. Who may
    read a document is still the pipeline's truth: a collection never widens it."""
    context: ContextSpec | None = None
    """Retrieve for this route (omit for no retrieval)."""
    model: ModelStepSpec | None = None
    """The model step (omit for a canned answer)."""
    answer: str | list[AnswerSpec] | None = None
    """A canned/templated answer for routes without a model (a string, or a list of {when, text})."""
    state: StateUpdateSpec = Field(default_factory=StateUpdateSpec)
    handoff: bool = False
    """A handoff to a person: sets state.handoff."""

    @field_validator("answer", mode="before")
    @classmethod
    def _answer_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            check_template(value)
        return value

    @model_validator(mode="after")
    def _one(self) -> RouteSpec:
        if self.model is not None and self.answer is not None:
            raise ValueError("a route has a model step or a canned answer, not both")
        if self.model is None and self.answer is None:
            raise ValueError("a route needs a model step (model: {...}) or an answer")
        return self

    def answers(self) -> list[AnswerSpec]:
        if self.answer is None:
            return []
        return [AnswerSpec(text=self.answer)] if isinstance(self.answer, str) else list(self.answer)


class PriceSpec(_Model):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class EndpointSpec(_Model):
    """An OpenAI-compatible endpoint."""

    base_url: str
    api_key_env: str | None = None
    """The NAME of the environment variable holding the key (the key is never written anywhere)."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Sent with every model call; ``${NAME}`` is read from the environment when the run starts. Values are never
    stored, cached or printed (and are not part of the response cache's key)."""
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0, le=20)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"https?://", value):
            raise ValueError("expected an http:// or https:// URL")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError("the name of an environment variable (e.g. OPENAI_API_KEY), not the key itself")
        return value


class PipelineSpec(_Model):
    """The reference pipeline: routing → context → model, with state."""

    version: int = PIPELINE_VERSION
    documents: str | None = None
    """A document set (.jsonl or a folder of .md), relative to the file that names it; default: the suite's."""
    endpoint: EndpointSpec | None = None
    """Where non-builtin models are called."""
    router: RouterSpec
    routes: dict[str, RouteSpec]
    slots: list[SlotSpec] = Field(default_factory=list)
    prices: dict[str, PriceSpec] = Field(default_factory=dict)
    """Model name → USD per million tokens, over the built-in table."""
    token_counter: str = "auto"
    """auto (tiktoken when its encoding is cached locally, else the estimate), or estimate."""

    @field_validator("version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != PIPELINE_VERSION:
            raise ValueError(f"pipeline format version {value} is not one this evalgate reads (it reads {PIPELINE_VERSION})")
        return value

    @field_validator("token_counter")
    @classmethod
    def _counter(cls, value: str) -> str:
        if value not in ("auto", "estimate"):
            raise ValueError("token_counter is auto or estimate")
        return value

    @model_validator(mode="after")
    def _routes_known(self) -> PipelineSpec:
        known = set(self.routes)

        def check(name: str, where: str) -> None:
            if name not in known:
                from ..errors import did_you_mean

                hint = did_you_mean(name, known)
                raise ValueError(f"{where} names route '{name}', which is not under routes"
                                 + (f" ({hint})" if hint else f"; routes: {', '.join(sorted(known))}"))

        check(self.router.fallback, "router.fallback")
        for i, rule in enumerate(self.router.rules):
            if rule.route is not None:
                check(rule.route, f"router.rules[{i}]")
            for r in rule.scored or {}:
                check(r, f"router.rules[{i}].scored")
            if rule.slot is not None and rule.slot not in {s.name for s in self.slots}:
                raise ValueError(f"router.rules[{i}] names slot '{rule.slot}', which is not under slots")
        if self.router.classifier is not None:
            for r in self.router.classifier.routes:
                check(r, "router.classifier.routes")
        for r in self.router.workflows or []:
            check(r, "router.workflows")
        for name, route in self.routes.items():
            if route.documents is not None and route.context is None:
                raise ValueError(f"routes.{name} names documents but does not retrieve: add context: {{...}}")
        needs_endpoint = [n for n, r in self.routes.items() if r.model is not None and r.model.name != BUILTIN_MODEL]
        if self.router.classifier is not None and self.router.classifier.model != BUILTIN_MODEL:
            needs_endpoint.append("router.classifier")
        if needs_endpoint and self.endpoint is None:
            raise ValueError(f"{needs_endpoint[0]} calls a model at an endpoint, but the pipeline has no endpoint: "
                             "add endpoint: {base_url: ..., api_key_env: ...}")
        return self

    def workflows(self) -> list[str]:
        return list(self.router.workflows or [])
