"""Webhook events through the HTTP API on real servers: job.completed and batched recipient.failed
events, signed, retried with backoff, delivered from the outbox even when a worker dies."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from email_service.app import create_api
from email_service.config import Settings
from email_service.services import accounts, build_services
from email_service.storage.migrate import upgrade
from email_service.webhooks.signing import SIGNATURE_HEADER, verify
from tests.support.queues import RecordingQueue
from tests.support.servers import REDIS_URL, WEBHOOK_SECRET, FeatureStack, own_database
from tests.support.smtp_sink import SMTPSink
from tests.support.stack import ApiClient, ApiServer, SchedulerProcess, WorkerProcess, settings_from, wait_for
from tests.support.webhook_receiver import LOOPBACK_NETWORKS, Delivery, WebhookReceiver


def _job_with_failures(api: ApiServer, sink: SMTPSink, callback_url: str, count: int = 25) -> tuple[str, set[str]]:
    domain = f"w-{uuid.uuid4().hex[:10]}.example.com"
    rejected = {f"r{i}@{domain}" for i in range(0, count, 4)}
    sink.handler.reject_rcpt.update(rejected)
    answer = api.post_job(
        {
            "recipients": [f"r{i}@{domain}" for i in range(count)],
            "subject": "s",
            "tags": ["hooks"],
            "metadata": {"campaign": 7},
            "callback_url": callback_url,
        }
    )
    assert answer.status_code == 202, answer.text
    return answer.json()["id"], rejected


def _check_events(deliveries: list[Delivery], job_id: str, rejected: set[str], total: int, secret: str) -> None:
    """Every failure reported once, in recipient.failed events before the one job.completed event, signed
    with the ``secret`` of the job's account."""
    for delivery in deliveries:
        assert verify(secret, delivery.headers[SIGNATURE_HEADER], delivery.body)
        assert not verify(WEBHOOK_SECRET, delivery.headers[SIGNATURE_HEADER], delivery.body)
        assert delivery.headers["X-Email-Service-Event"] == delivery.event["type"]
        assert delivery.headers["X-Email-Service-Delivery"] == delivery.event["id"]
    types = [d.event["type"] for d in deliveries]
    assert types[-1] == "job.completed" and types.count("job.completed") == 1
    assert set(types[:-1]) == {"recipient.failed"}
    reported = [r for d in deliveries[:-1] for r in d.event["data"]["recipients"]]
    assert sorted(r["email"] for r in reported) == sorted(rejected), "each failure exactly once"
    assert all(r["error_code"] == 550 and "No such user" in r["error"] for r in reported)
    assert all(
        d.event["data"]["tags"] == ["hooks"] and d.event["data"]["metadata"] == {"campaign": 7} for d in deliveries
    )
    completed = deliveries[-1].event["data"]
    assert (completed["job_id"], completed["status"], completed["total"]) == (job_id, "completed", total)
    assert (completed["counts"]["sent"], completed["counts"]["failed"]) == (total - len(rejected), len(rejected))


def test_failures_and_completion_are_delivered_signed_and_in_order(feature_stack: FeatureStack):
    job_id, rejected = _job_with_failures(feature_stack.api, feature_stack.sink, feature_stack.receiver.url)
    feature_stack.api.wait_until_completed(job_id)
    receiver = feature_stack.receiver
    wait_for(lambda: any(d.event["type"] == "job.completed" for d in receiver.deliveries(job_id)))
    deliveries = receiver.deliveries(job_id)
    _check_events(deliveries, job_id, rejected, 25, feature_stack.api.webhook_secret)
    assert len(deliveries) <= 25 // 3, "failures are batched, not one event each"


def test_each_account_signs_with_its_own_secret_and_a_rotation_signs_with_both_during_its_grace(
    feature_stack: FeatureStack,
):
    api, receiver = feature_stack.api, feature_stack.receiver
    services = api.app.extensions["email_service"]
    other_name = f"other-{uuid.uuid4().hex[:8]}"
    other = ApiClient(api.url, {"Authorization": f"Bearer {api.new_key(other_name)}"})

    def completion(client: ApiClient) -> Delivery:
        body = {"recipients": [f"a@{uuid.uuid4().hex[:8]}.example.com"], "subject": "s", "callback_url": receiver.url}
        job_id = client.post_job(body).json()["id"]
        wait_for(lambda: any(d.event["type"] == "job.completed" for d in receiver.deliveries(job_id)), timeout=60)
        [delivery] = receiver.deliveries(job_id)
        return delivery

    def signers(delivery: Delivery, *secrets: str) -> list[bool]:
        return [verify(secret, delivery.headers[SIGNATURE_HEADER], delivery.body) for secret in secrets]

    mine, first = api.webhook_secret, api.webhook_secrets[other_name]
    try:
        assert signers(completion(api), mine, first, WEBHOOK_SECRET) == [True, False, False]
        assert signers(completion(other), mine, first, WEBHOOK_SECRET) == [False, True, False]
        second = accounts.rotate_webhook_secret(services.sessions, services.settings, other_name, timedelta(hours=1))
        assert signers(completion(other), second, first, mine) == [True, True, False]
        third = accounts.rotate_webhook_secret(services.sessions, services.settings, other_name, timedelta(0))
        assert signers(completion(other), third, second, first) == [True, False, False]
    finally:
        other.close()


def test_a_receiver_that_fails_gets_the_event_again_later(feature_stack: FeatureStack):
    receiver = feature_stack.receiver
    attempts_before = receiver.attempts
    receiver.failures_left = 3
    answer = feature_stack.api.post_job(
        {"recipients": [f"a@{uuid.uuid4().hex[:8]}.example.com"], "subject": "s", "callback_url": receiver.url}
    )
    job_id = answer.json()["id"]
    wait_for(lambda: receiver.deliveries(job_id))
    assert receiver.attempts - attempts_before >= 4
    assert [d.event["type"] for d in receiver.deliveries(job_id)] == ["job.completed"]


@pytest.fixture
def own_stack(redis_prefix: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A stack (and database) of its own: this test kills its worker."""
    with own_database() as postgres_url:
        yield from _own_stack(postgres_url, redis_prefix, tmp_path)


def _own_stack(postgres_url: str, redis_prefix: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    sink = SMTPSink().start()
    env = {
        "DATABASE_URL": postgres_url,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_BROKER_KEY_PREFIX": redis_prefix + "hooks:",
        "CELERY_QUEUE": f"email-service-test-{uuid.uuid4().hex[:12]}",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(sink.port),
        "BATCH_SIZE": "5",
        "SCHEDULER_INTERVAL": "0.3",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "WEBHOOK_ALLOWED_NETWORKS": LOOPBACK_NETWORKS,
        "WEBHOOK_RETRY_FIRST_DELAY": "0.3",
        "WEBHOOK_TIMEOUT": "2",
    }
    processes: list[Any] = [SchedulerProcess(env, tmp_path / "scheduler.log").wait_ready()]
    api = ApiServer(settings_from(env)).start()
    yield {"env": env, "sink": sink, "api": api, "processes": processes, "logs": tmp_path}
    api.stop()
    for process in processes:
        process.stop()
    sink.stop()


def test_no_event_is_lost_when_the_worker_dies(own_stack: dict[str, Any]):
    env, sink, api = own_stack["env"], own_stack["sink"], own_stack["api"]
    receiver = WebhookReceiver()  # not listening yet: every delivery fails
    worker = WorkerProcess(env, own_stack["logs"] / "worker-1.log").wait_ready()
    own_stack["processes"].append(worker)
    job_id, rejected = _job_with_failures(api, sink, receiver.url, count=30)
    api.wait_until_completed(job_id)
    time.sleep(1)  # deliveries are tried and fail
    worker.kill_all()
    receiver.start()
    try:
        assert receiver.deliveries(job_id) == []
        replacement = WorkerProcess(env, own_stack["logs"] / "worker-2.log").wait_ready()
        own_stack["processes"].append(replacement)
        # Each failed attempt before the kill doubled the delay from 0.3 s: the next one is due about as
        # long after the kill as the deliveries had been failing before it (longer on a busy machine).
        wait_for(lambda: any(d.event["type"] == "job.completed" for d in receiver.deliveries(job_id)), timeout=90)
        _check_events(receiver.deliveries(job_id), job_id, rejected, 30, api.webhook_secret)
    finally:
        receiver.stop()


@pytest.fixture
def local_client(tmp_path: Path) -> Callable[..., FlaskClient]:
    def make(**settings: Any) -> FlaskClient:
        configured = Settings(data_dir=tmp_path, auth_disabled=True, **settings)
        upgrade(configured.database_url)
        services = build_services(configured)
        services.queue = RecordingQueue()
        return create_api(services).test_client()

    return make


def test_the_configured_webhook_url_is_the_default_callback(local_client: Callable[..., FlaskClient]):
    client = local_client(webhook_url="https://hooks.example.org/in", webhook_secret="k")
    job_id = client.post("/api/email/", json={"recipients": ["a@example.com"], "subject": "s"}).get_json()["id"]
    assert client.get(f"/api/email/{job_id}").get_json()["callback_url"] == "https://hooks.example.org/in"


def test_without_a_signing_secret_no_job_may_have_a_callback(local_client: Callable[..., FlaskClient]):
    client = local_client()
    answer = client.post(
        "/api/email/", json={"recipients": ["a@example.com"], "subject": "s", "callback_url": "https://h.example.org"}
    )
    assert answer.status_code == 422
    assert answer.get_json()["details"][0]["field"] == "callback_url"
    with pytest.raises(ValueError, match="WEBHOOK_SECRET"):
        Settings(webhook_url="https://hooks.example.org/in")
