"""Queries and state changes on jobs and recipients; callers own the session and its transaction.

Every recipient state change is a guarded UPDATE, so a terminal status never changes and two
workers can never both own the same recipient.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session

from .models import TERMINAL_RECIPIENT_STATUSES, Job, JobStatus, Recipient, RecipientStatus

_RECIPIENT_COPY_COLUMNS = ("job_id", "position", "address", "name", "variables", "status", "attempts", "message_id")


def insert_job(session: Session, job: Job, recipients: Sequence[dict[str, Any]]) -> None:
    """Store a job and all its recipients (rows keyed by _RECIPIENT_COPY_COLUMNS)."""
    session.add(job)
    session.flush()
    if not recipients:
        return
    if session.get_bind().dialect.name == "postgresql":
        _copy_recipients(session, recipients)
    else:
        session.execute(insert(Recipient), list(recipients))


def _copy_recipients(session: Session, recipients: Sequence[dict[str, Any]]) -> None:
    # COPY is ~10x faster than multi-row INSERT for 100k rows: the intake answers in well under a second.
    driver_connection: Any = session.connection().connection.driver_connection
    columns = ", ".join(_RECIPIENT_COPY_COLUMNS)
    with driver_connection.cursor() as cursor, cursor.copy(f"COPY recipients ({columns}) FROM STDIN") as copy:
        for row in recipients:
            variables = row["variables"]
            copy.write_row(
                (
                    row["job_id"],
                    row["position"],
                    row["address"],
                    row["name"],
                    json.dumps(variables) if variables is not None else None,
                    row["status"],
                    row["attempts"],
                    row["message_id"],
                )
            )


def get_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def list_jobs(session: Session, *, limit: int, before: Job | None = None) -> list[Job]:
    """Most recent jobs first; ``before`` continues a previous page."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    if before is not None:
        query = query.where(
            or_(Job.created_at < before.created_at, and_(Job.created_at == before.created_at, Job.id < before.id))
        )
    return list(session.scalars(query))


def count_by_status(session: Session, job_ids: Iterable[str]) -> dict[str, dict[str, int]]:
    """For each job, how many recipients are in each status (every status present, zeros included)."""
    ids = list(job_ids)
    counts = {job_id: {status.value: 0 for status in RecipientStatus} for job_id in ids}
    if not ids:
        return counts
    rows = session.execute(
        select(Recipient.job_id, Recipient.status, func.count())
        .where(Recipient.job_id.in_(ids))
        .group_by(Recipient.job_id, Recipient.status)
    )
    for job_id, status, count in rows:
        counts[job_id][status] = count
    return counts


def list_recipients(
    session: Session, job_id: str, *, status: str | None, after: int | None, limit: int
) -> list[Recipient]:
    """Recipients of a job in position order, optionally of one status, after a position."""
    query = select(Recipient).where(Recipient.job_id == job_id).order_by(Recipient.position).limit(limit)
    if status is not None:
        query = query.where(Recipient.status == status)
    if after is not None:
        query = query.where(Recipient.position > after)
    return list(session.scalars(query))


def mark_job_sending(session: Session, job_id: str, now: datetime) -> bool:
    """Move a queued job to sending; False when it was not queued (already started or done)."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.SENDING, started_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def claim_batch(
    session: Session, job_id: str, first: int, last: int, *, now: datetime, lease_until: datetime
) -> list[Recipient]:
    """Take the recipients at positions [first, last) that nobody owns: pending, or whose lease expired.

    One UPDATE ... RETURNING: concurrent claimers of the same range each get disjoint rows.
    """
    claimable = or_(
        Recipient.status == RecipientStatus.PENDING,
        and_(Recipient.status == RecipientStatus.SENDING, Recipient.lease_until < now),
    )
    result = session.execute(
        update(Recipient)
        .where(Recipient.job_id == job_id, Recipient.position >= first, Recipient.position < last, claimable)
        .values(
            status=RecipientStatus.SENDING,
            lease_until=lease_until,
            attempts=Recipient.attempts + 1,
            updated_at=now,
        )
        .returning(Recipient)
        .execution_options(synchronize_session=False)
    )
    return sorted(result.scalars(), key=lambda r: r.position)


def mark_sent(session: Session, recipient_id: int, now: datetime) -> None:
    session.execute(
        update(Recipient)
        .where(Recipient.id == recipient_id, Recipient.status == RecipientStatus.SENDING)
        .values(status=RecipientStatus.SENT, sent_at=now, lease_until=None, updated_at=now)
    )


def mark_failed(session: Session, recipient_id: int, *, code: int | None, reason: str, now: datetime) -> None:
    session.execute(
        update(Recipient)
        .where(Recipient.id == recipient_id, Recipient.status == RecipientStatus.SENDING)
        .values(
            status=RecipientStatus.FAILED,
            last_error_code=code,
            last_error=reason[:2000],
            lease_until=None,
            updated_at=now,
        )
    )


def complete_job_if_done(session: Session, job_id: str, now: datetime) -> bool:
    """Mark the job completed when no recipient is left to send; True only for the call that did it."""
    unfinished = exists().where(
        Recipient.job_id == job_id, Recipient.status.not_in([s.value for s in TERMINAL_RECIPIENT_STATUSES])
    )
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status != JobStatus.COMPLETED, ~unfinished)
        .values(status=JobStatus.COMPLETED, finished_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
