"""Schema migrations (Alembic) run from the service's own command line and tests, and the wait for a
database that is still starting when the service's processes start (containers start together)."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import make_url
from sqlalchemy.exc import OperationalError

from email_service.errors import DatabaseNotReady
from email_service.storage.database import make_engine

MIGRATIONS = Path(__file__).with_name("migrations")
RETRY_INTERVAL = 1.0  # seconds between two attempts to reach the database

log = logging.getLogger(__name__)


class SchemaState(enum.Enum):
    MISSING = "missing"  # no schema yet: nothing migrated it
    BEHIND = "behind"  # an older revision of this code's migrations
    CURRENT = "current"
    NEWER = "newer"  # a revision this code does not know: a later version of the service migrated it


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at ``database_url`` to ``revision``."""
    command.upgrade(alembic_config(database_url), revision)


def schema_state(database_url: str) -> SchemaState:
    """Where the schema at ``database_url`` stands against this code's migrations."""
    script = ScriptDirectory.from_config(alembic_config(database_url))
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()
    known = {revision.revision for revision in script.walk_revisions()}
    if not current:
        return SchemaState.MISSING
    if current - known:
        return SchemaState.NEWER
    return SchemaState.CURRENT if current == set(script.get_heads()) else SchemaState.BEHIND


def upgrade_when_reachable(database_url: str, wait_seconds: float) -> None:
    """Migrate the database to this code's head as soon as it answers (``serve``, ``db upgrade``).

    A schema migrated by a later version is left alone: during a rolling upgrade the older
    processes still restart (the later version's migrations must keep the older code working).
    """

    def attempt() -> str | None:
        if schema_state(database_url) is SchemaState.NEWER:
            log.warning("the database schema is newer than this version of the service: not migrating it")
        else:
            upgrade(database_url)
        return None

    _retry(database_url, wait_seconds, attempt)


def wait_for_schema(database_url: str, wait_seconds: float) -> None:
    """Return once the database answers with a schema at least at this code's head (``worker``,
    ``scheduler``): they leave migrating to ``serve``, so that two processes never migrate at once."""

    def attempt() -> str | None:
        state = schema_state(database_url)
        if state in (SchemaState.CURRENT, SchemaState.NEWER):
            return None
        return f"its schema is {state.value}: waiting for `email-service serve` or `db upgrade` to migrate it"

    _retry(database_url, wait_seconds, attempt)


def _retry(database_url: str, wait_seconds: float, attempt: Callable[[], str | None]) -> None:
    """Call ``attempt`` every RETRY_INTERVAL until it reports no problem, for at most ``wait_seconds``.

    A database that does not answer (refused connection, unknown database, still starting) is a
    problem to wait out; any other error is raised at once. Logs never show the URL's password.
    """
    url = make_url(database_url)
    place = f"{url.host or 'localhost'}:{url.port or 'default port'}/{url.database}" if url.host else url.database
    secret = url.password
    deadline = time.monotonic() + wait_seconds
    tries = 0
    while True:
        tries += 1
        try:
            problem = attempt()
        except OperationalError as exc:
            problem = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
            if secret:
                problem = problem.replace(str(secret), "***")
        if problem is None:
            if tries > 1:
                log.info("database %s ready after %d attempts", place, tries)
            return
        if time.monotonic() + RETRY_INTERVAL > deadline:
            raise DatabaseNotReady(f"database {place} not ready after {wait_seconds:g} s: {problem}")
        log.warning("database %s not ready (attempt %d): %s", place, tries, problem)
        time.sleep(RETRY_INTERVAL)
