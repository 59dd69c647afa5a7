"""Sending one batch: claim its recipients, compose and send each, record every outcome.

Each outcome is committed as soon as it is known, so a crash re-sends at most the message in
flight, and running the same batch twice sends nothing twice (the claim is atomic). A batch never
outlives its lease: it stops in time, like it does on a warm shutdown, and gives back what it
did not send.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from ..composer import JobContent, compose
from ..delivery.transport import Connection
from ..errors import DeliveryError, RelayUnavailable, TemplateError
from ..messages import MessageBuilder
from ..storage import repository
from ..storage.database import autocommit_connection
from ..storage.models import JobStatus, Recipient, utcnow
from . import Services

log = logging.getLogger(__name__)

CANCEL_CHECK_SECONDS = 1.0
# A rate-limit wait longer than this gives the recipient back to the scheduler instead of sleeping.
LONGEST_INLINE_WAIT = 5.0


def send_batch(services: Services, job_id: str, first: int, last: int) -> None:
    """Send to the recipients at positions [first, last) of a job that nobody else owns."""
    now = utcnow()
    settings = services.settings
    with services.sessions.begin() as session:
        job = repository.get_job(session, job_id)
        if job is None:
            log.warning("batch [%d, %d) of unknown job %s dropped", first, last, job_id)
            return
        if job.status != JobStatus.SENDING:
            return  # cancelled, or already finished: a late or repeated task
        claimed = repository.claim_batch(
            session, job_id, first, last, now=now, lease_until=now + timedelta(seconds=settings.lease_seconds)
        )
        content = JobContent(
            job_id=job.id, template=job.template, sender=job.sender, subject=job.subject, content=job.content
        )
        accepted_at = job.created_at
    if claimed:
        _BatchRun(services, content, accepted_at, claimed).run()
    with services.sessions.begin() as session:
        final_status = repository.complete_job_if_done(session, job_id, utcnow())
    if final_status:
        log.info("job %s %s", job_id, final_status)


class _BatchRun:
    """One batch being sent over one relay connection; outcomes go through one autocommit connection."""

    def __init__(
        self, services: Services, content: JobContent, accepted_at: datetime, claimed: list[Recipient]
    ) -> None:
        self.services = services
        self.job_id = content.job_id
        self.content = content
        self.accepted_at = accepted_at
        self.claimed = claimed
        settings = services.settings
        # Stop early enough that the last message in flight ends before the lease does.
        self.deadline = time.monotonic() + settings.lease_seconds - 2 * settings.mail_timeout - 1
        self.next_cancel_check = time.monotonic() + CANCEL_CHECK_SECONDS
        self.builder = MessageBuilder()
        self.outcomes = autocommit_connection(services.engine)

    def run(self) -> None:
        connection = self.services.transport.connect()
        try:
            for index, recipient in enumerate(self.claimed):
                if self._cancelled():
                    repository.cancel_claimed(self.outcomes, self._ids_from(index), utcnow())
                    return
                if self.services.stopping.is_set() or time.monotonic() > self.deadline:
                    now = utcnow()
                    repository.release(self.outcomes, self._ids_from(index), wake_at=now, now=now)
                    return
                if not self._wait_for_rate(recipient):
                    continue
                try:
                    self._send(connection, recipient)
                except RelayUnavailable as exc:
                    # No session can be had: every remaining recipient waits, none is tried in vain.
                    for waiting in self.claimed[index:]:
                        self._record_failure(waiting, exc)
                    return
        finally:
            connection.close()
            self.outcomes.close()

    def _ids_from(self, index: int) -> list[int]:
        return [r.id for r in self.claimed[index:]]

    def _send(self, connection: Connection, recipient: Recipient) -> None:
        try:
            envelope = compose(
                self.services.renderer,
                self.content,
                address=recipient.address,
                name=recipient.name,
                variables=recipient.variables,
                position=recipient.position,
                date=utcnow(),
                builder=self.builder,
            )
        except TemplateError as exc:
            self._fail(recipient, None, f"template: {exc}")
            return
        try:
            connection.send(envelope)
        except RelayUnavailable:
            raise
        except DeliveryError as exc:
            self._record_failure(recipient, exc)
            if exc.is_throttle:
                time.sleep(self.services.settings.throttle_delay)  # this connection slows down
            return
        repository.mark_sent(self.outcomes, recipient.id, utcnow())

    def _wait_for_rate(self, recipient: Recipient) -> bool:
        """Wait for the rate limits; False when the wait is long and the recipient was given back."""
        limiter = self.services.rate_limiter
        if limiter is None:
            return True
        domain = recipient.address.rpartition("@")[2]
        while (wait := limiter.acquire(domain)) > 0:
            if wait > LONGEST_INLINE_WAIT:
                now = utcnow()
                repository.release(self.outcomes, [recipient.id], wake_at=now + timedelta(seconds=wait), now=now)
                return False
            time.sleep(wait)
        return True

    def _record_failure(self, recipient: Recipient, error: DeliveryError) -> None:
        now = utcnow()
        if error.permanent:
            self._fail(recipient, error.code or None, str(error))
            return
        retry_at = self.services.retry_policy.retry_at(
            error, recipient.attempts, self.accepted_at, now, self.services.rng
        )
        if retry_at is None:
            self._fail(recipient, error.code or None, f"expired: retries stopped after the lifetime; last: {error}")
            return
        repository.mark_deferred(
            self.outcomes,
            recipient.id,
            code=error.code or None,
            reason=str(error),
            retry_at=retry_at,
            now=now,
        )
        log.info("job %s recipient %d deferred until %s: %s", self.job_id, recipient.id, retry_at.isoformat(), error)

    def _fail(self, recipient: Recipient, code: int | None, reason: str) -> None:
        repository.mark_failed(self.outcomes, recipient.id, code=code, reason=reason, now=utcnow())
        log.warning("job %s recipient %d failed: %s", self.job_id, recipient.id, reason)

    def _cancelled(self) -> bool:
        if time.monotonic() < self.next_cancel_check:
            return False
        self.next_cancel_check = time.monotonic() + CANCEL_CHECK_SECONDS
        self.builder = MessageBuilder()
        with self.services.sessions() as session:
            return repository.job_status(session, self.job_id) == JobStatus.CANCELLED
