"""The scheduler's sweep: put back in the queue whatever the broker lost or the workers dropped.

The database says what is left to send; the broker only carries pointers to it. A sweep queues
again the start of jobs still queued long after they were accepted, the batches holding deferred
recipients whose retry time has come, pending ones whose task vanished and sending ones whose
worker died; it cancels what a cancelled job still had waiting; and it finishes jobs with
nothing left to send. Tasks are idempotent, so queuing
one twice costs a no-op, never a second message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from ..storage import repository
from ..storage.models import JobStatus, utcnow
from . import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    jobs_restarted: int
    batches_queued: int
    jobs_finished: int


def sweep(services: Services) -> SweepReport:
    assert services.queue is not None, "the scheduler runs with a task queue"
    settings = services.settings
    now = utcnow()
    requeue_after = timedelta(seconds=settings.requeue_after)
    with services.sessions.begin() as session:
        stalled = repository.stalled_queued_jobs(session, now - requeue_after)
        batches = repository.take_due_batches(
            session, now=now, batch_size=settings.batch_size, dispatch_deadline=now + requeue_after
        )
        unfinished = repository.unfinished_jobs(session)
    for job_id in stalled:
        services.queue.start_job(job_id)
    for job_id, first, last in batches:
        services.queue.send_batch(job_id, first, last)
    finished = 0
    for job_id, status in unfinished:
        with services.sessions.begin() as session:
            if status == JobStatus.CANCELLED:  # rows deferred or abandoned after the cancel
                repository.cancel_leftovers(session, job_id, utcnow())
            final_status = repository.complete_job_if_done(session, job_id, utcnow())
        if final_status:
            finished += 1
            log.info("job %s %s", job_id, final_status)
    report = SweepReport(len(stalled), len(batches), finished)
    if stalled or batches or finished:
        log.info("sweep: %d job(s) restarted, %d batch(es) queued, %d job(s) finished", *vars(report).values())
    return report
