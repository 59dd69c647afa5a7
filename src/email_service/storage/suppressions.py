"""Queries and changes on the suppression list; callers own the session and its transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import String, any_, bindparam, delete, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from email_service.storage.jobs import escape_like
from email_service.storage.models import Suppression

_CHUNK = 5000  # addresses per query: bounded statements for a 100,000-recipient job


def suppressed(session: Session, addresses: Iterable[str]) -> dict[str, str]:
    """Of these addresses (dedup_key form), those suppressed, with their reason."""
    wanted = list(dict.fromkeys(addresses))
    found: dict[str, str] = {}
    # On PostgreSQL one array parameter: the statement stays the same whatever the count, so it is compiled
    # and planned once, where IN (...) has a parameter per address to render every time.
    postgresql = session.get_bind().dialect.name == "postgresql"
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        if postgresql:
            among = Suppression.address == any_(bindparam("addresses", chunk, type_=ARRAY(String)))
        else:
            among = Suppression.address.in_(chunk)
        rows = session.execute(select(Suppression.address, Suppression.reason).where(among))
        found.update({address: reason for address, reason in rows})
    return found


def add(session: Session, address: str, reason: str, job_id: str | None, now: datetime) -> bool:
    """Suppress an address; False when it already was (its first reason stays)."""
    if session.get(Suppression, address) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(Suppression(address=address, reason=reason, job_id=job_id, created_at=now))
    except IntegrityError:  # added at the same moment by another request: suppressed all the same
        return False
    return True


def page(session: Session, *, after: str | None, limit: int, address_part: str | None = None) -> list[Suppression]:
    """Suppressed addresses in order, after one, optionally only those containing ``address_part``."""
    query = select(Suppression).order_by(Suppression.address).limit(limit)
    if address_part:
        query = query.where(Suppression.address.ilike(f"%{escape_like(address_part)}%", escape="\\"))
    if after is not None:
        query = query.where(Suppression.address > after)
    return list(session.scalars(query))


def remove(session: Session, address: str) -> bool:
    return bool(session.execute(delete(Suppression).where(Suppression.address == address)).rowcount)  # type: ignore[attr-defined]
