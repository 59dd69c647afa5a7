"""The production topology through nginx (tests/deployment.py): every message of a job delivered once, nothing
lost when a worker process is killed mid-job, oversized bodies refused, and forwarded headers trusted only
as nginx sets them."""

from __future__ import annotations

import collections
import os
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.deployment import NginxProcess, Topology, production_topology
from tests.support.smtp_sink import SMTPSink
from tests.support.stack import GunicornApi, wait_for

SMTP_CONCURRENCY = 4
# Lost work comes back within seconds instead of ten minutes: a short lease (it must exceed
# 3 x MAIL_TIMEOUT + THROTTLE_DELAY + 5 s) and visibility timeout, and a scheduler sweeping often.
FAST_RECOVERY = {
    "MAIL_TIMEOUT": "1",
    "THROTTLE_DELAY": "0.2",
    "LEASE_SECONDS": "9",
    "BROKER_VISIBILITY_TIMEOUT": "10",
    "SCHEDULER_INTERVAL": "0.3",
    "RETRY_FIRST_DELAY": "0.5",  # a message that timed out on this busy machine goes again at once
    "RETRY_MAX_DELAY": "1",
    "SMTP_CONCURRENCY": str(SMTP_CONCURRENCY),
    "BATCH_SIZE": "50",
}
LIMIT = 25_000_000  # MAX_REQUEST_BYTES's default, which the nginx file repeats


@pytest.fixture(scope="module")
def untrusting_gunicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornApi]:
    """``serve`` with PROXY_HOPS=0 on a socket of its own (no database needed without keys); started before
    the topology, so that both boot at the same time."""
    folder = Path(tmp_path_factory.mktemp("untrusting"))
    env = {"DATA_DIR": str(folder), "AUTH_DISABLED": "true", "PROXY_HOPS": "0"}
    process = GunicornApi(env, folder / "gunicorn.log", workers=1, socket=folder / "api.sock")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def topology(
    module_sink: SMTPSink, untrusting_gunicorn: GunicornApi, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Topology]:
    folder = Path(tmp_path_factory.mktemp("deployment"))
    with production_topology(folder, module_sink.port, worker_processes=2, **FAST_RECOVERY) as running:
        yield running


def _post(topology: Topology, domain: str, count: int) -> tuple[str, set[str]]:
    addresses = {f"r{i}@{domain}" for i in range(count)}
    answer = topology.api.post_job({"recipients": sorted(addresses), "subject": "Deployed", "content": "Hello"})
    assert answer.status_code == 202, answer.text
    return answer.json()["id"], addresses


def _deliveries(module_sink: SMTPSink, domain: str) -> collections.Counter[str]:
    """How many times the relay received a message for each address of ``domain``."""
    return collections.Counter(
        rcpt for message in module_sink.handler.messages() for rcpt in message.recipients if rcpt.endswith("@" + domain)
    )


def test_a_job_through_nginx_reaches_every_recipient_exactly_once(topology: Topology, module_sink: SMTPSink):
    job_id, addresses = _post(topology, "once.example", 1000)
    job = topology.api.wait_until_completed(job_id, timeout=40)
    assert job["counts"]["sent"] == 1000
    assert _deliveries(module_sink, "once.example") == dict.fromkeys(addresses, 1)
    assert {r["status"] for r in topology.api.recipients(job_id)} == {"sent"}


def test_a_worker_process_killed_mid_job_loses_nobody(topology: Topology, module_sink: SMTPSink):
    module_sink.handler.delay = 0.004  # the job lasts a few seconds: time to kill a worker half way
    try:
        job_id, addresses = _post(topology, "killed.example", 1000)
        wait_for(lambda: len(_deliveries(module_sink, "killed.example")) >= 150)
        victim = sorted(topology.worker.children())[0]
        os.kill(victim, signal.SIGKILL)
        delivered_at_kill = sum(_deliveries(module_sink, "killed.example").values())
        assert delivered_at_kill < 1000, "the job ended before the worker was killed"
        job = topology.api.wait_until_completed(job_id, timeout=40)
    finally:
        module_sink.handler.delay = 0
    outcomes = topology.api.recipients(job_id)
    assert {r["email"] for r in outcomes} == addresses
    assert job["counts"]["sent"] + job["counts"]["failed"] == 1000
    assert all(r["status"] == "sent" or (r["status"] == "failed" and r["error"]) for r in outcomes)
    deliveries = _deliveries(module_sink, "killed.example")
    sent = {r["email"] for r in outcomes if r["status"] == "sent"}
    assert sent - set(deliveries) == set(), "recipients marked sent that the relay never received"
    # Only the messages in flight in the killed process (one per connection) may have gone twice.
    assert sum(deliveries.values()) - len(deliveries) <= SMTP_CONCURRENCY
    assert victim not in topology.worker.children()
    wait_for(lambda: len(topology.worker.children()) == 2)  # the supervisor started a new one


def test_a_body_over_the_limit_is_refused_by_nginx_in_the_api_envelope(topology: Topology):
    # Only the announced length: nginx answers before the body is sent.
    head = (
        f"POST /api/email/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {topology.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {LIMIT + 1}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", topology.nginx.port), timeout=10) as conn:
        conn.sendall(head.encode() + b'{"recipients": [')
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            assert chunk, f"connection closed after {answer!r}"
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"413"
    assert b"Content-Type: application/json" in rest
    body = httpx.Response(413, content=rest.split(b"\r\n\r\n", 1)[1]).json()
    assert body["error"] == "request_entity_too_large" and body["details"] == []


def test_the_api_sees_the_client_nginx_saw_whatever_the_client_claims(topology: Topology):
    marker = uuid.uuid4().hex
    spoofed = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
    assert topology.api.client.get(f"/healthz?{marker}=1", headers=spoofed).status_code == 200
    wait_for(lambda: topology.gunicorn.access_log(marker), timeout=5)
    [line] = topology.gunicorn.access_log(marker)
    assert line.startswith("127.0.0.1 ") and line.endswith(" http"), line


def test_on_the_socket_itself_only_proxy_hops_decides(topology: Topology, untrusting_gunicorn: GunicornApi):
    """Straight to gunicorn's socket (where nginx stands): PROXY_HOPS=1 trusts the headers; with 0, neither the
    app nor gunicorn (which by default trusts X-Forwarded-Proto from any unix-socket peer) does."""
    forwarded = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
    for api, expected in (
        (topology.gunicorn, ("198.51.100.7", "https")),
        (untrusting_gunicorn.wait_ready(), ("", "http")),
    ):
        marker = uuid.uuid4().hex
        with api.client() as client:
            assert client.get(f"/healthz?{marker}=1", headers=forwarded).status_code == 200
        wait_for(lambda api=api, marker=marker: api.access_log(marker), timeout=5)
        [line] = api.access_log(marker)
        assert (line.split(" ", 1)[0], line.rsplit(" ", 1)[1]) == expected, line


def test_readiness_and_metrics_are_served_to_private_addresses_only(topology: Topology):
    assert topology.api.client.get("/metrics").status_code == 200  # from 127.0.0.1
    # Any address of 127.0.0.0/8 reaches the loopback interface; the nginx file allows only 127.0.0.1 there.
    outside = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=outside, base_url=topology.nginx.url, timeout=10) as client:
        for path in ("/metrics", "/readyz"):
            answer = client.get(path)
            assert answer.status_code == 403 and answer.json()["error"] == "forbidden", path
        assert client.get("/healthz").status_code == 200


def test_nginx_compresses_json(topology: Topology):
    job_id, _ = _post(topology, "gzip.example", 200)
    answer = topology.api.client.get(
        f"/api/email/{job_id}/recipients", params={"limit": 200}, headers={"Accept-Encoding": "gzip"}
    )
    assert answer.status_code == 200 and answer.headers["Content-Encoding"] == "gzip"
    assert len(answer.json()["items"]) == 200


def test_nginx_answers_in_the_api_envelope_when_gunicorn_is_not_there(tmp_path: Path):
    nginx = NginxProcess(tmp_path / "nginx", tmp_path / "no-such.sock").wait_ready()
    try:
        answer = httpx.get(f"{nginx.url}/api/email/", timeout=10)
    finally:
        nginx.stop()
    assert answer.status_code == 502
    assert answer.json()["error"] == "bad_gateway"
