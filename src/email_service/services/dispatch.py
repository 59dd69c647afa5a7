"""Starting a job: mark it sending and cut it into batches of BATCH_SIZE positions, one task each."""

from __future__ import annotations

import logging
from datetime import timedelta

from email_service.services import Services
from email_service.storage import jobs
from email_service.storage.models import utcnow

log = logging.getLogger(__name__)


def batch_ranges(total: int, batch_size: int) -> list[tuple[int, int]]:
    """The [first, last) position ranges that cover a job of ``total`` recipients."""
    return [(first, min(first + batch_size, total)) for first in range(0, total, batch_size)]


def start_job(services: Services, job_id: str) -> None:
    """Enqueue every batch of a queued job; a job already started is left alone (idempotent)."""
    assert services.queue is not None, "start_job runs where a task queue is configured"
    with services.sessions.begin() as session:
        job = jobs.get_job(session, job_id)
        if job is None:
            log.warning("job %s to start does not exist", job_id)
            return
        now = utcnow()
        deadline = now + timedelta(seconds=services.settings.requeue_after)
        if not jobs.mark_job_sending(session, job_id, now, deadline):
            log.info("job %s already %s; not started again", job_id, job.status)
            return
        total = job.total
    log.info("job %s started: %d batches", job_id, enqueue_batches(services, job_id, total))


def enqueue_batches(services: Services, job_id: str, total: int) -> int:
    """Queue a task for every batch of the job (a batch with nothing due claims nothing); how many."""
    assert services.queue is not None
    ranges = batch_ranges(total, services.settings.batch_size)
    with services.dispatch_gate.publishing():
        for first, last in ranges:
            services.queue.send_batch(job_id, first, last)
    return len(ranges)
