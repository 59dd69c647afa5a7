"""Queries and state changes on jobs and recipients; callers own the session and its transaction.

The outcome of each message is written by storage.outcomes, the one hot path kept off the ORM.

Every recipient state change is a guarded UPDATE, so a terminal status never changes and two
workers can never both own the same recipient.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, case, exists, func, or_, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from email_service.message.mime import AttachmentFile
from email_service.storage.leases import Lease
from email_service.storage.models import (
    UNFINISHED_JOB_STATUSES,
    Attachment,
    ClaimedRecipient,
    Job,
    JobStatus,
    Lane,
    Recipient,
    RecipientStatus,
)

# A new recipient row, in this column order: the intake writes 100,000 of them at a time.
NEW_RECIPIENT_COLUMNS = ("job_id", "position", "address", "name", "variables", "status", "attempts")
NewRecipient = tuple[str, int, str, str | None, str | None, str, int]  # variables as JSON text
_EXPLAINED_PER_UPDATE = 5000  # positions per statement: bounded for a job whose 100,000 recipients are suppressed


def insert_job(session: Session, job: Job, recipients: Sequence[NewRecipient]) -> None:
    """Store a job and all its recipients in the caller's transaction.

    The rows go through the driver directly (COPY on PostgreSQL, executemany on SQLite): the ORM's
    per-row work would cost more than the database's.
    """
    session.add(job)
    session.flush()
    driver_connection: Any = session.connection().connection.driver_connection
    columns = ", ".join(NEW_RECIPIENT_COLUMNS)
    if session.get_bind().dialect.name == "postgresql":
        with driver_connection.cursor() as cursor, cursor.copy(f"COPY recipients ({columns}) FROM STDIN") as copy:
            for row in recipients:
                copy.write_row(row)
    else:
        placeholders = ", ".join("?" for _ in NEW_RECIPIENT_COLUMNS)
        driver_connection.executemany(f"INSERT INTO recipients ({columns}) VALUES ({placeholders})", recipients)


def explain_suppressed(session: Session, job_id: str, explanations: Mapping[int, str]) -> None:
    """Say on each row stored suppressed why it will never be sent: ``explanations`` by position (the few
    distinct texts each written by one UPDATE per chunk of positions)."""
    positions_of: dict[str, list[int]] = {}
    for position, text in explanations.items():
        positions_of.setdefault(text, []).append(position)
    for text, positions in positions_of.items():
        for start in range(0, len(positions), _EXPLAINED_PER_UPDATE):
            chunk = positions[start : start + _EXPLAINED_PER_UPDATE]
            session.execute(
                update(Recipient)
                .where(Recipient.job_id == job_id, Recipient.position.in_(chunk))
                .values(last_error=text)
            )


def get_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def jobs_by_id(session: Session, job_ids: Iterable[str]) -> dict[str, Job]:
    return {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(list(job_ids))))}


def account_of(session: Session, job_id: str) -> str | None:
    """The account of the job (None for a job of no account, or no such job)."""
    return session.scalar(select(Job.account_id).where(Job.id == job_id))


def job_attachments(session: Session, job_id: str) -> tuple[AttachmentFile, ...]:
    rows = session.execute(
        select(Attachment.filename, Attachment.content_type, Attachment.data)
        .where(Attachment.job_id == job_id)
        .order_by(Attachment.position)
    )
    return tuple(AttachmentFile(filename, content_type, data) for filename, content_type, data in rows)


def list_jobs(
    session: Session,
    account: str | None,
    *,
    limit: int,
    before: Job | None = None,
    status: str | None = None,
    tag: str | None = None,
) -> list[Job]:
    """Most recent jobs first (of ``account`` only, unless None), optionally of one status or carrying
    one tag; ``before`` continues a previous page."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    if account is not None:
        query = query.where(Job.account_id == account)
    if status is not None:
        query = query.where(Job.status == status)
    if tag is not None:
        query = query.where(_has_tag(session, tag))
    if before is not None:
        query = query.where(
            or_(Job.created_at < before.created_at, and_(Job.created_at == before.created_at, Job.id < before.id))
        )
    return list(session.scalars(query))


def _has_tag(session: Session, tag: str) -> Any:
    """Whether a job's tags (a JSON array) hold ``tag`` exactly: JSON containment on PostgreSQL, a
    scan of the array on SQLite (a text search would match inside other tags)."""
    if session.get_bind().dialect.name == "postgresql":
        return sql_cast(Job.tags, JSONB).contains([tag])
    element = func.json_each(Job.tags).table_valued("value")
    return exists(select(1).select_from(element).where(element.c.value == tag))


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


def waiting_recipients(session: Session) -> dict[str, int]:
    """Recipients of started jobs still to be sent, by status (pending, deferred, sending), zeros included.

    Exactly the rows with a lease (see models.Recipient.lease_until): read through a partial index on
    them, so the cost follows the work waiting, not the size of the table.
    """
    waiting = (RecipientStatus.PENDING, RecipientStatus.DEFERRED, RecipientStatus.SENDING)
    counts = {status.value: 0 for status in waiting}
    rows = session.execute(
        select(Recipient.status, func.count()).where(Recipient.lease_until.is_not(None)).group_by(Recipient.status)
    )
    counts.update({status: count for status, count in rows})
    return counts


# A queued job whose rows have no lease yet: it starts at its turn (a job queued again by a retry has
# started before, and its rows count from its restart).
_NOT_STARTED = and_(Job.status == JobStatus.QUEUED, Job.started_at.is_(None))


def waiting_by_lane(session: Session) -> dict[str, dict[str, int]]:
    """Recipients still to send in each lane (every lane present, zeros included), in two stages:
    ``started``, the rows with a lease (as waiting_recipients counts them), and ``queued``, those of
    the jobs queued that have not started yet (their total, suppressed addresses included: no row is
    read). Each read costs what waits: the partial index of leased rows, counted per job before the
    jobs are looked up by id, and the jobs of status queued."""
    counts = {lane.value: {"started": 0, "queued": 0} for lane in Lane}
    per_job = (
        select(Recipient.job_id, func.count().label("rows"))
        .where(Recipient.lease_until.is_not(None))
        .group_by(Recipient.job_id)
        .subquery()
    )
    started = session.execute(
        select(Job.lane, func.sum(per_job.c.rows)).join(per_job, Job.id == per_job.c.job_id).group_by(Job.lane)
    )
    queued = session.execute(select(Job.lane, func.sum(Job.total)).where(_NOT_STARTED).group_by(Job.lane))
    for stage, rows in (("started", started), ("queued", queued)):
        for lane, count in rows:
            counts.setdefault(lane, {"started": 0, "queued": 0})[stage] = int(count)
    return counts


def waiting_of(session: Session, job_ids: Iterable[str]) -> dict[str, int]:
    """For each job, its recipients still to send as waiting_by_lane counts them: its rows with a lease,
    or the total of a queued job that has not started."""
    ids = list(job_ids)
    counts = dict.fromkeys(ids, 0)
    if not ids:
        return counts
    leased = session.execute(
        select(Recipient.job_id, func.count())
        .where(Recipient.job_id.in_(ids), Recipient.lease_until.is_not(None))
        .group_by(Recipient.job_id)
    )
    counts.update({job_id: count for job_id, count in leased})
    queued = session.execute(select(Job.id, Job.total).where(Job.id.in_(ids), _NOT_STARTED))
    counts.update({job_id: total for job_id, total in queued})
    return counts


def unfinished_jobs(session: Session) -> dict[str, int]:
    """How many jobs are in each unfinished status (scheduled, queued, sending, paused), zeros included."""
    counts = {status.value: 0 for status in JobStatus if status in UNFINISHED_JOB_STATUSES}
    rows = session.execute(
        select(Job.status, func.count()).where(Job.status.in_(UNFINISHED_JOB_STATUSES)).group_by(Job.status)
    )
    counts.update({status: count for status, count in rows})
    return counts


def list_recipients(
    session: Session,
    job_id: str,
    *,
    status: str | None,
    after: int | None,
    limit: int,
    address_part: str | None = None,
) -> list[Recipient]:
    """Recipients of a job in position order, optionally of one status or whose address contains
    ``address_part`` (in any case), after a position."""
    query = select(Recipient).where(Recipient.job_id == job_id).order_by(Recipient.position).limit(limit)
    if status is not None:
        query = query.where(Recipient.status == status)
    if address_part:
        query = query.where(Recipient.address.ilike(f"%{escape_like(address_part)}%", escape="\\"))
    if after is not None:
        query = query.where(Recipient.position > after)
    return list(session.scalars(query))


def escape_like(text: str) -> str:
    """``text`` matched literally inside a LIKE pattern whose escape character is a backslash."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# Interval widths of a timeline, in seconds: from a second up to a day.
TIMELINE_WIDTHS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)


@dataclass(frozen=True)
class Timeline:
    start: datetime  # of the first interval
    width_seconds: int
    counts: list[int]  # messages sent in each interval, in order


def sent_timeline(
    session: Session, job_id: str, *, start: datetime, end: datetime, most_buckets: int
) -> Timeline | None:
    """How many of a job's messages were sent in each interval from ``start`` to ``end``, in at most
    ``most_buckets`` intervals of a round width; None before the first send. One pass over the job's
    rows: the interval of a send is computed by the database."""
    span = max((end - start).total_seconds(), 1)
    width = next((w for w in TIMELINE_WIDTHS if span / w < most_buckets - 1), TIMELINE_WIDTHS[-1])
    origin = start.timestamp() - start.timestamp() % width  # intervals start on round times: 12:00:05
    bucket = func.floor((_epoch_seconds(session, Recipient.sent_at) - origin) / width)
    rows = session.execute(
        select(bucket, func.count()).where(Recipient.job_id == job_id, Recipient.sent_at.is_not(None)).group_by(bucket)
    ).all()
    if not rows:
        return None
    last = int((end.timestamp() - origin) // width)
    counts = [0] * (last + 1)
    for index, count in rows:  # a send stamped outside the span (another host's clock) goes to its edge
        counts[min(max(int(index), 0), last)] += count
    return Timeline(start=datetime.fromtimestamp(origin, UTC), width_seconds=width, counts=counts)


def _epoch_seconds(session: Session, column: Any) -> Any:
    """Seconds since 1970 of a datetime column, with their fraction, in the database's own SQL."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date_part("epoch", column)  # a double; EXTRACT makes a slower numeric
    return (func.julianday(column) - 2440587.5) * 86400.0  # SQLite keeps them as ISO text


def failure_reasons(session: Session, job_id: str, *, limit: int) -> list[tuple[int | None, str | None, int]]:
    """A job's failures grouped by SMTP code and text, the most frequent first."""
    rows = session.execute(
        select(Recipient.last_error_code, Recipient.last_error, func.count().label("count"))
        .where(Recipient.job_id == job_id, Recipient.status == RecipientStatus.FAILED)
        .group_by(Recipient.last_error_code, Recipient.last_error)
        .order_by(func.count().desc(), Recipient.last_error_code)
        .limit(limit)
    )
    return [(code, text, count) for code, text, count in rows]


def release(
    session: Session, claimed: Sequence[ClaimedRecipient], lease: Lease, *, wake_at: datetime, now: datetime
) -> None:
    """Give claimed rows back unsent (shutdown, lease running out, rate limit): pending again, and
    the scheduler queues them at ``wake_at``. The claim does not count as an attempt."""
    if claimed:
        session.execute(
            update(Recipient)
            .where(_still_claimed(claimed, lease))
            .values(
                status=RecipientStatus.PENDING, attempts=Recipient.attempts - 1, lease_until=wake_at, updated_at=now
            )
        )


def end_claimed(
    session: Session,
    claimed: Sequence[ClaimedRecipient],
    lease: Lease,
    status: RecipientStatus,
    now: datetime,
    reason: str | None = None,
) -> int:
    """Claimed rows that will never be sent: their job was cancelled (or expired) meanwhile. How many."""
    if not claimed:
        return 0
    values: dict[str, Any] = {"status": status, "lease_until": None, "updated_at": now}
    if reason is not None:
        values["last_error"] = reason
    result = session.execute(update(Recipient).where(_still_claimed(claimed, lease)).values(**values))
    return int(result.rowcount)  # type: ignore[attr-defined]


def _still_claimed(claimed: Sequence[ClaimedRecipient], lease: Lease) -> Any:
    """The rows among ``claimed`` that their claim still owns (the caller holds ``lease.lock``)."""
    return and_(
        Recipient.id.in_([r.id for r in claimed]),
        Recipient.status == RecipientStatus.SENDING,
        Recipient.lease_until == lease.until,
    )


def end_leftovers(
    session: Session,
    job_id: str,
    status: RecipientStatus,
    now: datetime,
    *,
    reason: str | None = None,
) -> int:
    """For a cancelled or expired job: rows waiting (pending, deferred) or abandoned by a dead worker
    end in ``status`` (cancelled or expired); rows in flight finish first. How many ended."""
    waiting = or_(
        Recipient.status.in_([RecipientStatus.PENDING, RecipientStatus.DEFERRED]),
        and_(Recipient.status == RecipientStatus.SENDING, Recipient.lease_until < now),
    )
    query = update(Recipient).where(Recipient.job_id == job_id, waiting)
    values: dict[str, Any] = {"status": status, "lease_until": None, "updated_at": now}
    if reason is not None:
        values["last_error"] = reason
    result = session.execute(query.values(**values))
    return int(result.rowcount)  # type: ignore[attr-defined]


def job_status(session: Session, job_id: str) -> str | None:
    return session.scalar(select(Job.status).where(Job.id == job_id))


def cancel_job(session: Session, job_id: str, now: datetime) -> int | None:
    """Cancel a job that is not finished: rows not yet handed to a worker become cancelled. How many
    did; None when the job had finished (nothing done)."""
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.status.in_(UNFINISHED_JOB_STATUSES)).values(status=JobStatus.CANCELLED)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    return end_leftovers(session, job_id, RecipientStatus.CANCELLED, now)


def pause_job(session: Session, job_id: str) -> bool:
    """Pause a job that has not finished; its running batches give their rows back within a second."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_([JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.SENDING]))
        .values(status=JobStatus.PAUSED)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def expiry_reason(expires_at: datetime) -> str:
    return f"not sent: the job expired at {expires_at.isoformat()}"


def expire_job(session: Session, job_id: str, expires_at: datetime, now: datetime) -> int:
    """Past its expires_at, nothing of a job is sent any more: what waits ends expired (how many).

    A job that had not started (or was paused) becomes sending, so that it completes like any other
    once the messages still in flight, if any, have ended.
    """
    expired = end_leftovers(session, job_id, RecipientStatus.EXPIRED, now, reason=expiry_reason(expires_at))
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_([JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.PAUSED]))
        .values(status=JobStatus.SENDING)
    )
    return expired


def retry_failed(session: Session, job_id: str, now: datetime) -> int:
    """Queue the failed recipients of a completed job again; how many go again (0: nothing done)."""
    job = session.get(Job, job_id, with_for_update=True)
    # Checked under the lock: storage.retention makes a job expire before deleting its rows.
    if job is None or job.status != JobStatus.COMPLETED or (job.expires_at is not None and job.expires_at <= now):
        return 0
    result = session.execute(
        update(Recipient)
        .where(Recipient.job_id == job_id, Recipient.status == RecipientStatus.FAILED)
        .values(
            status=RecipientStatus.PENDING,
            attempts=0,
            lease_until=None,
            next_attempt_at=None,
            failure_unreported=False,
            updated_at=now,
        )
    )
    count = int(result.rowcount)  # type: ignore[attr-defined]
    if count:
        job.status = JobStatus.QUEUED
        job.finished_at = None
    return count


def complete_job_if_done(session: Session, job_id: str, now: datetime) -> str | None:
    """Finish the job when no recipient is left to send; its final status, only for the call that did it.

    A sending job becomes completed; a cancelled one keeps its status and gets its finish time.
    """
    # Rows still to be sent are exactly those with a lease (models.Recipient.lease_until): found
    # through a small partial index instead of scanning the job's sent rows after every batch.
    unfinished = exists().where(Recipient.job_id == job_id, Recipient.lease_until.is_not(None))
    final_status = case((Job.status == JobStatus.CANCELLED, JobStatus.CANCELLED.value), else_=JobStatus.COMPLETED.value)
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.status.in_([JobStatus.SENDING, JobStatus.CANCELLED]),
            Job.finished_at.is_(None),
            ~unfinished,
        )
        .values(
            status=final_status,
            finished_at=now,
        )
        .returning(Job.status)
    )
    return result.scalar_one_or_none()


# ---- the scheduler's sweep


def queue_due_scheduled_jobs(session: Session, now: datetime) -> list[str]:
    """Scheduled jobs whose send_at has come become queued; the caller queues their start."""
    result = session.execute(
        update(Job)
        .where(Job.status == JobStatus.SCHEDULED, Job.send_at <= now)
        .values(status=JobStatus.QUEUED)
        .returning(Job.id)
    )
    return list(result.scalars())


def expired_jobs(session: Session, now: datetime) -> list[tuple[str, datetime]]:
    """(id, expires_at) of the unfinished jobs whose expires_at has passed."""
    jobs = session.scalars(
        select(Job).where(Job.status.in_(UNFINISHED_JOB_STATUSES), Job.expires_at.is_not(None), Job.expires_at <= now)
    )
    return [(job.id, job.expires_at) for job in jobs if job.expires_at is not None]


def jobs_to_finish(session: Session) -> list[tuple[str, str]]:
    """(id, status) of the jobs that finish once nothing is left to send: sending or cancelled, and
    not finished yet."""
    rows = session.execute(
        select(Job.id, Job.status).where(
            Job.status.in_([JobStatus.SENDING, JobStatus.CANCELLED]), Job.finished_at.is_(None)
        )
    )
    return [(job_id, status) for job_id, status in rows]
