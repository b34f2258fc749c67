"""Model prices: USD per million tokens (input, output), for the pipeline's and the judge's cost.

A suite overrides or extends them (the pipeline's ``prices:``, the judge's
``price_in``/``price_out``); a model missing from both has no cost (None),
never a guessed one.
"""

from __future__ import annotations

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "builtin": (0.0, 0.0),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1": (2.00, 8.00),
}
