"""Retention on SQLite and PostgreSQL: old finished jobs go with all their rows, a few rows per
transaction; live jobs, recent ones and ones with work left are untouched; the command counts."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from email_service.services.retention import count_finished_jobs, delete_finished_jobs
from email_service.storage import jobs, retention
from email_service.storage.database import make_engine, make_session_factory
from email_service.storage.migrate import upgrade
from email_service.storage.models import (
    Attachment,
    Bounce,
    EventStatus,
    IdempotencyKey,
    Job,
    JobStatus,
    Recipient,
    RecipientStatus,
    Suppression,
    WebhookEvent,
)

# Far in the past, so that the shared PostgreSQL database holds no other test's job this old.
LONG_AGO = datetime(1991, 3, 1, tzinfo=UTC)
CUTOFF = datetime(1995, 1, 1, tzinfo=UTC)


def _job(
    sessions: sessionmaker[Session],
    status: JobStatus,
    recipients: int,
    *,
    finished_at: datetime | None = None,
    recipient_status: RecipientStatus = RecipientStatus.SENT,
    **rows: Any,
) -> str:
    """A job created LONG_AGO with its recipients; ``rows`` adds attachments, events and the like."""
    job_id = str(uuid.uuid4())
    job = Job(
        id=job_id,
        status=status,
        subject="s",
        content="c",
        template="default",
        sender="s@example.org",
        total=recipients,
        created_at=LONG_AGO,
        started_at=LONG_AGO if status != JobStatus.SCHEDULED else None,
        finished_at=finished_at,
    )
    addresses = [(job_id, i, f"r{i}@example.com", None, None, recipient_status.value, 1) for i in range(recipients)]
    with sessions.begin() as session:
        jobs.insert_job(session, job, addresses)
        for position in range(rows.get("attachments", 0)):
            session.add(
                Attachment(job_id=job_id, position=position, filename="a.txt", content_type="text/plain", data=b"x")
            )
        recipient_ids = session.scalars(
            select(Recipient.id).where(Recipient.job_id == job_id).order_by(Recipient.position)
        ).all()
        for recipient_id in recipient_ids[: rows.get("bounces", 0)]:
            session.add(
                Bounce(
                    recipient_id=recipient_id,
                    job_id=job_id,
                    address=f"{recipient_id}@example.com",
                    kind="hard",
                    source="dsn",
                    status="5.1.1",
                    smtp_code=550,
                    diagnostic="550 5.1.1 User unknown",
                    received_at=LONG_AGO,
                )
            )
        for status_of_event in rows.get("events", []):
            session.add(
                WebhookEvent(
                    job_id=job_id,
                    type="job.completed",
                    url="https://hooks.example.org/",
                    payload={},
                    status=status_of_event,
                    attempts=1,
                    created_at=LONG_AGO,
                )
            )
        if rows.get("idempotency_key"):
            session.add(IdempotencyKey(key=job_id, request_hash="h", job_id=job_id, response={}, created_at=LONG_AGO))
        if rows.get("suppression"):
            session.add(
                Suppression(address=f"{job_id}@example.com", reason="bounced", job_id=job_id, created_at=LONG_AGO)
            )
        if rows.get("unreported_failure"):
            session.execute(update(Recipient).where(Recipient.job_id == job_id).values(failure_unreported=True))
        if status in (JobStatus.SENDING, JobStatus.PAUSED):  # rows still to send have a lease
            session.execute(update(Recipient).where(Recipient.job_id == job_id).values(lease_until=LONG_AGO))
    return job_id


def _rows_of(sessions: sessionmaker[Session], job_id: str) -> dict[str, Any]:
    """The job's status (None once deleted) and how many rows of each table belong to it."""
    tables = {**{name: model for name, (model, _) in retention.JOB_ROWS.items()}, "idempotency_keys": IdempotencyKey}
    with sessions() as session:
        rows: dict[str, Any] = {"status": session.scalar(select(Job.status).where(Job.id == job_id))}
        for name, model in tables.items():
            rows[name] = session.scalar(select(func.count()).select_from(model).where(model.job_id == job_id))
        return rows


def test_old_finished_jobs_go_with_their_rows_in_small_transactions(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
):
    finished = {
        "completed": _job(
            sessions,
            JobStatus.COMPLETED,
            12,
            finished_at=LONG_AGO,
            attachments=2,
            bounces=3,
            events=[EventStatus.DELIVERED, EventStatus.FAILED],
            idempotency_key=True,
            suppression=True,
        ),
        "cancelled": _job(
            sessions, JobStatus.CANCELLED, 3, finished_at=LONG_AGO, recipient_status=RecipientStatus.CANCELLED
        ),
    }
    kept = {
        "scheduled": _job(sessions, JobStatus.SCHEDULED, 2, recipient_status=RecipientStatus.PENDING),
        "queued": _job(sessions, JobStatus.QUEUED, 2, recipient_status=RecipientStatus.PENDING, attachments=1),
        "sending": _job(sessions, JobStatus.SENDING, 7, recipient_status=RecipientStatus.SENDING),
        "paused": _job(sessions, JobStatus.PAUSED, 2, recipient_status=RecipientStatus.PENDING),
        "cancelled, still in flight": _job(sessions, JobStatus.CANCELLED, 2, recipient_status=RecipientStatus.SENDING),
        "finished after the cutoff": _job(sessions, JobStatus.COMPLETED, 2, finished_at=CUTOFF + timedelta(days=1)),
        "event to deliver": _job(
            sessions, JobStatus.COMPLETED, 2, finished_at=LONG_AGO, events=[EventStatus.PENDING], idempotency_key=True
        ),
        "failure to report": _job(
            sessions,
            JobStatus.COMPLETED,
            2,
            finished_at=LONG_AGO,
            recipient_status=RecipientStatus.FAILED,
            unreported_failure=True,
        ),
    }
    kept_rows = {name: _rows_of(sessions, job_id) for name, job_id in kept.items()}
    expected = {"jobs": 2, "recipients": 15, "bounces": 3, "attachments": 2, "webhook_events": 2}

    assert count_finished_jobs(sessions, CUTOFF) == expected
    assert _rows_of(sessions, finished["completed"])["recipients"] == 12, "a dry run deletes nothing"

    deleted_per_transaction: list[tuple[str, int]] = []
    delete_rows = retention.delete_rows

    def recorded(session: Session, table: str, job_id: str, limit: int) -> int:
        deleted_per_transaction.append((table, count := delete_rows(session, table, job_id, limit)))
        return count

    monkeypatch.setattr(retention, "delete_rows", recorded)
    assert delete_finished_jobs(sessions, CUTOFF, jobs_per_round=1, rows_per_transaction=5) == expected
    recipients = [count for table, count in deleted_per_transaction if table == "recipients"]
    assert max(recipients) == 5 and sum(recipients) == 15

    gone = {
        "status": None,
        "recipients": 0,
        "bounces": 0,
        "attachments": 0,
        "webhook_events": 0,
        "idempotency_keys": 0,
    }
    assert [_rows_of(sessions, job_id) for job_id in finished.values()] == [gone, gone]
    assert {name: _rows_of(sessions, job_id) for name, job_id in kept.items()} == kept_rows
    with sessions() as session:
        suppression = session.scalars(
            select(Suppression).where(Suppression.address == f"{finished['completed']}@example.com")
        ).one_or_none()
        assert suppression is not None and suppression.reason == "bounced" and suppression.job_id is None
        kept_job = session.get(Job, kept["event to deliver"])
        assert kept_job is not None and kept_job.expires_at is None, "a kept job is left as it was"

    assert delete_finished_jobs(sessions, CUTOFF) == dict.fromkeys(expected, 0)


def test_a_job_being_deleted_cannot_be_retried(sessions: sessionmaker[Session]):
    job_id = _job(sessions, JobStatus.COMPLETED, 3, finished_at=LONG_AGO, recipient_status=RecipientStatus.FAILED)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        assert job_id in retention.take_jobs(session, CUTOFF, now, limit=1000)
    with sessions.begin() as session:
        assert jobs.retry_failed(session, job_id, now) == 0
    assert _rows_of(sessions, job_id)["recipients"] == 3


def test_a_run_stopped_half_way_is_finished_by_the_next_one(sessions: sessionmaker[Session]):
    job_id = _job(sessions, JobStatus.COMPLETED, 9, finished_at=LONG_AGO, attachments=1)
    with sessions.begin() as session:
        taken = retention.take_jobs(session, CUTOFF, datetime.now(UTC), limit=1000)
    with sessions.begin() as session:
        assert job_id in taken
        assert retention.delete_rows(session, "recipients", job_id, limit=4) == 4
    # The process died here: the job is still old and finished, so the next run takes it again.
    counts = delete_finished_jobs(sessions, CUTOFF)
    assert counts["jobs"] >= 1 and counts["recipients"] >= 5
    assert set(_rows_of(sessions, job_id).values()) == {None, 0}


def test_the_cleanup_command_counts_then_deletes(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'service.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    old = _job(sessions, JobStatus.COMPLETED, 4, finished_at=datetime.now(UTC) - timedelta(days=31))
    recent = _job(sessions, JobStatus.COMPLETED, 4, finished_at=datetime.now(UTC) - timedelta(days=29))
    live = _job(sessions, JobStatus.SENDING, 4, recipient_status=RecipientStatus.SENDING)

    def cleanup(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "email_service", "cleanup", *args],
            env={**os.environ, "DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=60,
        )

    dry = cleanup("--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would delete 1 job(s) finished before ")
    assert "4 recipients, 0 bounces, 0 attachments, 0 webhook events" in dry.stdout
    assert _rows_of(sessions, old)["status"] == JobStatus.COMPLETED
    done = cleanup("--older-than", "30d")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("deleted 1 job(s)") and "4 recipients" in done.stdout
    assert _rows_of(sessions, old)["status"] is None
    assert _rows_of(sessions, recent)["recipients"] == 4 and _rows_of(sessions, live)["recipients"] == 4
    refused = cleanup("--older-than", "30")
    assert refused.returncode == 2 and "'30' is not an age like 30d (days) or 12h (hours)" in refused.stderr
    engine.dispose()
