"""Reading jobs and their recipients' outcomes, as callers follow them, and the work waiting overall."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from email_service.errors import NotFound
from email_service.message.mime import message_id_for
from email_service.services import Services
from email_service.storage import bounces, jobs, scheduling
from email_service.storage.models import (
    TERMINAL_RECIPIENT_STATUSES,
    Bounce,
    Job,
    JobStatus,
    Recipient,
    RecipientStatus,
    utcnow,
)


@dataclass(frozen=True)
class JobReport:
    job: Job
    counts: dict[str, int]  # every recipient status, zeros included; they add up to the total

    @property
    def current(self) -> int:
        """Recipients whose outcome is final."""
        return sum(self.counts[status] for status in TERMINAL_RECIPIENT_STATUSES)

    @property
    def progress(self) -> float:
        return round(self.current / self.job.total, 4) if self.job.total else 1.0


@dataclass(frozen=True)
class RecipientReport:
    recipient: Recipient
    message_id: str
    bounce: Bounce | None = None  # the latest bounce or complaint about its message, if any


def find_job(session: Session, job_id: str, account: str | None, *, for_update: bool = False) -> Job:
    """The job, if ``account`` may see it: with authentication on, only the keys of the account that created
    it may (another account gets the same 404 as for a job that does not exist); ``account`` None sees every
    job (authentication off, or an operator in the dashboard)."""
    job = session.get(Job, job_id, with_for_update=for_update)
    if job is None or (account is not None and job.account_id != account):
        raise NotFound(f"no job {job_id!r}", [{"field": "id", "reason": "unknown job id"}])
    return job


def job(services: Services, job_id: str, account: str | None) -> Job:
    """The job alone, without the counts (which read every recipient row)."""
    with services.readers() as session:
        return find_job(session, job_id, account)


def job_report(services: Services, job_id: str, account: str | None) -> JobReport:
    with services.readers() as session:
        job = find_job(session, job_id, account)
        return JobReport(job, jobs.count_by_status(session, [job.id])[job.id])


@dataclass(frozen=True)
class QueueEstimate:
    """A job still to send, among the work waiting."""

    lane: str
    waiting: int  # its recipients still to send
    share: float  # of the sending rate its turns get now (0: it waits for transactional work)
    ahead: int  # transactional recipients due before it
    estimated_seconds: float | None  # to send what waits, at its share of SEND_RATE; null without one


def queue_estimate(services: Services, report: JobReport) -> QueueEstimate | None:
    """Where a queued or sending job stands; None for a job that waits for nothing (finished, paused,
    scheduled)."""
    job = report.job
    if job.status not in (JobStatus.QUEUED, JobStatus.SENDING):
        return None
    counts = report.counts
    waiting = sum(counts[status] for status in (RecipientStatus.PENDING, RecipientStatus.DEFERRED))
    waiting += counts[RecipientStatus.SENDING]
    with services.readers() as session:
        turn = scheduling.turn_of(session, job, utcnow())
    rate = services.settings.send_rate
    estimate = None
    if rate and turn.share:
        estimate = round(waiting / (turn.share * rate), 1)
    elif rate:
        estimate = round((turn.ahead + waiting) / rate, 1)  # the lane before it drains, then it alone
    return QueueEstimate(job.lane, waiting, round(turn.share, 4), turn.ahead, estimate)


@dataclass(frozen=True)
class QueuedJob:
    """A job with work due, in its lane's serving order."""

    job: Job
    share: float  # of the sending rate its turns get now (0: it waits for transactional work)
    waiting: int  # its recipients still to send (storage.jobs.waiting_of)


@dataclass(frozen=True)
class LaneQueue:
    """One lane's work: its totals over every account, and the jobs with work due a viewer may see."""

    lane: str
    due: int  # recipients of sending jobs due now
    waiting: int  # recipients still to send: of started jobs, and of queued jobs not started yet
    jobs: list[QueuedJob]  # with work due, the next served first; at most the limit asked
    more: int  # jobs with work due beyond those listed
    not_due: int  # unfinished jobs with nothing due now: being sent, or deferred until a retry


def queue_overview(services: Services, account: str | None, *, limit: int) -> list[LaneQueue]:
    """Each lane, transactional first: its totals, and the jobs ``account`` may see (None: every
    account's) with work due, in the order workers serve them."""
    with services.readers() as session:
        now = utcnow()
        active = scheduling.active_jobs(session, now)
        due_now = scheduling.due_by_lane(session, now)
        waiting = jobs.waiting_by_lane(session)
        order = scheduling.serving_order(active, largest_claim=services.settings.batch_size).jobs
        shares = scheduling.shares(order)
        visible = [job for job in active if account is None or job.account_id == account]
        visible_ids = {job.id for job in visible}
        shown = {
            lane: [job for job in order if job.lane == lane and job.id in visible_ids] for lane in scheduling.LANE_ORDER
        }
        listed = [job.id for lane_jobs in shown.values() for job in lane_jobs[:limit]]
        found = jobs.jobs_by_id(session, listed)
        counts = jobs.waiting_of(session, listed)
    return [
        LaneQueue(
            lane=lane,
            due=due_now[lane],
            waiting=sum(waiting[lane].values()),
            jobs=[QueuedJob(found[job.id], round(shares[job.id], 4), counts[job.id]) for job in shown[lane][:limit]],
            more=max(len(shown[lane]) - limit, 0),
            not_due=sum(job.lane == lane and not job.due for job in visible),
        )
        for lane in scheduling.LANE_ORDER
    ]


def recent_jobs(
    services: Services,
    account: str | None,
    *,
    limit: int,
    before: str | None,
    status: str | None = None,
    tag: str | None = None,
) -> list[JobReport]:
    """The jobs ``account`` may see, newest first, optionally of one status or tag; ``before`` is the
    last job id of the previous page."""
    with services.readers() as session:
        previous = find_job(session, before, account) if before else None
        found = jobs.list_jobs(session, account, limit=limit, before=previous, status=status, tag=tag)
        counts = jobs.count_by_status(session, [job.id for job in found])
    return [JobReport(job, counts[job.id]) for job in found]


def recipient_page(
    services: Services,
    job_id: str,
    account: str | None,
    *,
    status: str | None,
    after: int | None,
    limit: int,
    address_part: str | None = None,
) -> list[RecipientReport]:
    """A job's recipients in order, optionally of one status or whose address contains ``address_part``,
    after a position."""
    with services.readers() as session:
        job = find_job(session, job_id, account)
        recipients = jobs.list_recipients(
            session, job.id, status=status, after=after, limit=limit, address_part=address_part
        )
        latest = bounces.latest_for(session, [r.id for r in recipients])
    secret = services.settings.bounce_secret.get_secret_value()
    return [
        RecipientReport(r, message_id_for(job.id, r.position, job.sender, secret), latest.get(r.id)) for r in recipients
    ]


def sent_timeline(services: Services, job_id: str, account: str | None, *, most_buckets: int) -> jobs.Timeline | None:
    """A job's messages sent per interval, from when it could start (its send_at, or its creation) to
    when it finished, or now; None before the first send."""
    with services.readers() as session:
        job = find_job(session, job_id, account)
        start = job.send_at or job.created_at
        end = max(job.finished_at or utcnow(), start)
        return jobs.sent_timeline(session, job.id, start=start, end=end, most_buckets=most_buckets)


@dataclass(frozen=True)
class FailureReason:
    smtp_code: int | None
    text: str | None
    count: int  # recipients that failed with this code and text


def failure_reasons(services: Services, job_id: str, account: str | None, *, limit: int) -> list[FailureReason]:
    """Why a job's recipients failed, the most frequent reason first."""
    with services.readers() as session:
        job = find_job(session, job_id, account)
        return [FailureReason(*row) for row in jobs.failure_reasons(session, job.id, limit=limit)]


@dataclass(frozen=True)
class WaitingWork:
    """What waits, over every job."""

    recipients: dict[str, int]  # of started jobs still to send, by status (pending, deferred, sending)
    jobs: dict[str, int]  # unfinished, by status
    lanes: dict[str, dict[str, int]]  # still to send, by lane then stage (storage.jobs.waiting_by_lane)


def waiting_work(services: Services) -> WaitingWork:
    """Cheap enough for every metrics scrape: each count reads what waits, not the tables."""
    with services.readers() as session:
        return WaitingWork(
            jobs.waiting_recipients(session), jobs.unfinished_jobs(session), jobs.waiting_by_lane(session)
        )
