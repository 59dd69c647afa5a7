"""Writing each recipient's outcome the moment it is known: one statement, committed on its own.

This runs once per message, so it goes to the driver directly, on a connection kept in autocommit:
one round trip and about half the CPU of the same statement through SQLAlchemy.
Only the claim that owns a row may give it an outcome: the row is still being sent (a terminal
status never changes) and holds this claim's lease (storage.leases: a worker whose lease ran out
cannot overwrite the work of the worker that took over).
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from email_service.storage.leases import Lease
from email_service.storage.models import ClaimedRecipient, RecipientStatus, UTCDateTime

_OWNED = "WHERE id = {p} AND status = 'sending' AND lease_until = {p}"
_SENT = (
    f"UPDATE recipients SET status = '{RecipientStatus.SENT}', sent_at = {{p}}, lease_until = NULL, "
    "next_attempt_at = NULL, last_error_code = NULL, last_error = NULL, updated_at = {p} " + _OWNED
)
# A failure of a job with a webhook is flagged for its recipient.failed event (see storage.outbox).
_FAILED = (
    f"UPDATE recipients SET status = '{RecipientStatus.FAILED}', last_error_code = {{p}}, last_error = {{p}}, "
    "lease_until = NULL, next_attempt_at = NULL, updated_at = {p}, "
    "failure_unreported = (SELECT jobs.callback_url IS NOT NULL FROM jobs WHERE jobs.id = recipients.job_id) " + _OWNED
)
_DEFERRED = (
    f"UPDATE recipients SET status = '{RecipientStatus.DEFERRED}', last_error_code = {{p}}, last_error = {{p}}, "
    "next_attempt_at = {p}, lease_until = {p}, updated_at = {p} " + _OWNED
)


class OutcomeWriters:
    """The outcome writers of a process, shared by its batch threads: each write holds a database
    connection for one round trip only, so a few connections serve many SMTP connections (and
    PostgreSQL's connection limit does not bound SMTP_CONCURRENCY)."""

    def __init__(self, engine: Engine, size: int) -> None:
        self._engine = engine
        # One item per writer, None until it is first needed. A SimpleQueue's blocking get costs a
        # fraction of a threading.Semaphore's (written in C, no Condition): this runs once a message.
        self._writers: queue.SimpleQueue[OutcomeWriter | None] = queue.SimpleQueue()
        for _ in range(size):
            self._writers.put(None)

    @contextlib.contextmanager
    def borrow(self) -> Iterator[OutcomeWriter]:
        writer = self._writers.get()
        try:
            if writer is None:
                writer = OutcomeWriter(self._engine)
            yield writer
        except BaseException:  # the slot comes back empty, whatever failed, or the pool would shrink
            if writer is not None:
                writer.discard()  # its connection may be broken: the next borrower gets a new one
            self._writers.put(None)
            raise
        self._writers.put(writer)

    def close(self) -> None:
        """Close the idle writers' connections; a later borrower opens a new one."""
        idle = []
        with contextlib.suppress(queue.Empty):
            while True:
                idle.append(self._writers.get_nowait())
        for writer in idle:
            if writer is not None:
                writer.close()
            self._writers.put(None)


class OutcomeWriter:
    """Outcome writes on one connection; each method says whether the claim still owned the row."""

    def __init__(self, engine: Engine) -> None:
        self._pooled = engine.raw_connection()
        driver = self._pooled.driver_connection  # psycopg's or sqlite3's connection
        assert driver is not None
        self._driver: Any = driver
        self._postgresql = engine.dialect.name == "postgresql"
        if self._postgresql:
            self._driver.autocommit = True
            placeholder = "%s"
        else:  # SQLite: the engine's connections run without pysqlite's implicit transactions
            placeholder = "?"
        self._cursor: Any = self._driver.cursor()  # one for every write: a cursor costs more than the statement
        self._sent, self._failed, self._deferred = (sql.format(p=placeholder) for sql in (_SENT, _FAILED, _DEFERRED))
        # The same conversion SQLAlchemy applies to these columns (UTC; a string on SQLite).
        to_db: Callable[[Any], Any] | None = UTCDateTime().dialect_impl(engine.dialect).bind_processor(engine.dialect)
        self._when: Callable[[Any], Any] = to_db or (lambda value: value)

    def sent(self, claimed: ClaimedRecipient, lease: Lease, now: datetime) -> bool:
        when = self._when(now)
        return self._write(self._sent, (when, when), claimed, lease)

    def failed(self, claimed: ClaimedRecipient, lease: Lease, *, code: int | None, reason: str, now: datetime) -> bool:
        return self._write(self._failed, (code, reason[:2000], self._when(now)), claimed, lease)

    def deferred(
        self,
        claimed: ClaimedRecipient,
        lease: Lease,
        *,
        code: int | None,
        reason: str,
        retry_at: datetime,
        now: datetime,
    ) -> bool:
        retry = self._when(retry_at)
        return self._write(self._deferred, (code, reason[:2000], retry, retry, self._when(now)), claimed, lease)

    def close(self) -> None:
        self._cursor.close()
        if self._postgresql:
            self._driver.autocommit = False  # as the pool lends its connections
        self._pooled.close()

    def discard(self) -> None:
        """Give the connection up for good (after an error: it may be broken)."""
        self._pooled.invalidate()

    def _write(self, sql: str, values: tuple[Any, ...], claimed: ClaimedRecipient, lease: Lease) -> bool:
        with lease.lock:  # a renewal does not change the rows' lease between reading it and writing
            self._cursor.execute(sql, (*values, claimed.id, self._when(lease.until)))
        return bool(self._cursor.rowcount)
