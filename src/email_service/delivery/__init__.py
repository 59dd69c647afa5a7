"""Delivery: handing built messages to a relay, and what the relay's answers mean."""

from __future__ import annotations

from ..config import Settings
from .smtp import SMTPTransport
from .transport import LogTransport, Transport


def make_transport(settings: Settings) -> Transport:
    """The transport the settings ask for: the SMTP relay, or a log line per message."""
    if settings.mail_suppress_send:
        return LogTransport()
    return SMTPTransport(settings)
