"""Writing each recipient's outcome the moment it is known, committed before its sender goes on.

This runs once per message, so it goes to the driver directly, on a connection kept in autocommit:
one round trip and about half the CPU of the same statement through SQLAlchemy. Messages the relay
accepted are committed in groups (OutcomeWriters.sent): one commit for every outcome that arrived
while the previous group was being written.
Only the claim that owns a row may give it an outcome: the row is still being sent (a terminal
status never changes) and holds this claim's lease (storage.leases: a worker whose lease ran out
cannot overwrite the work of the worker that took over).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
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


@dataclass(eq=False)
class SentOutcome:
    """A message the relay accepted, waiting for its group's commit."""

    claimed: ClaimedRecipient
    lease: Lease
    at: datetime
    written: bool | None = None  # set once committed: whether the claim still owned the row
    error: BaseException | None = None  # set when its group's write failed


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
        self._sent_waiting: queue.SimpleQueue[SentOutcome] = queue.SimpleQueue()
        self._committing = threading.Lock()  # one group at a time; the next one gathers meanwhile

    def sent(self, claimed: ClaimedRecipient, lease: Lease, now: datetime) -> bool:
        """Record that the relay accepted ``claimed``'s message; whether the claim still owned the row.

        Group commit: the caller that finds no group being written writes every sent outcome waiting at
        that moment, its own among them, in one transaction; the others find theirs committed when it
        is done. Every caller returns only once its row is committed, so a crash leaves no more
        unrecorded than before (the message in flight on each connection), while the database commits
        once for all the messages answered during the previous commit.
        """
        outcome = SentOutcome(claimed, lease, now)
        self._sent_waiting.put(outcome)
        with self._committing:
            if outcome.written is None and outcome.error is None:  # no earlier group took it
                group = _drain(self._sent_waiting)
                try:
                    with self.borrow() as writer:
                        writer.sent_group(group)
                except BaseException as exc:  # every outcome of the group is unrecorded, not only this one
                    for waiting in group:
                        waiting.error = exc
        if outcome.error is not None:
            raise outcome.error
        return bool(outcome.written)

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
        for writer in _drain(self._writers):
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
        self._sent_returning = self._sent + " RETURNING id"
        # The same conversion SQLAlchemy applies to these columns (UTC; a string on SQLite).
        to_db: Callable[[Any], Any] | None = UTCDateTime().dialect_impl(engine.dialect).bind_processor(engine.dialect)
        self._when: Callable[[Any], Any] = to_db or (lambda value: value)

    def sent_group(self, group: Sequence[SentOutcome]) -> None:
        """Commit a group of sent outcomes at once, setting each one's ``written``.

        Each row keeps the one-row statement, whose plan is a primary-key lookup (a statement joining
        the group's ids let PostgreSQL pick the lease index, shared by a whole batch's rows); only the
        commit is shared."""
        if len(group) == 1:  # autocommit: no BEGIN and COMMIT of its own
            [outcome] = group
            when = self._when(outcome.at)
            outcome.written = self._write(self._sent, (when, when), outcome.claimed, outcome.lease)
            return
        with contextlib.ExitStack() as held:
            # Each lease's lock, in one order (a renewal or give-back holds one of them at most).
            for lease in sorted({id(o.lease): o.lease for o in group}.values(), key=id):
                held.enter_context(lease.lock)
            rows = []
            for outcome in group:  # the leases read under their locks: a renewal waits for the commit
                when = self._when(outcome.at)
                rows.append((when, when, outcome.claimed.id, self._when(outcome.lease.until)))
            written = self._sent_pipelined(rows) if self._postgresql else self._sent_in_one_transaction(rows)
        for sent, was_written in zip(group, written, strict=True):
            sent.written = was_written

    def _sent_pipelined(self, rows: list[tuple[Any, ...]]) -> list[bool]:
        """PostgreSQL: the statements in one transaction, sent together (psycopg's pipeline mode)."""
        with self._driver.transaction():
            self._cursor.executemany(self._sent_returning, rows, returning=True)
            written = []
            while True:  # one result per statement: the row's id when the claim owned it
                written.append(self._cursor.fetchone() is not None)
                if not self._cursor.nextset():
                    return written

    def _sent_in_one_transaction(self, rows: list[tuple[Any, ...]]) -> list[bool]:
        """SQLite: the statements one after the other, in one transaction."""
        written = []
        self._cursor.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                self._cursor.execute(self._sent, row)
                written.append(bool(self._cursor.rowcount))
            self._cursor.execute("COMMIT")
        except BaseException:
            self._cursor.execute("ROLLBACK")
            raise
        return written

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


def _drain(waiting: queue.SimpleQueue[Any]) -> list[Any]:
    """Everything in the queue at this moment."""
    items = []
    with contextlib.suppress(queue.Empty):
        while True:
            items.append(waiting.get_nowait())
    return items
