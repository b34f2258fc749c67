"""Recorded traces: the native format (``format``), reading recorded files
(``reader``), and importing OpenTelemetry exports (``otlp``)."""

from .format import (
    MAX_PROMPT_CHARS,
    MAX_PROMPT_MESSAGES,
    REQUEST_VERSION,
    TRACE_VERSION,
    ContextItem,
    Correction,
    Feedback,
    ModelInfo,
    PromptMessage,
    Route,
    ToolCall,
    Trace,
    Usage,
    User,
    describe_validation_error,
    marker_headers,
    request_for,
    traceparent,
)
from .reader import (
    MAX_BAD_LINES_KEPT,
    BadLine,
    RecordedSession,
    TraceFileInfo,
    iter_sessions,
    scan,
)

__all__ = [
    "MAX_BAD_LINES_KEPT", "MAX_PROMPT_CHARS", "MAX_PROMPT_MESSAGES", "REQUEST_VERSION", "TRACE_VERSION", "BadLine", "ContextItem", "Correction", "Feedback",
    "ModelInfo", "PromptMessage", "RecordedSession", "Route", "ToolCall", "Trace", "TraceFileInfo", "Usage", "User",
    "describe_validation_error", "iter_sessions", "marker_headers", "request_for", "scan", "traceparent",
]
