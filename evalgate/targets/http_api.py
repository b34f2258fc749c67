"""A service's own HTTP API: the request built from templates, the answer read back through a mapping.

The request side renders the suite's ``http``, ``headers`` and ``body``
templates over the turn's request (the sandboxed jinja2 environment the
reference pipeline's prompts use). The answer side reads JSON, plain text or
a server-sent-event stream and turns it into a trace with one JMESPath
expression per trace field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..pipeline.templates import evaluate, render
from .spec import HttpResponseSpec

_WHOLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)
"""A string that is one expression and nothing else keeps its value's type (a list stays a list)."""


def _has_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def render_value(value: Any, variables: dict[str, Any]) -> Any:
    """Render every template string inside a body; ``"{{ history }}"`` alone gives the list itself."""
    if isinstance(value, str):
        if not _has_template(value):
            return value
        whole = _WHOLE.match(value)
        if whole and "{{" not in whole.group(1) and "}}" not in whole.group(1):
            return _expression(whole.group(1), variables)
        return render(value, variables)
    if isinstance(value, dict):
        return {k: render_value(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, variables) for v in value]
    return value


def _expression(source: str, variables: dict[str, Any]) -> Any:
    return evaluate(source.strip(), variables)


def template_variables(request: dict[str, Any]) -> dict[str, Any]:
    """What a template sees: the request's fields by name, and the whole request as ``request``."""
    return {**request, "request": request}


@dataclass(frozen=True)
class Exchange:
    """One request to send: the rendered URL, headers and body."""

    url: str
    headers: dict[str, str]
    json_body: Any = None
    text_body: str | None = None


class RequestShape:
    """The suite's templates for one service, compiled once."""

    def __init__(self, url: str, method: str, headers: dict[str, str], body: Any):
        self.url = url
        self.method = method
        self.headers = headers
        self.body = body

    def build(self, request: dict[str, Any]) -> Exchange:
        variables = template_variables(request)
        url = render(self.url, variables) if _has_template(self.url) else self.url
        headers = {k: render(v, variables) if _has_template(v) else v for k, v in self.headers.items()}
        if self.body is None:
            return Exchange(url, headers, json_body=request)
        body = render_value(self.body, variables)
        if isinstance(body, str):
            return Exchange(url, headers, text_body=body)
        return Exchange(url, headers, json_body=body)


class ResponseMap:
    """A service's answer → a trace, one compiled JMESPath expression per field."""

    def __init__(self, spec: HttpResponseSpec):
        import jmespath

        self.source = spec.expressions()
        self.fields = {name: jmespath.compile(expression) for name, expression in self.source.items()}
        self.delta = jmespath.compile(spec.delta) if spec.delta else None

    def from_document(self, document: Any) -> dict[str, Any]:
        """The trace a JSON answer maps to (fields whose expression finds nothing are left out)."""
        return self._assemble({name: expr.search(document) for name, expr in self.fields.items()})

    def from_events(self, events: list[Any]) -> dict[str, Any]:
        """The trace a stream maps to: the deltas joined as the output, other fields from the last event that has them."""
        documents = [e for e in events if not isinstance(e, str)]
        found: dict[str, Any] = {}
        for name, expr in self.fields.items():
            for document in reversed(documents):
                value = expr.search(document)
                if value is not None:
                    found[name] = value
                    break
        if self.delta is not None or "output" not in found:
            found["output"] = "".join(self._pieces(events))
        return self._assemble(found)

    def _pieces(self, events: list[Any]) -> list[str]:
        pieces = []
        for event in events:
            if isinstance(event, str):
                pieces.append(event)
            elif self.delta is not None:
                piece = self.delta.search(event)
                if isinstance(piece, str):
                    pieces.append(piece)
        return pieces

    def _assemble(self, found: dict[str, Any]) -> dict[str, Any]:
        trace: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, value in found.items():
            if value is None:
                continue
            if name.startswith("extra."):
                extra[name[6:]] = value
            elif name == "context" and isinstance(value, list):
                trace[name] = [{"id": str(v)} if isinstance(v, (str, int)) else v for v in value]
            elif name == "output" and not isinstance(value, str):
                trace[name] = json.dumps(value, ensure_ascii=False)
            else:
                trace[name] = value
        if extra:
            trace["extra"] = extra
        return trace

    def missing_output(self, excerpt: str) -> str:
        """Why a mapped answer has no output, for the turn's error."""
        where = self.source.get("output")
        said = f"response mapping output ({where!r})" if where else "the answer"
        return f"{said} found no text in the answer: {excerpt}"


def sse_event_value(data: str) -> Any:
    """One event's data: parsed JSON when it is JSON, else the text itself."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return data
