"""``run --executor ray``: case runs on a real Ray cluster on this machine, results in the driver's real store.

One Ray session serves the module (starting one costs seconds); the SIGTERM test starts its own, in the CLI's
process, as a user's ``evalgate run --executor ray`` does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, query, run_cli, write

import evalgate
from evalgate.config import find_config
from evalgate.runner import Progress, RunOptions

pytestmark = pytest.mark.xdist_group("ray")  # one xdist worker runs them all, in one Ray session

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[test,ray]'")

BOT = '''
import hashlib, os, signal, time

def respond(req):
    text = req["input"]
    word, *args = text.split()
    if word == "die-once" and not os.path.exists(args[0]):  # kills its worker the first time it runs
        open(args[0], "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    if word == "die-always":
        os.kill(os.getpid(), signal.SIGKILL)
    if word == "hold":  # says which process runs it, then waits until the test lets it go
        with open(args[0], "a") as f:
            f.write(f"{os.getpid()}\\n")
        while not os.path.exists(args[1]):
            time.sleep(0.02)
    if word == "slow":
        with open(args[1], "a") as f:
            f.write("started\\n")
        time.sleep(float(args[0]))
    digest = hashlib.sha256(f"{text}|{req['repeat']}".encode()).hexdigest()
    return {"route": {"name": "smalltalk"}, "output": f"echo {digest[:6]}", "state": {"n": len(text)}}
'''


def _project(root: Path, inputs: list[str], *, repeat: int = 1) -> Path:
    """A project whose suite's cases pass, or fail on the digest's first hex digit: mixed and deterministic."""
    write(root / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\nstore = ".evalgate/evalgate.duckdb"\n')
    write(root / "rbot.py", BOT)
    cases = "\n".join(f"  - {{id: c{i:02d}, input: '{text}', expect: {{route: smalltalk, output: {{regex: 'echo [0-9a-b]'}}}}}}"
                      for i, text in enumerate(inputs))
    write(root / "suites" / "demo.yaml",
          f"name: demo\ntarget: {{python: rbot:respond}}\nrepeat: {repeat}\nconcurrency: 2\n"
          f"gate:\n  rules:\n    - {{metric: pass_rate, min: 0.2}}\ncases:\n{cases}\n")
    return root


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A Ray head on this machine with two CPUs: two workers."""
    # workers see the environment the cluster started with: the sampled assistant's seed (the same draws on both
    # sides) and a model key the pipeline target checks for (never sent: its runs are offline)
    env = {"ASSISTANT_SAMPLE_SEED": "7", "EVALGATE_TEST_KEY": "unused"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(root: Path, db: Path, executor: str | None, paths: list[str] | None = None,
         advanced: list[int] | None = None) -> evalgate.RunReport:
    factory = (lambda suite: Progress(advance=advanced.append)) if advanced is not None else None
    return evalgate.run(paths, config=find_config(root), store_path=db, options=RunOptions(executor=executor),
                        progress_factory=factory)


def _cases(db: Path, run_id: str) -> list[tuple[Any, ...]]:
    return query(db, "SELECT case_id, repeat, passed, errored, n_turns, digest FROM cases WHERE run_id = ? "
                     "ORDER BY case_id, repeat", [run_id])


def _summary(report: evalgate.RunReport) -> dict[str, Any]:
    """What decides a release, per suite: status, counts, verdict and every rule's result, metrics but timings."""
    out = {}
    for s in report.suites:
        timing = ("elapsed.", "latency.")
        out[s.suite] = {"status": s.status, "cases": s.cases, "turns": s.turns, "verdict": s.verdict.status,
                        "exit": s.verdict.exit_code,
                        "rules": [(r.rule, r.status) for r in s.verdict.rules if not r.rule.startswith(timing)],
                        # sums of costs in another order differ in the last bits only
                        "metrics": {k: round(v, 9) if isinstance(v, float) else v for k, v in s.metrics.items()
                                    if not k.startswith(timing)}}
    return out


def test_the_bundled_example_has_the_same_verdict_on_ray_as_locally(cluster: Any, tmp_path: Path) -> None:
    local = _run(REPO, tmp_path / "local.duckdb", None)
    advanced: list[int] = []
    distributed = _run(REPO, tmp_path / "ray.duckdb", "ray", advanced=advanced)
    assert _summary(distributed) == _summary(local)
    assert {s.suite for s in distributed.suites} == {"support", "support-replay", "support-pipeline", "support-sampled"}
    for a, b in zip(local.suites, distributed.suites):  # case by case: the same answers (digests), passes, errors
        assert _cases(tmp_path / "local.duckdb", a.run_id) == _cases(tmp_path / "ray.duckdb", b.run_id), a.suite
    assert sum(advanced) == sum(s.cases for s in distributed.suites)  # the progress bar moved as batches came back
    assert distributed.exit_code == local.exit_code == 0


def test_a_killed_worker_loses_no_case(cluster: Any, tmp_path: Path) -> None:
    """One worker is killed by the test (os.kill of its pid), another kills itself; their cases run again elsewhere."""
    pids, release, marker = tmp_path / "pids", tmp_path / "release", tmp_path / "died"
    inputs = [f"hold {pids} {release}", f"die-once {marker}"] + [f"hello {i}" for i in range(14)]
    root = _project(tmp_path / "p", inputs, repeat=2)

    def kill_the_holder() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (pids.exists() and pids.read_text().strip()):
            time.sleep(0.02)
        os.kill(int(pids.read_text().split()[0]), signal.SIGKILL)  # the worker process running case c00
        release.touch()

    killer = threading.Thread(target=kill_the_holder)
    killer.start()
    try:
        distributed = _run(root, tmp_path / "ray.duckdb", "ray")
    finally:
        killer.join()
    assert marker.exists()  # c01's first run killed its worker
    held_by = pids.read_text().split()
    assert len(set(held_by)) >= 2, held_by  # c00 ran again, in another (restarted) worker process
    local = _run(root, tmp_path / "local.duckdb", None)  # the marker is there now: nothing dies locally
    assert _summary(distributed) == _summary(local)
    assert distributed.suites[0].status == "completed" and distributed.suites[0].cases == 32
    assert _cases(tmp_path / "ray.duckdb", distributed.suites[0].run_id) == \
        _cases(tmp_path / "local.duckdb", local.suites[0].run_id)
    assert not any(row[3] for row in _cases(tmp_path / "ray.duckdb", distributed.suites[0].run_id))  # none errored


def test_a_case_that_always_kills_its_worker_is_stored_as_an_error(cluster: Any, tmp_path: Path) -> None:
    root = _project(tmp_path / "p", ["die-always"] + [f"hello {i}" for i in range(5)])
    report = _run(root, tmp_path / "ray.duckdb", "ray")
    suite = report.suites[0]
    assert suite.status == "completed" and suite.cases == 6
    rows = query(tmp_path / "ray.duckdb", "SELECT case_id, errored, error FROM cases WHERE run_id = ? ORDER BY case_id",
                 [suite.run_id])
    assert [(r[0], r[1]) for r in rows] == [("c00", True)] + [(f"c{i:02d}", False) for i in range(1, 6)]
    assert "Ray worker running it was lost 3 times" in rows[0][2]
    assert report.exit_code == 3  # an errored case is a run error (max_error_rate 0), as a crash is locally


def test_the_command_line_joins_a_running_cluster_by_its_address(cluster: Any, tmp_path: Path) -> None:
    address = cluster.get_runtime_context().gcs_address  # HOST:PORT of the module's head, as `ray start` prints it
    root = _project(tmp_path / "p", [f"hello {i}" for i in range(12)], repeat=2)
    r = run_cli("run", "--executor", f"ray:{address}", "--json", cwd=root, timeout=120)
    assert r.code == 0, r
    joined = r.json()["suites"][0]
    local = _run(root, tmp_path / "local.duckdb", None).suites[0]
    assert (joined["status"], joined["cases"], joined["metrics"]["passed"], joined["verdict"]["status"]) == \
        (local.status, local.cases, local.metrics["passed"], local.verdict.status)
    assert cluster.is_initialized() and cluster.cluster_resources().get("CPU") == 2  # the CLI left the cluster up


def test_a_worker_whose_target_stops_the_run_stops_it_on_ray_too(cluster: Any, tmp_path: Path) -> None:
    """An offline cache miss on a worker: the run is stopped, naming the case, as a local run is."""
    root = tmp_path / "p"
    write(root / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\n')
    cases = "".join(f"  - {{id: c{i:02d}, input: question {i}}}\n" for i in range(8))
    write(root / "suites" / "llm.yaml",
          "name: llm\ntarget:\n  pipeline:\n"
          '    endpoint: {base_url: "http://127.0.0.1:9/v1", api_key_env: EVALGATE_TEST_KEY, max_retries: 0}\n'
          "    router: {fallback: answer}\n"
          '    routes:\n      answer: {model: {name: tiny-model, prompt: "Answer."}}\n'
          "cases:\n" + cases)
    report = evalgate.run(None, config=find_config(root), store_path=tmp_path / "ray.duckdb",
                          options=RunOptions(executor="ray", offline=True))
    suite = report.suites[0]
    assert suite.status == "stopped" and report.exit_code == 3
    assert "offline and no cached answer for model tiny-model" in " ".join(suite.verdict.reasons), suite.verdict.reasons


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_a_ray_run_stops_cleanly_and_resumes(tmp_path: Path, how: str) -> None:
    started = tmp_path / "started"
    root = _project(tmp_path / "p", [f"slow 0.5 {started} {i}" for i in range(30)])
    db = root / ".evalgate" / "evalgate.duckdb"
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "evalgate", "run", "--executor", "ray", "--json"], cwd=root,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (not started.exists() or len(started.read_text().split()) < 6):
        time.sleep(0.05)  # the cluster is up and both workers are running cases
    time.sleep(0.8)
    if how == "SIGTERM":
        proc.send_signal(signal.SIGTERM)  # a cancelled CI job: handled like Ctrl-C
    else:
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group, Ray's own processes too
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 3, (out, err)
    assert json.loads(out)["suites"][0]["status"] == "interrupted"
    (run_id, status, done), = query(db, "SELECT run_id, status, cases_done FROM runs")
    assert status == "interrupted" and 0 < done < 30, done
    r = run_cli("run", "--resume", run_id, "--json", cwd=root, timeout=120)  # finished locally: the store is the same
    assert r.code in (0, 1) and r.json()["suites"][0]["status"] == "completed", r  # a verdict, pass or fail
    (status, done), = query(db, "SELECT status, cases_done FROM runs")
    assert status == "completed" and done == 30
    assert query(db, "SELECT count(DISTINCT case_id) FROM cases")[0][0] == 30


def test_without_ray_installed_executor_ray_is_a_usage_error(tmp_path: Path) -> None:
    root = _project(tmp_path / "p", ["hello"])
    code = ("import sys; sys.modules['ray'] = None  # as if the extra were not installed\n"
            "from evalgate.cli import main; main(['run', '--executor', 'ray'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 2, proc
    assert "needs Ray" in proc.stderr and "[ray]" in proc.stderr


def test_executor_settings_are_checked_before_anything_runs(tmp_path: Path) -> None:
    root = _project(tmp_path / "p", ["hello"])
    r = run_cli("run", "--executor", "spark", cwd=root)
    assert r.code == 2 and "unknown executor 'spark'" in r.err, r
    r = run_cli("run", "--executor", "ray", "--max-cost", "1", cwd=root)  # one budget cannot span processes
    assert r.code == 2 and "--max-cost" in r.err, r
    write(root / "pyproject.toml", '[tool.evalgate]\nexecutor = 2\n')
    r = run_cli("run", cwd=root)
    assert r.code == 2 and "setting 'executor' must be text" in r.err, r
    write(root / "pyproject.toml", '[tool.evalgate]\nexecutor = "local"\n')
    assert find_config(root).executor == "local"
    r = run_cli("run", "--json", cwd=root)  # local: no Ray imported, no cluster
    assert r.code == 0, r
