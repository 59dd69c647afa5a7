"""Deleting finished jobs with every row that belongs to them; callers own the session and its
transaction, and keep each one short: every function here touches a bounded number of rows.

A job goes last, after its rows (the order foreign keys would impose), so a deletion stopped half way
leaves a job that is still old and finished and is picked up again by the next run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, delete, exists, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from email_service.storage.models import (
    Attachment,
    Bounce,
    EventStatus,
    IdempotencyKey,
    Job,
    JobStatus,
    Recipient,
    Suppression,
    WebhookEvent,
)

FINISHED_JOB_STATUSES = (JobStatus.COMPLETED, JobStatus.CANCELLED)

# The rows of a job, deleted before it, each table with the column that orders a job's rows in an
# index starting with job_id: a chunk is found and deleted through that index, never by a table scan.
JobRow = type[Recipient] | type[Attachment] | type[WebhookEvent] | type[Bounce]
JOB_ROWS: dict[str, tuple[JobRow, InstrumentedAttribute[int]]] = {
    "recipients": (Recipient, Recipient.position),
    "bounces": (Bounce, Bounce.id),
    "attachments": (Attachment, Attachment.position),
    "webhook_events": (WebhookEvent, WebhookEvent.id),
}


def deletable(cutoff: datetime) -> ColumnElement[bool]:
    """Jobs that finished before ``cutoff`` and have nothing left to do: no webhook event still to
    deliver, no failure still to report."""
    return (
        Job.status.in_(FINISHED_JOB_STATUSES)
        & Job.finished_at.is_not(None)
        & (Job.finished_at < cutoff)
        & ~exists().where(WebhookEvent.job_id == Job.id, WebhookEvent.status == EventStatus.PENDING)
        & ~exists().where(Recipient.job_id == Job.id, Recipient.failure_unreported)
    )


def take_jobs(session: Session, cutoff: datetime, now: datetime, limit: int) -> list[str]:
    """Up to ``limit`` deletable jobs, oldest first, made to expire ``now``.

    An expired job can no longer be retried (jobs.retry_failed), so none of them goes back to
    the queue while its rows are being deleted.
    """
    ids = list(
        session.scalars(
            select(Job.id).where(deletable(cutoff)).order_by(Job.finished_at, Job.id).limit(limit).with_for_update()
        )
    )
    if ids:
        session.execute(
            update(Job)
            .where(Job.id.in_(ids), (Job.expires_at.is_(None)) | (Job.expires_at > now))
            .values(expires_at=now)
        )
    return ids


def delete_rows(session: Session, table: str, job_id: str, limit: int) -> int:
    """Delete the job's first ``limit`` rows of ``table``; how many went."""
    model, order = JOB_ROWS[table]
    of_job = model.job_id == job_id
    last = session.scalar(select(order).where(of_job).order_by(order).offset(limit - 1).limit(1))
    result = session.execute(
        delete(model).where(of_job, order <= last) if last is not None else delete(model).where(of_job)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def delete_jobs(session: Session, job_ids: Sequence[str]) -> int:
    """Delete these jobs with their idempotency keys; a suppression keeps its address and reason but
    no longer names the job. Only finished jobs go; how many went."""
    session.execute(delete(IdempotencyKey).where(IdempotencyKey.job_id.in_(job_ids)))
    session.execute(update(Suppression).where(Suppression.job_id.in_(job_ids)).values(job_id=None))
    result = session.execute(delete(Job).where(Job.id.in_(job_ids), Job.status.in_(FINISHED_JOB_STATUSES)))
    return int(result.rowcount)  # type: ignore[attr-defined]


def count_deletable(session: Session, cutoff: datetime) -> dict[str, int]:
    """How many jobs, and rows of each table, a deletion with this cutoff would remove."""
    jobs = select(Job.id).where(deletable(cutoff)).scalar_subquery()
    counts = {"jobs": session.scalar(select(func.count()).select_from(Job).where(Job.id.in_(jobs))) or 0}
    for table, (model, _) in JOB_ROWS.items():
        counts[table] = session.scalar(select(func.count()).select_from(model).where(model.job_id.in_(jobs))) or 0
    return counts
