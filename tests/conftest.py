"""Fixtures shared by the tests. Servers the tests need (PostgreSQL, Redis, RabbitMQ) are required:
a missing one makes its tests error, never skip."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from email_service.config import Settings
from email_service.storage.migrate import upgrade

from .smtp_sink import SMTPSink

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def sink() -> Iterator[SMTPSink]:
    server = SMTPSink().start()
    yield server
    server.stop()


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path, mail_server="127.0.0.1")
    upgrade(settings.database_url)
    return settings


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
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
def redis_prefix() -> Iterator[str]:
    """A key prefix of our own on the machine's Redis; every key under it is deleted at the end."""
    prefix = f"email-service-test-{uuid.uuid4().hex[:12]}:"
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield prefix
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()
