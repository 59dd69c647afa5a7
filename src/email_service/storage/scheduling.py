"""Which work goes next, decided over the database: the jobs with recipients due, in the order they are
served, and the claim of a job's due recipients.

Transactional jobs go before bulk ones. Within a lane, accounts take turns, then the jobs of each
account: the account whose jobs were served least recently goes next, and of its jobs the one served
least recently (round-robin). Claims are of about the same size (services.dispatch sizes them), so
taking turns shares the sending rate equally, without keeping any state but one time per job; an
account gains no share by splitting a send into many jobs, since its turn is one among the accounts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import cast

from sqlalchemy import Table, and_, case, exists, func, or_, select, update
from sqlalchemy.orm import Session

from email_service.storage.models import ClaimedRecipient, Job, JobStatus, Lane, Recipient, RecipientStatus

LANE_ORDER = (Lane.TRANSACTIONAL, Lane.BULK)
_NEVER = datetime.min.replace(tzinfo=UTC)  # served before anything else


@dataclass(frozen=True)
class ActiveJob:
    """A job that is sending, or queued and due to start, as the choice of the next work sees it."""

    id: str
    account_id: str | None
    lane: str
    status: str
    served_at: datetime | None
    created_at: datetime
    due: bool  # has recipients to claim now (or, queued, may start now)


def active_jobs(session: Session, now: datetime) -> list[ActiveJob]:
    """Every sending job, and every queued one due to start, whether it has recipients due now."""
    due_rows = exists().where(
        Recipient.job_id == Job.id, Recipient.lease_until.is_not(None), Recipient.lease_until <= now
    )
    startable = and_(Job.status == JobStatus.QUEUED, func.coalesce(Job.send_at, Job.created_at) <= now)
    unexpired = or_(Job.expires_at.is_(None), Job.expires_at > now)
    due = case((startable, True), else_=due_rows)
    rows = session.execute(
        select(Job.id, Job.account_id, Job.lane, Job.status, Job.served_at, Job.created_at, due).where(
            Job.status.in_([JobStatus.QUEUED, JobStatus.SENDING]), unexpired
        )
    )
    return [
        ActiveJob(id_, account, lane, status, served, created, bool(due))
        for id_, account, lane, status, served, created, due in rows
    ]


def serving_order(jobs: Sequence[ActiveJob]) -> list[ActiveJob]:
    """The jobs with work due, the one to serve first first: by lane, then the account's turn, then the job's."""
    last_turn: dict[tuple[str, str], datetime] = {}  # (lane, account): its jobs' last service, due or not
    for job in jobs:
        key = (job.lane, job.account_id or "")
        last_turn[key] = max(last_turn.get(key, _NEVER), job.served_at or _NEVER)

    def turn(job: ActiveJob) -> tuple[int, datetime, datetime, datetime]:
        rank = LANE_ORDER.index(Lane(job.lane)) if job.lane in LANE_ORDER else len(LANE_ORDER)
        return rank, last_turn[(job.lane, job.account_id or "")], job.served_at or _NEVER, job.created_at

    return sorted((job for job in jobs if job.due), key=turn)


def start(session: Session, job_id: str, now: datetime) -> bool:
    """Move a queued job to sending and make its pending rows due; False when it was not queued (another
    worker started it, or it was paused or cancelled meanwhile)."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.SENDING, started_at=now, finished_at=None)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    session.execute(
        update(Recipient)
        .where(Recipient.job_id == job_id, Recipient.status == RecipientStatus.PENDING)
        .values(lease_until=now)
    )
    return True


def claim_due(
    session: Session, job_id: str, *, limit: int, now: datetime, lease_until: datetime
) -> list[ClaimedRecipient]:
    """Take up to ``limit`` of the job's recipients that are due, oldest first: pending, deferred whose
    retry time has come, or sending whose lease ran out (their worker died). The job's served time
    becomes ``now`` when any is taken.

    Concurrent claimers get disjoint rows: on PostgreSQL the rows are picked ``FOR UPDATE SKIP LOCKED``
    (a second claimer skips them instead of waiting), on SQLite the transaction holds the database's
    write lock (BEGIN IMMEDIATE).
    """
    due = and_(
        Recipient.status.in_([RecipientStatus.PENDING, RecipientStatus.DEFERRED, RecipientStatus.SENDING]),
        Recipient.lease_until <= now,
    )
    # Picked once, in a materialized CTE: as a plain IN (subquery) PostgreSQL may run the subquery again
    # for each row it updates, each run skipping the rows the runs before locked, and claim far more than
    # ``limit`` (a whole job at once).
    picked = (
        select(Recipient.id)
        .where(Recipient.job_id == job_id, Recipient.lease_until.is_not(None), due)
        .order_by(Recipient.lease_until)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("picked")
        .prefix_with("MATERIALIZED")
    )
    table = cast(Table, Recipient.__table__)  # Core, not the ORM: the rows come back as ClaimedRecipient
    result = session.execute(
        update(table)
        .where(table.c.id == picked.c.id, due)
        .values(
            status=RecipientStatus.SENDING,
            lease_until=lease_until,
            attempts=table.c.attempts + 1,
            updated_at=now,
        )
        .returning(*(table.c[field.name] for field in fields(ClaimedRecipient)))
    )
    claimed = sorted((ClaimedRecipient(*row) for row in result), key=attrgetter("position"))
    if claimed:
        session.execute(update(Job).where(Job.id == job_id).values(served_at=now))
    return claimed


@dataclass(frozen=True)
class Turn:
    """Where a job with work to send stands among the work due now."""

    share: float  # of the sending rate its turns get while the work due now stays as it is (0: it waits)
    ahead: int  # recipients of transactional jobs due now, before it (a bulk job waits for them)


def turn_of(session: Session, job: Job, now: datetime) -> Turn:
    """The job's share of the sending rate and the transactional work before it. Accounts with work due in
    its lane share the rate equally, and its account's share is split among its jobs with work due."""
    due = [active for active in active_jobs(session, now) if active.due]
    share = shares(due).get(job.id, 0.0)
    transactional_first = job.lane != Lane.TRANSACTIONAL and any(active.lane == Lane.TRANSACTIONAL for active in due)
    # (The recipients of a transactional job not started yet are not counted before its first claim.)
    return Turn(share, due_by_lane(session, now)[Lane.TRANSACTIONAL] if transactional_first else 0)


def shares(due: Sequence[ActiveJob]) -> dict[str, float]:
    """The share of the sending rate of each job of ``due`` (jobs with work due): accounts with work due
    in a lane share it equally, and each account's share is split among its jobs; a bulk job gets none
    while a transactional job has work due."""
    accounts: dict[str, set[str | None]] = {}
    siblings: Counter[tuple[str, str | None]] = Counter()
    for job in due:
        accounts.setdefault(job.lane, set()).add(job.account_id)
        siblings[(job.lane, job.account_id)] += 1
    bulk_waits = Lane.TRANSACTIONAL in accounts
    return {
        job.id: 0.0
        if bulk_waits and job.lane != Lane.TRANSACTIONAL
        else 1 / len(accounts[job.lane]) / siblings[(job.lane, job.account_id)]
        for job in due
    }


def lane_due(session: Session, now: datetime, lane: Lane) -> bool:
    """Whether a job of ``lane`` has recipients due, or is queued and due to start."""
    return any(job.due and job.lane == lane for job in active_jobs(session, now))


def work_due(session: Session, now: datetime) -> bool:
    """Whether any job has recipients due, or is queued and due to start: workers should be awake."""
    return any(job.due for job in active_jobs(session, now))


def due_by_lane(session: Session, now: datetime) -> dict[str, int]:
    """Recipients of sending jobs due now, by lane (every lane present, zeros included)."""
    counts = {lane.value: 0 for lane in Lane}
    rows = session.execute(
        select(Job.lane, func.count())
        .select_from(Recipient)
        .join(Job, Job.id == Recipient.job_id)
        .where(Recipient.lease_until.is_not(None), Recipient.lease_until <= now, Job.status == JobStatus.SENDING)
        .group_by(Job.lane)
    )
    counts.update({lane: count for lane, count in rows})
    return counts
