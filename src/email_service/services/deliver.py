"""Sending one batch: claim its recipients, compose and send each, record every outcome.

Each outcome is committed as soon as it is known, so a crash re-sends at most the message in
flight, and running the same batch twice sends nothing twice (the claim is atomic). A batch never
outlives its lease: it stops in time, like it does on a warm shutdown, and gives back what it
did not send.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ..composer import JobContent, compose
from ..delivery.transport import Connection
from ..errors import DeliveryError, RelayUnavailable, TemplateError
from ..messages import MessageBuilder
from ..storage import repository
from ..storage.models import JobStatus, Recipient, utcnow
from ..storage.outcomes import OutcomeWriter
from . import Services

log = logging.getLogger(__name__)

CANCEL_CHECK_SECONDS = 1.0
# A recipient claimed this often without an outcome (each claim killed its worker, say) fails:
# no single recipient may stall its batch for ever.
MAX_ATTEMPTS = 100
# Sends of one message to a throttling relay (421, 454) within its batch before it is deferred.
THROTTLED_TRIES_IN_BATCH = 5
# A rate-limit wait longer than this gives the recipient back to the scheduler instead of sleeping.
LONGEST_INLINE_WAIT = 5.0


def send_batch(services: Services, job_id: str, first: int, last: int) -> None:
    """Send to the recipients at positions [first, last) of a job that nobody else owns."""
    settings = services.settings
    with services.sessions.begin() as session:
        now = utcnow()  # after BEGIN, which may have waited for SQLite's write lock
        job = repository.get_job(session, job_id)
        if job is None:
            log.warning("batch [%d, %d) of unknown job %s dropped", first, last, job_id)
            return
        if job.status == JobStatus.SENDING:
            lease_until = now + timedelta(seconds=settings.lease_seconds)
            claimed = repository.claim_batch(session, job_id, first, last, now=now, lease_until=lease_until)
        else:  # cancelled, or already finished: a late or repeated task
            claimed = []
            if job.status == JobStatus.CANCELLED:
                repository.cancel_leftovers(session, job_id, now, positions=(first, last))
        content = JobContent(
            job_id=job.id, template=job.template, sender=job.sender, subject=job.subject, content=job.content
        )
        accepted_at = job.started_at or job.created_at  # a retried job's lifetime starts again
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
        # Stop early enough that the last message in flight ends before the lease does (config.py
        # checks the lease leaves room for it).
        self.deadline = time.monotonic() + settings.lease_seconds - settings.longest_send
        self.next_cancel_check = time.monotonic() + CANCEL_CHECK_SECONDS
        self.builder = MessageBuilder()
        self.outcomes = OutcomeWriter(services.engine)

    def run(self) -> None:
        connection = self.services.transport.connect()
        try:
            for index, recipient in enumerate(self.claimed):
                if self._cancelled():
                    self._give_back(repository.cancel_claimed, self.claimed[index:], utcnow())
                    return
                if self.services.stopping.is_set() or time.monotonic() > self.deadline:
                    now = utcnow()
                    self._give_back(repository.release, self.claimed[index:], wake_at=now, now=now)
                    return
                if recipient.attempts > MAX_ATTEMPTS:
                    self._fail(recipient, None, f"gave up after {MAX_ATTEMPTS} attempts without an outcome")
                    continue
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
        pause = self.services.settings.throttle_delay
        for tries_left in range(THROTTLED_TRIES_IN_BATCH, 0, -1):
            try:
                connection.send(envelope)
            except RelayUnavailable:
                raise
            except DeliveryError as exc:
                # A throttling relay wants this connection slower, not the recipient later: pause,
                # then try again here while the batch has time; otherwise the recipient is deferred.
                again = exc.is_throttle and tries_left > 1 and time.monotonic() + pause < self.deadline
                if exc.is_throttle:
                    self.services.stopping.wait(pause)
                if again and not self.services.stopping.is_set():
                    continue
                self._record_failure(recipient, exc)
                return
            self._written(self.outcomes.sent(recipient, utcnow()), recipient)
            return

    def _wait_for_rate(self, recipient: Recipient) -> bool:
        """Wait for this message's slot under the rate limits; False when the slot is too far off
        (long wait, lease ending, shutdown) and the recipient was given back until then."""
        limiter = self.services.rate_limiter
        if limiter is None:
            return True
        max_wait = min(LONGEST_INLINE_WAIT, self.deadline - time.monotonic())
        wait = limiter.acquire(recipient.address.rpartition("@")[2], max(0.0, max_wait))
        if wait > max_wait or self.services.stopping.is_set():
            now = utcnow()
            self._give_back(repository.release, [recipient], wake_at=now + timedelta(seconds=wait), now=now)
            return False
        if wait > 0:
            self.services.stopping.wait(wait)
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
        written = self.outcomes.deferred(
            recipient,
            code=error.code or None,
            reason=str(error),
            retry_at=retry_at,
            now=now,
        )
        self._written(written, recipient)
        log.info("job %s recipient %d deferred until %s: %s", self.job_id, recipient.id, retry_at.isoformat(), error)

    def _fail(self, recipient: Recipient, code: int | None, reason: str) -> None:
        self._written(self.outcomes.failed(recipient, code=code, reason=reason, now=utcnow()), recipient)
        log.warning("job %s recipient %d failed: %s", self.job_id, recipient.id, reason)

    def _give_back(self, operation: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        """Release or cancel claimed rows (rare: shutdown, lease ending, rate wait, cancel)."""
        with self.services.sessions.begin() as session:
            operation(session, *args, **kwargs)

    def _written(self, written: bool, recipient: Recipient) -> None:
        if not written:
            log.warning(
                "job %s recipient %d: outcome not recorded, the claim had expired and another worker owns it",
                self.job_id,
                recipient.id,
            )

    def _cancelled(self) -> bool:
        if time.monotonic() < self.next_cancel_check:
            return False
        self.next_cancel_check = time.monotonic() + CANCEL_CHECK_SECONDS
        with self.services.readers() as session:
            return repository.job_status(session, self.job_id) == JobStatus.CANCELLED
