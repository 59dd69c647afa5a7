"""Queries and changes on API keys; callers own the session and its transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from email_service.storage.models import ApiKey


def find_active(session: Session, key_hash: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None)))


def list_all(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def any_active(session: Session) -> bool:
    return session.scalar(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)) is not None


def revoke(session: Session, id_or_name: str, now: datetime) -> int:
    """Revoke the active keys with this id or name; how many."""
    result = session.execute(
        update(ApiKey)
        .where(or_(ApiKey.id == id_or_name, ApiKey.name == id_or_name), ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
