"""``email-service bounce-mailbox``: reads the bounces that arrive in an IMAP mailbox.

For users whose bounce address is an ordinary mailbox. Each poll reads the unseen messages without
marking them (BODY.PEEK), records what they report, then flags them \\Seen; a message whose report
could not be recorded (the database did not answer) stays unseen and is read again at the next
poll. Nothing is ever deleted: the mailbox is the user's.
"""

from __future__ import annotations

import imaplib
import logging
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from urllib.parse import unquote, urlsplit

from email_service import metrics
from email_service.errors import ConfigurationError
from email_service.services import Services
from email_service.services.bounces import Outcome, record_mail

log = logging.getLogger(__name__)

IMAP_TIMEOUT = 30.0
MESSAGES_PER_POLL = 500  # a backlog is read over several polls, each one bounded
# Where a copy in a mailbox keeps the address it was delivered to (the SMTP envelope is gone).
_DELIVERY_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")

RecordMail = Callable[[Services, bytes, Sequence[str]], list[Outcome]]


@dataclass(frozen=True)
class MailboxAddress:
    secure: bool
    host: str
    port: int
    user: str
    password: str
    mailbox: str

    @classmethod
    def parse(cls, url: str) -> MailboxAddress:
        """imaps://user:password@host[:port]/MAILBOX, or imap:// for a server on the loopback."""
        parts = urlsplit(url)
        if parts.scheme not in ("imap", "imaps") or not parts.hostname or parts.username is None:
            raise ConfigurationError("BOUNCE_IMAP_URL: not like imaps://user:password@host/INBOX")
        if parts.scheme == "imap" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
            raise ConfigurationError("BOUNCE_IMAP_URL: imap:// (no TLS) is for a server on this machine only")
        return cls(
            secure=parts.scheme == "imaps",
            host=parts.hostname,
            port=parts.port or (993 if parts.scheme == "imaps" else 143),
            user=unquote(parts.username),
            password=unquote(parts.password or ""),
            mailbox=unquote(parts.path.lstrip("/")) or "INBOX",
        )


def poll_once(services: Services, address: MailboxAddress, record: RecordMail = record_mail) -> int:
    """Read the mailbox's unseen messages once; how many were recorded (and flagged seen)."""
    imap = (
        # imaplib verifies nothing unless given a context: this one checks the chain and the host name.
        imaplib.IMAP4_SSL(address.host, address.port, ssl_context=ssl.create_default_context(), timeout=IMAP_TIMEOUT)
        if address.secure
        else imaplib.IMAP4(address.host, address.port, timeout=IMAP_TIMEOUT)
    )
    with imap:
        imap.login(address.user, address.password)
        imap.select(_quoted(address.mailbox))
        _, found = imap.uid("SEARCH", "UNSEEN")
        uids = [uid.decode("ascii") for uid in found[0].split()[:MESSAGES_PER_POLL]] if found and found[0] else []
        done = 0
        for uid in uids:
            raw = _fetch(imap, uid, services.settings.bounce_max_bytes)
            if raw is None:  # over BOUNCE_MAX_BYTES: never downloaded, never read again
                metrics.feedback_ignored("too_large")
                imap.uid("STORE", uid, "+FLAGS", "(\\Seen)")
                continue
            try:
                outcomes = record(services, raw, _delivered_to(raw))
            except Exception:
                log.exception("bounce message %s of the mailbox could not be recorded; read again next poll", uid)
                continue
            imap.uid("STORE", uid, "+FLAGS", "(\\Seen)")
            log.info("bounce message %s of the mailbox: %s", uid, ", ".join(outcomes))
            done += 1
        return done


def run_poller(services: Services, address: MailboxAddress, interval: float, stop: threading.Event) -> None:
    """Poll every ``interval`` seconds until ``stop`` is set; a failing poll is logged and retried."""
    while not stop.is_set():
        try:
            poll_once(services, address)
        except (OSError, imaplib.IMAP4.error) as exc:
            log.warning("bounce mailbox %s:%d not read: %s", address.host, address.port, exc)
        stop.wait(interval)


def _fetch(imap: imaplib.IMAP4, uid: str, limit: int) -> bytes | None:
    """The message's bytes, or None when it is over ``limit`` (it is not downloaded)."""
    _, sized = imap.uid("FETCH", uid, "(RFC822.SIZE)")
    size = _size(sized)
    if size is None or size > limit:
        return None
    _, fetched = imap.uid("FETCH", uid, "(BODY.PEEK[])")
    for item in fetched:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
            return item[1]
    return None


def _size(response: list[object]) -> int | None:
    for item in response:
        text = item.decode("ascii", "replace") if isinstance(item, bytes) else str(item)
        rest = text.partition("RFC822.SIZE ")[2]
        digits = rest.split(")")[0].split()[0] if rest else ""
        if digits.isdigit():
            return int(digits)
    return None


def _delivered_to(raw: bytes) -> list[str]:
    headers = BytesHeaderParser().parsebytes(raw[:200_000])
    values = [str(value) for name in _DELIVERY_HEADERS for value in headers.get_all(name, [])]
    return [address for _, address in getaddresses(values) if address]


def _quoted(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'
