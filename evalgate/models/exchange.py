"""When a model call's bytes were on the wire: what its recorded latency is made of.

The model client sets a fresh :class:`Exchange` in :data:`EXCHANGE` before
each attempt; a transport that can (``transport.KeepAlivePool``) fills
it in where the bytes are written and read, so the time evalgate itself
spent around the exchange (building the request, parsing the answer, its
event loop busy scoring other turns) stays out of the call's latency.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass(slots=True)
class Exchange:
    """When one request's first byte was sent and its response's last byte read (``time.perf_counter``)."""

    sent: float = 0.0
    received: float = 0.0

    @property
    def ms(self) -> float | None:
        """The exchange's duration; None unless both ends were timed."""
        return (self.received - self.sent) * 1000 if self.sent and self.received >= self.sent else None


EXCHANGE: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar("evalgate_exchange", default=None)
"""The current call's Exchange, for the transport to fill in (None: nobody asked)."""
