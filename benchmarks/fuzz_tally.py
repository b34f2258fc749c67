"""A pytest plugin for ``bench_faults.py``: counts what every fuzzed input came to.

Loaded with ``-p fuzz_tally`` (``benchmarks/`` on ``sys.path``) and ``EVALGATE_FUZZ_TALLY=FILE``; it wraps the
``run_cli_in_process`` each fuzz test module calls and appends one JSON line per input: the test, the exit code,
whether stderr said "internal error" or held a traceback, whether a refusal says ``error: …`` and names a file,
and the seconds it took.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest


def _wrap(call: Any, test: str, path: str) -> Any:
    def tallied(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        r = call(*args, **kwargs)
        row = {"test": test, "code": r.code, "seconds": round(time.monotonic() - started, 3),
               "internal": "internal error" in r.err or "Traceback" in r.err,
               "message": r.code != 2 or (r.err.startswith("error: ") and len(r.err.strip()) > 10),
               "names_file": any(ext in r.err for ext in (".yaml", ".jsonl", ".csv", ".json", ".toml"))}
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        return r

    return tallied


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    path = os.environ.get("EVALGATE_FUZZ_TALLY")
    module = getattr(item, "module", None)
    if not path or module is None or not hasattr(module, "run_cli_in_process"):
        return
    original = getattr(module, "_untallied", None) or module.run_cli_in_process
    module._untallied = original
    module.run_cli_in_process = _wrap(original, item.name.split("[")[0], path)
