"""Provider webhook signatures already accepted; callers own the session and its transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from email_service.storage.models import UsedWebhookSignature


def claim(session: Session, key: str, expires_at: datetime, now: datetime) -> bool:
    """Record that the signature ``key`` is used; False when it already was (a replay). The claim
    lasts as long as the caller's transaction: a request that fails leaves the signature unused.
    Claims past their expiry go first: their signatures are too old to pass the check anyway."""
    session.execute(delete(UsedWebhookSignature).where(UsedWebhookSignature.expires_at < now))
    try:
        with session.begin_nested():
            session.add(UsedWebhookSignature(key=key, expires_at=expires_at))
    except IntegrityError:
        return False
    return True
