"""Workers take their work from the database; the broker only wakes them.

A woken worker thread serves due work until none is left: it claims the recipients of the job whose
turn it is (storage.scheduling: transactional before bulk, then accounts and their jobs in turn), sends
them, and claims again. Which work goes next is thus decided at each claim, over the state every
process shares, so precedence, pause and cancel act at the next claim, on any number of hosts.

The broker carries only wake-ups, and never more than a worker process's threads of them waiting: a
thread that claims work while more is due wakes another; the intake wakes one for a new job; the
scheduler's sweep tops them up when work is due (deferred rows whose retry time came, rows given
back, the rows of a dead worker) or the broker lost them (restarted empty).

Claims are sized (services.claim_sizes) so that some thread of a process frees up every tenth of a
second whatever the relay's pace: a transactional message waits no longer than that behind bulk work.
"""

from __future__ import annotations

import logging
import time

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
    with services.claim_sizer.serving():
        while not services.stopping.is_set():
            if time.monotonic() - started > LONGEST_SERVICE:
                wake_for_new_work(services)  # the work goes on in a new task
                break
            claim = _next_claim(services, pacer)
            if claim is None:
                break
            if claim.more_due:
                wake_for_new_work(services)  # another thread serves the rest meanwhile (it is claimed: send it)
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
    whose turn comes starts here."""
    settings = services.settings
    started_empty: list[str] = []  # started with nothing to send (every recipient suppressed at intake)
    found: tuple[Claim | None, bool] = (None, False)
    with services.sessions.begin() as session:
        now = utcnow()  # after BEGIN, which may have waited for SQLite's write lock
        order = scheduling.serving_order(scheduling.active_jobs(session, now))
        for index, job in enumerate(order):
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
            claim.more_due = index + 1 < len(order) or len(claim.recipients) + claim.suppressed >= claim.limit
            found = (claim, False)
            break
    for job_id in started_empty:
        finish_if_done(services, job_id)
    return found


def wake(services: Services, *, top_up: bool = False) -> int:
    """Publish a wake-up (with ``top_up``, as many as missing) while fewer than a worker process's threads
    wait in the broker: how many were published. One question to the broker when enough wait."""
    assert services.queue is not None, "work is woken where a task queue is configured"
    missing = max(0, services.settings.smtp_concurrency - services.queue.waiting())
    count = missing if top_up else min(missing, 1)
    for _ in range(count):
        services.queue.wake()
    return count


def wake_for_new_work(services: Services) -> None:
    """Wake a worker for work just committed or still due; when the broker does not answer, the scheduler's
    next sweep does it (the work is in the database)."""
    try:
        wake(services)
    except Exception:  # the broker is down: nothing is lost, the sweep wakes workers once it is back
        log.warning("no wake-up published (broker unreachable): the next sweep wakes the workers", exc_info=True)


def due_now(services: Services) -> bool:
    """Whether any work is due: a sweep wakes workers only then."""
    with services.readers() as session:
        return scheduling.work_due(session, utcnow())
