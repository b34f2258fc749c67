"""The semantic conventions: OpenInference and OpenTelemetry GenAI attributes, messages, tools, models, usage."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .spans import Span

OI_KIND = "openinference.span.kind"
LLM_OPERATIONS = {"chat", "text_completion", "generate_content", "completion", "embeddings"}
_IDX = re.compile(r"\.\d+(?=\.|$)")

# attribute names (indices as .N) that the import maps; anything else is reported as unmapped
KNOWN = {
    OI_KIND, "input.value", "input.mime_type", "output.value", "output.mime_type", "session.id", "user.id",
    "llm.model_name", "llm.provider", "llm.system", "llm.invocation_parameters",
    "llm.token_count.prompt", "llm.token_count.completion", "llm.token_count.total",
    "llm.input_messages.N.message.role", "llm.input_messages.N.message.content",
    "llm.input_messages.N.message.contents.N.message_content.type",
    "llm.input_messages.N.message.contents.N.message_content.text",
    "llm.output_messages.N.message.role", "llm.output_messages.N.message.content",
    "llm.output_messages.N.message.contents.N.message_content.type",
    "llm.output_messages.N.message.contents.N.message_content.text",
    "llm.output_messages.N.message.tool_calls.N.tool_call.function.name",
    "llm.output_messages.N.message.tool_calls.N.tool_call.function.arguments",
    "llm.output_messages.N.message.tool_calls.N.tool_call.id",
    "retrieval.documents.N.document.id", "retrieval.documents.N.document.score",
    "retrieval.documents.N.document.content", "retrieval.documents.N.document.metadata",
    "tool.name", "tool.parameters", "tool.description",
    "gen_ai.operation.name", "gen_ai.system", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
    "gen_ai.request.temperature", "gen_ai.request.max_tokens", "gen_ai.request.top_p", "gen_ai.request.top_k",
    "gen_ai.request.seed", "gen_ai.request.frequency_penalty", "gen_ai.request.presence_penalty",
    "gen_ai.request.stop_sequences",
    "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.completion_tokens", "gen_ai.conversation.id",
    "gen_ai.tool.name", "gen_ai.tool.call.id", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
    "gen_ai.tool.description", "gen_ai.tool.type",
    "gen_ai.data_source.id", "gen_ai.retrieval.documents", "gen_ai.retrieval.query.text", "gen_ai.retrieval.top_k",
    "gen_ai.workflow.name",  # the workflow span's name already says it ("invoke_workflow NAME"), kept in extra.otlp.span
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
    "gen_ai.prompt.N.role", "gen_ai.prompt.N.content", "gen_ai.completion.N.role", "gen_ai.completion.N.content",
    "gen_ai.completion.N.finish_reason", "gen_ai.response.finish_reasons", "gen_ai.response.id",
    "error.type", "enduser.id",
}
KNOWN_EVENTS = {"exception", "gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message",
                "gen_ai.tool.message", "gen_ai.choice", "gen_ai.content.prompt", "gen_ai.content.completion",
                "gen_ai.client.inference.operation.details"}
PARAM_ATTRS = {"gen_ai.request.temperature": "temperature", "gen_ai.request.max_tokens": "max_tokens",
               "gen_ai.request.top_p": "top_p", "gen_ai.request.top_k": "top_k", "gen_ai.request.seed": "seed",
               "gen_ai.request.frequency_penalty": "frequency_penalty",
               "gen_ai.request.presence_penalty": "presence_penalty", "gen_ai.request.stop_sequences": "stop"}


def _normal(key: str) -> str:
    return _IDX.sub(".N", key)


def _json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _kind(span: Span) -> str:
    """LLM, RETRIEVER, TOOL, CHAIN, AGENT, ... from either convention."""
    kind = span.attrs.get(OI_KIND)
    if isinstance(kind, str) and kind:
        return kind.upper()
    op = span.attrs.get("gen_ai.operation.name")
    if op == "execute_tool":
        return "TOOL"
    if op in ("invoke_agent", "create_agent"):
        return "AGENT"
    if op == "retrieval" or "gen_ai.retrieval.documents" in span.attrs:  # before LLM: it may name an embedding model
        return "RETRIEVER"
    if op in LLM_OPERATIONS or "gen_ai.request.model" in span.attrs or "gen_ai.prompt.0.content" in span.attrs:
        return "LLM"
    if any(k.startswith("retrieval.documents.") for k in span.attrs):
        return "RETRIEVER"
    return "CHAIN"


def _indexed(attrs: dict[str, Any], prefix: str) -> dict[int, dict[str, Any]]:
    """``prefix.N.rest`` attributes grouped by N: {N: {rest: value}}."""
    out: dict[int, dict[str, Any]] = {}
    dotted = prefix + "."
    plen = len(dotted)
    for key, value in attrs.items():
        if key.startswith(dotted):
            idx, _, rest = key[plen:].partition(".")
            if idx.isdigit():
                out.setdefault(int(idx), {})[rest] = value
    return dict(sorted(out.items())) if len(out) > 1 else out


def _indexed_groups(attrs: dict[str, Any], prefixes: tuple[str, ...]) -> dict[str, dict[int, dict[str, Any]]]:
    """``_indexed`` for several dotted prefixes in one pass over the attributes: {prefix: {N: {rest: value}}}."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for key, value in attrs.items():
        if key.startswith(prefixes):
            for prefix in prefixes:
                if key.startswith(prefix):
                    idx, _, rest = key[len(prefix):].partition(".")
                    if idx.isdigit():
                        out.setdefault(prefix, {}).setdefault(int(idx), {})[rest] = value
                    break
    return {p: dict(sorted(g.items())) if len(g) > 1 else g for p, g in out.items()}


def _text_of(content: Any) -> str | None:
    """Message content as text: a string, OI content items, or GenAI parts."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [t for t in (_text_of(p) for p in content) if t]
        return "\n".join(texts) if texts else None
    if isinstance(content, dict):
        for key in ("content", "text"):
            if isinstance(content.get(key), str):
                return str(content[key])
        if "parts" in content:
            return _text_of(content["parts"])
    return None


@dataclass(slots=True)
class Message:
    role: str
    content: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


def _genai_message(m: Any) -> Message | None:
    if type(m) is str:
        m = _json(m)
    if not isinstance(m, dict):
        return None
    calls: list[dict[str, Any]] = []
    texts = []
    parts = m.get("parts")
    if parts is not None:
        for p in parts if type(parts) is list else _list(parts):
            if isinstance(p, dict):
                kind = p.get("type")
                if kind == "text":
                    texts.append(str(p.get("content", "")))
                elif kind == "tool_call_response":  # a tool's result placed in the prompt
                    response = p.get("response")
                    texts.append(response if isinstance(response, str) else json.dumps(response, ensure_ascii=False))
                elif kind == "tool_call":
                    calls.append({"name": p.get("name"), "arguments": _json(p.get("arguments"))})
    tool_calls = m.get("tool_calls")
    if tool_calls is not None:
        for tc in _list(tool_calls):
            fn = tc.get("function") if isinstance(tc, dict) else None
            if isinstance(fn, dict):
                calls.append({"name": fn.get("name"), "arguments": _json(fn.get("arguments"))})
    if texts:
        content: str | None = "\n".join(texts)
    else:
        raw = m.get("content")
        content = _text_of(raw) if raw is not None else None
    return Message(str(m.get("role") or "assistant"), content, calls)


_MESSAGE_PREFIXES = ("llm.input_messages.", "llm.output_messages.", "gen_ai.prompt.", "gen_ai.completion.")


def _messages(span: Span) -> tuple[list[Message], list[Message]]:
    """(input messages, output messages) of an LLM span, from whichever convention it uses."""
    a = span.attrs
    ins: list[Message] = []
    outs: list[Message] = []
    groups = _indexed_groups(a, _MESSAGE_PREFIXES)
    for key, target in (("llm.input_messages.", ins), ("llm.output_messages.", outs)):
        for m in groups.get(key, {}).values():
            content = m.get("message.content")
            if content is None:
                parts = [v for k, v in sorted(m.items()) if k.endswith("message_content.text")]
                content = "\n".join(str(p) for p in parts) if parts else None
            calls = _oi_tool_calls(m)
            target.append(Message(str(m.get("message.role") or ""), None if content is None else str(content), calls))
    _system_instructions(a.get("gen_ai.system_instructions"), ins)
    for key, target in (("gen_ai.input.messages", ins), ("gen_ai.output.messages", outs)):
        value = _json(a.get(key))
        if isinstance(value, list):
            target.extend(m for m in map(_genai_message, value) if m is not None)
    for key, target in (("gen_ai.prompt.", ins), ("gen_ai.completion.", outs)):
        for m in groups.get(key, {}).values():
            target.append(Message(str(m.get("role") or ""), None if m.get("content") is None else str(m.get("content"))))
    for ev in span.events:
        n = ev.name
        if n in ("gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message", "gen_ai.tool.message"):
            role = str(ev.attrs.get("role") or n.split(".")[1])
            msg = _genai_message({**ev.attrs, "role": role})
            if msg is not None:
                ins.append(msg)
        elif n == "gen_ai.choice":
            body = _json(ev.attrs.get("message"))
            msg = _genai_message(body if isinstance(body, dict) else {"role": "assistant", "content": ev.attrs.get("content")})
            if msg is not None:
                outs.append(msg)
        elif n == "gen_ai.client.inference.operation.details":  # the latest conventions: messages on one event
            _system_instructions(ev.attrs.get("gen_ai.system_instructions"), ins)
            for key, target in (("gen_ai.input.messages", ins), ("gen_ai.output.messages", outs)):
                target.extend(m for m in map(_genai_message, _list(ev.attrs.get(key))) if m is not None)
        elif n == "gen_ai.content.prompt":
            for m in _list(ev.attrs.get("gen_ai.prompt")):
                msg = _genai_message(m)
                if msg is not None:
                    ins.append(msg)
        elif n == "gen_ai.content.completion":
            for m in _list(ev.attrs.get("gen_ai.completion")):
                msg = _genai_message(m)
                if msg is not None:
                    outs.append(msg)
    return ins, outs


def _system_instructions(value: Any, ins: list[Message]) -> None:
    """``gen_ai.system_instructions`` (text parts, kept apart from the input messages when the provider takes them
    apart) as the system message first in ``ins``."""
    if value is None:
        return
    text = _text_of(_json(value))
    if text and not (ins and ins[0].role == "system" and ins[0].content == text):
        ins.insert(0, Message("system", text))


class Prompt(NamedTuple):
    """The messages one model call received, as native prompt messages, and what was cut to keep them bounded."""

    messages: list[dict[str, Any]]
    recorded: int
    """How many messages the call recorded (more than MAX_PROMPT_MESSAGES: the first and the latest are kept)."""
    texts_cut: int
    """Messages whose text was cut to MAX_PROMPT_CHARS."""


def _prompt(calls: list[tuple[list[Message], list[Message]]]) -> Prompt | None:
    """The input messages of the last model call that recorded any (an embeddings call records none)."""
    from ..format import MAX_PROMPT_CHARS, MAX_PROMPT_MESSAGES

    ins = next((ins for ins, _ in reversed(calls) if ins), None)
    if ins is None:
        return None
    kept = ins if len(ins) <= MAX_PROMPT_MESSAGES else [ins[0], *ins[len(ins) - MAX_PROMPT_MESSAGES + 1:]]
    messages = []
    cut = 0
    for m in kept:
        text = m.content or ""
        if len(text) > MAX_PROMPT_CHARS:
            text = text[:MAX_PROMPT_CHARS] + f" … [cut: {len(text):,} characters in all]"
            cut += 1
        msg: dict[str, Any] = {"role": m.role or "unknown", "content": text}
        if m.tool_calls:
            msg["tool_calls"] = m.tool_calls
        messages.append(msg)
    return Prompt(messages, len(ins), cut)


def _list(value: Any) -> list[Any]:
    value = _json(value)
    return value if isinstance(value, list) else []


def _oi_tool_calls(m: dict[str, Any]) -> list[dict[str, Any]]:
    calls: dict[int, dict[str, Any]] = {}
    for k, v in m.items():
        if not k.startswith("message.tool_calls."):
            continue
        idx, _, rest = k[len("message.tool_calls."):].partition(".")
        if idx.isdigit():
            c = calls.setdefault(int(idx), {})
            if rest == "tool_call.function.name":
                c["name"] = v
            elif rest == "tool_call.function.arguments":
                c["arguments"] = _json(v)
    return [calls[i] for i in sorted(calls) if calls[i].get("name")]


def _first(attrs: dict[str, Any], *names: str) -> Any:
    for n in names:
        v = attrs.get(n)
        if v is not None and v != "":
            return v
    return None


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None and not isinstance(v, bool) else None
    except (TypeError, ValueError):
        return None


def _root_message(root: Span, attr: str, roles: tuple[str, ...]) -> str | None:
    """The last text message of one of ``roles`` in the root's ``gen_ai.input.messages``/``gen_ai.output.messages``.

    A GenAI workflow or agent span records what the user said and what they were shown there, also when the
    model call under it failed and the app answered with a fallback.
    """
    value = root.attrs.get(attr)
    if value is None:
        return None
    for m in reversed(_list(value)):
        if type(m) is str:
            m = _json(m)
        if isinstance(m, dict) and (m.get("role") or "assistant") in roles:
            texts = [str(p.get("content", "")) for p in _list(m.get("parts"))
                     if isinstance(p, dict) and p.get("type") == "text"]
            text = "\n".join(texts) if texts else _text_of(m.get("content"))
            if text:
                return text
    return None


_TEXT_KEYS = ("input", "query", "question", "message", "content", "text", "prompt", "output", "answer", "response", "result")


def _value_text(value: Any) -> str | None:
    """``input.value``/``output.value`` as the turn's text: a string, or a JSON object's main text field."""
    value = _json(value)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in _TEXT_KEYS:
            if isinstance(value.get(key), str):
                return str(value[key])
        if isinstance(value.get("messages"), list):
            users = [m for m in value["messages"] if isinstance(m, dict) and m.get("role") in ("user", "human")]
            if users:
                return _text_of(users[-1])
    return json.dumps(value, ensure_ascii=False)


class Retrieved(NamedTuple):
    """What a turn's retriever spans found: context items, and per GenAI retrieval its source and query."""

    context: list[dict[str, Any]]
    retrievals: list[dict[str, Any]]
    """Per ``retrieval`` span: ``data_source``, ``query``, ``top_k`` (those recorded) and its ``documents`` ids."""


def _context(retrievers: list[Span]) -> Retrieved:
    """Retrieved documents, in order across the retriever spans, ranked from 1 (OpenInference and GenAI)."""
    context: list[dict[str, Any]] = []
    retrievals: list[dict[str, Any]] = []
    for s in retrievers:
        a = s.attrs
        if "gen_ai.retrieval.documents" not in a and a.get("gen_ai.operation.name") != "retrieval":
            for n, d in _indexed(a, "retrieval.documents").items():
                _add_document(context, s, n, d.get("document.id"), d.get("document.score"), d.get("document.content"),
                              d.get("document.metadata"))
            continue
        first = len(context)
        for n, doc in enumerate(_list(a.get("gen_ai.retrieval.documents"))):
            if type(doc) is str:
                doc = _json(doc)
            if isinstance(doc, dict):
                _add_document(context, s, n, doc.get("id"), doc.get("score"), doc.get("content"), doc.get("metadata"))
        retrieval: dict[str, Any] = {}
        source, query = a.get("gen_ai.data_source.id"), a.get("gen_ai.retrieval.query.text")
        if source is not None:
            retrieval["data_source"] = str(source)
        if query is not None:
            retrieval["query"] = str(query)
        top_k = _int(_first(a, "gen_ai.request.top_k", "gen_ai.retrieval.top_k"))
        if top_k is not None:
            retrieval["top_k"] = top_k
        retrieval["documents"] = [c["id"] for c in context[first:]]
        retrievals.append(retrieval)
    return Retrieved(context, retrievals)


def _add_document(context: list[dict[str, Any]], span: Span, n: int, doc_id: Any, score: Any, content: Any,
                  metadata: Any) -> None:
    """One retrieved document as a native context item, ranked after those before it."""
    item: dict[str, Any] = {"id": str(doc_id) if doc_id is not None else f"{span.name}#{n}", "rank": len(context) + 1}
    if type(score) is not float:
        if isinstance(score, str):
            try:
                score = float(score)
            except ValueError:
                score = None
        elif isinstance(score, bool) or not isinstance(score, int):
            score = None
    if score is not None:
        item["score"] = float(score)
    if isinstance(content, str):
        item["content"] = content
    if metadata is not None:
        meta = _json(metadata)
        if isinstance(meta, dict) and isinstance(meta.get("groups"), list):
            item["groups"] = [str(g) for g in meta["groups"]]
    context.append(item)


def _requested_calls(messages: list[tuple[list[Message], list[Message]]]) -> list[dict[str, Any]]:
    """Tool calls the model asked for, when no tool span recorded them."""
    calls = []
    for _, outs in messages:
        for m in outs:
            for c in m.tool_calls:
                args = c.get("arguments")
                calls.append({"name": str(c.get("name")), "arguments": args if isinstance(args, dict) else {}})
    return calls


def _failed(span: Span) -> bool:
    return span.error is not None or any(ev.name == "exception" for ev in span.events)


def _model(span: Span) -> dict[str, Any]:
    """Model (the one that answered), requested model, provider and parameters of one model call.

    A call that failed has no response model: only the requested one. A call that answered but recorded no
    response model is taken to have been answered by the model it asked for.
    """
    a = span.attrs
    provider = _first(a, "gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
    params = _json(a.get("llm.invocation_parameters"))
    params = dict(params) if isinstance(params, dict) else {}
    for attr, pname in PARAM_ATTRS.items():
        if attr in a:
            params[pname] = a[attr]
    requested = _first(a, "gen_ai.request.model")
    if requested is None and isinstance(params.get("model"), str):
        requested = params["model"]  # OpenInference: the invocation parameters say what was asked for
    answered = _first(a, "gen_ai.response.model", "llm.model_name")
    if _failed(span):
        if requested is None:
            requested = answered  # a failed call's model name can only be the one it asked for
        answered = None
    elif answered is None:
        answered = requested
    model: dict[str, Any] = {}
    if answered is not None:
        model["name"] = str(answered)
    if requested is not None:
        model["requested"] = str(requested)
    if provider is not None:
        model["provider"] = str(provider)
    if params:
        model["params"] = params
    return model


def _usage(llms: list[Span]) -> dict[str, int] | None:
    """Tokens summed over the model calls; None when none reported any."""
    tin = tout = 0
    seen = False
    for s in llms:
        i = _int(_first(s.attrs, "gen_ai.usage.input_tokens", "llm.token_count.prompt", "gen_ai.usage.prompt_tokens"))
        o = _int(_first(s.attrs, "gen_ai.usage.output_tokens", "llm.token_count.completion", "gen_ai.usage.completion_tokens"))
        seen = seen or i is not None or o is not None
        tin += i or 0
        tout += o or 0
    return {"input_tokens": tin, "output_tokens": tout} if seen else None


def _latency(root: Span, tree: list[Span], kinds: list[str]) -> dict[str, float]:
    """The root span's duration, and the time spent in model, retriever and tool spans."""
    latency = {"total": round((root.end_ns - root.start_ns) / 1e6, 3)}
    for label, kind in (("model", "LLM"), ("context", "RETRIEVER"), ("tools", "TOOL")):
        spans = [s for s, k in zip(tree, kinds) if k == kind]
        if spans:
            latency[label] = round(sum(s.end_ns - s.start_ns for s in spans) / 1e6, 3)
    return latency


def span_kind(span: Span) -> str:
    """LLM, RETRIEVER, TOOL, CHAIN, AGENT, ... from either convention (OpenInference's span kind or GenAI's operation)."""
    return _kind(span)
