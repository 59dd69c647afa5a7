"""Sending one batch: claim its recipients, compose and send each, record every outcome."""

from __future__ import annotations

import logging
from datetime import timedelta

from ..composer import JobContent, compose
from ..errors import DeliveryError, TemplateError
from ..storage import repository
from ..storage.models import utcnow
from . import Services

log = logging.getLogger(__name__)


def send_batch(services: Services, job_id: str, first: int, last: int) -> None:
    """Send to the recipients at positions [first, last) of a job that nobody else owns.

    Each outcome is committed as soon as it is known, so a crash re-sends at most the message
    in flight; running the same batch twice sends nothing twice.
    """
    now = utcnow()
    with services.sessions.begin() as session:
        job = repository.get_job(session, job_id)
        if job is None:
            log.warning("batch [%d, %d) of unknown job %s dropped", first, last, job_id)
            return
        content = JobContent(template=job.template, sender=job.sender, subject=job.subject, content=job.content)
        claimed = repository.claim_batch(
            session,
            job_id,
            first,
            last,
            now=now,
            lease_until=now + timedelta(seconds=services.settings.lease_seconds),
        )
    connection = services.transport.connect()
    try:
        for recipient in claimed:
            outcome_time = utcnow()
            try:
                envelope = compose(
                    services.renderer,
                    content,
                    address=recipient.address,
                    name=recipient.name,
                    variables=recipient.variables,
                    message_id=recipient.message_id,
                    date=outcome_time,
                )
                connection.send(envelope)
            except TemplateError as exc:
                _record_failure(services, job_id, recipient.id, None, f"template: {exc}")
            except DeliveryError as exc:
                _record_failure(services, job_id, recipient.id, exc.code or None, str(exc))
            else:
                with services.sessions.begin() as session:
                    repository.mark_sent(session, recipient.id, utcnow())
    finally:
        connection.close()
    with services.sessions.begin() as session:
        if repository.complete_job_if_done(session, job_id, utcnow()):
            log.info("job %s completed", job_id)


def _record_failure(services: Services, job_id: str, recipient_id: int, code: int | None, reason: str) -> None:
    with services.sessions.begin() as session:
        repository.mark_failed(session, recipient_id, code=code, reason=reason, now=utcnow())
    log.warning("job %s recipient %d failed: %s", job_id, recipient_id, reason)
