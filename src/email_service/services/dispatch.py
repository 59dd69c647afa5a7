"""Workers take their work from the database; the broker only wakes them.

A woken worker thread serves due work until none is left: it claims the recipients of the job whose
turn it is (storage.scheduling: transactional before bulk, then accounts and their jobs in turn), sends
them, and claims again. Which work goes next is thus decided at each claim, over the state every
process shares, so precedence, pause and cancel act at the next claim, on any number of hosts.

The broker carries only wake-ups, and never more than a worker host's threads of them waiting. The
intake wakes one for a new job; the thread whose claim starts a job wakes as many as the job's size
needs; a claim made while another job has work due wakes one; the scheduler's sweep tops them up when
work is due (deferred rows whose retry time came, rows given back, the rows of a dead worker) or the
broker lost them (restarted empty).

Claims are sized (services.claim_sizes) so that some thread of a process frees up every tenth of a
second whatever the relay's pace: a transactional message waits no longer than that behind bulk work.
"""

from __future__ import annotations

import logging
import math
import time

from email_service.config import Settings
from email_service.services import Services, deliver
from email_service.services.completion import finish_if_done
from email_service.services.deliver import Claim
from email_service.services.pacing import SlotPacer
from email_service.storage import scheduling
from email_service.storage.models import JobStatus, Lane, utcnow

log = logging.getLogger(__name__)

# A thread serves work at most this long, then hands over to a new wake-up: a task that runs for hours
# would outlive the broker's visibility timeout and be delivered twice.
LONGEST_SERVICE = 300.0


def serve(services: Services) -> int:
    """Serve due work until none is left, the process stops or LONGEST_SERVICE has passed: how many
    claims were sent. What a wake-up task does."""
    started, served = time.monotonic(), 0
    pacer = services.pacer
    while not services.stopping.is_set():
        if time.monotonic() - started > LONGEST_SERVICE:
            wake_for_new_work(services)  # the work goes on in a new task
            break
        claim = _next_claim(services, pacer)
        if claim is None:
            break
        if claim.claims_left:  # other threads serve the rest meanwhile (this claim is made: send it)
            wake_for_new_work(services, claim.claims_left)
        began = time.monotonic()
        deliver.send_claim(services, claim)
        services.claim_sizer.sent(len(claim.recipients), time.monotonic() - began)
        served += 1
    return served


def _next_claim(services: Services, pacer: SlotPacer | None) -> Claim | None:
    """The next claim to send; with a global rate, bulk work's slots are reserved before its claim
    (services.pacing), transactional work is claimed at once."""
    while not services.stopping.is_set():
        size = services.claim_sizer.size()
        claim, bulk_due = take_next(services, size, bulk=pacer is None)
        if claim is not None or not bulk_due:
            return claim
        assert pacer is not None
        slots = pacer.reserve(size)
        if slots is None:  # transactional work came first (or the process stops): claim it instead
            continue
        claim, _ = take_next(services, slots, bulk=True)
        if claim is None:
            pacer.give_back(slots)
        else:
            claim.prepaid = slots
        return claim
    return None


def take_next(services: Services, limit: int, *, bulk: bool = True) -> tuple[Claim | None, bool]:
    """Claim up to ``limit`` due recipients of the job whose turn it is (only of a transactional job
    unless ``bulk``): the claim, None when nothing is due, and whether bulk work is due. A queued job
    whose turn comes starts here. The job then moves on in its lane's round by what was claimed."""
    settings = services.settings
    started_empty: list[str] = []  # started with nothing to send (every recipient suppressed at intake)
    found: tuple[Claim | None, bool] = (None, False)
    turn: tuple[str, int, int] | None = None  # the job claimed from, where it counts from, how many it sends
    with services.readers() as reader:  # no write transaction, nor SQLite's write lock, when nothing is due
        order = scheduling.serving_order(scheduling.active_jobs(reader, utcnow()), largest_claim=settings.batch_size)
    if not order.jobs or (not bulk and order.jobs[0].lane != Lane.TRANSACTIONAL):
        return None, bool(order.jobs)
    with services.sessions.begin() as session:
        now = utcnow()  # after BEGIN, which may have waited for SQLite's write lock
        for index, job in enumerate(order.jobs):
            if job.lane != Lane.TRANSACTIONAL and not bulk:
                found = (None, True)
                break
            just_started = job.status == JobStatus.QUEUED
            if just_started:
                if not scheduling.start(session, job.id, now):
                    continue
                log.info("job %s started (%s lane)", job.id, job.lane)
            claim = deliver.claim(session, job.id, limit=limit, now=now, lease_seconds=settings.lease_seconds)
            if claim is None:
                if just_started:
                    started_empty.append(job.id)
                continue
            claim.claims_left = _claims_left(claim, just_started) + (index + 1 < len(order.jobs))
            found = (claim, False)
            if any(other.lane == job.lane and other.id != job.id for other in order.jobs):
                turn = (job.id, order.served_from(job), len(claim.recipients))
            break
    if turn is not None:  # a job alone in its lane has no one to take turns with: its threads skip this
        scheduling.move_on(services.engine, *turn)
    for job_id in started_empty:
        finish_if_done(services, job_id)
    return found


def _claims_left(claim: Claim, first: bool) -> int:
    """Claims of the same size still due in a job that has just started, as its size says: the threads its
    first claim wakes (woken threads go on claiming while work is due, and the sweep tops wake-ups up, so
    later claims wake no one, and the end of a job wakes no thread for nothing)."""
    taken = len(claim.recipients) + claim.suppressed
    if not first or taken < claim.limit:
        return 0
    return math.ceil(max(claim.job.total - taken, 0) / claim.limit)


def claims_for(services: Services, recipients: int) -> int:
    """How many claims (threads to wake) ``recipients`` due at once make, at the process's claim size."""
    return max(1, math.ceil(recipients / services.claim_sizer.size()))


def worker_threads(settings: Settings) -> int:
    """The sending threads of a worker host: at most this many wake-ups wait in the broker."""
    return settings.smtp_concurrency * settings.worker_processes


def wake(services: Services, wanted: int = 1) -> int:
    """Publish up to ``wanted`` wake-ups while fewer than a worker host's threads wait in the broker: how
    many were published. One question to the broker when enough wait."""
    assert services.queue is not None, "work is woken where a task queue is configured"
    missing = max(0, worker_threads(services.settings) - services.queue.waiting())
    count = min(missing, wanted)
    for _ in range(count):
        services.queue.wake()
    return count


def wake_for_new_work(services: Services, wanted: int = 1) -> None:
    """Wake ``wanted`` workers for work just committed or still due; when the broker does not answer, the
    scheduler's next sweep does it (the work is in the database)."""
    try:
        wake(services, wanted)
    except Exception:  # the broker is down: nothing is lost, the sweep wakes workers once it is back
        log.warning("no wake-up published (broker unreachable): the next sweep wakes the workers", exc_info=True)


def due_now(services: Services) -> bool:
    """Whether any work is due: a sweep wakes workers only then."""
    with services.readers() as session:
        return scheduling.work_due(session, utcnow())
