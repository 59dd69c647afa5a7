"""The suppression list: addresses that unsubscribed, hard-bounced or were added by hand are never sent to."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from email_service.errors import InvalidAddress, NotFound, ValidationFailed
from email_service.message.addresses import dedup_key, normalize_address, quoted
from email_service.message.unsubscribe import is_valid, parse_token
from email_service.services import Services
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


def key_of(email: str) -> str:
    """The form addresses have in the list (normalized, domain and local part compared as recipients are)."""
    try:
        return dedup_key(normalize_address(email))
    except InvalidAddress as exc:
        detail = {"field": "email", "reason": str(exc), "address": quoted(email)}
        raise ValidationFailed("invalid address", [detail]) from None


def add(services: Services, email: str, reason: str = SuppressionReason.MANUAL, job_id: str | None = None) -> bool:
    """Suppress an address; False when it already was."""
    with services.sessions.begin() as session:
        return suppressions.add(session, key_of(email), reason, job_id, utcnow())


def remove(services: Services, email: str) -> None:
    with services.sessions.begin() as session:
        if not suppressions.remove(session, key_of(email)):
            raise NotFound(f"{email!r} is not suppressed")


def page(
    services: Services, *, after: str | None, limit: int, address_part: str | None = None
) -> list[SuppressionView]:
    """Suppressed addresses in order after ``after``, optionally only those containing ``address_part``."""
    with services.readers() as session:
        rows = suppressions.page(session, after=after, limit=limit, address_part=address_part)
    return [SuppressionView(r.address, r.reason, r.job_id, r.created_at) for r in rows]


def unsubscribe(services: Services, token: str) -> str:
    """Suppress the recipient a one-click token names; the address. NotFound for any bad token,
    so that a guessed token learns nothing. Doing it twice is doing it once."""
    parts = parse_token(token)
    with services.sessions.begin() as session:
        job = find_job(session, parts.job_id, None) if parts is not None else None
        if parts is None or job is None or job.unsubscribe_key is None or not is_valid(parts, job.unsubscribe_key):
            raise NotFound("this unsubscribe link is not valid")
        recipient = session.query(Recipient).filter_by(job_id=job.id, position=parts.position).one_or_none()
        if recipient is None:
            raise NotFound("this unsubscribe link is not valid")
        suppressions.add(session, dedup_key(recipient.address), SuppressionReason.UNSUBSCRIBED, job.id, utcnow())
    log.info("job %s recipient %d unsubscribed", job.id, recipient.id)
    return recipient.address
