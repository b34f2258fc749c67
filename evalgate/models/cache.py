"""The response cache: a SQLite file apart from the results store.

It holds model answers only (never results, which may hold personal data),
so a team can share it or commit an export of it. The key covers the
endpoint, model, messages, parameters and the repeat index, so repeats
measure variance instead of replaying one answer k times.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any


def cache_key(endpoint: str, model: str, messages: list[dict[str, Any]], params: dict[str, Any], repeat: int) -> str:
    blob = json.dumps({"endpoint": endpoint.rstrip("/"), "model": model, "messages": messages, "params": params,
                       "repeat": repeat}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """Model responses by key, in one SQLite file (safe across threads and processes)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self._con.execute("PRAGMA journal_mode=WAL")
        # no fsync per answer (a commit was ~1 ms, on the event loop): a power cut may lose the latest answers,
        # which only means asking for them again
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, response TEXT NOT NULL, "
                          "created_at TEXT DEFAULT CURRENT_TIMESTAMP)")
        self._con.commit()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._con.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        value: dict[str, Any] = json.loads(row[0])
        return value

    def put(self, key: str, model: str, response: dict[str, Any]) -> None:
        with self._lock:
            self._con.execute("INSERT OR REPLACE INTO responses (key, model, response) VALUES (?, ?, ?)",
                              (key, model, json.dumps(response, ensure_ascii=False)))
            self._con.commit()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            n, size = self._con.execute("SELECT count(*), coalesce(sum(length(response)), 0) FROM responses").fetchone()
            models = dict(self._con.execute("SELECT model, count(*) FROM responses GROUP BY model").fetchall())
        return {"path": str(self.path), "entries": n, "bytes": size, "by_model": models,
                "hits": self.hits, "misses": self.misses}

    def export(self, path: Path | str) -> int:
        """Write every entry as JSON lines (sorted, so a committed file diffs cleanly)."""
        with self._lock:
            rows = self._con.execute("SELECT key, model, response FROM responses ORDER BY key").fetchall()
        with open(path, "w", encoding="utf-8") as fh:
            for key, model, response in rows:
                fh.write(json.dumps({"key": key, "model": model, "response": json.loads(response)}, sort_keys=True) + "\n")
        return len(rows)

    def load(self, path: Path | str) -> int:
        """Merge an exported file into this cache."""
        n = 0
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    entry = json.loads(line)
                    self.put(entry["key"], entry.get("model", ""), entry["response"])
                    n += 1
        return n

    def clear(self) -> int:
        with self._lock:
            n = self._con.execute("DELETE FROM responses").rowcount
            self._con.commit()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._con.close()
