"""A local SMTP catcher (aiosmtpd) that keeps every message it receives as a file in a Maildir, and
refuses the recipients at REFUSED_DOMAIN, so that failures can be tried on a laptop."""

from __future__ import annotations

import logging
import mailbox
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

log = logging.getLogger(__name__)

# Under example.com (RFC 2606): no real recipient is ever there. A 5.7.1 policy refusal, not an unknown
# address: the recipient fails without being suppressed, so "retry the failed" can be tried again.
REFUSED_DOMAIN = "refused.example.com"


class MaildirHandler:
    """aiosmtpd handler: each accepted message becomes one file in ``maildir`` (new/)."""

    def __init__(self, maildir: Path) -> None:
        for folder in ("tmp", "new", "cur"):  # Maildir(create=True) skips these if maildir exists
            (maildir / folder).mkdir(parents=True, exist_ok=True)
        self._maildir = mailbox.Maildir(maildir, create=True)
        self._lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address.rpartition("@")[2].lower() == REFUSED_DOMAIN:
            return f"550 5.7.1 the catcher refuses every recipient at {REFUSED_DOMAIN}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            key = self._maildir.add(envelope.original_content)
        log.debug("caught message %s for %d recipient(s)", key, len(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


def start_catcher(host: str, port: int, maildir: Path) -> Controller:
    """Start the catcher in a background thread; call ``.stop()`` on the result to end it."""
    controller = Controller(MaildirHandler(maildir), hostname=host, port=port, enable_SMTPUTF8=True)
    controller.start()
    return controller
