"""Job control: cancel a job, or send again to the failed recipients of a finished one."""

from __future__ import annotations

import logging

from ..errors import Conflict
from ..storage import repository
from ..storage.models import utcnow
from . import Services
from .reports import find_job

log = logging.getLogger(__name__)


def cancel(services: Services, job_id: str) -> None:
    """Recipients not yet handed to a worker become cancelled; sends in flight finish."""
    with services.sessions.begin() as session:
        status = find_job(session, job_id).status
        now = utcnow()
        if not repository.cancel_job(session, job_id, now):
            raise Conflict(f"job {job_id} is {status}: only a queued or sending job can be cancelled")
        repository.complete_job_if_done(session, job_id, now)  # finished now if nothing was in flight
    log.info("job %s cancelled", job_id)


def retry_failed(services: Services, job_id: str) -> int:
    """Queue the failed recipients of a completed job again; how many."""
    with services.sessions.begin() as session:
        status = find_job(session, job_id).status
        count = repository.retry_failed(session, job_id, utcnow())
        if not count:
            raise Conflict(f"job {job_id} is {status}: only a completed job with failed recipients can be retried")
    assert services.queue is not None
    services.queue.start_job(job_id)
    log.info("job %s: %d failed recipient(s) queued again", job_id, count)
    return count
