"""Hard or soft: what a failed delivery's status code and text say about the address.

The enhanced status code (RFC 3463) decides when there is one: its class (4 or 5) tells whether
the sending MTA gave up for good, and some 5.x.x subjects (mailbox full, message too big, policy,
network) describe the message or the moment rather than the address, so they stay soft, as the
hosted providers class them. Without a status, the basic reply code decides, then the text.
"""

from __future__ import annotations

import re

from email_service.bounces.feedback import DIAGNOSTIC_MAX, FeedbackKind

# 5.x.x statuses (RFC 3463 §3) that describe the message or the moment, not the address: mailbox
# full, message too big, the remote system, delivery time expired, too many recipients, media,
# security and policy (a spam filter refusing one message).
_SOFT_PERMANENT = ("5.2.2", "5.2.3", "5.3.", "5.4.7", "5.5.3", "5.6.", "5.7.")
_CATCH_ALL = ("5.0.0", "5.2.0")  # "other": the words tell more
_TYPE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")  # the "smtp" of "smtp; 550 ...", an RFC 3464 type
_LEADING_CODE = re.compile(r"([245]\d\d)(?![\d.])")  # a reply code opening a diagnostic: "550 5.1.1 ..."
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# Words of a text bounce that say the mailbox is full or the failure is temporary.
_SOFT_WORDS = re.compile(
    r"quota|mailbox (is )?full|over ?quota|insufficient (disk|storage)|try (again )?later|temporar|"
    r"greylist|deferred|too many|rate limit|timed? ?out|connection (refused|reset)",
    re.IGNORECASE,
)


def classify(status: str | None, smtp_code: int | None, diagnostic: str) -> FeedbackKind:
    """The kind of bounce a failed delivery is (never a complaint)."""
    if status:
        if status.startswith("4."):
            return FeedbackKind.SOFT
        if status.startswith(_SOFT_PERMANENT):
            return FeedbackKind.SOFT
        if status.startswith("5."):
            soft_words = status in _CATCH_ALL and _SOFT_WORDS.search(diagnostic)
            return FeedbackKind.SOFT if soft_words else FeedbackKind.HARD
    if smtp_code is not None:
        if 400 <= smtp_code < 500:
            return FeedbackKind.SOFT
        if smtp_code == 552:  # exceeded storage allocation (RFC 5321 §4.2.3)
            return FeedbackKind.SOFT
    return FeedbackKind.SOFT if _SOFT_WORDS.search(diagnostic) else FeedbackKind.HARD


def status_in(text: str) -> str | None:
    """The first enhanced status code in a text, e.g. the "5.1.1" of "550 5.1.1 User unknown"."""
    match = _STATUS.search(text)
    return ".".join(match.groups()) if match else None


def specific_status(status: str | None, diagnostic: str) -> str | None:
    """The status, or the diagnostic's more precise one when the status is a bare x.0.0 (Exim, SendGrid)."""
    detail = status_in(diagnostic)
    if status is None or (status.endswith(".0.0") and detail and detail[0] == status[0]):
        return detail or status
    return status


def leading_code(diagnostic: str) -> int | None:
    """The SMTP reply code a diagnostic opens with: the 550 of "550 5.1.1 User unknown" or "550-5.1.1 ..."."""
    match = _LEADING_CODE.match(diagnostic.strip())
    return int(match.group(1)) if match else None


def typed_value(value: str) -> str:
    """``smtp; 550 ...`` → ``550 ...``, ``dns; mx.example.com`` → ``mx.example.com`` (RFC 3464 typed fields)."""
    kind, semicolon, rest = value.partition(";")
    return (rest if semicolon and _TYPE_NAME.fullmatch(kind.strip()) else value).strip()


def one_line(text: str) -> str:
    """A diagnostic as stored: whitespace runs (folded lines) as one space, at most DIAGNOSTIC_MAX characters."""
    return " ".join(text.split())[:DIAGNOSTIC_MAX]
