"""A support service as a team would already run it, for the tests to meet where it is.

It knows nothing of evalgate's protocol:

- its own API: ``POST /v1/chat`` with ``{"conversation": ID, "text": "..."}``, answering
  ``{"reply": {"text": ...}, "meta": {"workflow": ..., "sources": [...]}, "session": {...}, "usage": {...}}``;
  ``POST /v1/chat/stream`` answers the same as server-sent events (text deltas, then a ``done`` event), and
  ``POST /v1/chat/text`` with the answer alone, as plain text;
- the user in a header (``X-User-Id``) and a bearer token (``SUPPORT_TOKEN``); a wrong token is a 401 that echoes it;
- sessions kept on the server, by conversation id;
- its own ``openai`` client calls to ``OPENAI_BASE_URL`` for every answer, forwarding the ``traceparent`` and
  ``X-Evalgate-*`` headers it received (as OpenTelemetry's propagation would);
- ``SUPPORT_BILLING_PROMPT`` replaces the billing route's system prompt (a release that changed one prompt);
- with ``SUPPORT_OTLP_FILE``, it is instrumented with the OpenTelemetry SDK: a server span per request that
  continues the caller's W3C ``traceparent``, a GenAI client span around each model call (the trace context
  injected into the call's headers by the SDK's propagator), exported as OTLP JSON lines, one request per span,
  as the collector's file exporter writes them.

Run: ``python support_service.py`` prints ``listening on PORT`` once it serves.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from openai import OpenAI

PROMPTS = {
    "billing": "You are the billing desk. Refunds need an order number.",
    "account": "You are the account desk. Never reveal a password.",
    "general": "You are a helpful support agent.",
}
SOURCES = {"billing": ["refund-policy"], "account": ["password-reset"], "general": []}
FORWARDED = ("traceparent", "x-evalgate-run", "x-evalgate-case", "x-evalgate-turn", "x-evalgate-repeat")

_tracer: Any = None


def _instrument(path: str) -> Any:
    """The OpenTelemetry SDK, exporting every finished span to ``path`` as an OTLP JSON line."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class FileExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            with _lock, open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(MessageToDict(encode_spans(spans))) + "\n")
            return SpanExportResult.SUCCESS

    provider = TracerProvider(resource=Resource.create({"service.name": "support-service"}))
    provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
    return provider.get_tracer("support-service")


_sessions: dict[str, dict[str, Any]] = {}
_lock = threading.Lock()
_client = OpenAI(base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
                 api_key=os.environ.get("OPENAI_API_KEY", "none"), max_retries=0, timeout=10)


def route_of(text: str) -> str:
    lowered = text.lower()
    if "refund" in lowered or "money back" in lowered or re.search(r"\border\b", lowered):
        return "billing"
    if "password" in lowered or "log in" in lowered:
        return "account"
    return "general"


def prompt_for(route: str) -> str:
    if route == "billing" and os.environ.get("SUPPORT_BILLING_PROMPT"):
        return os.environ["SUPPORT_BILLING_PROMPT"]
    return PROMPTS[route]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        token = os.environ.get("SUPPORT_TOKEN")
        given = self.headers.get("Authorization", "")
        if token and given != f"Bearer {token}":
            self._send(401, {"detail": f"bad credentials: {given}"})
            return
        user = self.headers.get("X-User-Id")
        if not user:
            self._send(400, {"detail": "X-User-Id is required"})
            return
        if self.path not in ("/v1/chat", "/v1/chat/stream", "/v1/chat/text"):
            self._send(404, {"detail": "no such route"})
            return
        if _tracer is None:
            self._answer(body, user)
            return
        from opentelemetry.propagate import extract

        with _tracer.start_as_current_span(f"POST {self.path}", context=extract(dict(self.headers.items())),
                                           kind=_server_kind()) as span:
            span.set_attribute("enduser.id", user)
            self._answer(body, user)

    def _answer(self, body: dict[str, Any], user: str) -> None:
        conversation, text = str(body.get("conversation") or ""), str(body.get("text") or "")
        with _lock:
            session = _sessions.setdefault(conversation, {"history": [], "state": {}, "user": user})
        route = route_of(text)
        if route == "general" and session["state"].get("route"):  # a follow-up stays in its workflow
            route = session["state"]["route"]
        order = re.search(r"\b(\d{4,})\b", text)
        if order:
            session["state"]["order_id"] = order.group(1)
        session["state"]["route"] = route
        messages = [{"role": "system", "content": prompt_for(route)}, *session["history"],
                    {"role": "user", "content": text}]
        headers = {k: v for k, v in self.headers.items() if k.lower() in FORWARDED}
        try:
            completion = self._complete(messages, headers, route)
        except Exception as exc:  # the model is down: the service says so, as its own error
            self._send(502, {"detail": f"model unavailable: {type(exc).__name__}"})
            return
        answer = completion.choices[0].message.content or ""
        session["history"] += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
        usage = completion.usage
        meta = {"workflow": route, "sources": SOURCES[route], "turns": len(session["history"]) // 2}
        result = {"reply": {"text": answer}, "meta": meta, "session": dict(session["state"]),
                  "usage": {"prompt_tokens": usage.prompt_tokens if usage else None,
                            "completion_tokens": usage.completion_tokens if usage else None}}
        if self.path == "/v1/chat":
            self._send(200, result)
            return
        if self.path == "/v1/chat/text":  # the answer alone, as plain text
            data = answer.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for word in re.findall(r"\S+\s*", answer):
            self._chunk(f"data: {json.dumps({'type': 'delta', 'text': word})}\n\n")
        self._chunk(f"data: {json.dumps({'type': 'done', **result})}\n\n")
        self._chunk("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _complete(self, messages: list[dict[str, Any]], headers: dict[str, str], route: str) -> Any:
        if _tracer is None:
            return _client.chat.completions.create(model="support-model", messages=messages,  # type: ignore[arg-type]
                                                   extra_headers=headers)
        from opentelemetry.propagate import inject

        with _tracer.start_as_current_span("chat support-model", kind=_client_kind()) as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                 "gen_ai.request.model": "support-model", "support.route": route})
            carried = {k: v for k, v in headers.items() if k.lower() != "traceparent"}
            inject(carried)  # this span's context, as the instrumentation would send it
            completion = _client.chat.completions.create(model="support-model", messages=messages,  # type: ignore[arg-type]
                                                         extra_headers=carried)
            span.set_attributes({"gen_ai.response.model": completion.model,
                                 "gen_ai.usage.input_tokens": completion.usage.prompt_tokens if completion.usage else 0})
            return completion

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _server_kind() -> Any:
    from opentelemetry.trace import SpanKind

    return SpanKind.SERVER


def _client_kind() -> Any:
    from opentelemetry.trace import SpanKind

    return SpanKind.CLIENT


def main() -> None:
    global _tracer
    if os.environ.get("SUPPORT_OTLP_FILE"):
        _tracer = _instrument(os.environ["SUPPORT_OTLP_FILE"])
    port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
