"""Job control: cancel, pause and resume a job, or send again to the failed recipients of a finished one."""

from __future__ import annotations

import logging

from email_service import metrics
from email_service.errors import Conflict
from email_service.services import Services
from email_service.services.completion import finish_if_done
from email_service.services.dispatch import claims_for, wake_for_new_work
from email_service.services.reports import find_job
from email_service.storage import jobs
from email_service.storage.models import UNFINISHED_JOB_STATUSES, JobStatus, Lane, RecipientStatus, utcnow

log = logging.getLogger(__name__)


def cancel(services: Services, job_id: str, account: str | None) -> None:
    """Recipients not yet handed to a worker become cancelled; sends in flight finish."""
    with services.sessions.begin() as session:
        status = find_job(session, job_id, account).status
        cancelled = jobs.cancel_job(session, job_id, utcnow())
        if cancelled is None:
            raise Conflict(f"job {job_id} is {status}: a finished job cannot be cancelled")
    metrics.recipients_ended(RecipientStatus.CANCELLED, cancelled)
    log.info("job %s cancelled", job_id)
    finish_if_done(services, job_id)  # finished now if nothing was in flight


def pause(services: Services, job_id: str, account: str | None) -> None:
    """Stop sending: running batches give their recipients back within a second; nothing is lost."""
    with services.sessions.begin() as session:
        status = find_job(session, job_id, account).status
        if not jobs.pause_job(session, job_id):
            raise Conflict(f"job {job_id} is {status}: only a scheduled, queued or sending job can be paused")
    log.info("job %s paused", job_id)


def resume(services: Services, job_id: str, account: str | None) -> None:
    """Go on where a paused job stopped: a job that had not started goes back to waiting for its
    send_at or to the queue; a started one is sending again, its recipients due where they were."""
    with services.sessions.begin() as session:
        job = find_job(session, job_id, account, for_update=True)
        if job.status != JobStatus.PAUSED:
            raise Conflict(f"job {job_id} is {job.status}: only a paused job can be resumed")
        now = utcnow()
        if job.started_at is None:
            job.status = JobStatus.SCHEDULED if job.send_at is not None and job.send_at > now else JobStatus.QUEUED
        else:
            job.status = JobStatus.SENDING
        status, total = job.status, job.total
    if status != JobStatus.SCHEDULED:
        wake_for_new_work(services, claims_for(services, total))
    log.info("job %s resumed (%s)", job_id, status)


def set_lane(services: Services, job_id: str, account: str | None, lane: Lane) -> None:
    """Move an unfinished job to another lane: its next claims are made in that lane."""
    with services.sessions.begin() as session:
        job = find_job(session, job_id, account, for_update=True)
        if job.status not in UNFINISHED_JOB_STATUSES:
            raise Conflict(f"job {job_id} is {job.status}: a finished job has no lane to change")
        if job.lane != lane:
            job.lane, job.served = lane, None  # its place was in the other lane's round: it starts afresh
    log.info("job %s moved to the %s lane", job_id, lane)


def retry_failed(services: Services, job_id: str, account: str | None) -> int:
    """Queue the failed recipients of a completed job again; how many."""
    with services.sessions.begin() as session:
        job = find_job(session, job_id, account)
        status, now = job.status, utcnow()
        if job.expires_at is not None and job.expires_at <= now:
            raise Conflict(f"job {job_id} expired at {job.expires_at.isoformat()}: nothing of it may be sent again")
        count = jobs.retry_failed(session, job_id, now)
        if not count:
            raise Conflict(f"job {job_id} is {status}: only a completed job with failed recipients can be retried")
    wake_for_new_work(services, claims_for(services, count))
    log.info("job %s: %d failed recipient(s) queued again", job_id, count)
    return count
