"""Finishing a job once nothing is left to send, and announcing it to its webhook."""

from __future__ import annotations

import logging

from email_service.services import Services
from email_service.storage import jobs, webhook_events
from email_service.storage.models import utcnow

log = logging.getLogger(__name__)


def finish_if_done(services: Services, job_id: str) -> str | None:
    """Complete (or close a cancelled) job with no recipient left to send; its final status, only for
    the call that finished it. The job's final event is written in the same transaction."""
    with services.sessions.begin() as session:
        now = utcnow()
        final_status = jobs.complete_job_if_done(session, job_id, now)
        announced = final_status is not None and webhook_events.record_job_finished(session, job_id, final_status, now)
    if final_status is not None:
        log.info("job %s %s", job_id, final_status)
    if announced and services.queue is not None:
        services.queue.deliver_events(job_id)
    return final_status
