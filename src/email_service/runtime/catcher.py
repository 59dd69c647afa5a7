"""A local SMTP catcher (aiosmtpd) that keeps every message it receives as a file in a Maildir."""

from __future__ import annotations

import logging
import mailbox
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

log = logging.getLogger(__name__)


class MaildirHandler:
    """aiosmtpd handler: each accepted message becomes one file in ``maildir`` (new/)."""

    def __init__(self, maildir: Path) -> None:
        for folder in ("tmp", "new", "cur"):  # Maildir(create=True) skips these if maildir exists
            (maildir / folder).mkdir(parents=True, exist_ok=True)
        self._maildir = mailbox.Maildir(maildir, create=True)
        self._lock = threading.Lock()

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
