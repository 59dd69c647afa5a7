"""Building the message one recipient receives from a rendered template."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from typing import Any

import idna

from .errors import TemplateError
from .header_values import describe_control_character
from .rendering import RenderedEmail

# SMTP line endings, and 7bit output so every non-ASCII or long-lined body is encoded
# (quoted-printable or base64): no line can exceed 998 octets and no relay needs 8BITMIME.
SMTP_POLICY = policy.SMTP.clone(cte_type="7bit")
# A non-ASCII local part cannot be encoded in a header: such messages need SMTPUTF8 (RFC 6531).
SMTPUTF8_POLICY = SMTP_POLICY.clone(utf8=True)


@dataclass(frozen=True, eq=False)  # compared by identity: a batch's messages share the same objects
class AttachmentFile:
    """A file attached to every message of a job."""

    filename: str
    content_type: str  # type/subtype, checked at intake
    data: bytes


@dataclass(frozen=True)
class Envelope:
    """What the relay is told: the sender, the one recipient, and the message bytes."""

    sender: str
    recipient: str
    data: bytes


def message_id_for(job_id: str, position: int, sender: str) -> str:
    """The Message-ID of a job's message to the recipient at ``position``, the same on every attempt:
    derived from what never changes, so it is fixed when the job is accepted."""
    domain = transport_address(envelope_sender(sender)).rpartition("@")[2] or "localhost"
    return f"<{job_id}.{position}@{domain}>"


@lru_cache(maxsize=256)
def envelope_sender(sender: str) -> str:
    """The bare address of a From value such as ``Name <addr@example.org>`` (MAIL FROM takes it)."""
    return parseaddr(sender)[1]


def transport_address(address: str) -> str:
    """The address as relays expect it: an internationalized domain in its ASCII (IDNA) form."""
    local, _, domain = address.rpartition("@")
    if domain.isascii():
        return address
    return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"


def format_recipient(address: str, name: str | None) -> str:
    """The To value for one recipient, with the display name quoted or encoded as needed."""
    if not name:
        return address
    local, _, domain = address.rpartition("@")
    return str(Address(display_name=name, username=local, domain=domain))


class MessageBuilder:
    """Builds the messages of a batch, encoding what its recipients share only once.

    Building a message with EmailMessage costs ~0.8 ms, mostly parsing and folding headers and
    encoding the body; of that, only Date, To and Message-ID differ between two recipients whose
    rendered template is the same. Those three lines are made per message; the rest (From,
    Subject, the other headers, the encoded parts and attachments) once per distinct rendering.
    """

    def __init__(self, cache_size: int = 16) -> None:
        self._shared: dict[tuple[object, ...], bytes] = {}
        self._cache_size = cache_size

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
    ) -> Envelope:
        """One message for one recipient; every header value is checked for control characters.

        ``headers`` (the job's Reply-To and X-* headers) replace the template's of the same name.
        """
        _check_header("To", recipient_name or "")
        _check_header("Message-ID", message_id)
        recipient = transport_address(recipient)
        policy = SMTP_POLICY if recipient.isascii() else SMTPUTF8_POLICY
        if recipient_name or not recipient.isascii():
            to_line = _encode_headers(policy, [("To", format_recipient(recipient, recipient_name))])
        else:
            to_line = f"To: {recipient}\r\n".encode("ascii")  # a validated address needs no encoding
        own_lines = f"Date: {format_datetime(date)}\r\n".encode("ascii") + to_line
        own_lines += f"Message-ID: {message_id}\r\n".encode("ascii")
        return Envelope(
            sender=envelope_sender(sender),
            recipient=recipient,
            data=own_lines + self._shared_part(rendered, sender, subject, policy, headers, attachments),
        )

    def _shared_part(
        self,
        rendered: RenderedEmail,
        sender: str,
        subject: str,
        policy: Policy,
        job_headers: tuple[tuple[str, str], ...],
        attachments: tuple[AttachmentFile, ...],
    ) -> bytes:
        key = (rendered, sender, subject, policy is SMTP_POLICY, job_headers, attachments)
        shared = self._shared.get(key)
        if shared is None:
            replaced = {name.lower() for name, _ in job_headers} | {"subject"}
            headers = [("From", sender), ("Subject", rendered.header("Subject") or subject)]
            headers += [(k, v) for k, v in rendered.headers if k.lower() not in replaced]
            headers += job_headers
            for name, value in headers:
                _check_header(name, value)
            shared = _encode_headers(policy, headers) + _body(rendered, attachments, policy)
            if len(self._shared) >= self._cache_size:
                self._shared.pop(next(iter(self._shared)))
            self._shared[key] = shared
        return shared


def _body(rendered: RenderedEmail, attachments: tuple[AttachmentFile, ...], policy: Policy) -> bytes:
    """The MIME body: one part, or multipart/alternative (text, then HTML), inside multipart/mixed
    when there are attachments."""
    body = EmailMessage(policy=policy)
    if rendered.text is not None:
        body.set_content(rendered.text, subtype="plain", charset="utf-8")
    if rendered.html is not None:
        if rendered.text is None:
            body.set_content(rendered.html, subtype="html", charset="utf-8")
        else:
            body.add_alternative(rendered.html, subtype="html", charset="utf-8")
    for attachment in attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        body.add_attachment(attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename)
    return body.as_bytes()


def build_message(rendered: RenderedEmail, **fields: Any) -> Envelope:
    """One message on its own (see MessageBuilder for the arguments)."""
    return MessageBuilder(cache_size=1).build(rendered, **fields)


def _encode_headers(policy: Policy, headers: list[tuple[str, str]]) -> bytes:
    """Header lines as the policy folds and encodes them (RFC 2047 for non-ASCII text)."""
    message = EmailMessage(policy=policy)
    for name, value in headers:
        message[name] = value
    return message.as_bytes()[: -len(b"\r\n")]  # without the blank line that ends a header block


def _check_header(name: str, value: str) -> None:
    reason = describe_control_character(value)
    if reason:
        raise TemplateError(f"header {name}: {reason}")
