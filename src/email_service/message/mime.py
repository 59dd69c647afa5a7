"""Building the message one recipient receives from a rendered template."""

from __future__ import annotations

import base64
import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage, MIMEPart
from email.policy import Policy
from email.utils import format_datetime
from functools import lru_cache

from email_service.errors import TemplateError
from email_service.message import unsubscribe
from email_service.message.address_headers import address_line, parse_mailboxes, transport_address
from email_service.message.attachment_headers import attachment_head
from email_service.message.folding import ENCODED_WORD_LINE_WIDTH
from email_service.message.header_values import (
    describe_header_block,
    describe_unsafe_text,
)
from email_service.message.rendering import RenderedEmail
from email_service.message.verp import MESSAGE_ID_MAC_LENGTH, message_id_mac

# SMTP line endings, and 7bit output so every non-ASCII or long-lined body is encoded
# (quoted-printable or base64): no line can exceed 998 octets and no relay needs 8BITMIME.
# 76 columns: the longest quoted-printable line (RFC 2045 section 6.7) and header line holding an
# encoded word (RFC 2047 section 2); the package folds and encodes to max_line_length.
SMTP_POLICY = policy.SMTP.clone(cte_type="7bit", max_line_length=ENCODED_WORD_LINE_WIDTH)
# A non-ASCII local part cannot be encoded in a header: such messages need SMTPUTF8 (RFC 6531).
SMTPUTF8_POLICY = SMTP_POLICY.clone(utf8=True)
# Written by address_headers, never by the email package's folder (see there why).
_ADDRESS_HEADERS = frozenset({"from", "reply-to"})


def date_value(date: datetime) -> str:
    """The Date header's value (RFC 5322 §3.3), which counts whole seconds."""
    return _formatted_date(date.replace(microsecond=0))


@lru_cache(maxsize=4)  # a batch sends many messages a second: formatting once per second is enough
def _formatted_date(date: datetime) -> str:
    return format_datetime(date)


@dataclass(frozen=True, eq=False)  # compared by identity: a batch's messages share the same objects
class AttachmentFile:
    """A file attached to every message of a job."""

    filename: str
    content_type: str  # type/subtype, checked at intake
    data: bytes


@dataclass(frozen=True)
class Envelope:
    """What the relay is told: the sender and the one recipient (bare addresses), and the message bytes."""

    sender: str
    recipient: str
    data: bytes


def message_id_for(job_id: str, position: int, sender: str, secret: str) -> str:
    """The Message-ID of a job's message to the recipient at ``position``, the same on every attempt:
    derived from what never changes, so it is fixed when the job is accepted. With ``secret``
    (BOUNCE_SECRET) it carries a MAC, so that nobody can make up the Message-ID of another recipient."""
    domain = transport_address(envelope_sender(sender)).rpartition("@")[2] or "localhost"
    mac = f".{message_id_mac(job_id, position, secret)}" if secret else ""
    return f"<{job_id}.{position}{mac}@{domain}>"


_OUR_MESSAGE_ID = re.compile(
    r"<?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.(\d{1,9})"
    rf"(?:\.([a-z2-7]{{{MESSAGE_ID_MAC_LENGTH}}}))?@[^<>@\s]+>?"
)


def read_message_id(value: str, secret: str) -> tuple[str, int] | None:
    """The (job id, position) of a Message-ID that ``message_id_for`` made; None for any other, and,
    with ``secret``, for one whose MAC is missing or does not check."""
    match = _OUR_MESSAGE_ID.fullmatch(value.strip().lower())
    if match is None:
        return None
    job_id, position, mac = match.group(1), int(match.group(2)), match.group(3)
    if secret and not (mac and hmac.compare_digest(mac, message_id_mac(job_id, position, secret))):
        return None
    return job_id, position


@lru_cache(maxsize=256)
def envelope_sender(sender: str) -> str:
    """The bare address of a From value such as ``Name <addr@example.org>`` (MAIL FROM takes it); TemplateError
    unless it is exactly one mailbox."""
    ((_, address),) = parse_mailboxes("From", sender, single=True)
    return address


class MessageBuilder:
    """Builds the messages of a batch, encoding what its recipients share only once.

    Building a message with EmailMessage is mostly parsing and folding headers and encoding the
    body, and only Date, To and Message-ID differ between two recipients whose rendered template
    is the same (bench/costs.py measures both ways). Those three lines are made per message; the other headers and
    the encoded text and HTML once per distinct rendering, and each attachment once per batch (a
    10 MB file is base64-encoded once, and the cache of renderings holds no copy of it).
    """

    def __init__(self, cache_size: int = 16) -> None:
        self._shared: dict[tuple[object, ...], tuple[bytes, bytes]] = {}
        self._cache_size = cache_size
        self._attachment_parts: dict[AttachmentFile, bytes] = {}
        # Neither base64 nor quoted-printable text can contain "=_": no part can end the multipart early.
        self._boundary = f"=_{uuid.uuid4().hex}"

    def build(
        self,
        rendered: RenderedEmail,
        *,
        sender: str,
        recipient: str,
        recipient_name: str | None,
        subject: str,
        message_id: str,
        date: datetime,
        headers: tuple[tuple[str, str], ...] = (),
        attachments: tuple[AttachmentFile, ...] = (),
        unsubscribe_url: str | None = None,
        reference: tuple[str, str] | None = None,
    ) -> Envelope:
        """One message for one recipient; every header value is checked for control characters, and
        every header block as written holds exactly the fields meant (no line added by any value).

        ``headers`` (the job's Reply-To and X-* headers) replace the template's of the same name;
        ``unsubscribe_url`` adds this recipient's List-Unsubscribe (one-click over https, RFC 8058), ``reference``
        a (name, token) header naming the recipient to a provider's bounce events.
        """
        _check_header("To", recipient_name or "")
        _check_header("Message-ID", message_id)
        recipient = transport_address(recipient)
        policy = SMTP_POLICY if recipient.isascii() else SMTPUTF8_POLICY
        to_line = address_line("To", [(recipient_name, recipient)], utf8=policy is SMTPUTF8_POLICY)
        own_lines = f"Date: {date_value(date)}\r\n".encode("ascii") + to_line
        own_lines += f"Message-ID: {message_id}\r\n".encode("ascii")
        if unsubscribe_url is not None:
            _check_header("List-Unsubscribe", unsubscribe_url)
            own_lines += unsubscribe.header_lines(unsubscribe_url)
        if reference is not None:
            _check_header(*reference)
            own_lines += f"{reference[0]}: {reference[1]}\r\n".encode("ascii")
        # These lines are written here from values checked above, each on one line (the To name as encoded
        # words or a quoted string): no block check per message. Every other block is checked once when made.
        header_lines, content = self._shared_parts(rendered, sender, subject, policy, headers)
        return Envelope(
            sender=envelope_sender(sender),
            recipient=recipient,
            data=own_lines + header_lines + self._body(content, attachments, policy),
        )

    def _shared_parts(
        self,
        rendered: RenderedEmail,
        sender: str,
        subject: str,
        policy: Policy,
        job_headers: tuple[tuple[str, str], ...],
    ) -> tuple[bytes, bytes]:
        """The header lines after Message-ID, and the encoded content part."""
        key = (rendered, sender, subject, policy is SMTP_POLICY, job_headers)
        shared = self._shared.get(key)
        if shared is None:
            replaced = {name.lower() for name, _ in job_headers} | {"subject"}
            headers = [("From", sender), ("Subject", rendered.header("Subject") or subject)]
            headers += [(k, v) for k, v in rendered.headers if k.lower() not in replaced]
            headers += job_headers
            for name, value in headers:
                _check_header(name, value)
            utf8 = policy is SMTPUTF8_POLICY
            address_headers = [(name, value) for name, value in headers if name.lower() in _ADDRESS_HEADERS]
            address_lines = b"".join(
                address_line(name, parse_mailboxes(name, value, single=name.lower() == "from"), utf8=utf8)
                for name, value in address_headers
            )
            other_headers = [(name, value) for name, value in headers if name.lower() not in _ADDRESS_HEADERS]
            header_lines = address_lines + _encode_headers(policy, other_headers)
            _check_block(header_lines, [name for name, _ in address_headers + other_headers])
            shared = (header_lines, _content_part(rendered, policy))
            if len(self._shared) >= self._cache_size:
                self._shared.pop(next(iter(self._shared)))
            self._shared[key] = shared
        return shared

    def _body(self, content: bytes, attachments: tuple[AttachmentFile, ...], policy: Policy) -> bytes:
        """MIME-Version and the content part, inside multipart/mixed with the attachments if any."""
        if not attachments:
            return b"MIME-Version: 1.0\r\n" + content
        boundary = self._boundary
        parts = [content, *(self._attachment_part(attachment) for attachment in attachments)]
        head = f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n--{boundary}\r\n'
        return b"".join(
            [
                head.encode("ascii"),
                f"\r\n--{boundary}\r\n".encode("ascii").join(parts),
                f"\r\n--{boundary}--\r\n".encode("ascii"),
            ]
        )

    def _attachment_part(self, attachment: AttachmentFile) -> bytes:
        part = self._attachment_parts.get(attachment)
        if part is None:
            _check_header("Content-Disposition", attachment.filename)
            try:
                head = attachment_head(attachment.filename, attachment.content_type)
            except ValueError as exc:
                raise TemplateError(f"attachment {attachment.filename!r}: {exc}") from None
            _check_block(head, ["Content-Type", "Content-Transfer-Encoding", "Content-Disposition"])
            # base64 in lines of 76 characters (RFC 2045 section 6.8), CRLF-ended as SMTP sends them.
            body = base64.encodebytes(attachment.data).replace(b"\n", b"\r\n")
            part = self._attachment_parts[attachment] = head + b"\r\n" + body
        return part


def _content_part(rendered: RenderedEmail, policy: Policy) -> bytes:
    """The text part, the HTML part, or both as multipart/alternative (text first), with its headers."""
    part = MIMEPart(policy=policy)
    if rendered.text is not None:
        part.set_content(rendered.text, subtype="plain", charset="utf-8")
    if rendered.html is not None:
        if rendered.text is None:
            part.set_content(rendered.html, subtype="html", charset="utf-8")
        else:
            part.add_alternative(rendered.html, subtype="html", charset="utf-8")
    encoded: bytes = part.as_bytes()
    # The block of each part: the first, then one after each boundary line, in the order walk() gives.
    boundaries = [re.escape(str(inner.get_boundary())) for inner in part.walk() if inner.is_multipart()]
    delimiter = f"(?<=\r\n)--(?:{'|'.join(boundaries)})\r\n" if boundaries else "(?!)"
    blocks = re.split(delimiter.encode("ascii"), encoded)
    for inner, block in zip(part.walk(), blocks, strict=True):
        _check_block(block[: block.index(b"\r\n\r\n") + 2], list(inner.keys()))
    return encoded


def _encode_headers(policy: Policy, headers: list[tuple[str, str]]) -> bytes:
    """Header lines as the policy folds and encodes them (RFC 2047 for non-ASCII text)."""
    message = EmailMessage(policy=policy)
    for name, value in headers:
        try:
            message[name] = value
        except ValueError as exc:  # e.g. a template setting Reply-To twice: "there may be at most 1"
            raise TemplateError(f"header {name}: {exc}") from None
        # The value as the email package will write it: it decodes RFC 2047 encoded words, so
        # "=?utf-8?b?DQpCY2M6...?=" would become a line break and a Bcc line if let through.
        _check_header(name, str(message[name]))
    return message.as_bytes()[: -len(b"\r\n")]  # without the blank line that ends a header block


def _check_header(name: str, value: str) -> None:
    reason = describe_unsafe_text(value)  # as given, and as a reader decodes its encoded words
    if reason:
        raise TemplateError(f"header {name}: {reason}")


def _check_block(block: bytes, names: list[str]) -> None:
    """The last word on a header block before it is sent: exactly the fields meant, no line break added."""
    if reason := describe_header_block(block, names):
        raise TemplateError(f"the message's header would be malformed: {reason}")
