"""Delivery: handing built messages to a relay, and what the relay's answers mean."""

from __future__ import annotations

from email_service.config import Settings
from email_service.delivery.smtp import SMTPTransport
from email_service.delivery.transport import LogTransport, Transport


def make_transport(settings: Settings) -> Transport:
    """The transport the settings ask for: the SMTP relay, or a log line per message."""
    if settings.mail_suppress_send:
        return LogTransport()
    return SMTPTransport(settings)
