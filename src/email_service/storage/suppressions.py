"""Queries and changes on the suppression lists; callers own the session and its transaction.

Each account has a list of its own, and one list is shared by all: ``account`` names the list (an account's
id), None the shared one. A job of an account skips the addresses on its account's list and on the shared
one; a job of no account, the shared one only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, any_, bindparam, delete, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from email_service.storage.jobs import escape_like
from email_service.storage.models import Suppression, scope_key

_CHUNK = 5000  # addresses per query: bounded statements for a 100,000-recipient job

_scope = scope_key(Suppression.account_id)  # '' for the shared list


@dataclass(frozen=True)
class Entry:
    """Why an address is not sent to: on which list, for what reason."""

    shared: bool
    reason: str

    def explanation(self) -> str:
        """What a recipient skipped for this entry says (its last_error): the one way an account sees a
        shared entry."""
        where = "the shared suppression list" if self.shared else "this account's suppression list"
        return f"suppressed: on {where} ({self.reason})"


def suppressed(session: Session, addresses: Iterable[str], account: str | None) -> dict[str, Entry]:
    """Of these addresses (dedup_key form), those a job of ``account`` must not send to: on its account's list
    or the shared one, with the entry that stops it (the shared one when there are both: the account cannot
    lift it)."""
    wanted = list(dict.fromkeys(addresses))
    scopes = ("", account) if account is not None else ("",)
    found: dict[str, Entry] = {}
    # On PostgreSQL one array parameter: the statement stays the same whatever the count, so it is compiled
    # and planned once, where IN (...) has a parameter per address to render every time.
    postgresql = session.get_bind().dialect.name == "postgresql"
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        if postgresql:
            among = Suppression.address == any_(bindparam("addresses", chunk, type_=ARRAY(String)))
        else:
            among = Suppression.address.in_(chunk)
        query = select(Suppression.address, Suppression.account_id, Suppression.reason).where(_scope.in_(scopes), among)
        for address, owner, reason in session.execute(query):
            if address not in found or owner is None:
                found[address] = Entry(shared=owner is None, reason=reason)
    return found


def add(session: Session, address: str, reason: str, job_id: str | None, now: datetime, *, account: str | None) -> bool:
    """Put an address on ``account``'s list (None: the shared list); False when it already was there (its first
    reason stays)."""
    if session.scalar(select(Suppression.id).where(*_on(account, address))) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(Suppression(account_id=account, address=address, reason=reason, job_id=job_id, created_at=now))
    except IntegrityError:  # added at the same moment by another request: suppressed all the same
        return False
    return True


def page(
    session: Session, *, account: str | None, after: str | None, limit: int, address_part: str | None = None
) -> list[Suppression]:
    """The addresses of ``account``'s list (None: the shared list) in order, after one, optionally only those
    containing ``address_part``."""
    query = select(Suppression).where(_scope == (account or "")).order_by(Suppression.address).limit(limit)
    if address_part:
        query = query.where(Suppression.address.ilike(f"%{escape_like(address_part)}%", escape="\\"))
    if after is not None:
        query = query.where(Suppression.address > after)
    return list(session.scalars(query))


def remove(session: Session, address: str, *, account: str | None) -> bool:
    """Take an address off ``account``'s list (None: the shared list); False when it was not on it."""
    return bool(session.execute(delete(Suppression).where(*_on(account, address))).rowcount)  # type: ignore[attr-defined]


def _on(account: str | None, address: str) -> tuple[Any, ...]:
    """The entry of ``address`` on ``account``'s list, as the unique index finds it."""
    return _scope == (account or ""), Suppression.address == address
