"""The DuckDB store: migrations, concurrent readers, a busy store, an interrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from conftest import query, run_cli, write

from evalgate.store import Store
from evalgate.store.migrations import MIGRATIONS, SCHEMA_VERSION, applied, migrate


def test_blank_store_gets_every_migration(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    assert migrate(con) == [name for name, _ in MIGRATIONS]
    assert applied(con) == [name for name, _ in MIGRATIONS] and len(applied(con)) == SCHEMA_VERSION
    assert migrate(con) == []  # idempotent
    cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'turns'").fetchall()}
    assert {"run_id", "case_id", "repeat", "turn", "cost_usd"} <= cols


@pytest.mark.parametrize("upto", range(1, SCHEMA_VERSION))
def test_upgrade_from_every_earlier_schema_keeps_data(tmp_path: Path, upto: int) -> None:
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    migrate(con, upto=upto)
    con.execute("INSERT INTO runs (run_id, suite, status, started_at) VALUES ('r1', 'demo', 'completed', now())")
    con.execute("INSERT INTO turns (run_id, case_id, repeat, turn, output) VALUES ('r1', 'c', 0, 1, 'kept')")
    con.close()
    with Store(tmp_path / "s.duckdb").connect() as con:  # opening for writing migrates forward
        assert applied(con) == [name for name, _ in MIGRATIONS]
        assert con.execute("SELECT output FROM turns").fetchall() == [("kept",)]


def test_an_older_store_gets_its_streamed_turns_first_token_column_filled(tmp_path: Path) -> None:
    """Stores written before first_token_ms had its own column keep their first-token figures."""
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    migrate(con, upto=[name for name, _ in MIGRATIONS].index("0010_first_token"))
    con.execute("INSERT INTO runs (run_id, suite, status, started_at) VALUES ('r1', 'demo', 'completed', now())")
    for turn, trace in ((1, '{"output":"a","latency_ms":{"total":90.0,"first_token":12.5}}'),
                        (2, '{"output":"b","latency_ms":{"total":80.0}}')):
        con.execute("INSERT INTO turns (run_id, case_id, repeat, turn, trace) VALUES ('r1', 'c', 0, ?, ?)", [turn, trace])
    con.close()
    with Store(tmp_path / "s.duckdb").connect() as con:
        assert con.execute("SELECT turn, first_token_ms FROM turns ORDER BY turn").fetchall() == [(1, 12.5), (2, None)]
        from evalgate.store import metrics

        assert metrics.headline(con, "r1")["first_token.p50"] == 12.5


def test_readers_bring_an_older_store_forward(tmp_path: Path) -> None:
    """history, show, report and routes open the store read-only; an older schema is migrated first."""
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    migrate(con, upto=3)
    con.execute("INSERT INTO runs (run_id, suite, status, started_at) VALUES ('r1', 'demo', 'completed', now())")
    con.close()
    with Store(tmp_path / "s.duckdb").connect(read_only=True) as con:
        names = [r[0] for r in con.execute("SELECT name FROM schema_migrations ORDER BY name").fetchall()]
        assert names == [name for name, _ in MIGRATIONS]
        assert con.execute("SELECT run_id FROM runs").fetchall() == [("r1",)]
        # the columns later evalgates read are there
        assert con.execute("SELECT count(detail), count(metrics) FROM scores").fetchone() == (0, 0)


def test_a_store_from_a_newer_evalgate_is_refused(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    migrate(con)
    con.execute("INSERT INTO schema_migrations (name) VALUES ('9999_from_the_future')")
    con.close()
    from evalgate.errors import RunError

    with pytest.raises(RunError, match="newer evalgate"):
        with Store(tmp_path / "s.duckdb").connect():
            pass


def _slow_suite(project: Path, n: int = 12, delay: float = 0.25) -> None:
    cases = "\n".join(f"  - {{id: c{i:02d}, input: 'slow {delay}', expect: {{route: smalltalk}}}}" for i in range(n))
    write(project / "suites" / "demo.yaml", f"name: slow\ntarget: {{python: bot:respond}}\nconcurrency: 1\ncases:\n{cases}\n")


def _start_run(project: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "evalgate", "run", *args], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_rows(db: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                r = run_cli("history", "--json", "--db", str(db), cwd=db.parent)
                if r.code == 0 and r.json() and r.json()[0]["cases_done"] > 0:
                    return
            except (ValueError, KeyError):
                pass
        time.sleep(0.2)
    raise AssertionError("the run never stored a case")


def _held_suite(project: Path, release: Path, n: int = 40) -> None:
    """The first case answers at once and the second after the writer's flush interval, so both are stored; the
    others wait until ``release`` exists, so the run is busy for as long as the test looks."""
    inputs = ["hi", "slow 2.1"] + [f"hold {release}"] * (n - 2)
    cases = "\n".join(f"  - {{id: c{i:02d}, input: '{text}', expect: {{route: smalltalk}}}}" for i, text in enumerate(inputs))
    write(project / "suites" / "demo.yaml", f"name: slow\ntarget: {{python: bot:respond}}\nconcurrency: 1\ncases:\n{cases}\n")


def test_history_and_show_work_while_a_run_writes(project: Path) -> None:
    release = project / "release"
    _held_suite(project, release)
    db = project / ".evalgate" / "evalgate.duckdb"
    proc = _start_run(project, "--json")
    try:
        _wait_for_rows(db)
        # a second run on the busy store stops with a clear message and exit 3
        second = run_cli("run", cwd=project)
        assert second.code == 3, second
        assert "another evalgate run is writing to" in second.err and "pid" in second.err
        assert "hint: wait for it to finish (--wait SECONDS)" in second.err
        r = run_cli("history", "--json", cwd=project)
        assert r.code == 0, r
        assert r.json()[0]["status"] == "running"
        assert run_cli("show", "latest", "c00", "--json", cwd=project).json()["repeats"][0]["passed"] is True
        assert proc.poll() is None, "the run ended before the readers were checked"
    finally:
        release.touch()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["suites"][0]["cases"] == 40
    assert query(db, "SELECT status, cases_done FROM runs") == [("completed", 40)]


def test_ctrl_c_stores_the_run_as_interrupted_with_what_finished(project: Path) -> None:
    _slow_suite(project, n=40)
    db = project / ".evalgate" / "evalgate.duckdb"
    proc = _start_run(project, "--json")
    _wait_for_rows(db)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, (out, err)
    report = json.loads(out)["suites"][0]
    assert report["status"] == "interrupted" and report["verdict"]["status"] == "error"
    assert "the run was interrupted after" in report["verdict"]["reasons"][0]
    (status, done), = query(db, "SELECT status, cases_done FROM runs")
    assert status == "interrupted" and 0 < done < 40
    # what finished is whole: every stored case has its turns and scores
    assert query(db, "SELECT count(*) FROM cases") == [(done,)]
    assert query(db, "SELECT count(*) FROM turns") == [(done,)]
    assert query(db, "SELECT count(*) FROM scores") == [(done,)]


def test_sigterm_stores_the_run_as_interrupted(project: Path) -> None:
    release = project / "release"
    _held_suite(project, release)
    db = project / ".evalgate" / "evalgate.duckdb"
    proc = _start_run(project, "--json")
    _wait_for_rows(db)
    proc.send_signal(signal.SIGTERM)  # a cancelled CI job: handled like Ctrl-C
    release.touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, (out, err)
    assert json.loads(out)["suites"][0]["status"] == "interrupted"
    (status, done), = query(db, "SELECT status, cases_done FROM runs")
    assert status == "interrupted" and 0 < done < 40


def test_a_killed_run_is_seen_as_interrupted_and_the_next_run_marks_it(project: Path) -> None:
    release = project / "release"
    _held_suite(project, release)
    db = project / ".evalgate" / "evalgate.duckdb"
    proc = _start_run(project, "--json")
    _wait_for_rows(db)
    proc.kill()  # SIGKILL: nothing of evalgate runs after it
    proc.communicate(timeout=60)
    (killed, status), = query(db, "SELECT run_id, status FROM runs")
    assert status == "running"  # as the dead process left it ...
    r = run_cli("history", "--json", cwd=project)
    assert r.code == 0 and r.json()[0]["status"] == "interrupted"  # ... but no process holds the run lock
    r = run_cli("report", killed, "--json", cwd=project)  # reportable: what finished, and why it has no verdict
    assert r.code == 0 and r.json()["exit_code"] == 3, r
    assert r.json()["suites"][0]["status"] == "interrupted"
    reasons = r.json()["suites"][0]["verdict"]["reasons"]
    assert "interrupted" in reasons[0] and "before it had a verdict" in reasons[0]
    release.touch()
    write(project / "suites" / "demo.yaml", "name: slow\ntarget: {python: bot:respond}\ncases: [{id: a, input: hi}]\n")
    assert run_cli("run", cwd=project).code == 0
    assert dict(query(db, "SELECT run_id, status FROM runs"))[killed] == "interrupted"  # stored so, once and for all


def test_a_killed_run_resumes_into_the_same_run_with_exactly_the_cases_it_lacked(project: Path) -> None:
    release = project / "release"
    _held_suite(project, release, n=12)
    db = project / ".evalgate" / "evalgate.duckdb"
    proc = _start_run(project, "--json")
    _wait_for_rows(db)
    proc.kill()
    proc.communicate(timeout=60)
    (killed, done_before), = query(db, "SELECT run_id, count(*) FROM cases GROUP BY run_id")
    assert 0 < done_before < 12
    release.touch()  # the held cases answer now
    r = run_cli("run", "--resume", killed, "--json", cwd=project)
    assert r.code == 0, r
    s = r.json()["suites"][0]
    assert s["run_id"] == killed and s["status"] == "completed" and s["cases"] == 12
    assert query(db, "SELECT count(*), count(DISTINCT run_id) FROM runs") == [(1, 1)]
    assert query(db, "SELECT status, cases_done FROM runs") == [("completed", 12)]
    ids = [c for (c,) in query(db, "SELECT case_id FROM cases ORDER BY case_id")]
    assert ids == [f"c{i:02d}" for i in range(12)]  # each case once: none lost, none run twice
    # a completed run cannot be resumed; an edited suite cannot resume an older run
    again = run_cli("run", "--resume", killed, cwd=project)
    assert again.code == 2 and "only an interrupted or stopped run can be resumed" in again.err


def test_ctrl_c_while_loading_is_said_and_exits_3(project: Path) -> None:
    write(project / "slowimport.py", "import time\ntime.sleep(30)\ndef respond(req):\n    return {'output': 'hi'}\n")
    write(project / "suites" / "demo.yaml", "name: slow\ntarget: {python: slowimport:respond}\ncases: [{id: a, input: hi}]\n")
    proc = _start_run(project)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3 and "interrupted (Ctrl-C)" in err, (out, err)


def _case_result(i: int, explanation: object = "ok") -> object:
    from evalgate.results import CaseResult, TurnResult
    from evalgate.scorers import Score
    from evalgate.traces import Trace

    score = Score(True, 1.0, explanation, None, "check")  # type: ignore[arg-type]
    turn = TurnResult(1, f"input {i}", {}, Trace(output=f"answer {i}"), 1.0, None, [score])
    return CaseResult(f"c{i:04d}", i, 0, (), "u", [], None, "test", False, [turn])


def test_a_batch_the_store_rejects_keeps_every_other_case_and_says_exactly_what_was_left_out(tmp_path: Path) -> None:
    """Two case runs hold a value DuckDB cannot take (text with a lone surrogate, which is no UTF-8): the batch is written again in parts, every other case run of it
    and of the batches before and after is stored, the run is failed and the message names the two."""
    from evalgate.store import runs
    from evalgate.store.writer import ResultWriter

    store = Store(tmp_path / "s.duckdb")
    with store.connect() as con:
        runs.begin(con, runs.NewRun(run_id="r1", suite="s", suite_path="s.yaml", suite_hash="h", config_hash=None,
                                    target="t", git={}, evalgate_version="0", repeat=1, selected_tags=[],
                                    cases_total=1500, bad_lines=0, options={}))
    writer = ResultWriter(store, "r1", batch_rows=500)
    for i in range(1500):
        writer.add(_case_result(i, "bad \ud800" if i in (700, 1234) else "ok"))
    writer.flush(status_update={"status": "completed"})
    writer.close()
    assert writer.cases_done == writer.turns_done == 1498 and writer.passed == 1498
    assert writer.failure is not None
    assert writer.failure.startswith("stored 1,498 of 1,500 case runs; case c0700#0 failed: InvalidInput"), writer.failure
    assert "; case c1234#0 failed: InvalidInput" in writer.failure and "no more were tried" not in writer.failure
    assert query(store.path, "SELECT status, cases_done, turns_done FROM runs") == [("failed", 1498, 1498)]
    stored = {c for (c,) in query(store.path, "SELECT case_id FROM cases")}
    assert stored == {f"c{i:04d}" for i in range(1500)} - {"c0700", "c1234"}
    assert query(store.path, "SELECT count(*), count(DISTINCT case_id) FROM turns") == [(1498, 1498)]
    assert query(store.path, "SELECT count(*) FROM scores") == [(1498,)]


def _fill(folder: Path) -> Path:
    """Write zeros into ``folder`` until its file system has no space left."""
    filler = folder / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 20))
                fh.flush()
        except OSError:
            pass
    return filler


def test_a_store_that_runs_out_of_space_keeps_what_it_stored_and_the_run_resumes(project: Path) -> None:
    """The store's disk fills after the first batch (a real tmpfs, really full): the next batch fails, the one after
    it is not tried and the run stops there; evalgate says how many case runs it kept and which it could not write,
    exits 3, and once there is space --resume runs exactly the rest."""
    disk = project / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        go = project / "go"
        write(project / "filling.py", f'''
            import os, time

            def respond(req):
                n = int(req["input"])
                if n in (600, 1000, 1200):
                    time.sleep(2.5)  # the case runs before are written as one batch meanwhile
                if n > 600:
                    while not os.path.exists({str(go)!r}):
                        time.sleep(0.02)
                return {{"output": "x" * 2000}}
        ''')
        cases = "".join(f'  - {{id: c{i:04d}, input: "{i}"}}\n' for i in range(1500))
        write(project / "suites" / "demo.yaml", f"name: full\ntarget: {{python: filling:respond}}\ncases:\n{cases}")
        db = disk / "s.duckdb"
        proc = _start_run(project, "-j", "1", "--json", "--db", str(db))
        deadline = time.monotonic() + 60
        while not _stored_cases(db) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _stored_cases(db) == 601
        filler = _fill(disk)
        go.touch()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 3, (out, err)
        assert out.strip(), err[-3000:]
        s = json.loads(out)["suites"][0]
        assert s["status"] == "stopped" and s["cases"] == 601
        reason = s["verdict"]["reasons"][0]
        assert reason.startswith("the run was stopped: stored 601 of 1,201 case runs; the batch of cases c0601#0..c"), reason
        assert "..c1200#0 could not be tried" in reason, reason  # the run stopped at the batch after the failed one
        assert "No space left on device" in reason and "--resume finishes it" in reason
        assert query(db, "SELECT count(*) FROM cases") == [(601,)]
        filler.unlink()
        r = run_cli("run", "--resume", s["run_id"], "--json", "--db", str(db), cwd=project)
        assert r.code == 0, r
        assert query(db, "SELECT status, cases_done FROM runs") == [("completed", 1500)]
        assert query(db, "SELECT count(*), count(DISTINCT case_id) FROM cases") == [(1500, 1500)]
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _stored_cases(db: Path) -> int:
    try:
        return int(query(db, "SELECT coalesce(sum(cases_done), 0) FROM runs")[0][0])
    except (duckdb.Error, OSError):  # not created yet, or a batch is being written
        return 0


def test_a_nan_score_stays_nan_and_a_missing_value_null(tmp_path: Path) -> None:
    """DuckDB reads a NaN in a NumPy float column as NULL: the writer keeps a scorer's NaN a NaN (the mean it
    makes is NaN, as the scorer said), a missing value NULL; a flag given as text is cast the same in any batch."""
    from evalgate.results import CaseResult, TurnResult
    from evalgate.scorers import Score
    from evalgate.store import runs
    from evalgate.store.writer import ResultWriter
    from evalgate.traces import Trace

    store = Store(tmp_path / "s.duckdb")
    with store.connect() as con:
        runs.begin(con, runs.NewRun(run_id="r1", suite="s", suite_path="s.yaml", suite_hash="h", config_hash=None,
                                    target="t", git={}, evalgate_version="0", repeat=1, selected_tags=[],
                                    cases_total=4, bad_lines=0, options={}))
    writer = ResultWriter(store, "r1")
    values = [float("nan"), None, 0.5, float("inf")]
    for i, value in enumerate(values):
        score = Score("false" if i == 2 else True, value, "x", None, "check")  # type: ignore[arg-type]
        turn = TurnResult(1, f"input {i}", {}, Trace(output="a"), 1.0, None, [score])
        writer.add(CaseResult(f"c{i}", i, 0, (), "u", [], None, "test", False, [turn]))  # type: ignore[arg-type]
    writer.flush(status_update={"status": "completed"})
    writer.close()
    stored = query(store.path, "SELECT isnan(value), value IS NULL, value, passed FROM scores ORDER BY case_id")
    assert stored[0][:2] == (True, False) and stored[1][:3] == (None, True, None)
    assert stored[2] == (False, False, 0.5, False) and stored[3] == (False, False, float("inf"), True)
