"""Reading bounce and complaint mail: what each failed recipient or spam report in a message says.

Three forms come back to an envelope sender. A delivery status notification (RFC 3464, in a
multipart/report of RFC 6522; RFC 6533's global form for UTF-8 addresses) has one block of fields
per recipient, of which only ``Action: failed`` is a bounce (``delayed`` and ``delivered`` are not).
An abuse report (ARF, RFC 5965) is a complaint unless its Feedback-Type says otherwise. Older MTAs
(qmail, Yahoo, Exim without DSNs) write a bounce as text only; it is taken when both its sender or
subject and its body say delivery failed, so that auto-replies and ordinary mail give nothing.

``parse_feedback`` never raises: the bytes come from anyone on the internet. Its work is bounded by
the parts and recipients it reads and the length of text it searches.
"""

from __future__ import annotations

import base64
import binascii
import logging
import quopri
import re
from email.message import Message
from email.parser import BytesParser, Parser
from email.policy import compat32
from email.utils import getaddresses, parseaddr

from email_service.bounces.classify import classify, leading_code, one_line, specific_status, status_in, typed_value
from email_service.bounces.feedback import Feedback, FeedbackSource, complaint_report

log = logging.getLogger(__name__)

MAX_PARTS = 64  # MIME parts looked at in one message
MAX_RECIPIENTS = 100  # reports taken from one message
TEXT_SCAN_CHARS = 64_000  # characters of a text bounce searched for addresses and codes
_DELIVERY_STATUS = ("message/delivery-status", "message/global-delivery-status")
_RETURNED = ("message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers")
# Feedback-Types (RFC 5965 §7.3) that are a person or a filter calling the message unwanted.
_COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus", "other"})
_SMTP_CODE = re.compile(r"\b([245]\d\d)\b")
_MESSAGE_ID_LINE = re.compile(r"^\s*Message-ID:\s*(<[^<>\s]{1,500}>)", re.IGNORECASE | re.MULTILINE)
_BRACKETED_ID = re.compile(r"<[^<>\s]{1,500}>")
_BOUNCE_SENDER = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mdaemon)@", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (status notification|failure|failed|has failed|problem)|failure notice|returned mail|"
    r"mail delivery (failed|failure|system)|non[- ]?delivery|could not be delivered|unable to deliver",
    re.IGNORECASE,
)
_FAILURE_WORDS = re.compile(
    r"could not be delivered|couldn't be delivered|undeliverable|delivery (to the following .{0,40})?"
    r"(has )?failed|permanent (error|failure)|failed permanently|unable to deliver|wasn't able to deliver|"
    r"user unknown|unknown user|no such (user|mailbox)|does not exist|doesn't have a .{0,40} account|"
    r"address rejected|mailbox (is )?(unavailable|disabled|full)|recipient (address )?rejected|"
    r"the following address\(es\) failed",
    re.IGNORECASE,
)
_DELAY_WORDS = re.compile(
    r"has not yet been delivered|delivery (is )?delayed|message (is )?delayed|will (continue to )?(retry|try)|"
    r"still trying|no action is required",
    re.IGNORECASE,
)
# A failed recipient in a text bounce: qmail and Yahoo write "<addr>:" on a line of its own, Exim
# indents the bare address under "The following address(es) failed:".
_TEXT_RECIPIENT = re.compile(
    r"^\s*<([^<>\s@]{1,200}@[^<>\s@]{1,255})>:?\s*$|"
    r"(?<=failed:\n\n)\s*([^<>\s@]{1,200}@[^<>\s@]{1,255})\s*$",
    re.MULTILINE,
)


def parse_feedback(raw: bytes) -> list[Feedback]:
    """The bounces and complaints a message reports; [] for anything else (an auto-reply, a delay
    warning, a successful-delivery notice, a "not spam" report, mail that is not a report)."""
    try:
        message = BytesParser(policy=compat32).parsebytes(raw)
        parts = _parts(message)
        report = next((part for part in parts if part.get_content_type() in _DELIVERY_STATUS), None)
        if report is not None:
            return _delivery_status(report, parts, message)
        arf = next((part for part in parts if part.get_content_type() == "message/feedback-report"), None)
        if arf is not None:
            return _feedback_report(arf, parts, message)
        return _text_bounce(message, parts)
    except Exception:  # a malformed message must cost a log line, never the receiver
        log.warning("a bounce message could not be read", exc_info=True)
        return []


def _parts(message: Message) -> list[Message]:
    """The message's parts, depth first, without descending into a returned message."""
    found: list[Message] = []
    pending = [message]
    while pending and len(found) < MAX_PARTS:
        part = pending.pop(0)
        found.append(part)
        if part.get_content_maintype() == "multipart":
            children = part.get_payload()
            if isinstance(children, list):
                pending[:0] = [child for child in children if isinstance(child, Message)]
    return found


# -- RFC 3464 delivery status notifications


def _delivery_status(report: Message, parts: list[Message], message: Message) -> list[Feedback]:
    blocks = _field_blocks(report)
    if not blocks:
        return []
    per_message, per_recipient = blocks[0], blocks[1:]
    reporter = typed_value(per_message.get("reporting-mta", ""))
    message_id = _returned_message_id(parts, message)
    reports = []
    for fields in per_recipient[:MAX_RECIPIENTS]:
        status = status_in(fields.get("status", ""))
        action = fields.get("action", "").strip().lower()
        if action != "failed" and not (not action and status and status.startswith("5.")):
            continue  # delayed, delivered, relayed, expanded: nothing has bounced
        diagnostic = typed_value(fields.get("diagnostic-code", ""))
        status = specific_status(status, diagnostic)
        smtp_code = leading_code(diagnostic)
        address = typed_value(fields.get("original-recipient", "")) or typed_value(fields.get("final-recipient", ""))
        reports.append(
            Feedback(
                kind=classify(status, smtp_code, diagnostic),
                source=FeedbackSource.DSN,
                address=_bare(address),
                status=status,
                smtp_code=smtp_code,
                diagnostic=one_line(diagnostic or fields.get("status", "")),
                message_id=message_id,
                reporter=reporter or None,
            )
        )
    return reports


def _field_blocks(part: Message) -> list[dict[str, str]]:
    """The blocks of "Name: value" fields of a delivery-status part, field names lowercased."""
    encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
    payload = part.get_payload()
    if isinstance(payload, list) and encoding not in ("base64", "quoted-printable"):
        # The parser split message/delivery-status into blocks; message/global-delivery-status comes
        # as one message whose headers are the first block and whose body holds the others.
        blocks = []
        for block in (item for item in payload if isinstance(item, Message)):
            blocks.append(_fields(block))
            rest = block.get_payload(decode=True)  # bytes: the text form would lose 8-bit UTF-8
            if isinstance(rest, bytes) and rest.strip():
                blocks.extend(_text_blocks(rest.decode("utf-8", "replace")))
        return [block for block in blocks if block]
    text = "".join(str(item) for item in payload) if isinstance(payload, list) else str(payload)
    return _text_blocks(_decoded(text, encoding))


def _text_blocks(text: str) -> list[dict[str, str]]:
    blocks = re.split(r"\r?\n[ \t]*\r?\n", text.strip())
    parsed = (_fields(Parser(policy=compat32).parsestr(block, headersonly=True)) for block in blocks)
    return [fields for fields in parsed if fields]


def _fields(block: Message) -> dict[str, str]:
    return {name.lower(): _text(value) for name, value in block.items()}


def _decoded(text: str, encoding: str) -> str:
    data = text.encode("ascii", "surrogateescape")
    try:
        if encoding == "base64":
            data = base64.b64decode(data)
        elif encoding == "quoted-printable":
            data = quopri.decodestring(data)
    except (binascii.Error, ValueError):
        return ""
    return data.decode("utf-8", "replace")


def _text(value: object) -> str:
    """A header value as text: 8-bit UTF-8 (global DSNs) arrives as surrogate escapes."""
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _bare(address: str) -> str | None:
    address = address.strip().strip("<>").strip()
    return address[:320] if "@" in address else None


def _returned_message_id(parts: list[Message], message: Message) -> str | None:
    """The Message-ID of the message that bounced, from the returned message or headers, else the
    report's In-Reply-To (Exchange sets it)."""
    for part in parts:
        if part.get_content_type() not in _RETURNED:
            continue
        headers = _returned_headers(part)
        if headers is not None and headers.get("message-id"):
            found = _BRACKETED_ID.search(_text(headers["message-id"]))
            if found:
                return found.group(0)
    in_reply_to = _BRACKETED_ID.search(_text(message.get("in-reply-to", "")))
    return in_reply_to.group(0) if in_reply_to else None


def _returned_headers(part: Message) -> Message | None:
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload[0] if payload and isinstance(payload[0], Message) else None
    encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
    return Parser(policy=compat32).parsestr(_decoded(str(payload), encoding), headersonly=True)


# -- RFC 5965 abuse reports


def _feedback_report(arf: Message, parts: list[Message], message: Message) -> list[Feedback]:
    blocks = _field_blocks(arf)
    fields = blocks[0] if blocks else {}
    feedback_type = fields.get("feedback-type", "").strip().lower()
    if feedback_type not in _COMPLAINT_TYPES:
        return []  # not-spam, auth-failure (a DMARC failure report), or no type at all
    address = _bare(fields.get("original-rcpt-to", "")) or _returned_recipient(parts)
    # Reported-Domain is the domain complained about (ours): the reporter is the MTA or the From.
    reporter = (
        typed_value(fields.get("reporting-mta", "")) or parseaddr(_text(message.get("from", "")))[1].rpartition("@")[2]
    )
    return [
        complaint_report(
            FeedbackSource.ARF,
            address,
            feedback_type=feedback_type,
            agent=" ".join(fields.get("user-agent", "").split()),
            message_id=_returned_message_id(parts, message),
            reporter=reporter or None,
        )
    ]


def _returned_recipient(parts: list[Message]) -> str | None:
    """The To of the returned message when it names one address (reports often redact Original-Rcpt-To)."""
    for part in parts:
        if part.get_content_type() in _RETURNED:
            headers = _returned_headers(part)
            if headers is not None:
                addresses = [address for _, address in getaddresses([_text(headers.get("to", ""))]) if address]
                return _bare(addresses[0]) if len(addresses) == 1 else None
    return None


# -- bounces written as text


def _text_bounce(message: Message, parts: list[Message]) -> list[Feedback]:
    sender = parseaddr(_text(message.get("from", "")))[1]
    subject = _text(message.get("subject", ""))
    if not (_BOUNCE_SENDER.match(sender) or _BOUNCE_SUBJECT.search(subject)):
        return []
    body = _plain_text(parts)
    if not _FAILURE_WORDS.search(body) or _DELAY_WORDS.search(body):
        return []
    reply = _diagnostic_line(body)  # the code and status are read there first: the copy of the message may hold numbers
    status = status_in(reply) or status_in(body)
    code = _SMTP_CODE.search(reply) or _SMTP_CODE.search(body)
    smtp_code = int(code.group(1)) if code else None
    addresses = _text_recipients(message, body)
    diagnostic = one_line(reply)
    message_id = _returned_message_id(parts, message) or _message_id_in_text(body)
    return [
        Feedback(
            kind=classify(status, smtp_code, body),
            source=FeedbackSource.TEXT,
            address=address,
            status=status,
            smtp_code=smtp_code,
            diagnostic=diagnostic,
            message_id=message_id,
            reporter=sender.rpartition("@")[2] or None,
        )
        for address in addresses
    ]


def _plain_text(parts: list[Message]) -> str:
    texts = []
    for part in parts:
        if part.get_content_type() == "text/plain":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                texts.append(data.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(texts).replace("\r\n", "\n")[:TEXT_SCAN_CHARS]


def _text_recipients(message: Message, body: str) -> list[str | None]:
    """The failed recipients: Exim's X-Failed-Recipients header, else the addresses the text lists;
    [None] when none is named (the envelope's token may still name the recipient)."""
    header = _text(message.get("x-failed-recipients", ""))
    named = [address for _, address in getaddresses([header]) if "@" in address]
    if not named:
        named = [match.group(1) or match.group(2) for match in _TEXT_RECIPIENT.finditer(body)]
    unique = list(dict.fromkeys(address.strip() for address in named))[:MAX_RECIPIENTS]
    return list(unique) or [None]


def _diagnostic_line(body: str) -> str:
    """The line holding the remote server's reply, else the first line that says delivery failed."""
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    for line in lines:
        if _SMTP_CODE.match(line) or status_in(line):
            return line
    return next((line for line in lines if _FAILURE_WORDS.search(line)), "")


def _message_id_in_text(body: str) -> str | None:
    found = _MESSAGE_ID_LINE.search(body)
    return found.group(1) if found else None
