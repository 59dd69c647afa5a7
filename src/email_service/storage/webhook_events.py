"""The webhook outbox: events written in the transaction that makes them true, then claimed one at
a time per job (in order) by whoever delivers them; callers own the session and its transaction.

Failures are not written as events one by one: the outcome writer flags each failed recipient of a
job that has a webhook (recipients.failure_unreported), and ``pack_failures`` turns up to
FAILURES_PER_EVENT flagged rows into one recipient.failed event, in one transaction. A worker dying
anywhere in between loses nothing: the flags or the event are still there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select, union, update
from sqlalchemy.orm import Session, aliased

from email_service.storage.jobs import count_by_status
from email_service.storage.models import EventStatus, Job, JobStatus, Recipient, WebhookEvent

FAILURES_PER_EVENT = 500

JOB_COMPLETED = "job.completed"
JOB_CANCELLED = "job.cancelled"
RECIPIENT_FAILED = "recipient.failed"
RECIPIENT_BOUNCED = "recipient.bounced"
RECIPIENT_COMPLAINED = "recipient.complained"


def job_with_webhook(session: Session, job_id: str) -> Job | None:
    """The job, if it exists and has a callback URL."""
    job = session.get(Job, job_id)
    return job if job is not None and job.callback_url is not None else None


def record_job_finished(session: Session, job_id: str, status: str, now: datetime) -> bool:
    """Add the job's final event (after its last failures); False when the job has no webhook."""
    job = job_with_webhook(session, job_id)
    if job is None:
        return False
    pack_failures(session, job, now)
    counts = count_by_status(session, [job_id])[job_id]
    data = {
        "job_id": job.id,
        "status": status,
        "total": job.total,
        "counts": counts,
        "tags": job.tags or [],
        "metadata": job.meta,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": now.isoformat(),
    }
    _add(session, job, JOB_CANCELLED if status == JobStatus.CANCELLED else JOB_COMPLETED, data, now)
    return True


def record_recipient_feedback(
    session: Session, recipient: Recipient, event_type: str, data: dict[str, Any], now: datetime
) -> bool:
    """Add a recipient.bounced or recipient.complained event, also after the job finished; False
    when the job has no webhook."""
    job = job_with_webhook(session, recipient.job_id)
    if job is None:
        return False
    _add(session, job, event_type, data, now)
    return True


def pack_failures(session: Session, job: Job, now: datetime) -> int:
    """Turn the job's unreported failures into recipient.failed events; how many events."""
    assert job.callback_url is not None
    events = 0
    while True:
        rows = list(
            session.scalars(
                select(Recipient)
                .where(Recipient.job_id == job.id, Recipient.failure_unreported)
                .order_by(Recipient.position)
                .limit(FAILURES_PER_EVENT)
                # Not SKIP LOCKED: a job's final event must wait for a concurrent packer of its last
                # failures, so that it comes after them.
                .with_for_update()
            )
        )
        if not rows:
            return events
        data = {
            "job_id": job.id,
            "tags": job.tags or [],
            "metadata": job.meta,
            "recipients": [
                {
                    "position": r.position,
                    "email": r.address,
                    "error_code": r.last_error_code,
                    "error": r.last_error,
                    "attempts": r.attempts,
                    "failed_at": r.updated_at.isoformat() if r.updated_at else None,
                }
                for r in rows
            ],
        }
        _add(session, job, RECIPIENT_FAILED, data, now)
        session.execute(
            update(Recipient).where(Recipient.id.in_([r.id for r in rows])).values(failure_unreported=False)
        )
        events += 1


def jobs_with_events_due(session: Session, now: datetime, limit: int = 1000) -> list[str]:
    """Jobs with failures to report, or whose oldest undelivered event is due (the events after it
    wait for it, so they do not count); the longest waiting first."""
    failures = select(Recipient.job_id, literal(None).label("due_at")).where(Recipient.failure_unreported)
    later = aliased(WebhookEvent)
    oldest_pending = (
        select(func.min(later.id))
        .where(later.job_id == WebhookEvent.job_id, later.status == EventStatus.PENDING)
        .scalar_subquery()
    )
    due = select(WebhookEvent.job_id, WebhookEvent.next_attempt_at.label("due_at")).where(
        WebhookEvent.status == EventStatus.PENDING,
        WebhookEvent.next_attempt_at <= now,
        WebhookEvent.id == oldest_pending,
    )
    jobs = union(failures, due).subquery()
    rows = session.execute(select(jobs.c.job_id).order_by(jobs.c.due_at).limit(limit))
    return list(dict.fromkeys(job_id for (job_id,) in rows))


def claim_next(session: Session, job_id: str, now: datetime, lease_until: datetime) -> WebhookEvent | None:
    """The job's oldest undelivered event, if its delivery is due and nobody else holds it.

    Only the oldest is ever taken, so a job's events arrive in the order they happened.
    """
    oldest = (
        select(func.min(WebhookEvent.id))
        .where(WebhookEvent.job_id == job_id, WebhookEvent.status == EventStatus.PENDING)
        .scalar_subquery()
    )
    result = session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == oldest, WebhookEvent.next_attempt_at <= now)
        .values(next_attempt_at=lease_until, attempts=WebhookEvent.attempts + 1)
        .returning(WebhookEvent)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none()


def mark_delivered(session: Session, claimed: WebhookEvent, now: datetime) -> None:
    _set(session, claimed, status=EventStatus.DELIVERED, delivered_at=now, next_attempt_at=None, last_error=None)


def mark_retry(session: Session, claimed: WebhookEvent, error: str, retry_at: datetime) -> None:
    _set(session, claimed, next_attempt_at=retry_at, last_error=error[:2000])


def mark_abandoned(session: Session, claimed: WebhookEvent, error: str) -> None:
    _set(session, claimed, status=EventStatus.FAILED, next_attempt_at=None, last_error=error[:2000])


def _add(session: Session, job: Job, event_type: str, data: dict[str, Any], now: datetime) -> None:
    assert job.callback_url is not None
    session.add(
        WebhookEvent(
            job_id=job.id,
            type=event_type,
            url=job.callback_url,
            payload=data,
            status=EventStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    session.flush()


def _set(session: Session, claimed: WebhookEvent, **values: Any) -> None:
    """Record an attempt's outcome, unless the claim ran out and another attempt took the event over."""
    session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.id == claimed.id,
            WebhookEvent.status == EventStatus.PENDING,
            WebhookEvent.attempts == claimed.attempts,
        )
        .values(**values)
    )
