"""The transport seam: what the deliver service needs from anything that sends messages."""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterable
from typing import Protocol, TypeVar

from email_service.errors import DeliveryError
from email_service.message.mime import Envelope

T = TypeVar("T")

log = logging.getLogger(__name__)


class Connection(Protocol):
    """One session with a relay, reused for many messages."""

    def stream(self, messages: Iterable[tuple[T, Envelope]]) -> Generator[tuple[T, DeliveryError | None]]:
        """Hand each (item, message) over as it is taken; yield each item with None when the relay took
        it, or the DeliveryError saying why not. RelayUnavailable may be raised instead (no session)."""
        ...

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
    def stream(self, messages: Iterable[tuple[T, Envelope]]) -> Generator[tuple[T, DeliveryError | None]]:
        for item, envelope in messages:
            log.info("send suppressed: %d bytes from %s to a recipient", len(envelope.data), envelope.sender)
            yield item, None

    def close(self) -> None:
        pass
