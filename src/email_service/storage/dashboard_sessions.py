"""Queries and changes on dashboard sessions; callers own the session and its transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from email_service.storage.models import Account, ApiKey, DashboardSession


def add(session: Session, id_hash: str, key_id: str, now: datetime, expires_at: datetime) -> None:
    session.add(DashboardSession(id_hash=id_hash, key_id=key_id, created_at=now, expires_at=expires_at))


def find_live_key(session: Session, id_hash: str, now: datetime) -> tuple[ApiKey, Account] | None:
    """The key of the session ``id_hash`` and its account, if that session is neither ended nor expired,
    the key not revoked and the account not disabled."""
    row = session.execute(
        select(ApiKey, Account)
        .join(DashboardSession, DashboardSession.key_id == ApiKey.id)
        .join(Account, Account.id == ApiKey.account_id)
        .where(
            DashboardSession.id_hash == id_hash,
            DashboardSession.ended_at.is_(None),
            DashboardSession.expires_at > now,
            ApiKey.revoked_at.is_(None),
            Account.disabled_at.is_(None),
        )
    ).one_or_none()
    return (row[0], row[1]) if row is not None else None


def end(session: Session, id_hash: str, now: datetime) -> None:
    session.execute(
        update(DashboardSession)
        .where(DashboardSession.id_hash == id_hash, DashboardSession.ended_at.is_(None))
        .values(ended_at=now)
    )


def end_for_key(session: Session, id_or_name: str, account_id: str, now: datetime) -> None:
    """End every open session of the account's keys with this id or name."""
    keys = select(ApiKey.id).where(
        or_(ApiKey.id == id_or_name, ApiKey.name == id_or_name), ApiKey.account_id == account_id
    )
    session.execute(
        update(DashboardSession)
        .where(DashboardSession.key_id.in_(keys), DashboardSession.ended_at.is_(None))
        .values(ended_at=now)
    )


def end_for_account(session: Session, account_id: str, now: datetime) -> None:
    """End every open session of the account's keys."""
    keys = select(ApiKey.id).where(ApiKey.account_id == account_id)
    session.execute(
        update(DashboardSession)
        .where(DashboardSession.key_id.in_(keys), DashboardSession.ended_at.is_(None))
        .values(ended_at=now)
    )


def delete_expired(session: Session, now: datetime) -> None:
    """Forget the sessions past their end: an expired or ended one opens nothing either way."""
    session.execute(delete(DashboardSession).where(DashboardSession.expires_at <= now))
