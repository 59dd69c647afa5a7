"""``email-service bounces``: the SMTP server the bounce domain's MX points to (aiosmtpd).

It accepts mail only for addresses at BOUNCE_DOMAIN and at most BOUNCE_MAX_BYTES of it (552
beyond), and answers 250 to every report it could read, matched or not, so that a forged or
unknown report teaches a sender nothing and causes no bounce of its own. When the database does
not answer it says 451, and the sending MTA keeps the report and tries again: none is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiosmtpd.controller import Controller

from email_service.services import Services
from email_service.services.bounces import Outcome, record_mail

log = logging.getLogger(__name__)

RecordMail = Callable[[Services, bytes, Sequence[str]], list[Outcome]]


class BounceHandler:
    def __init__(self, services: Services, record: RecordMail = record_mail) -> None:
        self._services = services
        self._domain = services.settings.bounce_domain.lower()
        self._record = record

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if address.rpartition("@")[2].lower() != self._domain:
            return "550 5.1.1 This server takes bounces for its own domain only"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or b""
        try:
            outcomes = await asyncio.get_running_loop().run_in_executor(
                None, self._record, self._services, raw, list(envelope.rcpt_tos)
            )
        except Exception:
            log.exception("a bounce report could not be recorded; the sender is asked to try again")
            return "451 4.3.0 Cannot record this report now, try again later"
        log.info("bounce report for %s: %s", ", ".join(envelope.rcpt_tos), ", ".join(outcomes))
        return "250 2.0.0 OK"


def start_bounce_receiver(services: Services, host: str, port: int) -> Controller:
    """Start the receiver in a background thread; call ``.stop()`` on the result to end it."""
    controller = Controller(
        BounceHandler(services),
        hostname=host,
        port=port,
        data_size_limit=services.settings.bounce_max_bytes,
        enable_SMTPUTF8=True,
        server_hostname=services.settings.bounce_domain,
    )
    controller.start()
    return controller
