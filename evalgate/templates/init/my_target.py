"""An adapter from evalgate to your own system: evalgate calls ``respond``
once per turn with the request, and scores the trace it returns.

Use it from a suite with ``target: {python: my_target:respond}``. The
request holds the input, the conversation so far, the state, the user and
ids; the trace says what your system did. Only ``output`` is required;
every field you fill in can be scored (see the README's "Traces").
"""

from typing import Any



def respond(request: dict[str, Any]) -> dict[str, Any]:
    text = request["input"]
    state = dict(request["state"])
    # call your router, retrieval and model here, then report what happened:
    return {
        "route": {"name": "questions", "confidence": 1.0, "reason": "the only route so far"},
        "context": [],            # [{"id": "kb/refunds", "score": 0.8, "used": True}, ...]
        "tool_calls": [],         # [{"name": "issue_refund", "arguments": {"order_id": "5512"}}]
        "model": {"name": "my-model", "params": {"temperature": 0}},
        "output": f"You said: {text}",
        "state": state,           # the conversation state after this turn
        "latency_ms": {"total": 0.0},
        "usage": {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0},
    }
