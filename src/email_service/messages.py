"""Building the message one recipient receives from a rendered template."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import idna

from .errors import TemplateError
from .header_values import describe_control_character
from .rendering import RenderedEmail

# SMTP line endings, and 7bit output so every non-ASCII or long-lined body is encoded
# (quoted-printable or base64): no line can exceed 998 octets and no relay needs 8BITMIME.
SMTP_POLICY = policy.SMTP.clone(cte_type="7bit")
# A non-ASCII local part cannot be encoded in a header: such messages need SMTPUTF8 (RFC 6531).
SMTPUTF8_POLICY = SMTP_POLICY.clone(utf8=True)


@dataclass(frozen=True)
class Envelope:
    """What the relay is told: the sender, the one recipient, and the message bytes."""

    sender: str
    recipient: str
    data: bytes


def message_id_for(job_id: str, position: int, sender: str) -> str:
    """The Message-ID of a job's message to the recipient at ``position``, the same on every attempt:
    derived from what never changes, so it is fixed when the job is accepted."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    return f"<{job_id}.{position}@{domain}>"


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


def build_message(
    rendered: RenderedEmail,
    *,
    sender: str,
    recipient: str,
    recipient_name: str | None,
    subject: str,
    message_id: str,
    date: datetime,
) -> Envelope:
    """One message for one recipient; header values were checked at intake and are checked again here."""
    _check_header("To", recipient_name or "")
    recipient = transport_address(recipient)
    message = EmailMessage(policy=SMTP_POLICY if recipient.isascii() else SMTPUTF8_POLICY)
    to_value = format_recipient(recipient, recipient_name)
    headers = [
        ("Date", format_datetime(date)),
        ("From", sender),
        ("To", to_value),
        ("Subject", rendered.header("Subject") or subject),
        ("Message-ID", message_id),
    ]
    headers += [(k, v) for k, v in rendered.headers if k.lower() != "subject"]
    for name, value in headers:
        _check_header(name, value)
        message[name] = value
    message.set_content(rendered.body, subtype=rendered.subtype, charset="utf-8")
    return Envelope(sender=parseaddr(sender)[1], recipient=recipient, data=message.as_bytes())


def _check_header(name: str, value: str) -> None:
    reason = describe_control_character(value)
    if reason:
        raise TemplateError(f"header {name}: {reason}")
