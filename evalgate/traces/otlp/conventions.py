"""The semantic conventions: OpenInference and OpenTelemetry GenAI attributes, messages, tools, models, usage."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class Message:
    role: str
    content: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


def _genai_message(m: Any) -> Message | None:
    m = _json(m)
    if not isinstance(m, dict):
        return None
    calls: list[dict[str, Any]] = []
    parts = _list(m.get("parts"))
    texts = []
    for p in parts:
        if isinstance(p, dict) and p.get("type") == "tool_call":
            calls.append({"name": p.get("name"), "arguments": _json(p.get("arguments"))})
        elif isinstance(p, dict) and p.get("type") == "text":
            texts.append(str(p.get("content", "")))
    for tc in _list(m.get("tool_calls")):
        fn = tc.get("function") if isinstance(tc, dict) else None
        if isinstance(fn, dict):
            calls.append({"name": fn.get("name"), "arguments": _json(fn.get("arguments"))})
    content = "\n".join(texts) if texts else _text_of(m.get("content"))
    return Message(str(m.get("role") or "assistant"), content, calls)


def _messages(span: Span) -> tuple[list[Message], list[Message]]:
    """(input messages, output messages) of an LLM span, from whichever convention it uses."""
    a = span.attrs
    ins: list[Message] = []
    outs: list[Message] = []
    for key, target in (("llm.input_messages", ins), ("llm.output_messages", outs)):
        for _, m in _indexed(a, key).items():
            content = m.get("message.content")
            if content is None:
                parts = [v for k, v in sorted(m.items()) if k.endswith("message_content.text")]
                content = "\n".join(str(p) for p in parts) if parts else None
            calls = _oi_tool_calls(m)
            target.append(Message(str(m.get("message.role") or ""), None if content is None else str(content), calls))
    for key, target in (("gen_ai.input.messages", ins), ("gen_ai.output.messages", outs)):
        value = _json(a.get(key))
        if isinstance(value, list):
            target.extend(m for m in map(_genai_message, value) if m is not None)
    for key, target in (("gen_ai.prompt", ins), ("gen_ai.completion", outs)):
        for _, m in _indexed(a, key).items():
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


def _context(retrievers: list[Span]) -> list[dict[str, Any]]:
    """Retrieved documents, in order across the retriever spans, ranked from 1."""
    context: list[dict[str, Any]] = []
    for s in retrievers:
        for n, d in _indexed(s.attrs, "retrieval.documents").items():
            meta = _json(d.get("document.metadata"))
            item: dict[str, Any] = {"id": str(d.get("document.id", f"{s.name}#{n}")), "rank": len(context) + 1}
            score = d.get("document.score")
            if isinstance(score, (int, float)) and not isinstance(score, bool):
                item["score"] = float(score)
            if isinstance(d.get("document.content"), str):
                item["content"] = d["document.content"]
            if isinstance(meta, dict) and isinstance(meta.get("groups"), list):
                item["groups"] = [str(g) for g in meta["groups"]]
            context.append(item)
    return context


def _requested_calls(messages: list[tuple[list[Message], list[Message]]]) -> list[dict[str, Any]]:
    """Tool calls the model asked for, when no tool span recorded them."""
    calls = []
    for _, outs in messages:
        for m in outs:
            for c in m.tool_calls:
                args = c.get("arguments")
                calls.append({"name": str(c.get("name")), "arguments": args if isinstance(args, dict) else {}})
    return calls


def _model(last: dict[str, Any]) -> dict[str, Any]:
    """Model name, provider and parameters from the last model call's attributes."""
    name = _first(last, "gen_ai.response.model", "llm.model_name", "gen_ai.request.model")
    provider = _first(last, "gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
    params = _json(last.get("llm.invocation_parameters"))
    params = dict(params) if isinstance(params, dict) else {}
    for attr, pname in PARAM_ATTRS.items():
        if attr in last:
            params[pname] = last[attr]
    if name is None and isinstance(params.get("model"), str):
        name = params["model"]  # a failed call has no response model: the requested one
    model: dict[str, Any] = {}
    if name is not None:
        model["name"] = str(name)
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
