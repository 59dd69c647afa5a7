"""Queries and changes on accounts; callers own the session and its transaction."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from email_service.storage.models import Account


def find(session: Session, id_or_name: str) -> Account | None:
    """The account with this id or name."""
    return session.scalar(select(Account).where(or_(Account.id == id_or_name, Account.name == id_or_name)))


def by_name(session: Session, name: str) -> Account | None:
    return session.scalar(select(Account).where(Account.name == name))


def list_all(session: Session) -> list[Account]:
    return list(session.scalars(select(Account).order_by(Account.created_at, Account.name)))
