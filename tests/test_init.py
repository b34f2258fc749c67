"""evalgate init: a starter project that runs offline on the first try, and never clobbers files."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli_in_process


def test_init_makes_a_project_that_passes_offline(tmp_path: Path) -> None:
    r = run_cli_in_process("init", "proj", "--json", cwd=tmp_path)
    assert r.code == 0, r
    info = r.json()
    assert sorted(info["created"]) == ["datasets/cases.yaml", "datasets/docs.jsonl", "evalgate.toml", "my_target.py",
                                       "pipelines/starter.yaml", "suites/starter.yaml"]
    proj = tmp_path / "proj"
    assert run_cli_in_process("validate", cwd=proj).code == 0
    r = run_cli_in_process("run", "--json", cwd=proj)
    assert r.code == 0, r
    suite = r.json()["suites"][0]
    assert suite["suite"] == "starter" and suite["cases"] == 5 and suite["metrics"]["pass_rate"] == 1.0
    # the adapter template is a valid target: it runs without errors, and the gate says what it gets wrong
    r = run_cli_in_process("run", "--target", "python:my_target:respond", "--json", cwd=proj)
    assert r.code == 1, r
    suite = r.json()["suites"][0]
    assert suite["metrics"]["errors"] == 0 and suite["metrics"]["route.pass_rate"] < 1


def test_init_keeps_existing_files(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.evalgate]\nsuites = "evals"\n')
    (tmp_path / "my_target.py").write_text("# mine\n")
    r = run_cli_in_process("init", "--json", cwd=tmp_path)
    assert r.code == 0, r
    assert set(r.json()["skipped"]) == {"evalgate.toml", "my_target.py"}
    assert not (tmp_path / "evalgate.toml").exists() and (tmp_path / "my_target.py").read_text() == "# mine\n"
    r = run_cli_in_process("init", cwd=tmp_path)
    assert r.code == 0 and "kept     suites/starter.yaml" in r.out, r
    r = run_cli_in_process("init", "--force", "--json", cwd=tmp_path)
    assert "my_target.py" in r.json()["created"]


def test_init_for_a_running_service_writes_a_suite_that_runs_once_its_todos_are_filled(tmp_path: Path,
                                                                                      model_server) -> None:
    from conftest import query, service_process

    url, _ = model_server
    with service_process({"OPENAI_BASE_URL": url, "SUPPORT_TOKEN": "tok-0123456789"}) as base:
        r = run_cli_in_process("init", "app", "--http", f"{base}/v1/chat", "--name", "support", "--json", cwd=tmp_path)
        assert r.code == 0, r
        assert sorted(r.json()["created"]) == [".github/workflows/evalgate.yml", ".gitignore (.evalgate/)",
                                               "evalgate.toml", "suites/support.yaml"]
        app = tmp_path / "app"
        assert run_cli_in_process("validate", cwd=app).code == 0  # valid as written, TODOs and all
        suite = app / "suites" / "support.yaml"
        text = suite.read_text()
        assert f'http: "{base}/v1/chat"' in text and "response:" in text and "TODO" in text
        # what the user fills in: the service's own field names and where its answer is
        filled = (text.replace("session_id: \"{{ session_id }}\"", "conversation: \"{{ session_id }}\"")
                  .replace("message: \"{{ input }}\"", "text: \"{{ input }}\"")
                  .replace("output: answer ", "output: reply.text ").replace("# route: meta.workflow", "route: meta.workflow"))
        suite.write_text(filled)
        r = run_cli_in_process("run", "--json", cwd=app, env={"SERVICE_TOKEN": "tok-0123456789"})
        assert r.code == 0, r
        assert r.json()["suites"][0]["metrics"]["pass_rate"] == 1.0
        routes = {row[0] for row in query(app / ".evalgate" / "evalgate.duckdb", "SELECT route FROM turns")}
        assert routes == {"general", "billing"}
    assert (app / ".gitignore").read_text() == ".evalgate/\n"


def test_init_for_python_and_command_targets(tmp_path: Path) -> None:
    from conftest import BOT, write

    write(tmp_path / "bot.py", BOT)
    write(tmp_path / "serve.py", """
        import json, sys
        for line in sys.stdin:
            req = json.loads(line)
            print(json.dumps({"session_id": req["session_id"], "turn": req["turn"], "output": "ok: " + req["input"]}), flush=True)
    """)
    (tmp_path / ".gitignore").write_text("node_modules/\n.evalgate/\n")
    r = run_cli_in_process("init", "--python", "bot:respond", "--name", "bot", "--json", cwd=tmp_path)
    assert r.code == 0, r
    assert ".gitignore (.evalgate/)" not in r.json()["created"]  # already ignored: left as it is
    r = run_cli_in_process("init", "--command", "python serve.py", "--name", "cli", "--json", cwd=tmp_path)
    assert r.code == 0, r
    assert r.json()["skipped"] == ["evalgate.toml", ".github/workflows/evalgate.yml"]
    assert (tmp_path / ".gitignore").read_text() == "node_modules/\n.evalgate/\n"
    for name in ("bot", "cli"):
        r = run_cli_in_process("run", f"suites/{name}.yaml", "--json", cwd=tmp_path)
        assert r.code == 0, r
        assert r.json()["suites"][0]["metrics"]["pass_rate"] == 1.0


def test_init_for_a_system_refuses_what_cannot_be_one(tmp_path: Path) -> None:
    for args, said in ((("--http", "localhost:8000"), "is not a URL"), (("--python", "bot.respond"), "module:function"),
                       (("--http", "http://x", "--python", "a:b"), "one of --http")):
        r = run_cli_in_process("init", *args, cwd=tmp_path)
        assert r.code == 2 and said in r.err, r
    assert not any(tmp_path.iterdir())
