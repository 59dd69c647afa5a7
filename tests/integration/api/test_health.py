"""/readyz against real servers (PostgreSQL, Redis, RabbitMQ, aiosmtpd), and the queue gauges of /metrics."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from email_service.app import create_app
from email_service.config import Settings
from email_service.storage import scheduling
from email_service.storage.migrate import upgrade
from email_service.storage.models import utcnow
from tests.support.servers import RABBITMQ_URL, REDIS_URL
from tests.support.smtp_sink import SMTPSink, free_port
from tests.support.stack import metric_values


def readyz(settings: Settings) -> tuple[int, dict[str, Any]]:
    answer = create_app(settings).test_client().get("/readyz")  # no API key: /readyz is public
    return answer.status_code, answer.get_json()


def stack_settings(postgres_url: str, redis_prefix: str, relay_port: int, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": postgres_url,
        "celery_broker_url": REDIS_URL,
        "celery_broker_key_prefix": redis_prefix,
        "mail_server": "127.0.0.1",
        "mail_port": relay_port,
    }
    return Settings(**{**values, **extra})


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word (a hung relay); its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        for connection in held:
            connection.close()
        listener.close()


def test_ready_when_database_broker_and_relay_answer(postgres_url: str, redis_prefix: str, sink: SMTPSink):
    status, body = readyz(stack_settings(postgres_url, redis_prefix, sink.port))
    assert status == 200, body
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "broker", "relay"}
    assert all(check["ok"] and check["ms"] >= 0 and "error" not in check for check in body["checks"].values())
    assert sink.handler.messages() == [] and sink.handler.connections == 0  # greeted, QUIT, no EHLO


def test_unready_names_the_relay_when_its_port_is_closed(postgres_url: str, redis_prefix: str):
    status, body = readyz(stack_settings(postgres_url, redis_prefix, free_port()))
    assert status == 503
    assert body["status"] == "unready"
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]
    assert body["checks"]["relay"]["ok"] is False
    assert "Connection refused" in body["checks"]["relay"]["error"]


@pytest.mark.parametrize("broker", ["redis://127.0.0.1:{port}/0", "amqp://guest:guest@127.0.0.1:{port}//"])
def test_unready_names_the_broker_when_its_port_is_closed(
    broker: str, postgres_url: str, redis_prefix: str, sink: SMTPSink
):
    settings = stack_settings(postgres_url, redis_prefix, sink.port, celery_broker_url=broker.format(port=free_port()))
    status, body = readyz(settings)
    assert status == 503
    assert body["checks"]["broker"]["ok"] is False
    assert "refused" in body["checks"]["broker"]["error"].lower()
    assert body["checks"]["database"]["ok"] and body["checks"]["relay"]["ok"]


def test_rabbitmq_broker_is_checked_too(postgres_url: str, sink: SMTPSink):
    status, body = readyz(stack_settings(postgres_url, "", sink.port, celery_broker_url=RABBITMQ_URL))
    assert status == 200, body


def test_a_relay_that_never_greets_is_reported_not_waited_for(postgres_url: str, redis_prefix: str):
    with silent_server() as port:
        status, body = readyz(stack_settings(postgres_url, redis_prefix, port))
    assert status == 503
    assert body["checks"]["relay"]["ok"] is False
    assert "timed out" in body["checks"]["relay"]["error"]
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]


def test_unready_names_the_database_when_it_is_unreachable(redis_prefix: str, sink: SMTPSink):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere"
    status, body = readyz(stack_settings(url, redis_prefix, sink.port))
    assert status == 503
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["database"]["error"].startswith("OperationalError: ")
    assert body["checks"]["broker"]["ok"] and body["checks"]["relay"]["ok"]


def test_the_relay_is_not_checked_when_sending_is_suppressed(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, mail_suppress_send=True, mail_port=free_port())
    upgrade(settings.database_url)
    status, body = readyz(settings)
    assert status == 200, body
    assert set(body["checks"]) == {"database", "broker"}


def test_metrics_report_the_work_waiting_from_the_database(tmp_path: Path):
    """The embedded default (SQLite, filesystem broker): /metrics is public, and its queue gauges count
    the jobs not started and the recipients of started jobs still to send."""
    settings = Settings(data_dir=tmp_path, auth_disabled=True)
    upgrade(settings.database_url)
    app = create_app(settings)
    client = app.test_client()
    before = metric_values(client.get("/metrics").get_data(as_text=True))
    posted = client.post(
        "/api/email/",
        json={"recipients": ["a@example.com", "b@example.com", "c@example.com"], "subject": "Hi", "content": "x"},
    )
    assert posted.status_code == 202
    queued = metric_values(client.get("/metrics").get_data(as_text=True))
    assert queued['email_service_jobs_unfinished{status="queued"}'] == 1
    assert queued['email_service_queue_recipients{status="pending"}'] == 0  # not started: no recipient is due
    # Three recipients: a transactional job (TRANSACTIONAL_MAX_RECIPIENTS), queued with its total.
    assert queued['email_service_lane_recipients{lane="transactional",stage="queued"}'] == 3
    assert queued['email_service_lane_recipients{lane="transactional",stage="started"}'] == 0
    assert queued['email_service_lane_recipients{lane="bulk",stage="queued"}'] == 0
    assert queued["email_service_jobs_accepted_total"] == before["email_service_jobs_accepted_total"] + 1
    assert queued["email_service_recipients_accepted_total"] == before["email_service_recipients_accepted_total"] + 3

    services = app.extensions["email_service"]
    with services.sessions.begin() as session:  # what a woken worker does first
        scheduling.start(session, posted.get_json()["id"], utcnow())
    started = metric_values(client.get("/metrics").get_data(as_text=True))
    assert started['email_service_jobs_unfinished{status="queued"}'] == 0
    assert started['email_service_jobs_unfinished{status="sending"}'] == 1
    assert started['email_service_queue_recipients{status="pending"}'] == 3
    assert started['email_service_queue_recipients{status="deferred"}'] == 0
    assert started['email_service_lane_recipients{lane="transactional",stage="started"}'] == 3
    assert started['email_service_lane_recipients{lane="transactional",stage="queued"}'] == 0
