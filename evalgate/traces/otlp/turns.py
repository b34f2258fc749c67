"""Spans → turns: one trace's spans become one native turn (route, context, tools, model, output, usage)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .conventions import (
    KNOWN,
    KNOWN_EVENTS,
    Message,
    _context,
    _first,
    _json,
    _kind,
    _latency,
    _messages,
    _model,
    _normal,
    _prompt,
    _requested_calls,
    _root_message,
    _usage,
    _value_text,
)
from .mapping import FieldRule, Mapping
from .spans import Span

MAX_UNMAPPED_NAMES = 500

@dataclass
class ImportStats:
    """What an import read and made, and what it could not map."""

    files: list[str] = field(default_factory=list)
    spans: int = 0
    late_spans: int = 0
    """Spans that arrived after their trace was finished (more than the window after its root); not used."""
    log_records: int = 0
    log_records_unattached: int = 0
    traces: int = 0
    turns: int = 0
    error_turns: int = 0
    sessions: int = 0
    documents: int = 0
    tool_calls: int = 0
    prompts: int = 0
    """Turns whose model call recorded the messages it received."""
    input_tokens: int = 0
    output_tokens: int = 0
    models: Counter[str] = field(default_factory=Counter)
    """Turns by the model that answered their last model call (a failed call counts under requested_models only)."""
    requested_models: Counter[str] = field(default_factory=Counter)
    """Turns by the model their last model call asked for."""
    unmapped: Counter[str] = field(default_factory=Counter)
    """Attribute (and event) names the import did not map, with how many spans carried them."""
    redacted: dict[str, int] = field(default_factory=dict)
    out: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "out": self.out, "spans": self.spans, "late_spans": self.late_spans,
                "log_records": self.log_records,
                "log_records_unattached": self.log_records_unattached, "traces": self.traces, "turns": self.turns,
                "error_turns": self.error_turns, "sessions": self.sessions, "documents": self.documents,
                "tool_calls": self.tool_calls, "prompts": self.prompts, "tokens": {"input": self.input_tokens, "output": self.output_tokens},
                "models": dict(self.models.most_common()),
                "requested_models": dict(self.requested_models.most_common()), "unmapped": dict(self.unmapped.most_common()),
                "redacted": self.redacted}


class TurnBuilder:
    """Turns one request's span tree into a native trace (a dict)."""

    def __init__(self, mapping: Mapping, stats: ImportStats):
        self.mapping = mapping
        self.stats = stats
        self.known = KNOWN | mapping.attribute_names()

    def _note_unmapped(self, span: Span) -> None:
        unmapped = self.stats.unmapped
        for key in span.attrs:
            if key in self.known:
                continue
            norm = _normal(key)
            if norm in self.known:
                continue
            if norm in unmapped or len(unmapped) < MAX_UNMAPPED_NAMES:
                unmapped[norm] += 1
        for ev in span.events:
            if ev.name not in KNOWN_EVENTS:
                key = f"event:{ev.name}"
                if key in unmapped or len(unmapped) < MAX_UNMAPPED_NAMES:
                    unmapped[key] += 1

    def _lookup(self, rule: FieldRule | None, tree: list[Span]) -> Any:
        if rule is None:
            return None
        for span in tree:
            if rule.span_name is not None and span.name != rule.span_name:
                continue
            v = _first(span.attrs, *rule.attributes)
            if v is not None:
                return v
        if rule.span_name is None:
            return _first(tree[0].resource, *rule.attributes)
        return None

    def build(self, root: Span, tree: list[Span], trace_id: str) -> dict[str, Any]:
        """The native trace (a dict, native field order) of one request's span tree, root first."""
        st = self.stats
        for s in tree:
            self._note_unmapped(s)
        kinds = [_kind(s) for s in tree]
        llms = [s for s, k in zip(tree, kinds) if k == "LLM"]
        messages = [_messages(s) for s in llms]

        turn: dict[str, Any] = {"v": 1, "trace_id": trace_id}
        session = self._lookup(self.mapping.session, tree)
        turn["session_id"] = str(session) if session is not None else trace_id
        turn["timestamp"] = datetime.fromtimestamp(root.start_ns / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")
        user = self._user(tree)
        if user is not None:
            turn["user"] = user
        turn["input"] = self._input(root, tree, messages)
        route = self._lookup(self.mapping.route, tree)
        if route is not None:
            turn["route"] = {"name": str(route)}
        retrieved = _context([s for s, k in zip(tree, kinds) if k == "RETRIEVER"])
        if retrieved.context:
            turn["context"] = retrieved.context
            st.documents += len(retrieved.context)
        calls = [self._tool_call(s) for s, k in zip(tree, kinds) if k == "TOOL"] or _requested_calls(messages)
        if calls:
            turn["tool_calls"] = calls
            st.tool_calls += len(calls)
        prompt_cut: dict[str, int] | None = None
        if llms:
            model = _model(llms[-1])
            if model:
                turn["model"] = model
                if "name" in model:
                    st.models[model["name"]] += 1
                if "requested" in model:
                    st.requested_models[model["requested"]] += 1
            prompt = _prompt(messages)
            if prompt is not None:
                turn["prompt"] = prompt.messages
                st.prompts += 1
                if prompt.recorded > len(prompt.messages) or prompt.texts_cut:
                    prompt_cut = {"messages": prompt.recorded, "kept": len(prompt.messages),
                                  "texts_cut": prompt.texts_cut}
            usage = _usage(llms)
            if usage is not None:
                turn["usage"] = usage
                st.input_tokens += usage["input_tokens"]
                st.output_tokens += usage["output_tokens"]
        output = self._output(root, tree, messages)
        if output is not None:
            turn["output"] = output
        state = _json(self._lookup(self.mapping.state, tree))
        if isinstance(state, dict):
            turn["state"] = state
        turn["latency_ms"] = _latency(root, tree, kinds)
        error = self._turn_error(root, tree)
        if error is not None:
            turn["error"] = error
            st.error_turns += 1
        extra: dict[str, Any] = {"span": root.name}
        service = root.resource.get("service.name")
        if service is not None:
            extra["service"] = service
        if retrieved.retrievals:
            extra["retrievals"] = retrieved.retrievals
        if prompt_cut is not None:
            extra["prompt_cut"] = prompt_cut
        turn["extra"] = {"otlp": extra}
        for name, rule in self.mapping.extra:
            value = self._lookup(rule, tree)
            if value is not None:
                turn["extra"][name] = value
        return turn

    def _user(self, tree: list[Span]) -> dict[str, Any] | None:
        user_id = self._lookup(self.mapping.user, tree)
        groups = _json(self._lookup(self.mapping.groups, tree))
        if isinstance(groups, str):
            groups = [g for g in re.split(r"[,\s]+", groups) if g]
        if user_id is None and not groups:
            return None
        return {"id": str(user_id) if user_id is not None else "anonymous",
                "groups": [str(g) for g in groups] if isinstance(groups, list) else []}

    def _input(self, root: Span, tree: list[Span], messages: list[tuple[list[Message], list[Message]]]) -> str:
        """The mapping's, else the root's ``input.value`` or input messages, else the first model call's last user message."""
        text = self._lookup(self.mapping.input, tree) if self.mapping.input else None
        if text is None:
            text = _value_text(root.attrs.get("input.value"))
        if text is None:
            text = _root_message(root, "gen_ai.input.messages", ("user", "human"))
        if text is None:
            for ins, _ in messages:
                users = [m for m in ins if m.role in ("user", "human") and m.content]
                if users:
                    text = users[-1].content
                    break
        return str(text) if text is not None else ""

    def _output(self, root: Span, tree: list[Span], messages: list[tuple[list[Message], list[Message]]]) -> str | None:
        """The mapping's, else the root's ``output.value`` or output messages (what the user was shown, also a
        fallback after a failed model call), else the last model call's answer."""
        output = self._lookup(self.mapping.output, tree) if self.mapping.output else None
        if output is None:
            output = _value_text(root.attrs.get("output.value"))
        if output is None:
            output = _root_message(root, "gen_ai.output.messages", ("assistant", "model"))
        if output is None:
            for _, outs in reversed(messages):
                texts = [m.content for m in outs if m.content]
                if texts:
                    output = texts[-1]
                    break
        return str(output) if output is not None else None

    def _tool_call(self, s: Span) -> dict[str, Any]:
        """A TOOL / execute_tool span as a native tool call."""
        name = _first(s.attrs, "tool.name", "gen_ai.tool.name") or s.name.removeprefix("execute_tool ").strip()
        args = _json(_first(s.attrs, "gen_ai.tool.call.arguments", "input.value"))
        if not isinstance(args, dict):
            params = _json(s.attrs.get("tool.parameters"))
            args = params if isinstance(params, dict) and "properties" not in params else ({} if args is None else {"input": args})
        call: dict[str, Any] = {"name": str(name), "arguments": args}
        result = _json(_first(s.attrs, "gen_ai.tool.call.result", "output.value"))
        if result is not None:
            call["result"] = result
        err = self._span_error(s)
        if err:
            call["error"] = err
        return call

    def _turn_error(self, root: Span, tree: list[Span]) -> str | None:
        """The root's error, else the first error status or exception event in the tree."""
        error = self._span_error(root)
        if error is None:
            for s in tree[1:]:
                exc = self._span_error(s)
                if exc is not None:
                    return f"{s.name}: {exc}"
        return error

    @staticmethod
    def _exception(span: Span) -> str | None:
        for ev in span.events:
            if ev.name == "exception":
                t, m = ev.attrs.get("exception.type"), ev.attrs.get("exception.message")
                return ": ".join(str(x) for x in (t, m) if x) or "exception"
        return None

    def _span_error(self, span: Span) -> str | None:
        exc = self._exception(span)
        if exc is not None:
            return exc
        if span.error is not None:
            etype = span.attrs.get("error.type")
            return f"{etype}: {span.error}" if etype and str(etype) not in span.error else span.error
        return None
