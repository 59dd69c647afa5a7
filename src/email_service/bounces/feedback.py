"""What a bounce or a complaint says about one recipient, whatever brought it."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FeedbackKind(enum.StrEnum):
    HARD = "hard"  # permanent: the address does not exist, or the mailbox is disabled
    SOFT = "soft"  # may pass later: mailbox full, message refused for its content, a relay giving up
    COMPLAINT = "complaint"  # the recipient reported the message as spam


class FeedbackSource(enum.StrEnum):
    DSN = "dsn"  # an RFC 3464 delivery status notification
    TEXT = "text"  # a bounce message without a machine-readable report
    ARF = "arf"  # an RFC 5965 abuse feedback report
    SES = "ses"
    SENDGRID = "sendgrid"
    MAILGUN = "mailgun"
    POSTMARK = "postmark"


DIAGNOSTIC_MAX = 1000  # characters of diagnostic text kept


@dataclass(frozen=True)
class Feedback:
    kind: FeedbackKind
    source: FeedbackSource
    address: str | None  # the recipient it concerns, as the report gives it (Final-Recipient, Original-Rcpt-To, ...)
    status: str | None  # the enhanced status code (RFC 3463), e.g. "5.1.1"; None for a complaint
    smtp_code: int | None  # the basic SMTP reply code (550) when the report gives one
    diagnostic: str  # what the remote side said, at most DIAGNOSTIC_MAX characters, single line
    message_id: str | None  # the original message's Message-ID with its angle brackets, when returned
    reference: str | None = None  # the per-recipient token a provider echoed back (its metadata), if any
    reporter: str | None = None  # the Reporting-MTA, Feedback report's Reported-Domain or provider


def complaint_report(
    source: FeedbackSource,
    address: str | None,
    *,
    feedback_type: str,
    agent: str | None,
    message_id: str | None,
    reporter: str | None,
) -> Feedback:
    """A spam complaint, its diagnostic naming the report's type and the agent that sent it."""
    diagnostic = f"{feedback_type} report by {agent or 'an unnamed agent'}"
    return Feedback(
        FeedbackKind.COMPLAINT, source, address, None, None, diagnostic[:DIAGNOSTIC_MAX], message_id, reporter=reporter
    )
