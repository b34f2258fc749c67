"""A long replay on worker processes stores exactly what one process stores, and survives a worker's death."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import query, run_cli, write

ROUTES = ["refunds", "order_status", "account", "smalltalk", "billing"]


def _traces(path: Path, sessions: int, seed: int = 7, *, invalid: tuple[int, ...] = (),
            escaped: tuple[int, ...] = ()) -> int:
    """A recorded export: sessions of 1-5 turns, some with an email or a card number the redactor numbers, feedback
    corrections, lines that are not JSON and lines that are JSON but not a trace. The sessions in ``invalid`` are
    only lines that fail full validation; those in ``escaped`` are a person's address with its "@" escaped in the
    JSON, as their session id and in every input. Returns the turns written."""
    rng = random.Random(seed)
    turns = 0
    with path.open("w", encoding="utf-8") as fh:
        for s in range(sessions):
            if s in escaped:
                for t in (1, 2):
                    row = {"v": 1, "session_id": f"pat{s}@example.com", "turn": t, "input": f"I am pat{s}@example.com",
                           "route": {"name": "account"}, "output": "noted"}
                    fh.write(json.dumps(row).replace("@", "\\u0040") + "\n")
                continue
            for t in range(1, rng.randint(1, 5) + 1):
                route = rng.choice(ROUTES)
                text = f"order {rng.randint(1000, 9999)} for session {s}"
                if rng.random() < 0.03:  # a person's address: the redactor must number it as one process does
                    text += f" mail me at user{rng.randint(1, 40)}@example.com"
                row: dict[str, Any] = {
                    "v": 1, "session_id": f"s{s:05d}", "turn": t, "input": text,
                    "route": {"name": route}, "output": f"About {text}: done." + (" internal" if rng.random() < 0.05 else ""),
                    "context": [{"id": "kb/refunds", "used": True}],
                    "state": {"channel": "web", "step": t}, "latency_ms": {"total": rng.randint(5, 900)},
                }
                if rng.random() < 0.04:
                    row["feedback"] = {"correction": {"route": "refunds"}}
                if s in invalid:
                    row["route"] = 5  # passes the shape pass, fails full validation: no case at all
                fh.write(json.dumps(row) + "\n")
                turns += 1
                if rng.random() < 0.002:
                    fh.write("{not json\n")
                if rng.random() < 0.002:  # passes the shape pass, fails full validation
                    fh.write(json.dumps({"v": 1, "session_id": f"s{s:05d}", "input": "x", "route": 5}) + "\n")
    return turns


def _project(tmp_path: Path, sessions: int, scorer: str = "", **traces: Any) -> Path:
    write(tmp_path / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\n')
    _traces(tmp_path / "traces.jsonl", sessions, **traces)
    write(tmp_path / "suites" / "replay.yaml", f"""
        name: replay
        target: replay
        traces:
          - file: ../traces.jsonl
            expect:
              route: [refunds, order_status, account, smalltalk]
              output: {{not_contains: [internal]}}
              {scorer}
        gate:
          rules:
            - {{metric: pass_rate, min: 0.1}}
    """)
    return tmp_path


def _tables(db: Path) -> dict[str, Any]:
    return {
        "cases": query(db, "SELECT * EXCLUDE (run_id) FROM cases ORDER BY seq, repeat"),
        "turns": query(db, "SELECT * EXCLUDE (run_id) FROM turns ORDER BY case_id, repeat, turn"),
        "scores": query(db, "SELECT * EXCLUDE (run_id) FROM scores ORDER BY case_id, repeat, turn, scorer"),
        "run": query(db, "SELECT status, cases_total, cases_done, turns_done, errors, bad_lines FROM runs"),
    }


def test_a_replay_on_worker_processes_stores_what_one_process_stores(tmp_path: Path) -> None:
    project = _project(tmp_path, 3_000)
    one = run_cli("run", "--executor", "local", "--db", "one.duckdb", "--json", cwd=project, timeout=120)
    two = run_cli("run", "--executor", "processes:2", "--db", "two.duckdb", "--json", cwd=project, timeout=120)
    assert one.code == two.code == 0, (one, two)
    a, b = _tables(project / "one.duckdb"), _tables(project / "two.duckdb")
    assert len(a["cases"]) == 3_000 and len(a["turns"]) > 8_000  # parts of 4,000 turns: the file is three parts
    for name in a:
        assert a[name] == b[name], name
    # the same placeholders, numbered in the file's order, whichever process read the session
    mailed = query(project / "two.duckdb", "SELECT input FROM turns WHERE input LIKE '%<EMAIL_%' ORDER BY case_id, turn")
    assert mailed and "<EMAIL_1>" in mailed[0][0]
    assert not query(project / "two.duckdb", "SELECT input FROM turns WHERE input LIKE '%@example.com%'")
    sa, sb = one.json()["suites"][0], two.json()["suites"][0]
    assert sa["metrics"] == sb["metrics"] and sa["verdict"] == sb["verdict"]
    assert a["run"][0][5] > 0  # both counted the bad lines, the same ones (the tables above)


def test_the_worker_processes_run_the_sessions(tmp_path: Path) -> None:
    """The project's own scorer notes which process scored each turn: two workers and the run's own process (it
    runs the sessions the redactor changes) under processes:2; one process under local."""
    write(tmp_path / "where.py", '''
        import os

        def pid():
            def check(ctx):
                with open(os.environ["PID_LOG"], "a") as fh:
                    fh.write(f"{os.getpid()}\\n")
                return True
            return check
    ''')
    project = _project(tmp_path, 2_500, scorer='"where:pid": {}')
    for mode in ("local", "processes:2"):
        log = tmp_path / f"pids-{mode.replace(':', '')}.txt"
        db = project / f"{log.stem}.duckdb"
        r = run_cli("run", "--executor", mode, "--db", str(db), "--json", cwd=project, timeout=120,
                    env={"PYTHONPATH": str(tmp_path), "PID_LOG": str(log)})
        assert r.code == 0, r
        pids = log.read_text().split()
        assert len(pids) == query(db, "SELECT turns_done FROM runs")[0][0]
        assert len(set(pids)) == (1 if mode == "local" else 3), mode


CRASH = '''
    import os

    def crash(marker: str):
        def check(ctx):
            if ctx.case.id == "s02500" and os.environ.get("CRASH") and not os.path.exists(marker):
                if os.environ["CRASH"] == "once":
                    open(marker, "w").close()
                os._exit(9)  # the worker process dies without a word
            return True
        return check
'''


def test_a_worker_that_dies_is_replaced_and_its_parts_run_again(tmp_path: Path) -> None:
    write(tmp_path / "crash.py", CRASH)
    marker = tmp_path / "crashed"
    project = _project(tmp_path, 3_000, scorer=f'"crash:crash": {{marker: "{marker}"}}')
    env = {"PYTHONPATH": str(tmp_path)}
    r = run_cli("run", "--executor", "processes:2", "--db", "crash.duckdb", "--json", cwd=project, timeout=120,
                env={**env, "CRASH": "once"})
    assert r.code == 0, r
    assert marker.exists()  # a worker died
    clean = run_cli("run", "--executor", "local", "--db", "clean.duckdb", "--json", cwd=project, timeout=120, env=env)
    assert clean.code == 0, clean
    assert _tables(project / "crash.duckdb") == _tables(project / "clean.duckdb")  # nothing lost, nothing twice


def test_workers_that_keep_dying_stop_the_run_and_resume_finishes_it(tmp_path: Path) -> None:
    write(tmp_path / "crash.py", CRASH)
    never = tmp_path / "never"
    project = _project(tmp_path, 3_000, scorer=f'"crash:crash": {{marker: "{never}"}}')
    env = {"PYTHONPATH": str(tmp_path)}
    r = run_cli("run", "--executor", "processes:2", "--db", "crash.duckdb", "--json", cwd=project, timeout=120,
                env={**env, "CRASH": "always"})
    assert r.code == 3, r
    assert "replay worker processes died 3 times" in r.out + r.err and "traces.jsonl:" in r.out + r.err, r
    assert "Traceback" not in r.out + r.err
    db = project / "crash.duckdb"
    (run_id, status, done, total), = query(db, "SELECT run_id, status, cases_done, cases_total FROM runs")
    assert status == "stopped" and done < total
    assert query(db, "SELECT count(*) FROM cases")[0][0] == done  # the counters are what was stored
    again = run_cli("run", "--resume", run_id, "--executor", "processes:2", "--db", "crash.duckdb", "--json",
                    cwd=project, timeout=120, env=env)
    assert again.code == 0, again
    clean = run_cli("run", "--executor", "local", "--db", "clean.duckdb", "--json", cwd=project, timeout=120, env=env)
    assert clean.code == 0, clean
    a, b = _tables(db), _tables(project / "clean.duckdb")
    assert a["cases"] == b["cases"] and a["scores"] == b["scores"] and a["turns"] == b["turns"]
    assert a["run"][0][:4] == ("completed", 3_000, 3_000, b["run"][0][3])


def test_a_bad_worker_count_is_a_usage_error(tmp_path: Path) -> None:
    project = _project(tmp_path, 10)
    r = run_cli("run", "--executor", "processes:zero", "--db", "x.duckdb", cwd=project, timeout=60)
    assert r.code == 2 and "1 to 256" in r.out + r.err, r
    assert "Traceback" not in r.out + r.err


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_a_replay_on_workers_stops_cleanly_and_resumes(tmp_path: Path, how: str) -> None:
    """Ctrl-C (to the whole process group, as a terminal sends it) or a CI job's SIGTERM: the run stores what it
    finished, says interrupted, leaves no worker behind, and --resume finishes it as an uninterrupted run would."""
    write(tmp_path / "slow.py", '''
        import os, time

        def slow():
            def check(ctx):
                with open(os.environ["PID_LOG"], "a") as fh:
                    fh.write(f"{os.getpid()}\\n")
                time.sleep(0.001)
                return True
            return check
    ''')
    project = _project(tmp_path, 6_000, scorer='"slow:slow": {}')  # five parts of about 4,000 turns
    log = tmp_path / "pids.txt"
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(tmp_path), "PID_LOG": str(log)}
    proc = subprocess.Popen([sys.executable, "-m", "evalgate", "run", "--executor", "processes:2", "--db", "int.duckdb",
                             "--json"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().split()) < 10_000):
        time.sleep(0.02)  # both workers have finished a part: the first is the run's
    if how == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, (out, err)
    assert json.loads(out)["suites"][0]["status"] == "interrupted"
    db = project / "int.duckdb"
    (run_id, status, done, total), = query(db, "SELECT run_id, status, cases_done, cases_total FROM runs")
    assert status == "interrupted" and 0 < done < total, (done, total)
    for pid in set(log.read_text().split()):  # no worker left running
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
    again = run_cli("run", "--resume", run_id, "--db", "int.duckdb", "--json", cwd=project, timeout=120,
                    env={"PYTHONPATH": str(tmp_path), "PID_LOG": str(log)})
    assert again.code == 0, again
    clean = run_cli("run", "--executor", "local", "--db", "clean.duckdb", "--json", cwd=project, timeout=120,
                    env={"PYTHONPATH": str(tmp_path), "PID_LOG": str(log)})
    assert clean.code == 0, clean
    a, b = _tables(db), _tables(project / "clean.duckdb")
    assert a["cases"] == b["cases"] and a["scores"] == b["scores"] and a["turns"] == b["turns"]


def _same_both_ways(project: Path, env: dict[str, str] | None = None) -> tuple[Any, Any]:
    one = run_cli("run", "--executor", "local", "--db", "one.duckdb", "--json", cwd=project, timeout=120, env=env)
    two = run_cli("run", "--executor", "processes:2", "--db", "two.duckdb", "--json", cwd=project, timeout=120,
                  env=env)
    assert one.code == two.code, (one, two)
    a, b = _tables(project / "one.duckdb"), _tables(project / "two.duckdb")
    for name in a:
        assert a[name] == b[name], name
    return one, two


def test_whole_sessions_that_fail_validation_number_the_rest_as_one_process_does(tmp_path: Path) -> None:
    """A session whose every line fails full validation is no case: the cases after it keep one process's seq."""
    project = _project(tmp_path, 3_000, invalid=(100, 1_400, 2_900))
    one, _ = _same_both_ways(project)
    assert one.code == 0, one
    assert query(project / "two.duckdb", "SELECT count(*), max(seq) FROM cases") == [(2_997, 2_996)]


def test_one_errored_case_in_one_part_is_stored_beside_the_rest(tmp_path: Path) -> None:
    """Parts whose columns differ (an error text in one part only) are written together."""
    write(tmp_path / "boom.py", '''
        def boom():
            def check(ctx):
                if ctx.case.id == "s02500":
                    raise RuntimeError("this scorer broke")
                return True
            return check
    ''')
    project = _project(tmp_path, 3_000, scorer='"boom:boom": {}')
    one, two = _same_both_ways(project, env={"PYTHONPATH": str(tmp_path)})
    assert query(project / "two.duckdb", "SELECT count(*) FROM cases WHERE errored") == [(1,)]
    assert query(project / "two.duckdb", "SELECT count(*) FROM cases") == [(3_000,)]


def test_an_escaped_address_is_redacted_either_way(tmp_path: Path) -> None:
    """An address whose "@" is escaped in the JSON (\\u0040) is found, redacted and counted in both modes."""
    project = _project(tmp_path, 3_000, escaped=(5, 2_000))
    one, two = _same_both_ways(project)
    db = project / "two.duckdb"
    for table, column in (("cases", "case_id"), ("turns", "input"), ("turns", "trace"), ("cases", "session_id")):
        assert query(db, f"SELECT count(*) FROM {table} WHERE {column} LIKE '%example.com%' "
                         f"OR {column} LIKE '%\\u0040%'") == [(0,)], (table, column)
    assert query(db, "SELECT count(*) FROM cases WHERE case_id LIKE '<EMAIL_%>'") == [(2,)]
    assert one.json()["suites"][0]["verdict"] == two.json()["suites"][0]["verdict"]


def test_a_scorer_that_exits_ends_the_run_as_in_one_process(tmp_path: Path) -> None:
    """A scorer raising SystemExit in a worker: the run exits with its code as one process does, and ends."""
    write(tmp_path / "leave.py", '''
        def leave():
            def check(ctx):
                if ctx.case.id == "s02500":
                    raise SystemExit(4)
                return True
            return check
    ''')
    project = _project(tmp_path, 3_000, scorer='"leave:leave": {}')
    env = {"PYTHONPATH": str(tmp_path)}
    for mode in ("local", "processes:2"):
        r = run_cli("run", "--executor", mode, "--db", f"{mode[:5]}.duckdb", cwd=project, timeout=60, env=env)
        assert r.code == 4, (mode, r)


def test_a_value_the_store_cannot_take_loses_that_case_run_alone_either_way(tmp_path: Path) -> None:
    """A scorer's explanation with a lone surrogate (no UTF-8) cannot become a worker's file: its part's rows go
    back to the run, whose writer stores every other case run and names the one it left out, as in one process."""
    write(tmp_path / "odd.py", '''
        from evalgate.scorers import Score

        def odd():
            def check(ctx):
                return Score(True, 1.0, "odd \\ud800" if ctx.case.id == "s02500" else "fine")
            return check
    ''')
    project = _project(tmp_path, 3_000, scorer='"odd:odd": {}')
    one, two = _same_both_ways(project, env={"PYTHONPATH": str(tmp_path)})
    assert query(project / "two.duckdb", "SELECT count(*), count(*) FILTER (case_id = 's02500') FROM cases") \
        == [(2_999, 0)]
    assert query(project / "two.duckdb", "SELECT status FROM runs") == [("failed",)]
    for r in (one, two):
        assert "case s02500#0 failed" in r.out + r.err, r


def test_answers_of_megabytes_are_stored_by_the_workers_as_by_one_process(tmp_path: Path) -> None:
    """Three sessions answer with 8 MB each: the run's process copies the workers' files in within the writer's
    memory limit (a part's files are read a row group at a time), every case run is stored, as in one process."""
    project = _project(tmp_path, 2_500)
    traces = project / "traces.jsonl"
    big = "x" * 8_000_000
    lines = traces.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines[:40]):
        row = json.loads(line) if line.startswith("{\"v\"") else None
        if row is not None and row.get("session_id") in ("s00000", "s00001", "s00002") and row["turn"] == 1:
            row["output"] = big
            lines[i] = json.dumps(row)
    traces.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _same_both_ways(project)
    assert query(project / "two.duckdb", "SELECT status, cases_done FROM runs") == [("completed", 2_500)]
    assert query(project / "two.duckdb", "SELECT count(*) FROM turns WHERE length(output) = 8000000") == [(3,)]


def test_a_run_read_back_row_by_row_is_the_grouped_snapshot(tmp_path: Path) -> None:
    """A run of each case once is read back row by row for the gate; the sessions the redactor changes are written
    after their part, out of seq order: the snapshot is the grouped query's, case for case and in its order."""
    import duckdb

    from evalgate.store import baselines

    project = _project(tmp_path, 3_000)
    r = run_cli("run", "--executor", "processes:2", "--db", "two.duckdb", "--json", cwd=project, timeout=120)
    assert r.code == 0, r
    with duckdb.connect(str(project / "two.duckdb"), read_only=True) as con:
        run_id = con.execute("SELECT run_id FROM runs").fetchone()[0]
        stored = [s for (s,) in con.execute("SELECT seq FROM cases").fetchall()]
        assert stored != sorted(stored)  # the out-of-order path is the one taken
        fast = baselines._one_run_cases(con, run_id)
        grouped = baselines._pooled_cases(con, [run_id])
    assert fast is not None and list(fast) == list(grouped) and fast == grouped
    assert sum(c.passed for c in fast.values()) < len(fast) and any(c.tags for c in fast.values())
