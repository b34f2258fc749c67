"""The example assistant with a regression, for seeing what a failing gate looks like.

Same code as :mod:`assistant.bot`, shipped with three switches flipped the way a
careless refactor might flip them:

- the smalltalk check moved ahead of the state-aware check, so "good" and
  "sorry, it's 5521 not 5512" in the middle of a refund become smalltalk;
- the permission filter was dropped, so internal documents reach customers;
- issue_refund fires as soon as the order number is known, before the user
  confirmed.
"""

from __future__ import annotations

from typing import Any

from . import bot

REGRESSED = bot.Behaviour(state_before_smalltalk=False, permission_filter=False, confirm_before_refund=False)


def respond(request: dict[str, Any]) -> dict[str, Any]:
    """Answer one turn the way the regressed release does."""
    return bot.respond(request, REGRESSED)
