"""Queries and changes on stored template versions; callers own the session and its transaction.

Every template has a scope: an account's own (``account_id`` that account's id) or shared (``account_id``
NULL). ``scope`` parameters name exactly one of them (an account's id, or None for the shared ones);
``visible_*`` queries take the account looking (None: no account), which sees its own templates first,
then the shared ones.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from email_service.storage.models import StoredTemplate, scope_key

_scope = scope_key(StoredTemplate.account_id)  # '' for the shared templates


def _in_scope(scope: str | None) -> ColumnElement[bool]:
    return _scope == (scope or "")


def _live(name: str) -> tuple[ColumnElement[bool], ...]:
    return StoredTemplate.name == name, StoredTemplate.deleted_at.is_(None)


def current(session: Session, name: str, scope: str | None) -> StoredTemplate | None:
    """The newest version of the scope's template ``name`` that is not deleted."""
    return session.scalar(
        select(StoredTemplate).where(*_live(name), _in_scope(scope)).order_by(StoredTemplate.version.desc()).limit(1)
    )


def visible_current(session: Session, name: str, account: str | None) -> StoredTemplate | None:
    """The newest version of the template ``name`` the account uses: its own if it has one, else the shared
    one; with no account, the shared one. One query: a job's intake asks it."""
    return session.scalar(
        select(StoredTemplate)
        .where(*_live(name), _scope.in_([account or "", ""]))
        .order_by(StoredTemplate.account_id.is_(None), StoredTemplate.version.desc())
        .limit(1)
    )


def version(session: Session, name: str, number: int, scope: str | None) -> StoredTemplate | None:
    """One version of the scope's template, unless the template is deleted."""
    return session.scalar(
        select(StoredTemplate).where(*_live(name), _in_scope(scope), StoredTemplate.version == number)
    )


def by_id(session: Session, template_id: int) -> StoredTemplate | None:
    """The version a job pinned, deleted or not: jobs accepted before a deletion still render it."""
    return session.get(StoredTemplate, template_id)


def versions(session: Session, name: str, scope: str | None) -> list[StoredTemplate]:
    """Every version of the scope's template that is not deleted, newest first."""
    return list(
        session.scalars(
            select(StoredTemplate).where(*_live(name), _in_scope(scope)).order_by(StoredTemplate.version.desc())
        )
    )


def all_current(session: Session, scope: str | None) -> list[StoredTemplate]:
    """The newest version of each of the scope's templates that is not deleted, by name."""
    newest = (
        select(StoredTemplate.name, func.max(StoredTemplate.version).label("version"))
        .where(StoredTemplate.deleted_at.is_(None), _in_scope(scope))
        .group_by(StoredTemplate.name)
        .subquery()
    )
    return list(
        session.scalars(
            select(StoredTemplate)
            .join(newest, (StoredTemplate.name == newest.c.name) & (StoredTemplate.version == newest.c.version))
            .where(_in_scope(scope))
            .order_by(StoredTemplate.name)
        )
    )


def add_version(
    session: Session,
    name: str,
    scope: str | None,
    *,
    subject: str | None,
    text: str | None,
    html: str | None,
    eml: str | None,
    now: datetime,
) -> StoredTemplate:
    """Store a new version of the scope's template, numbered after every earlier one of that scope (deleted
    ones included, so a number is never reused). Two concurrent writers collide on the unique
    (scope, name, version) index."""
    last = session.scalar(select(func.max(StoredTemplate.version)).where(StoredTemplate.name == name, _in_scope(scope)))
    stored = StoredTemplate(
        account_id=scope,
        name=name,
        version=(last or 0) + 1,
        subject=subject,
        text=text,
        html=html,
        eml=eml,
        created_at=now,
    )
    session.add(stored)
    session.flush()
    return stored


def delete(session: Session, name: str, scope: str | None, now: datetime) -> bool:
    """Delete the scope's template: no new job can use it; jobs accepted with it still render it."""
    result = session.execute(update(StoredTemplate).where(*_live(name), _in_scope(scope)).values(deleted_at=now))
    return bool(result.rowcount)  # type: ignore[attr-defined]
