"""A real SMTP server (aiosmtpd) for tests: records what it receives and misbehaves on request."""

from __future__ import annotations

import asyncio
import email
import socket
import threading
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


# The address the `refusing_sink` fixture answers 550 5.1.1 for: a mailbox that does not exist.
REFUSED = "gone@example.com"


@dataclass
class SinkHandler:
    """Accepts everything except the addresses in ``reject_rcpt`` (550 at RCPT) and ``defer_rcpt``
    (451 at RCPT)."""

    reject_rcpt: set[str] = field(default_factory=set)
    defer_rcpt: set[str] = field(default_factory=set)
    data_reply: str = "250 OK"
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(self, server: SMTP, session: object, envelope: object, hostname: str, responses: list[str]):
        with self.lock:
            self.connections += 1
        session.host_name = hostname  # type: ignore[attr-defined]
        return responses

    async def handle_RCPT(self, server: SMTP, session: object, envelope, address: str, rcpt_options: list[str]) -> str:
        if address in self.reject_rcpt:
            return "550 5.1.1 No such user here"
        if address in self.defer_rcpt:
            return "451 4.7.1 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: object, envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self.data_reply.startswith("250"):
            return self.data_reply
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return self.data_reply

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.received)


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SMTPSink:
    """An aiosmtpd server on 127.0.0.1 and a free port, running in a thread."""

    def __init__(self, handler: SinkHandler | None = None, **smtp_parameters: object) -> None:
        self.handler = handler or SinkHandler()
        self.port = free_port()
        self._controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=True, **smtp_parameters
        )

    def start(self) -> SMTPSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
