"""Recording bounces and complaints: each report matched to the one message it is about, then the
ledger, the suppression lists, the job's webhook and the metrics changed in one transaction. A hard bounce
and too many soft bounces put the address on the shared list (the mailbox fails for every sender); a
complaint, on the list of the account whose job sent the message.

A report names its recipient by a signed token (the VERP envelope sender a bounce is mailed to, or
a token a provider echoes back), else by the Message-ID it returns, which must then come with the
same recipient address unless the report arrived through a provider's authenticated webhook. With
BOUNCE_SECRET set, that Message-ID must carry its MAC: the job id and position are in every copy of
a job's message, so without it anyone who received one could report bounces for the others. A
report for a made-up token, or for no message of ours, changes nothing and is counted.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from email_service import metrics
from email_service.bounces.feedback import Feedback, FeedbackKind
from email_service.bounces.parsing import parse_feedback
from email_service.bounces.providers import OneTimeSignature
from email_service.errors import ForgedFeedback, InvalidAddress
from email_service.message.addresses import dedup_key, normalize_address
from email_service.message.mime import read_message_id
from email_service.message.verp import TOKEN_LENGTH, Reference, read_token, token_in
from email_service.services import Services
from email_service.storage import bounces, jobs, suppressions, webhook_events, webhook_signatures
from email_service.storage.models import Bounce, Recipient, RecipientStatus, SuppressionReason, utcnow

log = logging.getLogger(__name__)

# The recipient status and suppression reason each final kind of report leads to.
_ENDS = {
    FeedbackKind.HARD: (RecipientStatus.BOUNCED, SuppressionReason.BOUNCED, webhook_events.RECIPIENT_BOUNCED),
    FeedbackKind.COMPLAINT: (
        RecipientStatus.COMPLAINED,
        SuppressionReason.COMPLAINED,
        webhook_events.RECIPIENT_COMPLAINED,
    ),
}
# A recipient whose message went out: a report about any other is about no message of ours.
_WENT_OUT = frozenset({RecipientStatus.SENT, RecipientStatus.BOUNCED, RecipientStatus.COMPLAINED})


class Outcome(enum.StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"  # that recipient already has a report of that kind
    UNMATCHED = "unmatched"  # no message of ours
    FORGED = "forged"  # a token whose signature does not check
    NOT_A_REPORT = "not_a_report"  # mail that reports no bounce or complaint


def record_mail(services: Services, raw: bytes, envelope_recipients: Sequence[str]) -> list[Outcome]:
    """Record what a bounce or complaint mail reports; ``envelope_recipients`` are the addresses it
    was delivered to (RCPT TO, or the mailbox copy's Delivered-To / To)."""
    settings = services.settings
    if len(raw) > settings.bounce_max_bytes:
        metrics.feedback_ignored("too_large")
        return [Outcome.NOT_A_REPORT]
    reports = parse_feedback(raw)
    if not reports:
        metrics.feedback_ignored("not_a_report")
        return [Outcome.NOT_A_REPORT]
    tokens = _tokens(services, raw, envelope_recipients)
    if tokens is None:
        metrics.feedback_ignored("forged_token")
        return [Outcome.FORGED]
    if tokens:
        return [record(services, _report_for(reports), tokens[0], trusted=True)]
    return [record(services, report, None, trusted=False) for report in reports]


def record_events(
    services: Services, reports: Sequence[Feedback], signature: OneTimeSignature | None = None
) -> list[Outcome]:
    """Record a provider's events, which its webhook authenticated. With ``signature`` (one that does
    not cover the events), it is claimed in the transaction that records them: ForgedFeedback when it
    was used before, so that nobody can attach other events to a signature they saw."""
    if signature is None:
        done = []
        for report in reports:
            with services.sessions.begin() as session:
                done.append(_record_event(services, session, report))
    else:
        with services.sessions.begin() as session:
            if not webhook_signatures.claim(session, signature.key, signature.expires_at, utcnow()):
                metrics.feedback_ignored("replayed_signature")
                raise ForgedFeedback("this webhook signature was already used: a replay is refused")
            done = [_record_event(services, session, report) for report in reports]
    return [_announced(services, report, result) for report, result in zip(reports, done, strict=True)]


def record(services: Services, report: Feedback, reference: Reference | None, *, trusted: bool) -> Outcome:
    """Record one report about one message; ``trusted`` when its source is authenticated (a signed
    token, a provider's signed webhook), so that a Message-ID alone may name the message."""
    with services.sessions.begin() as session:
        result = _record_in(services, session, report, reference, trusted=trusted)
    return _announced(services, report, result)


@dataclass(frozen=True)
class _Recorded:
    """A report written in a transaction, for what follows its commit."""

    recipient_id: int
    bounce: Bounce
    has_webhook: bool


def _record_event(services: Services, session: Session, report: Feedback) -> Outcome | _Recorded:
    reference = None
    if report.reference is not None:
        reference = read_token(report.reference, services.settings.bounce_secret.get_secret_value())
        if reference is None:
            metrics.feedback_ignored("forged_token")
            return Outcome.FORGED
    return _record_in(services, session, report, reference, trusted=True)


def _record_in(
    services: Services, session: Session, report: Feedback, reference: Reference | None, *, trusted: bool
) -> Outcome | _Recorded:
    """Write one report in the caller's transaction: the ledger, the recipient, the suppression list
    and the webhook outbox; an Outcome when there is nothing to write."""
    secret = services.settings.bounce_secret.get_secret_value()
    recipient = _match(session, report, reference, secret, trusted)
    if recipient is None:
        metrics.feedback_ignored("unknown_recipient")
        return Outcome.UNMATCHED
    address = dedup_key(recipient.address)
    now = utcnow()
    bounce = Bounce(
        recipient_id=recipient.id,
        job_id=recipient.job_id,
        address=address,
        kind=report.kind,
        source=report.source,
        status=report.status,
        smtp_code=report.smtp_code,
        diagnostic=report.diagnostic,
        reporter=report.reporter[:255] if report.reporter else None,
        received_at=now,
    )
    if not bounces.add(session, bounce):
        return Outcome.DUPLICATE
    has_webhook = False
    if report.kind in _ENDS:
        status, reason, event = _ENDS[report.kind]
        # A hard bounce is about the mailbox, which is not there for anyone: the shared list, when the report
        # proves itself (our signed envelope token, a provider's signed event) and is about a message that went
        # out. A complaint is about whoever sent the message; and a report any caller could write (matched by
        # the Message-ID its own job shows it) may only touch that job's account: its account's list.
        about_the_mailbox = report.kind != FeedbackKind.COMPLAINT and trusted and recipient.status in _WENT_OUT
        account = None if about_the_mailbox else jobs.account_of(session, recipient.job_id)
        bounces.end_sent_recipient(session, recipient.id, status, bounce)
        suppressions.add(session, address, reason, recipient.job_id, now, account=account)
        has_webhook = webhook_events.record_recipient_feedback(
            session, recipient, event, _payload(recipient, bounce), now
        )
    else:
        _suppress_after_soft_bounces(services, session, bounce)
    return _Recorded(recipient.id, bounce, has_webhook)


def _announced(services: Services, report: Feedback, result: Outcome | _Recorded) -> Outcome:
    """After the commit: the metrics, the log line and the queued webhook delivery of a recorded report."""
    if isinstance(result, Outcome):
        return result
    bounce = result.bounce
    metrics.feedback_recorded(report.kind, report.source)
    log.info(
        "job %s recipient %d: %s bounce (%s) from %s",
        bounce.job_id,
        result.recipient_id,
        report.kind,
        report.status,
        report.source,
    )
    if result.has_webhook and services.queue is not None:
        try:
            services.queue.deliver_events(bounce.job_id)
        except Exception:  # the event is stored; the scheduler's sweep queues it when the broker answers
            log.exception("job %s: webhook event stored but its delivery could not be queued", bounce.job_id)
    return Outcome.RECORDED


def _match(
    session: Session, report: Feedback, reference: Reference | None, secret: str, trusted: bool
) -> Recipient | None:
    if reference is not None:
        return bounces.recipient_at(session, reference.job_id, reference.position)
    named = read_message_id(report.message_id, secret) if report.message_id else None
    recipient = bounces.recipient_at(session, *named) if named else None
    if recipient is None:
        return None
    if report.address is None:
        return recipient if trusted else None
    return recipient if _same_mailbox(report.address, recipient.address) else None


def _same_mailbox(reported: str, ours: str) -> bool:
    try:
        return dedup_key(normalize_address(reported)) == dedup_key(ours)
    except InvalidAddress:
        return False


def _tokens(services: Services, raw: bytes, envelope_recipients: Sequence[str]) -> list[Reference] | None:
    """The recipients named by our tokens: in the envelope, else in the returned message (its
    Return-Path); None when a token is there but not one we signed."""
    settings = services.settings
    secret = settings.bounce_secret.get_secret_value()
    if not (settings.bounce_domain and secret):
        return []
    found = [token_in(address, settings.bounce_local_part, settings.bounce_domain) for address in envelope_recipients]
    tokens = [token for token in found if token is not None]
    if not tokens:
        token_address = _token_address(settings.bounce_local_part, settings.bounce_domain)
        tokens = [match.group(1).decode("ascii").lower() for match in token_address.finditer(raw[:1_000_000])][:1]
    references = [read_token(token, secret) for token in tokens]
    if any(reference is None for reference in references):
        return None
    return [reference for reference in references if reference is not None]


def _token_address(local_part: str, domain: str) -> re.Pattern[bytes]:
    escaped = re.escape(f"{local_part}+").encode() + rb"([a-z2-7]{%d})@" % TOKEN_LENGTH + re.escape(domain).encode()
    return re.compile(escaped, re.IGNORECASE)


def _report_for(reports: list[Feedback]) -> Feedback:
    """The report a per-recipient envelope sender is about: a VERP bounce concerns one message to one
    recipient, so its first failed recipient (DSNs list one)."""
    return reports[0]


def _suppress_after_soft_bounces(services: Services, session: Session, bounce: Bounce) -> None:
    settings = services.settings
    if not settings.soft_bounce_limit:
        return
    since = bounce.received_at - timedelta(seconds=settings.soft_bounce_window)
    # Counted and suppressed per account: a soft bounce (a full mailbox, a message refused as spam or too large)
    # may be the sender's doing, and one caller's messages must not suppress the address for the others.
    account = jobs.account_of(session, bounce.job_id)
    if bounces.count_since(session, bounce.address, FeedbackKind.SOFT, since, account) >= settings.soft_bounce_limit:
        reason = SuppressionReason.SOFT_BOUNCED
        suppressions.add(session, bounce.address, reason, bounce.job_id, bounce.received_at, account=account)


def _payload(recipient: Recipient, bounce: Bounce) -> dict[str, object]:
    return {
        "job_id": bounce.job_id,
        "position": recipient.position,
        "email": recipient.address,
        "type": bounce.kind,
        "status": bounce.status,
        "smtp_code": bounce.smtp_code,
        "diagnostic": bounce.diagnostic,
        "source": bounce.source,
        "received_at": bounce.received_at.isoformat(),
    }
