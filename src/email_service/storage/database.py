"""Engine and session factory; the caller of a session owns its transaction."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

# A pooled connection used this recently is handed out without a ping (HikariCP's aliveBypassWindowMs does
# the same): under load every checkout would otherwise cost a round trip more, and a connection that dies
# within the window fails one statement, after which the pool replaces all connections older than it.
PING_IDLE_SECONDS = 1.0


def make_engine(url: str, pool_size: int = 5, ping_idle_seconds: float = PING_IDLE_SECONDS) -> Engine:
    """An engine for ``url`` with room for ``pool_size`` threads at once; SQLite gets WAL and a
    busy timeout so API and workers share it; a PostgreSQL connection idle in the pool for longer than
    ``ping_idle_seconds`` is checked before use and replaced if the server no longer answers it."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        event.listen(engine, "connect", _tune_sqlite)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size)
    _ping_when_idle(engine, ping_idle_seconds)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def make_reader_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that only read: on SQLite they do not take the write lock, so following a job never
    waits behind the workers writing outcomes (WAL readers see the last commit). On PostgreSQL they run
    in autocommit: under READ COMMITTED each statement sees its own snapshot anyway, and a read then
    costs no BEGIN and no ROLLBACK round trip."""
    options: dict[str, Any] = {"read_only": True}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "AUTOCOMMIT"
    return sessionmaker(engine.execution_options(**options), expire_on_commit=False)


def _ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    def checkin(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None:  # None: invalidated, a new connection will replace it
            record.info["checked_in"] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get("checked_in")  # None for a connection just opened: no ping needed
        if checked_in is None or time.monotonic() - checked_in <= idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool closes this connection and checks out a fresh one.
            raise DisconnectionError("the database closed an idle pooled connection") from exc

    event.listen(engine, "checkin", checkin)
    event.listen(engine, "checkout", checkout)


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling is off so that BEGIN IMMEDIATE (below) is ours to issue.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _begin_immediate(connection: Any) -> None:
    # Take the write lock at BEGIN: two processes claiming the same batch serialize instead of
    # failing with "database is locked" when a read transaction tries to become a write one.
    read_only = connection.get_execution_options().get("read_only", False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
