"""OTLP JSON import: spans in the OpenTelemetry GenAI or OpenInference
conventions → native traces (one turn per request span tree) → sessions.

Input is the protobuf-JSON form of an ExportTraceServiceRequest
(``resourceSpans → scopeSpans → spans``, and ``resourceLogs`` for GenAI
events sent as log records), either as JSON lines (the collector's file
exporter: one request per line) or as one document, streamed with ijson.
Memory stays flat in the file's size: a trace is finished once its root span
has been seen and a window of later spans has passed, and finished turns go
to a temporary file with one (time, offset) pair per turn kept to order the
sessions at the end.

The package follows the import's flow: ``mapping`` (what a team's attributes
mean), ``spans`` (OTLP's JSON decoded), ``read`` (files, streamed),
``conventions`` (OpenInference and GenAI), ``turns`` (one span tree → one
turn), ``assemble`` (turns → sessions → the native file).
"""

from __future__ import annotations

from .assemble import WINDOW_SPANS, import_otlp
from .mapping import MAPPING_FIELDS, FieldRule, Mapping, load_mapping, parse_mapping
from .read import is_otlp, read_items
from .turns import ImportStats

__all__ = ["MAPPING_FIELDS", "WINDOW_SPANS", "FieldRule", "ImportStats", "Mapping", "import_otlp", "is_otlp",
           "load_mapping", "parse_mapping", "read_items"]
