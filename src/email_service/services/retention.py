"""Retention: delete the jobs that finished before a cutoff, with their recipients, attachments and
webhook events, a bounded number of rows per transaction so that no table stays locked for long."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from email_service.storage import retention
from email_service.storage.models import utcnow

log = logging.getLogger(__name__)

JOBS_PER_ROUND = 100
ROWS_PER_TRANSACTION = 5000


def count_finished_jobs(sessions: sessionmaker[Session], cutoff: datetime) -> dict[str, int]:
    """What ``delete_finished_jobs`` would delete now: jobs, then rows per table."""
    with sessions.begin() as session:
        return retention.count_deletable(session, cutoff)


def delete_finished_jobs(
    sessions: sessionmaker[Session],
    cutoff: datetime,
    *,
    jobs_per_round: int = JOBS_PER_ROUND,
    rows_per_transaction: int = ROWS_PER_TRANSACTION,
) -> dict[str, int]:
    """Delete every job that finished before ``cutoff`` and has nothing left to do, with its rows;
    how many jobs, and rows per table, went. Jobs still scheduled, queued, sending or paused are
    never touched."""
    counts = dict.fromkeys(["jobs", *retention.JOB_ROWS], 0)
    while True:
        with sessions.begin() as session:
            job_ids = retention.take_jobs(session, cutoff, utcnow(), jobs_per_round)
        if not job_ids:
            return counts
        for table in retention.JOB_ROWS:
            for job_id in job_ids:
                while True:
                    with sessions.begin() as session:
                        deleted = retention.delete_rows(session, table, job_id, rows_per_transaction)
                    counts[table] += deleted
                    if deleted < rows_per_transaction:
                        break
        with sessions.begin() as session:
            counts["jobs"] += retention.delete_jobs(session, job_ids)
        log.info("cleanup: %d job(s) deleted so far", counts["jobs"])
