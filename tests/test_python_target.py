"""The python target with the code teams write: decorators, loops bound at import, exits, cleanup on Ctrl-C.

Async functions run on a loop of their own (targets/python.py); these are the ways such code can tell."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import query, write

APP = """
import asyncio, functools, os, threading, time


def syncify(fn):  # a plain function that runs the async one to completion itself
    @functools.wraps(fn)
    def wrapper(request):
        return asyncio.run(fn(request))
    return wrapper


@syncify
async def synced(request):
    await asyncio.sleep(0.01)
    return "synced " + request["input"]


async def _later(request):
    return "awaited " + request["input"]


def mixed(request):  # hands back a coroutine for one input, blocks for the others
    if request["input"] == "first":
        return _later(request)
    time.sleep(0.2)
    return threading.current_thread().name


LOOP = asyncio.get_running_loop()  # bound at import: the loop the calls will run on
QUEUE = asyncio.Queue()


async def _worker():
    while True:
        text, done = await QUEUE.get()
        done.set_result("batched " + text)


WORKER = LOOP.create_task(_worker())


async def bound(request):
    done = LOOP.create_future()
    await QUEUE.put((request["input"], done))
    return await asyncio.wait_for(done, 5)


async def exits(request):
    raise SystemExit(7)


async def fine(request):
    return "fine " + request["input"]


IN_FLIGHT = [0, 0]  # now, most


async def counted(request):
    IN_FLIGHT[0] += 1
    IN_FLIGHT[1] = max(IN_FLIGHT[1], IN_FLIGHT[0])
    try:
        await asyncio.sleep(0.05)
    finally:
        IN_FLIGHT[0] -= 1
    return f"most {IN_FLIGHT[1]}"


async def messy_cancel(request):
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        raise RuntimeError("cleanup failed")
"""


_EARLIER: list[Any] = []
"""Each test imports its own team_code; the earlier ones are kept, as a process keeps its modules: the task one
started at import on the target's loop would otherwise be collected while pending ("Task was destroyed")."""


def _project(tmp_path: Path, **suites: str) -> list[Path]:
    write(tmp_path / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\n')
    write(tmp_path / "team_code.py", APP)
    _EARLIER.append(sys.modules.pop("team_code", None))
    return [write(tmp_path / "suites" / f"{name}.yaml", f"name: {name}\ntarget: {{python: \"team_code:{name}\"}}\n"
                  f"cases:\n{cases}") for name, cases in suites.items()]


def _run(tmp_path: Path, paths: list[Path], **options: Any) -> Any:
    from evalgate.api import run
    from evalgate.config import find_config
    from evalgate.runner import RunOptions

    return run([str(p) for p in paths], config=find_config(tmp_path), store_path=tmp_path / "store.duckdb",
               options=RunOptions(cache_mode="off", **options))


def _outputs(tmp_path: Path, suite: str) -> dict[str, tuple[Any, Any]]:
    return {c: (o, e) for c, o, e in query(tmp_path / "store.duckdb", "SELECT t.case_id, t.output, t.error FROM turns t "
                                           f"JOIN runs r USING (run_id) WHERE r.suite = '{suite}'")}


def test_a_plain_wrapper_of_an_async_function_runs_in_a_thread(tmp_path: Path, monkeypatch: Any) -> None:
    """functools.wraps keeps the async function in __wrapped__, but the wrapper is plain and runs it with
    asyncio.run: it is called in a thread, as any plain function (on the target's loop asyncio.run would fail)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    paths = _project(tmp_path, synced="  - {id: a, input: one}\n  - {id: b, input: two}\n")
    assert _run(tmp_path, paths).exit_code == 0
    assert _outputs(tmp_path, "synced") == {"a": ("synced one", None), "b": ("synced two", None)}


def test_a_plain_function_that_once_hands_back_a_coroutine_still_runs_in_threads(tmp_path: Path,
                                                                               monkeypatch: Any) -> None:
    """The coroutine it handed back is awaited on the target's loop; every call stays in the target's threads, so
    its blocking calls still run eight at a time (24 of 0.2 s take about 0.6 s, not 4.8 s one after another)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = "  - {id: a0, input: first}\n" + "".join(f"  - {{id: b{i:02d}, input: block}}\n" for i in range(24))
    paths = _project(tmp_path, mixed=cases)
    started = time.perf_counter()
    assert _run(tmp_path, paths, concurrency=8, timeout_s=5).exit_code == 0
    took = time.perf_counter() - started
    out = _outputs(tmp_path, "mixed")
    assert out.pop("a0") == ("awaited first", None)
    assert all(e is None and o.startswith("evalgate-target_") for o, e in out.values()), out  # the pool's threads
    assert took < 2.5, took


def test_what_the_module_binds_to_the_running_loop_at_import_is_the_loop_its_calls_run_on(
        tmp_path: Path, monkeypatch: Any) -> None:
    """A queue and its worker task made at import on the running loop serve every call (imported on the run's
    loop and called on another, each call timed out)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    paths = _project(tmp_path, bound="  - {id: a, input: one}\n  - {id: b, input: two}\n")
    assert _run(tmp_path, paths, timeout_s=5).exit_code == 0
    assert _outputs(tmp_path, "bound") == {"a": ("batched one", None), "b": ("batched two", None)}


def test_a_system_exit_from_the_target_fails_its_turn_and_leaves_the_loop_running(tmp_path: Path,
                                                                                  monkeypatch: Any) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    paths = _project(tmp_path, exits="  - {id: a, input: one}\n", fine="  - {id: a, input: one}\n")
    report = _run(tmp_path, [paths[0]], timeout_s=5)
    assert report.exit_code == 3
    assert _outputs(tmp_path, "exits") == {"a": (None, "the target raised SystemExit: 7")}
    assert _run(tmp_path, [paths[1]], timeout_s=5).exit_code == 0  # the next run's calls are answered
    assert _outputs(tmp_path, "fine") == {"a": ("fine one", None)}


def test_a_call_given_up_at_its_timeout_leaves_no_unretrieved_exception(tmp_path: Path, monkeypatch: Any,
                                                                       caplog: Any) -> None:
    """A call cancelled at the turn's timeout that raises while it is cancelled: the turn says it timed out, and
    asyncio logs no "Task exception was never retrieved" for it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    paths = _project(tmp_path, messy_cancel="  - {id: a, input: one}\n  - {id: b, input: two}\n")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        _run(tmp_path, paths, timeout_s=0.3)
        time.sleep(0.2)  # the cancelled calls end on the target's loop
        import gc

        gc.collect()  # an unretrieved exception is logged when its task is collected
    assert {e for _, e in _outputs(tmp_path, "messy_cancel").values()} == {"timed out after 0.3s"}
    assert "never retrieved" not in caplog.text, caplog.text


INTERRUPTED = """
import asyncio, os, pathlib

STARTED = pathlib.Path(os.environ["MARKS"]) / "started"
ENDED = pathlib.Path(os.environ["MARKS"]) / "ended"
_background = None


async def _tick():
    try:
        while True:
            await asyncio.sleep(0.05)
    finally:
        with open(ENDED, "a") as f:
            f.write("background\\n")


async def slow(request):
    global _background
    if _background is None:
        _background = asyncio.get_running_loop().create_task(_tick())
    with open(STARTED, "a") as f:
        f.write(request["case_id"] + "\\n")
    try:
        await asyncio.sleep(30)
    finally:
        await asyncio.sleep(0.3)  # cleanup that takes a while, as closing a connection does
        with open(ENDED, "a") as f:
            f.write(request["case_id"] + "\\n")
    return "done"
"""


def test_ctrl_c_lets_the_calls_in_flight_and_the_targets_own_tasks_run_their_cleanup(tmp_path: Path) -> None:
    """Interrupted with 16 calls in flight: exit 3, the run stored as interrupted, and every call's finally block
    (and that of a background task the function started) has run before the process exits."""
    write(tmp_path / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\n')
    write(tmp_path / "team_slow.py", INTERRUPTED)
    cases = "".join(f"  - {{id: c{i:02d}, input: hi}}\n" for i in range(40))
    suite = write(tmp_path / "suites" / "slow.yaml", f"name: slow\ntarget: {{python: \"team_slow:slow\"}}\ncases:\n"
                  f"{cases}")
    env = {**os.environ, "MARKS": str(tmp_path), "PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "evalgate", "run", str(suite), "-j", "16", "--json", "--db",
                             str(tmp_path / "store.duckdb")], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    started = tmp_path / "started"
    deadline = time.monotonic() + 60
    while not (started.exists() and len(started.read_text().split()) >= 16):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, (out, err)
    assert json.loads(out)["suites"][0]["status"] == "interrupted"
    ended = (tmp_path / "ended").read_text().split()
    assert sorted(c for c in ended if c != "background") == sorted(started.read_text().split()), (ended, err)
    assert "background" in ended
    assert "Traceback" not in err and "never retrieved" not in err and "destroyed" not in err, err


def test_no_more_calls_at_once_than_the_concurrency(tmp_path: Path, monkeypatch: Any) -> None:
    """On its own loop the target still sees at most -j calls at once, and all of them are used."""
    monkeypatch.syspath_prepend(str(tmp_path))
    paths = _project(tmp_path, counted="".join(f"  - {{id: c{i:02d}, input: hi}}\n" for i in range(40)))
    assert _run(tmp_path, paths, concurrency=4).exit_code == 0
    import team_code

    assert team_code.IN_FLIGHT[1] == 4
    elapsed = sorted(e for (e,) in query(tmp_path / "store.duckdb", "SELECT elapsed_ms FROM turns"))
    assert len(elapsed) == 40 and 45 < elapsed[0] and elapsed[-1] < 95, elapsed


def test_validate_imports_the_target_as_a_run_does(tmp_path: Path, monkeypatch: Any) -> None:
    """The module that binds the running loop at import passes ``validate`` as it runs (imported on the main thread,
    with no loop running, it failed there)."""
    from conftest import run_cli_in_process

    _project(tmp_path, bound="  - {id: a, input: one}\n")
    r = run_cli_in_process("validate", "--json", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert r.code == 0, r
