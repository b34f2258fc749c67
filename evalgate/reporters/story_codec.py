"""The HTML report's story codec: case stories as column-wise JSON chunks, gzip and base64 (report.js reads them).

The pair of ``report.js``: a field written here is read there. Lists of records become columns (``{"$": "L",
"#": counts, "c": columns}``), dicts of a known shape become columns too; ``unchunk`` reverses it (tests).
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

_LIST_FIELDS = frozenset({"ctx", "sc", "prompt", "up", "spans"})
"""Turn fields holding lists of records: flattened into columns with a count per turn."""


_DICT_FIELDS = frozenset({"route", "lat", "usage", "model"})
"""Turn fields holding one flat record: a column per key (inner values are kept whole)."""


def _columns(rows: list[dict[str, Any]], lists: frozenset[str] = _LIST_FIELDS,
             dicts: frozenset[str] = _DICT_FIELDS) -> dict[str, Any]:
    """Records as columns, which compress about twice as well as rows (numbers sit with numbers).

    A plain list is a column of values (``null`` where a record lacks the key);
    ``{"$": "L", "#": counts, "c": columns}`` is a list-of-records field and
    ``{"$": "D", "?": present, "c": columns}`` a record field. The page's
    ``rows()`` reverses it.
    """
    keys: list[str] = []
    seen: set[str] = set()
    for row in rows:
        for k in row:
            if k not in seen:
                seen.add(k)
                keys.append(k)
    out: dict[str, Any] = {}
    for k in keys:
        if k in lists:
            counts: list[int] = []
            items: list[dict[str, Any]] = []
            for row in rows:
                value = row.get(k) or []
                counts.append(len(value))
                items.extend(value)
            out[k] = {"$": "L", "#": counts, "c": _columns(items, frozenset(), frozenset())}
        elif k in dicts:
            present = [1 if isinstance(row.get(k), dict) else 0 for row in rows]
            out[k] = {"$": "D", "?": present,
                      "c": _columns([row[k] for row in rows if isinstance(row.get(k), dict)], frozenset(), frozenset())}
        else:
            out[k] = [row.get(k) for row in rows]
    return out


def _chunk(stories: list[dict[str, Any]]) -> dict[str, Any]:
    """A chunk of stories: case-level records, and every turn of them as columns."""
    turns: list[dict[str, Any]] = []
    cases = []
    for story in stories:
        reps = []
        for rep in story["reps"]:
            reps.append({**{k: v for k, v in rep.items() if k != "turns"}, "nt": len(rep.get("turns", []))})
            for i, t in enumerate(rep.get("turns", []), 1):  # turn numbers are implied by position
                turns.append({k: v for k, v in t.items() if k != "n"} if t.get("n") == i else t)
        session = "=" if story.get("session") == story["id"] else story.get("session")
        cases.append({**story, "session": session, "reps": reps})
    return {"ncases": len(cases), "cases": _columns(cases, frozenset({"reps"}), frozenset()),
            "nturns": len(turns), "turns": _columns(turns)}


def _records(cols: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Columns back to records: what the page's ``rows()`` does, for tests and tools."""
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for k, col in cols.items():
        if isinstance(col, list):
            for i, v in enumerate(col):
                if v is not None:
                    out[i][k] = v
        elif col["$"] == "L":
            items, at = _records(col["c"], sum(col["#"])), 0
            for i, count in enumerate(col["#"]):
                if count:  # an empty list reads as absent, as the writer leaves it out
                    out[i][k] = items[at:at + count]
                at += count
        else:
            recs = iter(_records(col["c"], sum(col["?"])))
            for i, present in enumerate(col["?"]):
                if present:
                    out[i][k] = next(recs)
    return out


def unchunk(data: dict[str, Any]) -> list[dict[str, Any]]:
    """A decoded chunk back to its stories (each repeat with its turns)."""
    turns, at = _records(data["turns"], data["nturns"]), 0
    stories = []
    for case in _records(data["cases"], data["ncases"]):
        reps = []
        for rep in case["reps"]:
            nt = rep["nt"]
            rep_turns = [t if "n" in t else {"n": i, **t} for i, t in enumerate(turns[at:at + nt], 1)]
            reps.append({**{k: v for k, v in rep.items() if k != "nt"}, "turns": rep_turns})
            at += nt
        stories.append({**case, "session": case["id"] if case.get("session") == "=" else case.get("session"),
                        "reps": reps})
    return stories


def _pack(obj: Any) -> str:
    raw = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode()
    gz = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing, which DecompressionStream('gzip') reads
    return base64.b64encode(gz.compress(raw) + gz.flush()).decode("ascii")
