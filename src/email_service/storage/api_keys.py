"""Queries and changes on API keys; callers own the session and its transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from email_service.storage.models import Account, ApiKey


def find_active(session: Session, key_hash: str) -> tuple[ApiKey, Account] | None:
    """The key with this SHA-256 and its account, if neither the key is revoked nor the account disabled."""
    row = session.execute(
        select(ApiKey, Account)
        .join(Account, Account.id == ApiKey.account_id)
        .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None), Account.disabled_at.is_(None))
    ).one_or_none()
    return (row[0], row[1]) if row is not None else None


def list_all(session: Session) -> list[tuple[ApiKey, Account]]:
    rows = session.execute(
        select(ApiKey, Account).join(Account, Account.id == ApiKey.account_id).order_by(ApiKey.created_at)
    )
    return [(key, account) for key, account in rows]


def any_active(session: Session) -> bool:
    active = (
        select(ApiKey.id)
        .join(Account, Account.id == ApiKey.account_id)
        .where(ApiKey.revoked_at.is_(None), Account.disabled_at.is_(None))
    )
    return session.scalar(active.limit(1)) is not None


def count_active(session: Session, account_id: str) -> int:
    active = select(func.count(ApiKey.id)).where(ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))
    return int(session.scalar(active) or 0)


def accounts_of_active(session: Session, id_or_name: str) -> set[str]:
    """The accounts of the active keys with this id or name."""
    found = select(ApiKey.account_id).where(
        or_(ApiKey.id == id_or_name, ApiKey.name == id_or_name), ApiKey.revoked_at.is_(None)
    )
    return set(session.scalars(found))


def revoke(session: Session, id_or_name: str, account_id: str, now: datetime) -> int:
    """Revoke the active keys of the account with this id or name; how many."""
    result = session.execute(
        update(ApiKey)
        .where(
            or_(ApiKey.id == id_or_name, ApiKey.name == id_or_name),
            ApiKey.account_id == account_id,
            ApiKey.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
