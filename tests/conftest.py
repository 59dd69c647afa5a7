"""Fixtures shared by the tests. Servers the tests need (PostgreSQL, Redis, RabbitMQ) are required:
a missing one makes its tests error, never skip. Every test under tests/integration/ is marked
``integration``; ``pytest -m "not integration"`` runs the unit tests, which need none of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from email_service.config import Settings
from email_service.storage.database import make_engine, make_session_factory
from email_service.storage.migrate import upgrade
from tests.support.private_redis import PrivateRedis
from tests.support.servers import FeatureStack, feature_stack_on, own_database, own_redis_prefix
from tests.support.smtp_sink import REFUSED, SinkHandler, SMTPSink

INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def sink() -> Iterator[SMTPSink]:
    server = SMTPSink().start()
    yield server
    server.stop()


@pytest.fixture
def refusing_sink() -> Iterator[SMTPSink]:
    """A sink that answers 550 5.1.1 to RCPT TO:<REFUSED>, a hard bounce."""
    server = SMTPSink(SinkHandler(reject_rcpt={REFUSED})).start()
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


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A database per test module: the workers of a module's stacks serve every job due in their database
    (the database schedules), so jobs another module left unfinished must not be in it."""
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


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    with own_redis_prefix() as prefix:
        yield prefix


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis server of the test's own, that it may kill, pause and restart (the shared one stays up)."""
    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def feature_stack(redis_prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStack]:
    # A database of its own: its scheduler sweeps the whole database, and would otherwise queue other
    # tests' work to its own worker.
    with own_database() as postgres_url:
        yield from feature_stack_on(postgres_url, redis_prefix, tmp_path_factory)
