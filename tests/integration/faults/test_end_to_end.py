"""The whole path through real servers: HTTP API, PostgreSQL, a Celery worker process on Redis
(and once on RabbitMQ), and an aiosmtpd relay whose received messages are checked."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import RABBITMQ_URL, REDIS_URL
from tests.support.smtp_sink import SMTPSink
from tests.support.stack import ApiServer, WorkerProcess, settings_from

LONG_LINE = "é" + "x" * 1998 + "ü"  # 2,000 characters on one line
CONTENT = f"Bonjour à tous 👋\nRun for your life.\n{LONG_LINE}\nFin."
SUBJECT = "Démogorgon 🎃 arrive"


def _stack_env(broker: str, postgres_url: str, sink: SMTPSink, **extra: str) -> dict[str, str]:
    queue = f"email-service-test-{uuid.uuid4().hex[:12]}"
    return {
        "DATABASE_URL": postgres_url,
        "CELERY_BROKER_URL": broker,
        "CELERY_QUEUE": queue,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(sink.port),
        "MAIL_DEFAULT_SENDER": "Service <service@example.org>",
        "BATCH_SIZE": "7",
        **extra,
    }


@pytest.fixture(scope="module")
def redis_stack(postgres_url: str, redis_prefix: str, module_sink: SMTPSink, tmp_path_factory) -> Iterator[ApiServer]:
    env = _stack_env(REDIS_URL, postgres_url, module_sink, CELERY_BROKER_KEY_PREFIX=redis_prefix)
    worker = WorkerProcess(env, Path(tmp_path_factory.mktemp("worker")) / "worker.log").wait_ready()
    api = ApiServer(settings_from(env)).start()
    yield api
    api.stop()
    worker.stop()


def _job_body(count: int, rejected: str) -> dict:
    recipients: list = [f"reader{i}@example.com" for i in range(count)]
    recipients.append({"email": "Eleven@Example.COM", "name": "Eleven, «Onze»", "variables": {"code": "011"}})
    recipients.append(rejected)
    recipients.append("READER0@example.com")  # a duplicate of the first, merged
    return {"recipients": recipients, "subject": SUBJECT, "content": CONTENT, "template": "default"}


def _check_delivery(api: ApiServer, sink: SMTPSink, count: int) -> None:
    before = len(sink.handler.messages())
    # An unknown address of its own: once refused it is suppressed, and this check runs per broker.
    rejected = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    sink.handler.reject_rcpt.add(rejected)
    answer = api.post_job(_job_body(count, rejected))
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    assert answer.json() == {"id": job_id, "status": "queued", "total": count + 2}
    assert answer.headers["Location"] == f"/api/email/{job_id}"

    job = api.wait_until_completed(job_id)
    assert job["counts"]["sent"] == count + 1
    assert job["counts"]["failed"] == 1
    assert job["current"] == job["total"] == count + 2
    assert job["progress"] == 1.0
    assert job["started_at"] and job["finished_at"]

    recipients = {r["email"]: r for r in api.recipients(job_id)}
    failed = recipients[rejected]
    assert (failed["status"], failed["error_code"]) == ("failed", 550)
    assert "No such user" in failed["error"]
    assert [r["email"] for r in api.recipients(job_id, status="failed")] == [rejected]

    received = sink.handler.messages()[before:]
    by_recipient = {r.recipients[0]: r for r in received}
    assert len(received) == len(by_recipient) == count + 1, "exactly one message per accepted recipient"
    for address, item in by_recipient.items():
        message = item.message
        assert item.recipients == [address]
        assert item.sender == "service@example.org"
        assert message["To"].addresses[0].addr_spec == address
        assert len(message["To"].addresses) == 1 and message["Cc"] is None and message["Bcc"] is None
        assert message["Subject"] == SUBJECT
        assert message["From"] == "Service <service@example.org>"
        assert message["Message-ID"] == recipients[address]["message_id"]
        body = message.get_content().replace("\r\n", "\n")  # text line breaks travel as CRLF
        assert body.startswith(CONTENT + "\n"), "no header block before the content"
        assert "Subject:" not in body and "Date:" not in body
        assert max(len(line) for line in item.data.split(b"\r\n")) <= 998
    eleven = by_recipient["Eleven@example.com"].message
    assert eleven["To"].addresses[0].display_name == "Eleven, «Onze»"


def test_job_through_redis_worker_is_delivered_to_every_recipient(redis_stack: ApiServer, module_sink: SMTPSink):
    _check_delivery(redis_stack, module_sink, count=40)


def test_progress_moves_while_the_job_sends(redis_stack: ApiServer, module_sink: SMTPSink):
    module_sink.handler.delay = 0.02
    try:
        answer = redis_stack.post_job(
            {"recipients": [f"p{i}@example.com" for i in range(120)], "subject": "s", "content": "c"}
        )
        job_id = answer.json()["id"]
        seen = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job = redis_stack.client.get(f"/api/email/{job_id}").json()
            seen.add(job["progress"])
            if job["status"] == "completed":
                break
            time.sleep(0.05)
    finally:
        module_sink.handler.delay = 0.0
    assert job["status"] == "completed"
    assert any(0 < p < 1 for p in seen), f"no intermediate progress among {sorted(seen)}"


def test_job_through_rabbitmq_worker_is_delivered(postgres_url: str, module_sink: SMTPSink, tmp_path: Path):
    env = _stack_env(RABBITMQ_URL, postgres_url, module_sink)
    worker = WorkerProcess(env, tmp_path / "worker.log").wait_ready()
    api = ApiServer(settings_from(env)).start()
    try:
        _check_delivery(api, module_sink, count=10)
    finally:
        api.stop()
        worker.stop()
        _delete_rabbitmq_queue(env["CELERY_QUEUE"])


def _delete_rabbitmq_queue(queue: str) -> None:
    import kombu

    with kombu.Connection(RABBITMQ_URL) as connection:
        connection.default_channel.queue_delete(queue)
