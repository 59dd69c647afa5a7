"""The suppression lists: addresses that unsubscribed, bounced, complained or were added by hand are never sent to.

Each account has its own list, and one list is shared by all (``account`` None names it). What the recipient
asked of a sender (an unsubscribe, a complaint), and soft bounces (maybe the sender's doing), go on the list of
the account whose job sent the message; what the mailbox proves of itself (a hard bounce answered to RCPT, or
reported with our signed token or by a provider's signed event) goes on the shared list (services/bounces.py).
A job skips the addresses on its account's list and on the shared one. An account lists and changes only its
own list; operators change the shared one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from email_service.errors import Forbidden, InvalidAddress, NotFound, ValidationFailed
from email_service.message.addresses import dedup_key, normalize_address, quoted
from email_service.message.unsubscribe import is_valid, parse_token
from email_service.services import Services
from email_service.services.auth import Caller
from email_service.services.reports import find_job
from email_service.storage import suppressions
from email_service.storage.models import Recipient, SuppressionReason, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SuppressionView:
    email: str
    reason: str
    job_id: str | None
    created_at: datetime
    shared: bool  # on the shared list, not an account's


def list_of(caller: Caller, *, shared: bool) -> str | None:
    """The list a caller's request works on: its account's, or with ``shared`` the shared list, which only
    operators may read or change (Forbidden for others). With authentication off the caller has no account:
    its list is the shared one."""
    if shared and not caller.admin:
        raise Forbidden("the shared suppression list needs a key with the admin role")
    return None if shared else caller.account


def key_of(email: str) -> str:
    """The form addresses have in the list (normalized, domain and local part compared as recipients are)."""
    try:
        return dedup_key(normalize_address(email))
    except InvalidAddress as exc:
        detail = {"field": "email", "reason": str(exc), "address": quoted(email)}
        raise ValidationFailed("invalid address", [detail]) from None


def add(
    services: Services,
    email: str,
    *,
    account: str | None,
    reason: str = SuppressionReason.MANUAL,
    job_id: str | None = None,
) -> bool:
    """Put an address on ``account``'s list (None: the shared list); False when it already was there."""
    with services.sessions.begin() as session:
        return suppressions.add(session, key_of(email), reason, job_id, utcnow(), account=account)


def remove(services: Services, email: str, *, account: str | None) -> None:
    """Take an address off ``account``'s list (None: the shared list). NotFound when it is not on that list,
    whatever other lists hold it: another account's entry, or the shared one, is not the caller's to see."""
    with services.sessions.begin() as session:
        if not suppressions.remove(session, key_of(email), account=account):
            raise NotFound(f"{email!r} is not on this suppression list")


def page(
    services: Services, *, account: str | None, after: str | None, limit: int, address_part: str | None = None
) -> list[SuppressionView]:
    """The addresses of ``account``'s list (None: the shared list) in order after ``after``, optionally only
    those containing ``address_part``."""
    with services.readers() as session:
        rows = suppressions.page(session, account=account, after=after, limit=limit, address_part=address_part)
    return [SuppressionView(r.address, r.reason, r.job_id, r.created_at, r.account_id is None) for r in rows]


def unsubscribe(services: Services, token: str) -> str:
    """Suppress the recipient a one-click token names, for the account whose job sent it (the shared list for a
    job of no account); the address. NotFound for any bad token, so that a guessed token learns nothing. Doing
    it twice is doing it once."""
    parts = parse_token(token)
    with services.sessions.begin() as session:
        job = find_job(session, parts.job_id, None) if parts is not None else None
        if parts is None or job is None or job.unsubscribe_key is None or not is_valid(parts, job.unsubscribe_key):
            raise NotFound("this unsubscribe link is not valid")
        recipient = session.query(Recipient).filter_by(job_id=job.id, position=parts.position).one_or_none()
        if recipient is None:
            raise NotFound("this unsubscribe link is not valid")
        address, reason = dedup_key(recipient.address), SuppressionReason.UNSUBSCRIBED
        suppressions.add(session, address, reason, job.id, utcnow(), account=job.account_id)
    log.info("job %s recipient %d unsubscribed", job.id, recipient.id)
    return recipient.address
