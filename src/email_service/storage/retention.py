"""Deleting finished jobs with every row that belongs to them; callers own the session and its
transaction, and keep each one short: every function here touches a bounded number of rows.

A job goes last, after its rows (the order foreign keys would impose), so a deletion stopped half way
leaves a job that is still old and finished and is picked up again by the next run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, delete, exists, func, select, update
from sqlalchemy.orm import Session

from .models import Attachment, EventStatus, IdempotencyKey, Job, JobStatus, Recipient, Suppression, WebhookEvent

FINISHED_JOB_STATUSES = (JobStatus.COMPLETED, JobStatus.CANCELLED)

# The rows of a job, deleted before it: each table has an index whose first column is job_id.
JOB_ROWS: dict[str, type[Recipient] | type[Attachment] | type[WebhookEvent]] = {
    "recipients": Recipient,
    "attachments": Attachment,
    "webhook_events": WebhookEvent,
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

    An expired job can no longer be retried (repository.retry_failed), so none of them goes back to
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


def delete_rows(session: Session, table: str, job_ids: Sequence[str], limit: int) -> int:
    """Delete up to ``limit`` rows of ``table`` belonging to these jobs; how many went."""
    model = JOB_ROWS[table]
    chunk = select(model.id).where(model.job_id.in_(job_ids)).limit(limit).scalar_subquery()
    result = session.execute(delete(model).where(model.id.in_(chunk)))
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
    for table, model in JOB_ROWS.items():
        counts[table] = session.scalar(select(func.count()).select_from(model).where(model.job_id.in_(jobs))) or 0
    return counts
