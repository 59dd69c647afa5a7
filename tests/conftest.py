"""Fixtures shared by the tests. Servers the tests need (PostgreSQL, Redis, RabbitMQ) are required:
a missing one makes its tests error, never skip."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from email_service.config import Settings
from email_service.storage.database import make_engine, make_session_factory
from email_service.storage.migrate import upgrade

from .smtp_sink import Received, SMTPSink
from .stack import ApiServer, SchedulerProcess, WorkerProcess, settings_from
from .webhook_receiver import WebhookReceiver

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def sink() -> Iterator[SMTPSink]:
    server = SMTPSink().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_sink() -> Iterator[SMTPSink]:
    """One aiosmtpd sink for the tests of a module that share a stack."""
    server = SMTPSink().start()
    yield server
    server.stop()


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path, mail_server="127.0.0.1")
    upgrade(settings.database_url)
    return settings


@contextlib.contextmanager
def own_database() -> Iterator[str]:
    """A database of our own on the machine's PostgreSQL, migrated, dropped at the end."""
    name = f"email_service_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with own_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """Session factories on a new SQLite file, then on the session's PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


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


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    with own_redis_prefix() as prefix:
        yield prefix


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


@pytest.fixture(scope="session")
def feature_stack(redis_prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStack]:
    # A database of its own: its scheduler sweeps the whole database, and would otherwise queue other
    # tests' work to its own worker.
    with own_database() as postgres_url:
        yield from _feature_stack(postgres_url, redis_prefix, tmp_path_factory)


def _feature_stack(
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
        "BATCH_SIZE": "10",
        "SCHEDULER_INTERVAL": "0.3",
        "REQUEUE_AFTER": "5",
        "RETRY_FIRST_DELAY": "0.5",
        "RETRY_MAX_DELAY": "1",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
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
