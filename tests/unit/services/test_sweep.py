"""The scheduler's sweep on SQLite with a recording queue: what it queues again, and when."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from email_service.config import Settings
from email_service.services import Services, build_services, control, intake
from email_service.services.sweep import sweep
from email_service.storage import jobs
from email_service.storage.leases import Lease
from email_service.storage.migrate import upgrade
from email_service.storage.models import Job, Recipient, utcnow
from email_service.storage.outcomes import OutcomeWriter


@dataclass
class RecordingQueue:
    started: list[str] = field(default_factory=list)
    batches: list[tuple[str, int, int]] = field(default_factory=list)

    def start_job(self, job_id: str) -> None:
        self.started.append(job_id)

    def send_batch(self, job_id: str, first: int, last: int) -> None:
        self.batches.append((job_id, first, last))

    def deliver_events(self, job_id: str) -> None:
        raise AssertionError("no job of these tests has a webhook")


@pytest.fixture
def services(tmp_path: Path) -> Services:
    settings = Settings(data_dir=tmp_path, batch_size=10, requeue_after=60)
    upgrade(settings.database_url)
    built = build_services(settings)
    built.queue = RecordingQueue()
    return built


def _job(services: Services, count: int, *, started: bool = True) -> str:
    request = intake.JobRequest(recipients=[f"r{i}@example.com" for i in range(count)], subject="s", content="c")
    job_id = intake.accept_job(services, request).id
    if started:
        now = utcnow()
        with services.sessions.begin() as session:
            jobs.mark_job_sending(session, job_id, now, dispatch_deadline=now + timedelta(seconds=60))
    return job_id


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


def test_nothing_is_queued_again_before_its_time(services: Services):
    _job(services, 25)
    assert sweep(services).batches_queued == 0
    assert services.queue.batches == [] and services.queue.started == []


def test_batches_whose_task_was_lost_are_queued_again_once(services: Services):
    job_id = _job(services, 25)
    _age(services, 61)
    assert sweep(services).batches_queued == 3
    assert services.queue.batches == [(job_id, 0, 10), (job_id, 10, 20), (job_id, 20, 30)]
    assert sweep(services).batches_queued == 0, "a new dispatch deadline was set"


def test_a_job_whose_start_was_lost_is_started_again(services: Services):
    job_id = _job(services, 3, started=False)
    sweep(services)
    assert services.queue.started == []
    _age(services, 61)
    sweep(services)
    assert services.queue.started == [job_id]


def test_rows_of_a_dead_worker_go_back_to_pending_and_their_batch_is_queued(services: Services):
    job_id = _job(services, 5)
    now = utcnow()
    with services.sessions.begin() as session:
        jobs.claim_batch(session, job_id, 0, 10, now=now, lease_until=now + timedelta(seconds=5))
    _age(services, 6)
    assert sweep(services).batches_queued == 1
    with services.sessions() as session:
        assert jobs.count_by_status(session, [job_id])[job_id]["pending"] == 5


def test_a_deferred_row_is_queued_when_its_retry_time_comes(services: Services):
    job_id = _job(services, 1)
    now = utcnow()
    lease = Lease.starting(job_id, 0, 10, now, 60)
    with services.sessions.begin() as session:
        [row] = jobs.claim_batch(session, job_id, 0, 10, now=now, lease_until=lease.until)
    outcomes = OutcomeWriter(services.engine)
    outcomes.deferred(row, lease, code=451, reason="busy", retry_at=now + timedelta(seconds=30), now=now)
    outcomes.close()
    assert sweep(services).batches_queued == 0
    _age(services, 31)
    assert services.queue.batches == [] and sweep(services).batches_queued == 1


def test_a_cancelled_job_with_deferred_rows_is_finished_by_the_sweep(services: Services):
    job_id = _job(services, 2)
    now = utcnow()
    lease = Lease.starting(job_id, 0, 10, now, 60)
    with services.sessions.begin() as session:
        claimed = jobs.claim_batch(session, job_id, 0, 10, now=now, lease_until=lease.until)
    control.cancel(services, job_id, None)  # both rows are in flight: they stay with their worker
    outcomes = OutcomeWriter(services.engine)  # which then defers them
    for row in claimed:
        assert outcomes.deferred(row, lease, code=451, reason="busy", retry_at=now, now=now)
    outcomes.close()
    report = sweep(services)
    assert report.jobs_finished == 1 and report.batches_queued == 0
    with services.sessions() as session:
        assert jobs.get_job(session, job_id).finished_at is not None
        assert jobs.count_by_status(session, [job_id])[job_id]["cancelled"] == 2
