"""The machine's servers as the tests use them: PostgreSQL, Redis and RabbitMQ at their usual addresses
(TEST_POSTGRES_URL, TEST_REDIS_URL and TEST_RABBITMQ_URL point elsewhere, e.g. at a closed port to show
that the unit tests need none), a database or key prefix of each test's own, and the feature stack."""

from __future__ import annotations

import atexit
import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy import make_url

from email_service.storage.migrate import upgrade
from tests.support.smtp_sink import Received, SMTPSink
from tests.support.stack import ApiServer, SchedulerProcess, WorkerProcess, settings_from
from tests.support.webhook_receiver import LOOPBACK_NETWORKS, WebhookReceiver

POSTGRES_ADMIN = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


# Migrated databases to copy, by revision: CREATE DATABASE ... TEMPLATE copies one in a fraction of the
# time the migrations take. Made at the first need, dropped when the test process ends.
_TEMPLATES: dict[str, str] = {}


def _database_url(name: str) -> str:
    return make_url(POSTGRES_ADMIN).set(drivername="postgresql+psycopg", database=name).render_as_string(False)


def _drop(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _template(revision: str) -> str:
    if revision not in _TEMPLATES:
        name = f"email_service_test_template_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        atexit.register(_drop, name)
        upgrade(_database_url(name), revision)
        _TEMPLATES[revision] = name
    return _TEMPLATES[revision]


@contextlib.contextmanager
def own_database(revision: str = "head") -> Iterator[str]:
    """A database of our own on the machine's PostgreSQL, migrated to ``revision``, dropped at the end."""
    name = f"email_service_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_template(revision)}"')
    try:
        yield _database_url(name)
    finally:
        _drop(name)


@contextlib.contextmanager
def own_redis_prefix() -> Iterator[str]:
    """A key prefix of our own on the machine's Redis; every key under it is deleted at the end."""
    prefix = f"email-service-test-{uuid.uuid4().hex[:12]}:"
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    try:
        yield prefix
    finally:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()


@dataclass
class FeatureStack:
    """The service on real servers, shared by the feature tests: API, a worker process, the scheduler,
    PostgreSQL, Redis, an aiosmtpd relay and a webhook receiver. Tests use addresses of their own."""

    api: ApiServer
    sink: SMTPSink
    receiver: WebhookReceiver
    env: dict[str, str]
    postgres_url: str
    worker: WorkerProcess
    scheduler: SchedulerProcess

    def messages_to(self, domain: str) -> list[Received]:
        return [m for m in self.sink.handler.messages() if m.recipients[0].endswith("@" + domain)]


WEBHOOK_SECRET = "whsec-test-4c1f"
PUBLIC_URL = "https://mail.example.test"


def feature_stack_on(
    postgres_url: str, redis_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FeatureStack]:
    sink = SMTPSink().start()
    receiver = WebhookReceiver().start()
    env = {
        "DATABASE_URL": postgres_url,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_BROKER_KEY_PREFIX": redis_prefix + "features:",
        "CELERY_QUEUE": f"email-service-test-{uuid.uuid4().hex[:12]}",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(sink.port),
        "MAIL_DEFAULT_SENDER": "Service <service@example.org>",
        "PUBLIC_URL": PUBLIC_URL,  # https, as one-click unsubscribe needs; the tests use the links' paths
        "BATCH_SIZE": "10",
        "SCHEDULER_INTERVAL": "0.3",
        "RETRY_FIRST_DELAY": "0.5",
        "RETRY_MAX_DELAY": "1",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "WEBHOOK_ALLOWED_NETWORKS": LOOPBACK_NETWORKS,
        "WEBHOOK_RETRY_FIRST_DELAY": "0.3",
        "WEBHOOK_TIMEOUT": "2",
    }
    logs = Path(tmp_path_factory.mktemp("feature-stack"))
    worker = WorkerProcess(env, logs / "worker.log").wait_ready()
    scheduler = SchedulerProcess(env, logs / "scheduler.log").wait_ready()
    api = ApiServer(settings_from(env)).start()
    yield FeatureStack(api, sink, receiver, env, postgres_url, worker, scheduler)
    api.stop()
    scheduler.stop()
    worker.stop()
    receiver.stop()
    sink.stop()
