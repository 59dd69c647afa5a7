"""The scheduler's sweep: queue what is due, end what expired, and wake workers when work is due.

The database says what is left to send; the broker only carries wake-ups (services.dispatch). A sweep
queues the scheduled jobs whose send_at has come; ends what expired jobs still had waiting; cancels
what a cancelled job still had waiting; finishes jobs with nothing left to send; tops up the wake-ups
waiting in the broker when work is due (deferred recipients whose retry time has come, rows given
back, the rows of a dead worker, a job accepted while the broker was down, wake-ups the broker lost);
queues the delivery of webhook events that are due; and forgets old idempotency keys.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from email_service import metrics
from email_service.services import Services, dispatch, idempotency
from email_service.services.completion import finish_if_done
from email_service.storage import jobs, webhook_events
from email_service.storage.models import JobStatus, RecipientStatus, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    jobs_queued: int  # scheduled jobs whose time came
    wake_ups: int
    jobs_finished: int
    jobs_with_events: int


def sweep(services: Services) -> SweepReport:
    assert services.queue is not None, "the scheduler runs with a task queue"
    settings = services.settings
    now = utcnow()
    with services.sessions.begin() as session:
        due = jobs.queue_due_scheduled_jobs(session, now)
        expired = sum(
            jobs.expire_job(session, job_id, expires_at, now) for job_id, expires_at in jobs.expired_jobs(session, now)
        )
        unfinished = jobs.jobs_to_finish(session)
        with_events = webhook_events.jobs_with_events_due(session, now)
        idempotency.forget_expired(session, settings.idempotency_hours)
    metrics.recipients_ended(RecipientStatus.EXPIRED, expired)
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
    wake_ups = dispatch.wake(services, dispatch.worker_threads(services.settings)) if dispatch.due_now(services) else 0
    report = SweepReport(len(due), wake_ups, finished, len(with_events))
    if any(vars(report).values()):
        log.info(
            "sweep: %d scheduled job(s) queued, %d wake-up(s) published, %d job(s) finished, %d with events due",
            *vars(report).values(),
        )
    return report
