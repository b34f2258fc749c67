"""Joining the runs of a suite's shards, made in other stores (one per CI job), into one run of this store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError


@dataclass(frozen=True, kw_only=True)
class ShardRun:
    """One shard's run as its store holds it."""

    store: str
    run_id: str
    suite: str
    suite_path: str
    suite_hash: str
    target: str
    shard: tuple[int, int]
    status: str
    children: tuple[str, ...]
    """Its confirmation runs."""


def shard_runs(con: Any, alias: str, path: str) -> list[ShardRun]:
    """The latest sharded run of each suite in the attached store ``alias``."""
    rows = con.execute(
        f"SELECT run_id, suite, suite_path, suite_hash, target, json_extract_string(options, '$.shard'), status "
        f"FROM {alias}.runs WHERE parent_run IS NULL AND json_extract_string(options, '$.shard') IS NOT NULL "
        f"QUALIFY row_number() OVER (PARTITION BY suite ORDER BY started_at DESC) = 1").fetchall()
    out = []
    for run_id, suite, suite_path, suite_hash, target, shard, status in rows:
        i, _, n = str(shard).partition("/")
        children = tuple(str(r[0]) for r in con.execute(
            f"SELECT run_id FROM {alias}.runs WHERE parent_run = ? ORDER BY started_at", [run_id]).fetchall())
        out.append(ShardRun(store=path, run_id=str(run_id), suite=str(suite), suite_path=str(suite_path or ""),
                            suite_hash=str(suite_hash or ""), target=str(target or ""), shard=(int(i), int(n)),
                            status=str(status), children=children))
    return out


def copy_run(con: Any, alias: str, src: str, new: str, parent: str | None) -> None:
    """The run ``src`` of the attached store, its case runs, turns and scores, as run ``new`` of this one."""
    con.execute(f"INSERT INTO runs SELECT * REPLACE (? AS run_id, ? AS parent_run) FROM {alias}.runs WHERE run_id = ?",
                [new, parent, src])
    for table in ("cases", "turns", "scores"):
        con.execute(f"INSERT INTO {table} SELECT * REPLACE (? AS run_id) FROM {alias}.{table} WHERE run_id = ?",
                    [new, src])


def merge(con: Any, stores: list[Path], suite: str | None, new_run: str) -> tuple[list[ShardRun], list[str]]:
    """Copy every shard of ``suite`` (or of the one suite the stores hold) into run ``new_run``; its confirmation runs
    become the new run's. Returns the shards and the new confirmation run ids. All or nothing."""
    pairs: list[tuple[ShardRun, int]] = []  # each shard run, with the index of the store it is in
    for k, path in enumerate(stores):
        if not path.is_file():
            raise UsageError(f"no store at {path}", hint="name the store files the shards wrote (--db of each job)")
        quoted = str(path).replace("'", "''")
        con.execute(f"ATTACH '{quoted}' AS shard{k} (READ_ONLY)")
        pairs += [(r, k) for r in shard_runs(con, f"shard{k}", str(path))]
    suites = sorted({r.suite for r, _ in pairs})
    if suite is None:
        if len(suites) != 1:
            raise UsageError(f"the stores hold sharded runs of {len(suites)} suites ({', '.join(suites) or 'none'})",
                             hint="name one with --suite, or run each shard with --shard I/N first")
        suite = suites[0]
    pairs = [(r, k) for r, k in pairs if r.suite == suite]
    if not pairs:
        raise UsageError(f"no sharded run of suite {suite} in those stores", hint="run each shard with --shard I/N")
    n = pairs[0][0].shard[1]
    have = sorted(r.shard[0] for r, _ in pairs)
    if any(r.shard[1] != n for r, _ in pairs) or have != list(range(1, n + 1)):
        raise UsageError(f"suite {suite}: the shards found are {', '.join(f'{r.shard[0]}/{r.shard[1]}' for r, _ in pairs)}; "
                         f"a merge needs each of 1/{n} … {n}/{n} once", hint="pass the store of every shard")
    first = pairs[0][0]
    odd = [r for r, _ in pairs if (r.suite_hash, r.target) != (first.suite_hash, first.target)]
    if odd:
        raise UsageError(f"suite {suite}: shard {odd[0].shard[0]}/{n} ran another suite text or target than shard "
                         f"{first.shard[0]}/{n}", hint="shards of one merge run the same commit")
    con.execute("BEGIN TRANSACTION")
    try:
        alias0 = f"shard{pairs[0][1]}"
        con.execute(f"INSERT INTO runs SELECT * REPLACE (? AS run_id, NULL AS parent_run) FROM {alias0}.runs "
                    f"WHERE run_id = ?", [new_run, first.run_id])
        for table in ("cases", "turns", "scores"):
            for r, k in pairs:
                con.execute(f"INSERT INTO {table} SELECT * REPLACE (? AS run_id) FROM shard{k}.{table} WHERE run_id = ?",
                            [new_run, r.run_id])
        children: list[str] = []
        for r, k in pairs:
            for c in r.children:
                child = f"{new_run}-c{len(children) + 1}"
                copy_run(con, f"shard{k}", c, child, new_run)
                children.append(child)
        totals = con.execute("SELECT count(*), coalesce(sum(n_turns), 0), count(*) FILTER (errored) FROM cases "
                             "WHERE run_id = ?", [new_run]).fetchone()
        statuses = {r.status for r, _ in pairs}
        status = "completed" if statuses == {"completed"} else sorted(statuses - {"completed"})[0]
        options = {"merged_from": [f"{r.store}:{r.run_id} ({r.shard[0]}/{n})" for r, _ in pairs]}
        con.execute("UPDATE runs SET status = ?, cases_done = ?, turns_done = ?, errors = ?, options = ?, "
                    "started_at = (SELECT min(started_at) FROM runs WHERE run_id = ?), finished_at = current_timestamp "
                    "WHERE run_id = ?", [status, totals[0], totals[1], totals[2], json.dumps(options), new_run, new_run])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return [r for r, _ in pairs], children
