"""Storage on SQLite and PostgreSQL: migrations match the models, claims never overlap,
a terminal status never changes, and a job completes exactly once."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from email_service.services.leases import LeaseKeeper
from email_service.storage import jobs, leases, scheduling
from email_service.storage.database import make_engine, make_reader_factory, make_session_factory
from email_service.storage.leases import Lease
from email_service.storage.migrate import upgrade
from email_service.storage.models import Base, Job, JobStatus, RecipientStatus, utcnow
from email_service.storage.outcomes import OutcomeWriter, OutcomeWriters, SentOutcome
from tests.support.servers import POSTGRES_ADMIN


def _new_job(sessions: sessionmaker[Session], total: int) -> str:
    job_id = str(uuid.uuid4())
    job = Job(
        id=job_id,
        status=JobStatus.QUEUED,
        subject="s",
        content="c",
        template="default",
        sender="s@example.org",
        total=total,
        created_at=utcnow(),
    )
    rows = [
        (job_id, i, f"r{i}@example.com", None, json.dumps({"i": i}) if i % 2 else None, RecipientStatus.PENDING, 0)
        for i in range(total)
    ]
    with sessions.begin() as session:
        jobs.insert_job(session, job, rows)
    return job_id


def _sent(writer: OutcomeWriter, claimed, lease: Lease, now) -> bool:
    """One sent outcome written on its own, as a group of one."""
    outcome = SentOutcome(claimed, lease, now)
    writer.sent_group([outcome])
    assert outcome.written is not None
    return outcome.written


def test_migrations_match_the_models(sessions: sessionmaker[Session]):
    with sessions() as session:
        context = MigrationContext.configure(session.connection())
        assert compare_metadata(context, Base.metadata) == []


def test_inserted_recipients_read_back(sessions: sessionmaker[Session]):
    job_id = _new_job(sessions, 5)
    with sessions() as session:
        recipients = jobs.list_recipients(session, job_id, status=None, after=None, limit=10)
        assert [r.variables for r in recipients] == [None, {"i": 1}, None, {"i": 3}, None]
        assert jobs.count_by_status(session, [job_id])[job_id]["pending"] == 5


def test_concurrent_claims_of_one_job_never_overlap(sessions: sessionmaker[Session]):
    job_id = _new_job(sessions, 200)
    now = utcnow()
    with sessions.begin() as session:
        assert scheduling.start(session, job_id, now)

    def claim(_: int) -> list[int]:
        with sessions.begin() as session:
            claimed = scheduling.claim_due(session, job_id, limit=30, now=now, lease_until=now + timedelta(minutes=5))
            return [r.position for r in claimed]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(claim, range(10)))
    claimed = [p for result in results for p in result]
    assert sorted(claimed) == list(range(200))


def test_a_cancel_during_a_claim_waits_for_it_and_ends_the_rest(postgres_url: str):
    """Cancel locks the job's row, then its recipients'; a claim locks recipients' rows and moves the job on
    in its round only once committed: the cancel waits for the claim (no deadlock), what was claimed stays
    the claimer's to send, the rest ends cancelled."""
    engine = make_engine(postgres_url)
    sessions = make_session_factory(engine)
    job_id = _new_job(sessions, 10)
    now = utcnow()
    with sessions.begin() as session:
        assert scheduling.start(session, job_id, now)
    cancelling = threading.Event()

    def cancel() -> int | None:
        cancelling.set()
        with sessions.begin() as session:
            return jobs.cancel_job(session, job_id, utcnow())

    try:
        with ThreadPoolExecutor(1) as pool:
            with sessions.begin() as claimer:
                claimed = scheduling.claim_due(
                    claimer, job_id, limit=4, now=now, lease_until=now + timedelta(minutes=1)
                )
                cancelled = pool.submit(cancel)
                cancelling.wait()
                time.sleep(0.2)  # the cancel waits for the claimed rows
                assert not cancelled.done()
            scheduling.move_on(engine, job_id, 0, len(claimed))
            assert cancelled.result(timeout=10) == 6
        with sessions() as session:
            counts = jobs.count_by_status(session, [job_id])[job_id]
            assert session.get(Job, job_id).served == 4  # type: ignore[union-attr]
        assert {status: count for status, count in counts.items() if count} == {"sending": 4, "cancelled": 6}
    finally:
        engine.dispose()


def test_claims_made_at_once_all_move_the_job_on(sessions: sessionmaker[Session]):
    job_id = _new_job(sessions, 1)

    def served() -> int | None:
        with sessions() as session:
            return session.scalar(select(Job.served).where(Job.id == job_id))

    assert served() is None
    engine = sessions.kw["bind"]
    scheduling.move_on(engine, job_id, 500, 10)  # its account's place was 500
    assert served() == 510
    for _ in range(3):  # three threads read the same place, 500, and each claimed 10
        scheduling.move_on(engine, job_id, 500, 10)
    assert served() == 540
    scheduling.move_on(engine, job_id, 1000, 5)  # its account moved further meanwhile
    assert served() == 1005


def test_an_expired_lease_can_be_claimed_again_and_a_live_one_cannot(sessions: sessionmaker[Session]):
    job_id = _new_job(sessions, 3)
    now = utcnow()
    with sessions.begin() as session:
        assert scheduling.start(session, job_id, now)
        assert (
            len(scheduling.claim_due(session, job_id, limit=9, now=now, lease_until=now + timedelta(seconds=60))) == 3
        )
    with sessions.begin() as session:
        assert scheduling.claim_due(session, job_id, limit=9, now=now, lease_until=now + timedelta(seconds=60)) == []
    later = now + timedelta(seconds=61)
    with sessions.begin() as session:
        again = scheduling.claim_due(session, job_id, limit=9, now=later, lease_until=later + timedelta(seconds=60))
        assert [r.attempts for r in again] == [2, 2, 2]


def _claim(
    sessions: sessionmaker[Session], job_id: str, now, lease_seconds: float = 60, *, limit: int = 1000
) -> tuple[list, Lease]:
    """Claim up to ``limit`` due rows of the job (started first if it was queued)."""
    lease = Lease.starting(job_id, now, lease_seconds)
    with sessions.begin() as session:
        scheduling.start(session, job_id, now)
        rows = scheduling.claim_due(session, job_id, limit=limit, now=now, lease_until=lease.until)
    lease.ids = tuple(r.id for r in rows)
    return rows, lease


def test_terminal_status_never_changes_and_the_job_completes_once(sessions: sessionmaker[Session]):
    job_id = _new_job(sessions, 2)
    now = utcnow()
    with sessions.begin() as session:
        assert scheduling.start(session, job_id, now)
    (first, second), lease = _claim(sessions, job_id, now)
    outcomes = OutcomeWriter(sessions.kw["bind"])
    assert _sent(outcomes, first, lease, now)
    assert not outcomes.failed(first, lease, code=550, reason="late failure", now=now)
    assert outcomes.failed(second, lease, code=550, reason="no such user", now=now)
    assert not _sent(outcomes, second, lease, now)
    outcomes.close()
    with sessions.begin() as session:
        assert jobs.complete_job_if_done(session, job_id, now) == "completed"
        assert jobs.complete_job_if_done(session, job_id, now) is None
    with sessions() as session:
        counts = jobs.count_by_status(session, [job_id])[job_id]
        assert (counts["sent"], counts["failed"]) == (1, 1)
        assert jobs.get_job(session, job_id).status == JobStatus.COMPLETED


def test_a_worker_whose_lease_ran_out_cannot_overwrite_the_new_owner(sessions: sessionmaker[Session]):
    job_id = _new_job(sessions, 1)
    now = utcnow()
    [late], late_lease = _claim(sessions, job_id, now, lease_seconds=1)
    later = now + timedelta(seconds=2)
    [owner], lease = _claim(sessions, job_id, later)
    outcomes = OutcomeWriter(sessions.kw["bind"])
    assert not outcomes.deferred(late, late_lease, code=451, reason="x", retry_at=later, now=later)
    with sessions.begin() as session:
        jobs.release(session, [late], late_lease, wake_at=later, now=later)
        assert leases.renew(session, late_lease, later) is None
    assert _sent(outcomes, owner, lease, later)
    outcomes.close()
    with sessions() as session:
        [row] = jobs.list_recipients(session, job_id, status=None, after=None, limit=10)
        assert (row.status, row.attempts) == ("sent", 2)


def test_sent_clears_the_error_of_an_earlier_attempt(sessions: sessionmaker[Session]):
    job_id = _new_job(sessions, 1)
    now = utcnow()
    [first], lease = _claim(sessions, job_id, now)
    outcomes = OutcomeWriter(sessions.kw["bind"])
    assert outcomes.deferred(first, lease, code=451, reason="busy", retry_at=now, now=now)
    [second], lease = _claim(sessions, job_id, now + timedelta(seconds=1))
    assert _sent(outcomes, second, lease, now)
    outcomes.close()
    with sessions() as session:
        [row] = jobs.list_recipients(session, job_id, status=None, after=None, limit=10)
        assert (row.status, row.last_error_code, row.last_error) == ("sent", None, None)


def test_on_sqlite_a_reader_does_not_wait_for_a_writer(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'test.db'}"
    upgrade(url)
    engine = make_engine(url)
    writer = make_session_factory(engine)()
    writer.execute(select(Job.id))  # BEGIN IMMEDIATE: this session holds the write lock
    started = time.monotonic()
    with make_reader_factory(engine)() as reader:
        assert list(reader.scalars(select(Job.id))) == []
    assert time.monotonic() - started < 5, "the reader waited for the write lock (busy timeout is 30 s)"
    writer.close()
    engine.dispose()


def test_on_postgresql_a_pooled_connection_the_server_closed_is_replaced_before_use(postgres_url: str):
    engine = make_engine(postgres_url, pool_size=1, ping_idle_seconds=0.05)
    readers = make_reader_factory(engine)
    with readers() as session:
        first = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:  # as a server restart would
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    time.sleep(0.1)  # idle for longer than the window: the next checkout pings
    with readers() as session:
        second = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    assert second != first
    engine.dispose()


def test_on_postgresql_a_connection_used_within_the_window_is_not_pinged(postgres_url: str, monkeypatch):
    def pings_over_three_sessions(ping_idle_seconds: float) -> int:
        engine = make_engine(postgres_url, pool_size=1, ping_idle_seconds=ping_idle_seconds)
        pings: list[object] = []
        ping = engine.dialect.do_ping
        monkeypatch.setattr(engine.dialect, "do_ping", lambda connection: pings.append(connection) or ping(connection))
        for _ in range(3):
            with make_session_factory(engine)() as session:
                session.execute(select(Job.id).limit(1))
        engine.dispose()
        return len(pings)

    assert pings_over_three_sessions(60) == 0, "every checkout paid a round trip for a ping"
    assert pings_over_three_sessions(0) == 2, "a connection idle longer than the window is pinged (a new one is not)"


def test_on_postgresql_readers_run_in_autocommit_and_writers_still_roll_back(postgres_url: str):
    engine = make_engine(postgres_url, pool_size=1)
    with make_reader_factory(engine)() as reader:
        assert reader.connection().connection.driver_connection.autocommit is True
        assert list(reader.scalars(select(Job.id).where(Job.id == "none"))) == []
    sessions = make_session_factory(engine)
    job_id = _new_job(sessions, 1)
    with sessions() as writer:  # the same pooled connection, lent back in transaction mode
        assert writer.connection().connection.driver_connection.autocommit is False
        writer.execute(text("DELETE FROM recipients WHERE job_id = :id"), {"id": job_id})
        writer.rollback()
    with sessions() as session:
        assert session.execute(text("SELECT count(*) FROM recipients WHERE job_id = :id"), {"id": job_id}).scalar() == 1
    engine.dispose()


def test_renewals_never_make_a_concurrent_outcome_write_miss(sessions: sessionmaker[Session]):
    """The lease changes under the writer's feet hundreds of times; every write still finds its row."""
    job_id = _new_job(sessions, 50)
    now = utcnow()
    rows, lease = _claim(sessions, job_id, now)
    first_lease = lease.until
    keeper = LeaseKeeper(sessions, 60)
    done = threading.Event()

    def renew_until_done() -> int:
        renewals = 0
        while not done.is_set():
            keeper.renew_all()
            renewals += 1
        return renewals

    outcomes = OutcomeWriter(sessions.kw["bind"])
    with keeper.keeping(lease), ThreadPoolExecutor(1) as pool:
        renewals = pool.submit(renew_until_done)
        written = []
        for row in rows:
            written.append(_sent(outcomes, row, lease, now))
            time.sleep(0.002)  # let renewals fall between the writes too
        done.set()
        assert renewals.result() > 5
    outcomes.close()
    assert all(written) and lease.until > first_lease
    with sessions() as session:
        assert jobs.count_by_status(session, [job_id])[job_id]["sent"] == 50


def test_many_threads_write_outcomes_on_a_few_connections(sessions: sessionmaker[Session]):
    job_id = _new_job(sessions, 200)
    now = utcnow()
    rows, lease = _claim(sessions, job_id, now)
    writers = OutcomeWriters(sessions.kw["bind"], 3)
    used: set[int] = set()

    def write(row) -> bool:
        with writers.borrow() as writer:
            used.add(id(writer))
            return writer.failed(row, lease, code=550, reason="no such user", now=now)

    with ThreadPoolExecutor(20) as pool:
        assert all(pool.map(write, rows[:100]))
        assert all(pool.map(lambda row: writers.sent(row, lease, now), rows[100:]))
    assert 1 <= len(used) <= 3
    with pytest.raises(RuntimeError), writers.borrow() as broken:
        raise RuntimeError("the database went away")  # that writer's connection is given up
    with writers.borrow() as writer:
        assert writer is not broken
    writers.close()
    with sessions() as session:
        counts = jobs.count_by_status(session, [job_id])[job_id]
        assert (counts["failed"], counts["sent"]) == (100, 100)


def test_a_writer_that_cannot_connect_gives_its_slot_back(sessions: sessionmaker[Session], monkeypatch):
    writers = OutcomeWriters(sessions.kw["bind"], 1)

    def refuse(self, engine) -> None:
        raise OSError("connection refused")

    with monkeypatch.context() as patched:
        patched.setattr(OutcomeWriter, "__init__", refuse)
        with pytest.raises(OSError), writers.borrow():
            pass
    borrowed: list[OutcomeWriter] = []

    def borrow_once() -> None:
        with writers.borrow() as writer:
            borrowed.append(writer)

    thread = threading.Thread(target=borrow_once, daemon=True)
    thread.start()
    thread.join(timeout=5)  # had the slot been lost, the only writer would never come back
    assert len(borrowed) == 1
    writers.close()


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def _sent_behind_a_blocked_group(writers: OutcomeWriters, first: tuple, queued: list[tuple], monkeypatch) -> tuple:
    """Write ``first`` and, while its group waits for its lease's lock, queue ``queued`` behind it.

    The futures of every write, and the size of each group written."""
    groups: list[int] = []
    sent_group = OutcomeWriter.sent_group
    monkeypatch.setattr(
        OutcomeWriter, "sent_group", lambda self, group: groups.append(len(group)) or sent_group(self, group)
    )
    claimed, lease, now = first
    pool = ThreadPoolExecutor(1 + len(queued))
    with lease.lock:
        futures = [pool.submit(writers.sent, claimed, lease, now)]
        _until(lambda: groups == [1])  # the first group is taken, and waits for the lock
        futures += [pool.submit(writers.sent, *outcome) for outcome in queued]
        _until(lambda: writers._sent_waiting.qsize() == len(queued))
    pool.shutdown(wait=False)
    return futures, groups


def test_sent_outcomes_arriving_during_a_commit_are_committed_together(sessions: sessionmaker[Session], monkeypatch):
    job_id = _new_job(sessions, 9)
    now = utcnow()
    [first], first_lease = _claim(sessions, job_id, now, limit=1)
    others, other_lease = _claim(sessions, job_id, now)  # a second claim's rows
    writers = OutcomeWriters(sessions.kw["bind"], 2)
    futures, groups = _sent_behind_a_blocked_group(
        writers, (first, first_lease, now), [(row, other_lease, now) for row in others], monkeypatch
    )
    assert [future.result(timeout=10) for future in futures] == [True] * 9
    assert groups == [1, 8], "the outcomes queued during the first commit were not written as one group"
    writers.close()
    with sessions() as session:
        assert jobs.count_by_status(session, [job_id])[job_id]["sent"] == 9


def test_in_one_group_a_stale_claim_is_refused_and_the_others_are_written(sessions: sessionmaker[Session]):
    job_id = _new_job(sessions, 3)
    now = utcnow()
    late_rows, late_lease = _claim(sessions, job_id, now, lease_seconds=1)
    later = now + timedelta(seconds=2)
    rows, lease = _claim(sessions, job_id, later)  # every row taken over by a new claim
    group = [
        SentOutcome(late_rows[0], late_lease, later),
        SentOutcome(rows[1], lease, later),
        SentOutcome(rows[2], lease, later),
    ]
    writer = OutcomeWriter(sessions.kw["bind"])
    writer.sent_group(group)
    writer.close()
    assert [outcome.written for outcome in group] == [False, True, True]
    with sessions() as session:
        statuses = [r.status for r in jobs.list_recipients(session, job_id, status=None, after=None, limit=10)]
        assert statuses == ["sending", "sent", "sent"]


def test_a_group_that_fails_half_way_writes_none_of_its_rows(sessions: sessionmaker[Session]):
    job_id = _new_job(sessions, 3)
    now = utcnow()
    rows, lease = _claim(sessions, job_id, now)
    unwritable = dataclasses.replace(rows[1], id=[rows[1].id])  # refused by the driver or the server
    group = [SentOutcome(rows[0], lease, now), SentOutcome(unwritable, lease, now), SentOutcome(rows[2], lease, now)]
    writers = OutcomeWriters(sessions.kw["bind"], 1)
    with pytest.raises((sqlite3.ProgrammingError, psycopg.ProgrammingError)), writers.borrow() as writer:
        writer.sent_group(group)
    with sessions() as session:
        statuses = [r.status for r in jobs.list_recipients(session, job_id, status=None, after=None, limit=10)]
        assert statuses == ["sending"] * 3, "the rows written before the failure were committed"
    assert writers.sent(rows[0], lease, now)  # a new connection replaced the one that failed
    writers.close()


def test_when_a_group_fails_every_one_of_its_senders_gets_the_error(sessions: sessionmaker[Session], monkeypatch):
    job_id = _new_job(sessions, 3)
    now = utcnow()
    [first], first_lease = _claim(sessions, job_id, now, limit=1)
    others, other_lease = _claim(sessions, job_id, now)
    writers = OutcomeWriters(sessions.kw["bind"], 1)
    naive = now.replace(tzinfo=None)  # refused by the UTC columns before anything is sent
    futures, groups = _sent_behind_a_blocked_group(
        writers,
        (first, first_lease, now),
        [(others[0], other_lease, naive), (others[1], other_lease, now)],
        monkeypatch,
    )
    assert futures[0].result(timeout=10) is True
    for future in futures[1:]:
        with pytest.raises(ValueError, match="naive datetime"):
            future.result(timeout=10)
    assert groups == [1, 2]  # once the second group has answered: it may start after the first's sender returns
    with sessions() as session:
        statuses = [r.status for r in jobs.list_recipients(session, job_id, status=None, after=None, limit=10)]
        assert statuses == ["sent", "sending", "sending"]
    assert writers.sent(others[1], other_lease, now)  # the writers are still usable
    writers.close()
