"""The scheduler's sweep on SQLite with a recording queue: when it wakes workers, and what it finishes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from email_service.config import Settings
from email_service.services import Services, build_services, control, intake
from email_service.services.sweep import sweep
from email_service.storage import jobs, scheduling
from email_service.storage.leases import Lease
from email_service.storage.migrate import upgrade
from email_service.storage.models import ClaimedRecipient, Job, Recipient, utcnow
from email_service.storage.outcomes import OutcomeWriter
from tests.support.queues import RecordingQueue

THREADS = 3


@pytest.fixture
def services(tmp_path: Path) -> Services:
    settings = Settings(data_dir=tmp_path, batch_size=10, smtp_concurrency=THREADS, worker_processes=1)
    upgrade(settings.database_url)
    built = build_services(settings)
    built.queue = RecordingQueue()
    return built


def _job(services: Services, count: int, *, started: bool = True) -> str:
    request = intake.JobRequest(recipients=[f"r{i}@example.com" for i in range(count)], subject="s", content="c")
    job_id = intake.accept_job(services, request).id
    if started:
        with services.sessions.begin() as session:
            scheduling.start(session, job_id, utcnow())
    return job_id


def _claim_all(services: Services, job_id: str, lease_seconds: float) -> tuple[Lease, list[ClaimedRecipient]]:
    now = utcnow()
    lease = Lease.starting(job_id, now, lease_seconds)
    with services.sessions.begin() as session:
        rows = scheduling.claim_due(session, job_id, limit=100, now=now, lease_until=lease.until)
    lease.ids = tuple(r.id for r in rows)
    return lease, rows


def _age(services: Services, seconds: float) -> None:
    """Move every lease, retry time and creation time into the past, as if time had passed."""
    with services.sessions.begin() as session:
        for recipient in session.scalars(select(Recipient)):
            if recipient.lease_until is not None:
                recipient.lease_until -= timedelta(seconds=seconds)
            if recipient.next_attempt_at is not None:
                recipient.next_attempt_at -= timedelta(seconds=seconds)
        for job in session.scalars(select(Job)):
            job.created_at -= timedelta(seconds=seconds)


def test_no_worker_is_woken_while_nothing_is_due(services: Services):
    job_id = _job(services, 5)
    _claim_all(services, job_id, lease_seconds=60)  # all in flight, their worker alive
    _job(services, 5, started=False)
    control.pause(services, jobs_of(services)[-1], None)
    assert sweep(services).wake_ups == 0
    assert services.queue.wake_ups == 0


def test_due_work_tops_the_wake_ups_up_to_a_host_s_threads_and_no_more(services: Services):
    _job(services, 25, started=False)  # accepted while the broker was down: no wake-up was published
    assert sweep(services).wake_ups == THREADS
    assert sweep(services).wake_ups == 0, "the first ones still wait in the broker"
    services.queue.wake_ups = 0  # the broker restarted empty
    assert sweep(services).wake_ups == THREADS


def test_the_rows_of_a_dead_worker_are_due_once_its_lease_has_run_out(services: Services):
    job_id = _job(services, 5)
    _claim_all(services, job_id, lease_seconds=5)
    assert sweep(services).wake_ups == 0
    _age(services, 6)
    assert sweep(services).wake_ups == THREADS
    _, again = _claim_all(services, job_id, lease_seconds=60)
    assert len(again) == 5 and all(r.attempts == 2 for r in again)


def test_a_deferred_row_is_due_when_its_retry_time_comes(services: Services):
    job_id = _job(services, 1)
    now = utcnow()
    lease, [row] = _claim_all(services, job_id, lease_seconds=60)
    outcomes = OutcomeWriter(services.engine)
    outcomes.deferred(row, lease, code=451, reason="busy", retry_at=now + timedelta(seconds=30), now=now)
    outcomes.close()
    assert sweep(services).wake_ups == 0
    _age(services, 31)
    assert sweep(services).wake_ups == THREADS


def test_a_cancelled_job_with_deferred_rows_is_finished_by_the_sweep(services: Services):
    job_id = _job(services, 2)
    now = utcnow()
    lease, claimed = _claim_all(services, job_id, lease_seconds=60)
    control.cancel(services, job_id, None)  # both rows are in flight: they stay with their worker
    outcomes = OutcomeWriter(services.engine)  # which then defers them
    for row in claimed:
        assert outcomes.deferred(row, lease, code=451, reason="busy", retry_at=now, now=now)
    outcomes.close()
    report = sweep(services)
    assert report.jobs_finished == 1 and report.wake_ups == 0
    with services.sessions() as session:
        assert jobs.get_job(session, job_id).finished_at is not None
        assert jobs.count_by_status(session, [job_id])[job_id]["cancelled"] == 2


def jobs_of(services: Services) -> list[str]:
    with services.sessions() as session:
        return [job.id for job in sorted(session.scalars(select(Job)), key=lambda job: job.created_at)]
