"""https endpoints: the model client and the http target reach them through evalgate's keep-alive pool (TLS
from the standard library), so their recorded time is the exchange's on the wire, as on plain http; what they
trust is SSL_CERT_FILE's (else certifi's), and an https endpoint behind a proxy keeps the openai client's
transport, which goes through it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import query, serving, write
from test_latency import SLOW_S, DelayedModel, _run_beside_a_busy_loop, _service_api


def _pipeline(url: str) -> str:
    return (f'{{pipeline: {{endpoint: {{base_url: "{url}", max_retries: 0}}, router: {{fallback: answer}}, '
            'routes: {answer: {model: {name: tiny-model}}}}}')


def test_an_https_model_endpoint_s_time_is_its_exchange_on_the_wire(tmp_path: Path, certificate, monkeypatch) -> None:
    """The slow answer arrives at 250 ms while a scorer holds the run's loop until about 610 ms: through the openai
    client's own transport (on that loop) it was stored as about 610; through the pool, as 250."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    with serving(DelayedModel, tls=certificate) as url:
        assert url.startswith("https://")
        db = _run_beside_a_busy_loop(tmp_path, _pipeline(url))
    rows = query(db, "SELECT case_id, elapsed_ms, error FROM turns")
    by_case = {r[0]: r[1:] for r in rows}
    assert all(error is None for _, error in by_case.values()), by_case
    assert SLOW_S * 1000 - 5 <= by_case["slow"][0] < SLOW_S * 1000 + 120, by_case


def test_an_https_service_s_time_is_its_exchange_on_the_wire(tmp_path: Path, certificate, monkeypatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    with serving(DelayedModel, tls=certificate) as url:
        db = _run_beside_a_busy_loop(tmp_path, _service_api(url))
    by_case = {r[0]: r[1:] for r in query(db, "SELECT case_id, elapsed_ms, output FROM turns")}
    assert by_case["slow"][1] == "echo: slow one", by_case
    assert SLOW_S * 1000 - 5 <= by_case["slow"][0] < SLOW_S * 1000 + 120, by_case


@pytest.mark.parametrize("target", ["pipeline", "http"])
def test_a_certificate_not_trusted_fails_the_turn_and_says_what_to_set(tmp_path: Path, certificate, monkeypatch,
                                                                       target: str) -> None:
    from evalgate.api import run
    from evalgate.config import find_config
    from evalgate.runner import RunOptions

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    write(tmp_path / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\n')
    with serving(DelayedModel, tls=certificate) as url:
        spec = _pipeline(url) if target == "pipeline" else _service_api(url)
        suite = write(tmp_path / "suites" / "tls.yaml", f"""
            name: tls
            target: {spec}
            cases:
              - {{id: one, input: hello, expect: {{output: {{contains: [echo]}}}}}}
        """)
        db = tmp_path / "store.duckdb"
        report = run([str(suite)], config=find_config(tmp_path), store_path=db, options=RunOptions(cache_mode="off"))
    [(error,)] = query(db, "SELECT error FROM turns")
    assert "CERTIFICATE_VERIFY_FAILED" in error and "SSL_CERT_FILE" in error, error
    assert report.exit_code == 3


def test_https_behind_a_proxy_keeps_the_openai_client_which_goes_through_it(tmp_path: Path, certificate,
                                                                              monkeypatch) -> None:
    """HTTPS_PROXY names a port nothing listens on: a call that honours it fails to connect; the same endpoint in
    NO_PROXY is reached directly, through the pool."""
    from evalgate.api import run
    from evalgate.config import find_config
    from evalgate.models.transport import pooled
    from evalgate.runner import RunOptions

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    write(tmp_path / "pyproject.toml", '[tool.evalgate]\nsuites = "suites"\n')
    stored = {}
    with serving(DelayedModel, tls=certificate) as url:
        assert not pooled(url + "/chat/completions") and pooled(url.replace("https://", "http://"))
        for label, no_proxy in (("proxied", ""), ("direct", "127.0.0.1")):
            monkeypatch.setenv("NO_PROXY", no_proxy)
            assert pooled(url) == bool(no_proxy)
            suite = write(tmp_path / "suites" / f"{label}.yaml", f"""
                name: {label}
                target: {_pipeline(url)}
                cases:
                  - {{id: one, input: hello, expect: {{output: {{contains: [echo]}}}}}}
            """)
            db = tmp_path / f"{label}.duckdb"
            run([str(suite)], config=find_config(tmp_path), store_path=db, options=RunOptions(cache_mode="off"))
            stored[label] = query(db, "SELECT output, error FROM turns")[0]
    assert stored["direct"] == ("echo: hello", None), stored
    assert stored["proxied"][0] is None and "connection" in stored["proxied"][1].lower(), stored


def test_the_pool_sends_the_host_without_the_scheme_s_own_port() -> None:
    from evalgate.models.transport import authority

    assert authority("api.example.com", 443, True) == "api.example.com"
    assert authority("api.example.com", 80, False) == "api.example.com"
    assert authority("127.0.0.1", 8443, True) == "127.0.0.1:8443"
    assert authority("127.0.0.1", 443, False) == "127.0.0.1:443"


def test_a_connection_reused_over_tls_answers_every_call(certificate, monkeypatch) -> None:
    """Twenty calls, four at a time, over the pool's https connections: each answered, on at most four connections."""
    from evalgate.models.transport import KeepAlivePool

    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    with serving(DelayedModel, tls=certificate) as url:
        port = int(url.split(":")[-1].split("/")[0])

        async def calls() -> tuple[list[int], int]:
            pool = KeepAlivePool()
            body = b'{"model": "tiny-model", "messages": [{"role": "user", "content": "hi"}]}'
            head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
            statuses: list[int] = []
            for _ in range(5):
                answers = await asyncio.gather(*(pool.exchange("127.0.0.1", port, head + body, {"read": 10}, True)
                                                 for _ in range(4)))
                statuses += [a[0] for a in answers]
            idle = sum(len(v) for v in pool._idle.values())
            await pool.aclose()
            return statuses, idle

        statuses, idle = asyncio.run(calls())
    assert statuses == [200] * 20
    assert 1 <= idle <= 4
