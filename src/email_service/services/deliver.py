"""Sending one claim: take due recipients of a job, compose and send each, record every outcome.

Each outcome is committed as soon as it is known, so a crash re-sends at most the message in
flight, and two claims never take the same recipient (the claim is atomic). The claim's lease is
short and renewed while it is sent (services.leases); a claim whose lease runs low (renewals
failing) stops, as it does on a warm shutdown, and gives back what it did not send.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from email_service import metrics
from email_service.errors import DeliveryError, RecipientRefused, RelayUnavailable, TemplateError
from email_service.message.addresses import dedup_key
from email_service.message.composing import JobContent, compose
from email_service.message.mime import AttachmentFile, Envelope, MessageBuilder
from email_service.services import Services, templates
from email_service.services.completion import finish_if_done
from email_service.services.job_statuses import MAX_AGE_SECONDS
from email_service.storage import jobs, scheduling, suppressions
from email_service.storage.leases import Lease
from email_service.storage.models import (
    ClaimedRecipient,
    Job,
    JobStatus,
    Lane,
    RecipientStatus,
    SuppressionReason,
    utcnow,
)

log = logging.getLogger(__name__)

# A recipient claimed this often without an outcome (each claim killed its worker, say) fails:
# no single recipient may stall its batch for ever.
MAX_ATTEMPTS = 100
# Sends of one message to a throttling relay (421, 454) within its batch before it is deferred.
THROTTLED_TRIES_IN_BATCH = 5
# A rate-limit wait longer than this gives the recipient back to the scheduler instead of sleeping.
LONGEST_INLINE_WAIT = 5.0
# How far ahead a bulk message may reserve its slot under a rate (a transactional one reserves at once):
# bulk threads waiting further ahead hold no slot, so a transactional message finds at most this much
# of reserved sending before its own.
BULK_RESERVATION_SECONDS = 0.05


@dataclass
class Claim:
    """Recipients of one job claimed together, with what sending to them needs."""

    job: Job
    recipients: list[ClaimedRecipient]  # not suppressed: to send
    lease: Lease
    attachments: tuple[AttachmentFile, ...]
    suppressed: int  # claimed rows that ended suppressed instead
    limit: int  # how many the claim asked for
    claims_left: int = 0  # further claims of its size due when it was made, of its job or others (services.dispatch)
    prepaid: int = 0  # slots of the global rate reserved for it before it was made (services.pacing)


def claim(session: Session, job_id: str, *, limit: int, now: datetime, lease_seconds: float) -> Claim | None:
    """Claim up to ``limit`` due recipients of a sending job, in the caller's transaction; those whose
    address was suppressed since the job was accepted end suppressed. None when none was due."""
    job = jobs.get_job(session, job_id)
    if job is None or job.status != JobStatus.SENDING:
        return None
    lease = Lease.starting(job_id, now, lease_seconds)
    rows = scheduling.claim_due(session, job_id, limit=limit, now=now, lease_until=lease.until)
    if not rows:
        return None
    lease.ids = tuple(r.id for r in rows)
    recipients, suppressed = _without_suppressed(session, job.account_id, rows, lease, now)
    attachments = jobs.job_attachments(session, job_id) if recipients else ()
    return Claim(job, recipients, lease, attachments, suppressed, limit)


def send_claim(services: Services, claim: Claim) -> None:
    """Send to the claimed recipients and record every outcome; finish the job when nothing is left."""
    job = claim.job
    metrics.recipients_ended(RecipientStatus.SUPPRESSED, claim.suppressed)
    failures = 0
    if claim.recipients:
        accepted_at = job.started_at or job.created_at  # a retried job's lifetime starts again
        run = _BatchRun(services, job, claim.attachments, accepted_at, claim.recipients, claim.lease)
        run.prepaid = claim.prepaid
        with services.leases.keeping(claim.lease):
            run.run()
        failures = run.failures
        claim.prepaid = run.prepaid
    if claim.prepaid and services.rate_limiter is not None:  # slots no message used
        services.rate_limiter.give_back_global(claim.prepaid)
    finish_if_done(services, job.id)
    if failures and job.callback_url is not None and services.queue is not None:
        services.queue.deliver_events(job.id)


def _without_suppressed(
    session: Session, account: str | None, claimed: list[ClaimedRecipient], lease: Lease, now: datetime
) -> tuple[list[ClaimedRecipient], int]:
    """The claimed rows whose address is not suppressed for the job's ``account`` (its list or the shared one);
    the others end suppressed, unsent, saying which list and why (an address may have unsubscribed or bounced
    since the job was accepted): how many."""
    keys = [dedup_key(r.address) for r in claimed]
    found = suppressions.suppressed(session, keys, account)
    if not found:
        return claimed, 0
    blocked: dict[str, list[ClaimedRecipient]] = {}
    for recipient, key in zip(claimed, keys, strict=True):
        if key in found:
            blocked.setdefault(found[key].explanation(), []).append(recipient)
    suppressed = sum(
        jobs.end_claimed(session, rows, lease, RecipientStatus.SUPPRESSED, now, explanation)
        for explanation, rows in blocked.items()
    )
    return [r for r, key in zip(claimed, keys, strict=True) if key not in found], suppressed


class _BatchRun:
    """One batch being sent over one relay connection; outcomes go through the process's outcome writers."""

    def __init__(
        self,
        services: Services,
        job: Job,
        attachments: tuple[AttachmentFile, ...],
        accepted_at: datetime,
        claimed: list[ClaimedRecipient],
        lease: Lease,
    ) -> None:
        self.services = services
        self.job_id = job.id
        self.lane = job.lane
        self.transactional = job.lane == Lane.TRANSACTIONAL  # may use the quotas' reserve
        # The caller waits for its messages from when the job could first be sent (metrics.message_relayed).
        self.sendable_since = max(job.created_at, job.send_at or job.created_at)
        self.expires_at = job.expires_at
        self.content: JobContent | None = None
        try:
            self.content = templates.job_content(services, job, attachments)
        except TemplateError as exc:  # the template is gone: nobody of the batch can be sent to
            self.template_error: TemplateError | None = exc
        else:
            self.template_error = None
        self.accepted_at = accepted_at
        self.queue = deque(claimed)  # not handed to the relay yet
        self.in_flight: dict[int, tuple[ClaimedRecipient, float]] = {}  # handed over, unanswered: since when
        self.throttled: Counter[int] = Counter()  # throttled answers, by recipient
        self.lease = lease
        self.failures = 0
        # First asked a status age after the claim: see services.job_statuses.
        self.next_status_check = time.monotonic() + MAX_AGE_SECONDS
        self.builder = MessageBuilder()
        self.prepaid = 0  # global rate slots reserved before the claim, not used yet (services.pacing)

    def run(self) -> None:
        connection = self.services.transport.connect()
        try:
            # A throttled message goes back to the queue: another stream takes it, on the same connection.
            while self.queue:
                with contextlib.closing(connection.stream(self._messages())) as answers:
                    for recipient, error in answers:
                        self._answered(recipient, error)
        except RelayUnavailable as exc:
            # No session can be had: every remaining recipient waits, none is tried in vain.
            for recipient, started in self.in_flight.values():
                metrics.send_answered(started, exc)
                self._record_failure(recipient, exc)
            for recipient in self.queue:
                self._record_failure(recipient, exc)
        finally:
            connection.close()

    def _messages(self) -> Iterator[tuple[ClaimedRecipient, Envelope]]:
        """The batch's messages, each composed when the connection is ready to take it; none once the
        job was cancelled, paused or expired, the process is stopping or the lease runs low."""
        while self.queue:
            now = utcnow()
            status = self._job_status_change()
            if status == JobStatus.CANCELLED:
                self._end_unsent(self._take_queue(), RecipientStatus.CANCELLED, now)
                return
            if self.expires_at is not None and now >= self.expires_at:
                reason = jobs.expiry_reason(self.expires_at)
                self._end_unsent(self._take_queue(), RecipientStatus.EXPIRED, now, reason)
                return
            if status == JobStatus.PAUSED or self.services.stopping.is_set() or not self.lease.held():
                self._give_back(self._take_queue(), wake_at=now, now=now)
                return
            recipient = self.queue.popleft()
            if recipient.attempts > MAX_ATTEMPTS:
                self._fail(recipient, None, f"gave up after {MAX_ATTEMPTS} attempts without an outcome")
                continue
            if not self._wait_for_rate(recipient):
                continue
            envelope = self._compose(recipient)
            if envelope is not None:
                self.in_flight[recipient.id] = (recipient, metrics.send_started())
                yield recipient, envelope

    def _take_queue(self) -> list[ClaimedRecipient]:
        rows = list(self.queue)
        self.queue.clear()
        return rows

    def _compose(self, recipient: ClaimedRecipient) -> Envelope | None:
        """The recipient's message; None when its template cannot be rendered (it failed)."""
        try:
            if self.template_error is not None:
                raise self.template_error
            assert self.content is not None
            return compose(
                self.services.renderer,
                self.content,
                address=recipient.address,
                name=recipient.name,
                variables=recipient.variables,
                position=recipient.position,
                date=utcnow(),
                builder=self.builder,
                signer=self.services.dkim_signer,
            )
        except TemplateError as exc:
            self._fail(recipient, None, f"template: {exc}")
            return None

    def _answered(self, recipient: ClaimedRecipient, error: DeliveryError | None) -> None:
        _, started = self.in_flight.pop(recipient.id)
        metrics.send_answered(started, error)
        if error is None:
            now = utcnow()
            metrics.message_relayed(self.lane, (now - self.sendable_since).total_seconds())
            written = self.services.outcomes.sent(recipient, self.lease, now)  # committed with others
            if self._written(written, recipient):
                metrics.recipients_ended(RecipientStatus.SENT)
            return
        if isinstance(error, RelayUnavailable):
            raise error
        if error.is_throttle:
            # A throttling relay wants this connection slower, not the recipient later: pause, then
            # try again here while the batch may; otherwise the recipient is deferred.
            self.services.stopping.wait(self.services.settings.throttle_delay)
            self.throttled[recipient.id] += 1
            tries_left = self.throttled[recipient.id] < THROTTLED_TRIES_IN_BATCH
            if tries_left and self.lease.held() and not self.services.stopping.is_set():
                self.queue.appendleft(recipient)
                return
        self._record_failure(recipient, error)

    def _wait_for_rate(self, recipient: ClaimedRecipient) -> bool:
        """Wait for this message's slot under the rate limits; False when the slot is too far off
        (long wait, shutdown) and the recipient was given back until then."""
        limiter = self.services.rate_limiter
        if limiter is None:
            return True
        domain = recipient.address.rpartition("@")[2]
        started = time.monotonic()
        prepaid = self.prepaid > 0  # its global slot is reserved (services.pacing): the domain's rate and quotas left
        horizon = LONGEST_INLINE_WAIT if self.transactional else BULK_RESERVATION_SECONDS
        wait = limiter.acquire(domain, horizon, transactional=self.transactional, prepaid=prepaid)
        while horizon < wait <= LONGEST_INLINE_WAIT and not self.services.stopping.is_set():
            # Nothing reserved yet: come back when the slot is near (transactional mail may take it first),
            # at a moment of its own among the bulk threads waiting too.
            self.services.stopping.wait(wait - horizon + self.services.rng.uniform(0, horizon))
            wait = limiter.acquire(domain, horizon, transactional=self.transactional, prepaid=prepaid)
        if prepaid and wait <= horizon:
            self.prepaid -= 1  # used: what is left of them goes back after the claim
        return self._sleep_until_slot(recipient, wait, started)

    def _sleep_until_slot(self, recipient: ClaimedRecipient, wait: float, started: float) -> bool:
        """Sleep ``wait`` seconds for the slot reserved; when it is too far off (nothing reserved) or the
        process stops, give the recipient back until then instead: False."""
        if wait > LONGEST_INLINE_WAIT or self.services.stopping.is_set():
            now = utcnow()
            self._give_back([recipient], wake_at=now + timedelta(seconds=wait), now=now)
            metrics.rate_limit_released()
            return False
        if wait > 0:
            self.services.stopping.wait(wait)
        waited = time.monotonic() - started
        if wait > 0 or waited > BULK_RESERVATION_SECONDS:  # it slept: for its slot, or for one to come near
            metrics.rate_limit_waited(waited)
        return True

    def _record_failure(self, recipient: ClaimedRecipient, error: DeliveryError) -> None:
        now = utcnow()
        if error.permanent:
            self._fail(recipient, error.code or None, str(error))
            if isinstance(error, RecipientRefused):  # a hard bounce: the mailbox is not there, for anyone
                with self.services.sessions.begin() as session:
                    address = dedup_key(recipient.address)
                    suppressions.add(session, address, SuppressionReason.BOUNCED, self.job_id, now, account=None)
            return
        retry_at = self.services.retry_policy.retry_at(
            error, recipient.attempts, self.accepted_at, now, self.services.rng
        )
        if retry_at is None:
            self._fail(recipient, error.code or None, f"expired: retries stopped after the lifetime; last: {error}")
            return
        with self.services.outcomes.borrow() as writer:
            written = writer.deferred(
                recipient, self.lease, code=error.code or None, reason=str(error), retry_at=retry_at, now=now
            )
        self._written(written, recipient)
        log.info("job %s recipient %d deferred until %s: %s", self.job_id, recipient.id, retry_at.isoformat(), error)

    def _fail(self, recipient: ClaimedRecipient, code: int | None, reason: str) -> None:
        self.failures += 1
        with self.services.outcomes.borrow() as writer:
            written = writer.failed(recipient, self.lease, code=code, reason=reason, now=utcnow())
        if self._written(written, recipient):
            metrics.recipients_ended(RecipientStatus.FAILED)
        log.warning("job %s recipient %d failed: %s", self.job_id, recipient.id, reason)

    def _give_back(self, rows: list[ClaimedRecipient], *, wake_at: datetime, now: datetime) -> None:
        """Release claimed rows unsent, for the scheduler to queue at ``wake_at`` (rare: shutdown, pause,
        lease running low, rate wait)."""
        with self.lease.lock, self.services.sessions.begin() as session:
            jobs.release(session, rows, self.lease, wake_at=wake_at, now=now)

    def _end_unsent(
        self, rows: list[ClaimedRecipient], status: RecipientStatus, now: datetime, reason: str | None = None
    ) -> None:
        """End claimed rows unsent: their job was cancelled or expired meanwhile."""
        with self.lease.lock, self.services.sessions.begin() as session:
            ended = jobs.end_claimed(session, rows, self.lease, status, now, reason)
        metrics.recipients_ended(status, ended)

    def _written(self, written: bool, recipient: ClaimedRecipient) -> bool:
        if not written:
            log.warning(
                "job %s recipient %d: outcome not recorded, the claim had expired and another worker owns it",
                self.job_id,
                recipient.id,
            )
        return written

    def _job_status_change(self) -> str | None:
        """The job's status when it was cancelled or paused meanwhile (asked once a second at most)."""
        if time.monotonic() < self.next_status_check:
            return None
        self.next_status_check = time.monotonic() + MAX_AGE_SECONDS
        status = self.services.job_statuses.current(self.job_id)
        return status if status in (JobStatus.CANCELLED, JobStatus.PAUSED) else None
