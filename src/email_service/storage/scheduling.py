"""Which work goes next, decided over the database: the jobs with recipients due, in the order they are
served, and the claim of a job's due recipients.

Transactional jobs go before bulk ones. Within a lane, accounts take turns, then the jobs of each
account, counted in recipients (a fair queue): each job keeps its place in its lane's round,
``jobs.served``, and a claim of n recipients moves the job to its account's place plus n. The account
furthest behind goes next (its place is that of its job furthest ahead), and of its jobs the one
furthest behind. Claims differ in size (services.claim_sizes, the rate's slots), so counting
recipients, not turns, is what shares the rate equally; an account gains nothing by splitting a send
into many jobs, since all of them move its one place.

An account new to the lane, or whose jobs had nothing due while others were served, counts from a
couple of claims behind the account furthest ahead: it goes first for that much, then takes turns,
instead of being sent everything until it has caught up.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from operator import attrgetter
from typing import cast

from sqlalchemy import Engine, Table, and_, case, exists, func, or_, select, text, update
from sqlalchemy.orm import Session

from email_service.storage.models import ClaimedRecipient, Job, JobStatus, Lane, Recipient, RecipientStatus

LANE_ORDER = (Lane.TRANSACTIONAL, Lane.BULK)
_NEW = -(2**62)  # the place of a job never served: before every other


@dataclass(frozen=True)
class ActiveJob:
    """A job that is sending, or queued and due to start, as the choice of the next work sees it."""

    id: str
    account_id: str | None
    lane: str
    status: str
    served: int | None  # its place in its lane's round (None: never served)
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
        select(Job.id, Job.account_id, Job.lane, Job.status, Job.served, Job.created_at, due).where(
            Job.status.in_([JobStatus.QUEUED, JobStatus.SENDING]), unexpired
        )
    )
    return [
        ActiveJob(id_, account, lane, status, served, created, bool(due))
        for id_, account, lane, status, served, created, due in rows
    ]


# How far behind the accounts furthest ahead an account may count, in claims of the largest size: an account
# that had nothing due while others were served, or is new to the lane, is first for this much, not until it
# has caught up with all they were sent.
LEAD_CLAIMS = 2


@dataclass(frozen=True)
class ServingOrder:
    """The jobs with work due, the one to serve first first, and where each account stands in its lane."""

    jobs: list[ActiveJob]
    _places: dict[tuple[str, str | None], int]  # (lane, account) -> its place in the lane's round

    def served_from(self, job: ActiveJob) -> int:
        """Where a claim of ``job`` counts from: its account's place (the claim adds its recipients)."""
        return self._places[(job.lane, job.account_id)]


def serving_order(jobs: Sequence[ActiveJob], *, largest_claim: int) -> ServingOrder:
    """Order the jobs with work due: by lane, then their account's place, then their own (a job not started
    first). An account's place is its furthest job's, raised to LEAD_CLAIMS largest claims behind the
    account furthest ahead among those with work due in its lane. An account whose jobs were sent only while
    alone in their lane has no place (no one to take turns with: see services.dispatch): it counts as level
    with the account furthest behind (level with the furthest ahead, it would get a turn only when every
    other had caught up)."""
    furthest: dict[tuple[str, str | None], int] = {}  # accounts with work due -> their furthest job's place
    served_alone: set[tuple[str, str | None]] = set()
    for job in jobs:
        key = (job.lane, job.account_id)
        if job.due:
            furthest.setdefault(key, _NEW)
    for job in jobs:  # due or not: an account's jobs with nothing due now were served too
        key = (job.lane, job.account_id)
        if key in furthest and job.served is not None:
            furthest[key] = max(furthest[key], job.served)
        elif key in furthest and job.status == JobStatus.SENDING:
            served_alone.add(key)
    ahead: dict[str, int] = {}  # lane -> the place of its account furthest ahead (0: none served yet)
    behind: dict[str, int] = {}  # lane -> the place of its account furthest behind, of those with one
    for (lane, _), place in furthest.items():
        ahead[lane] = max(ahead.get(lane, 0), place)
        if place != _NEW:
            behind[lane] = min(behind.get(lane, place), place)
    lowest = {lane: max(0, place - LEAD_CLAIMS * largest_claim) for lane, place in ahead.items()}
    places = {
        key: max(behind.get(key[0], 0), lowest[key[0]])
        if place == _NEW and key in served_alone
        else max(place, lowest[key[0]])
        for key, place in furthest.items()
    }

    def turn(job: ActiveJob) -> tuple[int, int, int, datetime]:
        rank = LANE_ORDER.index(Lane(job.lane)) if job.lane in LANE_ORDER else len(LANE_ORDER)
        own = job.served if job.served is not None else _NEW - (job.status == JobStatus.QUEUED)
        return rank, places[(job.lane, job.account_id)], own, job.created_at

    return ServingOrder(sorted((job for job in jobs if job.due), key=turn), places)


def move_on(engine: Engine, job_id: str, served_from: int, count: int) -> None:
    """A claim of ``count`` recipients moves the job on in its lane's round: to ``served_from`` (its
    account's place, ServingOrder.served_from) plus ``count``, or on from its own place if further (claims
    made at once, by several threads, all count).

    Apart from the claim's transaction (a claim locks no job row once it holds recipients' rows: cancel
    locks them in the other order), and on PostgreSQL as one statement in autocommit: the row is locked
    only while the statement runs, so the threads sending one big job hardly wait for each other.
    """
    place = case((Job.served > served_from, Job.served), else_=served_from)
    statement = update(Job).where(Job.id == job_id).values(served=place + count)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(statement)
    else:
        with engine.begin() as connection:  # SQLite: under its write lock (BEGIN IMMEDIATE)
            connection.execute(statement)


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
    retry time has come, or sending whose lease ran out (their worker died). The caller then moves the
    job on in its lane's round (move_on), in a transaction of its own.

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
    _read_in_index_order(session)
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
    return sorted((ClaimedRecipient(*row) for row in result), key=attrgetter("position"))


def _read_in_index_order(session: Session) -> None:
    """Disable PostgreSQL's sorts for the rest of the transaction, for a claim to read its rows in the
    index's order (the claim's other queries read a few rows by key: no plan of theirs sorts).

    A job's id is in no table statistics until the next ANALYZE, so for a job just accepted PostgreSQL
    estimates a handful of due rows, and picks by reading and sorting all of them (60 ms a claim for a
    job of 200,000) instead of reading the first ``limit`` of its (job_id, lease_until) index (0.1 ms).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL enable_sort = off"))


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
