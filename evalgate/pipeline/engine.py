"""One turn through the pipeline: slots → route → context → model or answer → state → trace."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..documents import DocumentSet, Permissions
from ..errors import RunStopped, TurnFailed
from ..models.prices import DEFAULT_PRICES
from ..traces import User
from .config import BUILTIN_MODEL, PipelineSpec, RouteSpec
from .context import Candidate, Retriever
from .model import Prices, SpendMeter, builtin_answer
from .router import Decision, Message, Router, parse_classifier_answer
from .state import SlotFiller, split_structured
from .templates import TemplateError, render
from .tokens import TokenCounter, token_counter

PROVIDER_BUILTIN = "evalgate-builtin"
PROVIDER_ENDPOINT = "openai-compatible"


@dataclass
class ModelCall:
    """What a model step produced."""

    text: str
    model: str
    """The model asked for."""
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    cached: bool = False
    attempts: int = 0
    queued_ms: float = 0.0
    harness_ms: float = 0.0
    """evalgate's own time around the call's exchange (see ModelResponse.harness_ms): not the system's latency."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    """The messages the model received, as sent (for the built-in model: as they would have been)."""
    answered: str | None = None
    """The model that answered, as the endpoint's answer names it (e.g. a dated snapshot of ``model``)."""


@dataclass
class Steps:
    """Milliseconds each step took, measured."""

    times: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self.times[name] = round((now - start) * 1000, 3)
        return now


class Pipeline:
    """The reference pipeline for one suite; ``client`` is a ModelClient (or None when only builtin runs)."""

    def __init__(self, spec: PipelineSpec, documents: DocumentSet | None, permissions: Permissions | None,
                 *, client: Any = None, max_cost: float | None = None, counter: TokenCounter | None = None,
                 meter: SpendMeter | None = None):
        self.spec = spec
        self.counter = counter or token_counter(spec.token_counter)
        self.router = Router(spec.router, spec.workflows())
        self.slots = SlotFiller(spec.slots)
        from ..documents import GroupPermissions

        self.permissions = permissions or (GroupPermissions.of(documents) if documents is not None else None)
        """The truth about who may read what; every collection is filtered by it."""
        self.retriever: Retriever | None = None
        if documents is not None:
            assert self.permissions is not None
            self.retriever = Retriever(documents, self.permissions, self.counter)
        self.collections = self._collections(documents)
        """Route → the retriever over that route's own collection (routes without one search the pipeline's set)."""
        self.client = client
        self.prices = Prices({**DEFAULT_PRICES, **{k: (p.input, p.output) for k, p in spec.prices.items()}})
        self.meter = meter if meter is not None else SpendMeter(max_cost)
        """Shared by every suite of one ``evalgate run``: --max-cost is the run's budget, not each suite's."""

    # --- the turn ---------------------------------------------------------------

    async def turn(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request in, one trace (native format) out."""
        start = time.perf_counter()
        steps = Steps()
        text = str(request.get("input") or "")
        state_in: dict[str, Any] = dict(request.get("state") or {})
        raw_user = request.get("user") or {}
        user = User(id=str(raw_user.get("id") or "anonymous"), groups=[str(g) for g in raw_user.get("groups") or []])
        history = list(request.get("history") or [])
        repeat = int(request.get("repeat") or 0)
        found = self.slots.extract(text)

        t = time.perf_counter()

        def best(route: str) -> float:
            retriever = self.retriever_for(route)
            return retriever.best_readable(text, user) if retriever is not None else 0.0

        decision = self.router.decide(Message.of(text, state_in, found), best)
        classifier_call: ModelCall | None = None
        if decision is None:
            decision, classifier_call = await self._classify(text, history, state_in, repeat)
        t = steps.add("route", t)
        if classifier_call is not None:
            steps.times["route"] = round(max(0.0, steps.times["route"] - classifier_call.harness_ms), 3)
        route = self.spec.routes[decision.route]

        state = self.slots.apply(state_in, found, decision.route)
        if decision.route in self.router.workflows:
            state["workflow"] = decision.route
        state.update(route.state.set)
        for key in route.state.clear:
            state.pop(key, None)
        if route.handoff:
            state["handoff"] = True

        variables: dict[str, Any] = {"input": text, "message": text, "history": history, "state": state,
                                     "user": user.model_dump(), "route": decision.route, "context": []}
        candidates: list[Candidate] = []
        if route.context is not None:
            retriever = self.retriever_for(decision.route)
            if retriever is None:
                raise TurnFailed(f"route {decision.route} retrieves, but the pipeline has no document set "
                                 "(documents: in the suite, the pipeline or the route)")
            query = self._render(route.context.query, variables, f"routes.{decision.route}.context.query")
            candidates = retriever.assemble(query, user, top_k=route.context.top_k,
                                                 min_score=route.context.min_score, max_tokens=route.context.max_tokens)
            variables["context"] = [{"id": c.doc.id, "title": c.doc.title, "text": c.doc.text, "score": c.score}
                                    for c in candidates if c.excluded is None]
            t = steps.add("context", t)

        call: ModelCall | None = None
        if route.model is not None:
            call = await self._model_step(decision.route, route, variables, history, text, repeat)
            output = call.text
            if route.model.state_from_output:
                output, new_state = split_structured(output)
                if new_state:
                    state.update(new_state)
            steps.add("model", t)
            steps.times["model"] = round(max(0.0, steps.times["model"] - call.harness_ms), 3)
        else:
            output = self._answer(decision.route, route, variables)
            steps.add("answer", t)

        trace: dict[str, Any] = {
            "v": 1,
            "trace_id": f"{request.get('session_id', 'session')}:{request.get('turn', 1)}",
            "session_id": request.get("session_id"),
            "turn": request.get("turn"),
            "user": user.model_dump(),
            "input": text,
            "route": {"name": decision.route, "confidence": decision.confidence, "reason": decision.reason},
            "context": [c.item() for c in candidates],
            "output": output,
            "state": state,
        }
        calls = [c for c in (classifier_call, call) if c is not None]
        if call is not None and route.model is not None:
            trace["model"] = {"name": call.answered or call.model, "requested": call.model,
                              "provider": PROVIDER_BUILTIN if route.model.name == BUILTIN_MODEL else PROVIDER_ENDPOINT,
                              "params": _public_params(route.model.params)}
            trace["prompt"] = call.messages  # the answering call's; a classifier's prompt only routed
        if calls:
            costs = [c.cost for c in calls]
            trace["usage"] = {"input_tokens": sum(c.input_tokens or 0 for c in calls),
                              "output_tokens": sum(c.output_tokens or 0 for c in calls),
                              "cost_usd": None if any(x is None for x in costs) else round(sum(costs), 8)}  # type: ignore[arg-type]
        harness = sum(c.harness_ms for c in calls)
        trace["latency_ms"] = {"total": round(max(0.0, (time.perf_counter() - start) * 1000 - harness), 3),
                               **steps.times}
        trace["extra"] = {"pipeline": {"token_counter": self.counter.name,
                                       "cached": [c.cached for c in calls],
                                       "attempts": [c.attempts for c in calls],
                                       "queued_ms": round(sum(c.queued_ms for c in calls), 3),
                                       "harness_ms": round(harness, 3)}}
        return trace

    # --- collections ---------------------------------------------------------------

    def retriever_for(self, route: str) -> Retriever | None:
        """The retriever a route searches: its own collection's, else the pipeline's set's."""
        return self.collections.get(route, self.retriever)

    def _collections(self, documents: DocumentSet | None) -> dict[str, Retriever]:
        """One BM25 index per route collection (routes naming the same file share one)."""
        from ..documents import DocumentSet, GroupPermissions
        from ..errors import SuiteError

        by_key: dict[str, Retriever] = {}
        out: dict[str, Retriever] = {}
        for name, route in self.spec.routes.items():
            chosen = route.documents
            if chosen is None:
                continue
            if isinstance(chosen, str):
                key = f"file:{chosen}"
                if key not in by_key:
                    collection = DocumentSet.load(chosen)
                    # the pipeline's truth decides; only a pipeline with no other set lets the file's groups decide
                    by_key[key] = Retriever(collection, self.permissions or GroupPermissions.of(collection),
                                            self.counter)
            else:
                key = f"where:{sorted(chosen.where.items())!r}"
                if key not in by_key:
                    if documents is None:
                        raise SuiteError(f"routes.{name}.documents picks documents where {chosen.where}, but the "
                                         "pipeline has no document set to pick from",
                                         hint="give documents: in the suite or the pipeline, or name a file")
                    subset = [d for d in documents if chosen.matches(d.metadata)]
                    if not subset:
                        raise SuiteError(f"routes.{name}.documents: no document of "
                                         f"{documents.path or 'the document set'} has {chosen.where}",
                                         hint="check the field name and values against the documents")
                    assert self.permissions is not None
                    by_key[key] = Retriever(DocumentSet(subset, documents.path), self.permissions, self.counter)
            out[name] = by_key[key]
        return out

    # --- steps -------------------------------------------------------------------

    def _render(self, source: str, variables: dict[str, Any], where: str) -> str:
        try:
            return render(source, variables)
        except TemplateError as exc:
            raise TurnFailed(f"template {where} failed: {exc}") from None

    def _answer(self, name: str, route: RouteSpec, variables: dict[str, Any]) -> str:
        import re

        lowered = str(variables["input"]).lower().replace("\u2019", "'")
        for i, answer in enumerate(route.answers()):
            if answer.when is None or re.search(answer.when, lowered):
                return self._render(answer.text, variables, f"routes.{name}.answer[{i}]")
        return ""

    async def _model_step(self, name: str, route: RouteSpec, variables: dict[str, Any],
                          history: list[dict[str, Any]], text: str, repeat: int) -> ModelCall:
        assert route.model is not None
        system = self._render(route.model.prompt, variables, f"routes.{name}.model.prompt")
        messages = [{"role": "system", "content": system},
                    *({"role": str(m.get("role")), "content": str(m.get("content", ""))} for m in history),
                    {"role": "user", "content": text}]
        if route.model.name == BUILTIN_MODEL:
            try:
                answer = builtin_answer(route.model.params, variables)
            except TemplateError as exc:
                raise TurnFailed(f"builtin model's lead template failed: {exc}") from None
            tokens_in = sum(self.counter.count(m["content"]) for m in messages)
            tokens_out = self.counter.count(answer)
            return ModelCall(answer, BUILTIN_MODEL, tokens_in, tokens_out, self.prices.cost(BUILTIN_MODEL, tokens_in, tokens_out),
                             messages=messages)
        return await self._call(route.model.name, messages, route.model.params, repeat)

    async def _call(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any], repeat: int) -> ModelCall:
        from ..models import ModelError, ModelRequest

        if self.client is None:
            raise TurnFailed(f"model {model} needs an endpoint")
        self.meter.check()  # BudgetReached stops the run
        try:
            response = await self.client.complete(ModelRequest(model, messages, dict(params), repeat))
        except RunStopped:  # offline with no cached answer
            raise
        except ModelError as exc:
            raise TurnFailed(f"model {model}: {exc}") from None
        tokens_in = response.input_tokens if response.input_tokens is not None else sum(
            self.counter.count(str(m["content"])) for m in messages)
        tokens_out = response.output_tokens if response.output_tokens is not None else self.counter.count(response.text)
        cost = self.prices.cost(model, tokens_in, tokens_out)
        if cost is None and response.model:  # priced by the snapshot that answered, when only it is in the table
            cost = self.prices.cost(response.model, tokens_in, tokens_out)
        if not response.cached:
            self.meter.add(cost)
        return ModelCall(response.text, model, tokens_in, tokens_out, cost, response.cached, response.attempts,
                         response.queued_ms, response.harness_ms, messages, answered=response.model or None)

    async def _classify(self, text: str, history: list[dict[str, Any]], state: dict[str, Any],
                        repeat: int) -> tuple[Decision, ModelCall | None]:
        spec = self.spec.router.classifier
        fallback = self.spec.router.fallback
        if spec is None:
            return Decision(fallback, None, "no rule matched: fallback"), None
        system = self._render(spec.prompt, {"routes": spec.routes, "input": text, "message": text,
                                            "history": history, "state": state}, "router.classifier.prompt")
        call = await self._call(spec.model, [{"role": "system", "content": system}, {"role": "user", "content": text}],
                                spec.params, repeat)
        chosen = parse_classifier_answer(call.text, spec.routes)
        if chosen is None:
            return Decision(fallback, None, f"classifier answered {call.text.strip()[:40]!r}, not a route: fallback"), call
        return Decision(chosen, None, f"classifier ({spec.model}) chose {chosen}"), call


def _public_params(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as recorded in the trace (the builtin's templates left out)."""
    return {k: v for k, v in params.items() if k not in ("lead", "empty")}
