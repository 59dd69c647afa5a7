"""The scheduler's sweep: start what is due and put back in the queue whatever the broker lost or the
workers dropped.

The database says what is left to send; the broker only carries pointers to it. A sweep starts the
scheduled jobs whose send_at has come; ends what expired jobs still had waiting; queues again the
start of jobs still queued long after they should have started, the batches holding deferred
recipients whose retry time has come, pending ones whose task vanished and sending ones whose
worker died; cancels what a cancelled job still had waiting; finishes jobs with nothing left to
send; queues the delivery of webhook events that are due; and forgets old idempotency keys. Tasks
are idempotent, so queuing one twice costs a no-op, never a second message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from email_service import metrics
from email_service.services import Services, idempotency
from email_service.services.completion import finish_if_done
from email_service.storage import jobs, webhook_events
from email_service.storage.models import JobStatus, RecipientStatus, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    jobs_started: int
    jobs_restarted: int
    batches_queued: int
    jobs_finished: int
    jobs_with_events: int


def sweep(services: Services) -> SweepReport:
    assert services.queue is not None, "the scheduler runs with a task queue"
    settings = services.settings
    now = utcnow()
    requeue_after = timedelta(seconds=settings.requeue_after)
    with services.sessions.begin() as session:
        due = jobs.queue_due_scheduled_jobs(session, now)
        expired = sum(
            jobs.expire_job(session, job_id, expires_at, now) for job_id, expires_at in jobs.expired_jobs(session, now)
        )
        stalled = jobs.stalled_queued_jobs(session, now - requeue_after)
        batches = jobs.take_due_batches(
            session, now=now, batch_size=settings.batch_size, dispatch_deadline=now + requeue_after
        )
        unfinished = jobs.jobs_to_finish(session)
        with_events = webhook_events.jobs_with_events_due(session, now)
        idempotency.forget_expired(session, settings.idempotency_hours)
    metrics.recipients_ended(RecipientStatus.EXPIRED, expired)
    for job_id in due + stalled:
        services.queue.start_job(job_id)
    for job_id, first, last in batches:
        services.queue.send_batch(job_id, first, last)
    finished = 0
    for job_id, status in unfinished:
        if status == JobStatus.CANCELLED:  # rows deferred or abandoned after the cancel
            with services.sessions.begin() as session:
                cancelled = jobs.end_leftovers(session, job_id, RecipientStatus.CANCELLED, utcnow())
            metrics.recipients_ended(RecipientStatus.CANCELLED, cancelled)
        if finish_if_done(services, job_id):
            finished += 1
    for job_id in with_events:
        services.queue.deliver_events(job_id)
    report = SweepReport(len(due), len(stalled), len(batches), finished, len(with_events))
    if any(vars(report).values()):
        log.info(
            "sweep: %d job(s) started, %d restarted, %d batch(es) queued, %d job(s) finished, %d with events due",
            *vars(report).values(),
        )
    return report
