"""A stored conversation written out as a case: a simulated user's transcript becomes a fixed script."""

from __future__ import annotations

from typing import Any


def story_as_case(story: dict[str, Any], repeat: int | None = None) -> dict[str, Any]:
    """The case a suite can hold for one stored case run (``show … --as-case``): the user's messages as turns,
    each expecting the route it took and the tools it called, the last one also the state it ended in."""
    reps = story["repeats"]
    rep = next((r for r in reps if r["repeat"] == repeat), None) if repeat is not None else (reps[0] if reps else None)
    if rep is None:
        from ..errors import UsageError

        raise UsageError(f"case {story['case_id']} has no repeat {repeat} in run {story['run_id']}")
    turns = []
    for i, t in enumerate(rep["turns"]):
        expect: dict[str, Any] = {}
        route = (t.get("route") or {}).get("name")
        if route:
            expect["route"] = route
        tools = [c.get("name") for c in t.get("tool_calls") or [] if c.get("name")]
        expect["tool_calls"] = {"must_include": tools} if tools else {"none": True}
        if i == len(rep["turns"]) - 1 and t.get("state"):
            expect["state"] = t["state"]
        turns.append({"input": t["input"], "expect": expect})
    case: dict[str, Any] = {
        "id": f"{story['case_id']}-script",
        "description": f"as run {story['run_id']} (repeat {rep['repeat']}) of {story['case_id']}",
        "tags": [t for t in rep["tags"] if not t.startswith("variant")],
        "user": rep["user"],
    }
    start = rep["turns"][0].get("state_in") if rep["turns"] else None
    if start:
        case["state"] = start  # the case's starting state, as the first turn received it
    case["turns"] = turns
    return case
