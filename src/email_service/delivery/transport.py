"""The transport seam: what the deliver service needs from anything that sends messages."""

from __future__ import annotations

import logging
from typing import Protocol

from ..messages import Envelope

log = logging.getLogger(__name__)


class Connection(Protocol):
    """One session with a relay, reused for many messages."""

    def send(self, envelope: Envelope) -> None:
        """Hand one message over; raise a DeliveryError subclass when the relay does not take it."""

    def close(self) -> None:
        """End the session politely; never raises."""


class Transport(Protocol):
    def connect(self) -> Connection:
        """A new session; connecting may be deferred to the first send."""


class LogTransport:
    """MAIL_SUPPRESS_SEND: every message is logged (never its body) and counted as sent."""

    def connect(self) -> Connection:
        return _LogConnection()


class _LogConnection:
    def send(self, envelope: Envelope) -> None:
        log.info("send suppressed: %d bytes from %s to a recipient", len(envelope.data), envelope.sender)

    def close(self) -> None:
        pass
