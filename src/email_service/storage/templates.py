"""Queries and changes on stored template versions; callers own the session and its transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from email_service.storage.models import StoredTemplate


def current(session: Session, name: str) -> StoredTemplate | None:
    """The newest version of a template that is not deleted."""
    return session.scalar(
        select(StoredTemplate)
        .where(StoredTemplate.name == name, StoredTemplate.deleted_at.is_(None))
        .order_by(StoredTemplate.version.desc())
        .limit(1)
    )


def version(session: Session, name: str, number: int, *, include_deleted: bool = False) -> StoredTemplate | None:
    """One version; a deleted template's versions still exist for the jobs that use them."""
    query = select(StoredTemplate).where(StoredTemplate.name == name, StoredTemplate.version == number)
    if not include_deleted:
        query = query.where(StoredTemplate.deleted_at.is_(None))
    return session.scalar(query)


def versions(session: Session, name: str) -> list[StoredTemplate]:
    """Every version of a template that is not deleted, newest first."""
    return list(
        session.scalars(
            select(StoredTemplate)
            .where(StoredTemplate.name == name, StoredTemplate.deleted_at.is_(None))
            .order_by(StoredTemplate.version.desc())
        )
    )


def all_current(session: Session) -> list[StoredTemplate]:
    """The newest version of each template that is not deleted, by name."""
    newest = (
        select(StoredTemplate.name, func.max(StoredTemplate.version).label("version"))
        .where(StoredTemplate.deleted_at.is_(None))
        .group_by(StoredTemplate.name)
        .subquery()
    )
    return list(
        session.scalars(
            select(StoredTemplate)
            .join(newest, (StoredTemplate.name == newest.c.name) & (StoredTemplate.version == newest.c.version))
            .order_by(StoredTemplate.name)
        )
    )


def add_version(
    session: Session,
    name: str,
    *,
    subject: str | None,
    text: str | None,
    html: str | None,
    eml: str | None,
    now: datetime,
) -> StoredTemplate:
    """Store a new version, numbered after every earlier one (deleted ones included, so a number is
    never reused). Two concurrent writers collide on the unique (name, version) index."""
    last = session.scalar(select(func.max(StoredTemplate.version)).where(StoredTemplate.name == name))
    stored = StoredTemplate(
        name=name, version=(last or 0) + 1, subject=subject, text=text, html=html, eml=eml, created_at=now
    )
    session.add(stored)
    session.flush()
    return stored


def delete(session: Session, name: str, now: datetime) -> bool:
    """Delete a template: no new job can use it; jobs accepted with it still render it."""
    result = session.execute(
        update(StoredTemplate)
        .where(StoredTemplate.name == name, StoredTemplate.deleted_at.is_(None))
        .values(deleted_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
