"""Bounces and complaints of sent messages; callers own the session and its transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from email_service.storage.models import Bounce, Job, Recipient, RecipientStatus


def recipient_at(session: Session, job_id: str, position: int) -> Recipient | None:
    """The job's recipient at ``position``, locked until the transaction ends."""
    query = select(Recipient).where(Recipient.job_id == job_id, Recipient.position == position).with_for_update()
    return session.scalars(query).one_or_none()


def add(session: Session, bounce: Bounce) -> bool:
    """Record ``bounce``; False when its recipient already has one of that kind (a report seen twice)."""
    try:
        with session.begin_nested():
            session.add(bounce)
    except IntegrityError:
        return False
    return True


def end_sent_recipient(session: Session, recipient_id: int, status: str, bounce: Bounce) -> bool:
    """Move a sent recipient to ``status`` (bounced, complained) with the report's code and text; False
    when it was not ``sent`` (already bounced, or never sent), which leaves it as it is."""
    result = session.execute(
        update(Recipient)
        .where(Recipient.id == recipient_id, Recipient.status == RecipientStatus.SENT)
        .values(
            status=status,
            last_error_code=bounce.smtp_code,
            last_error=bounce.diagnostic,
            updated_at=bounce.received_at,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def count_since(session: Session, address: str, kind: str, since: datetime, account: str | None) -> int:
    """Bounces of ``kind`` for ``address`` (dedup_key form) received since ``since``, about jobs of ``account``
    (None: of no account)."""
    of_account = Job.account_id == account if account is not None else Job.account_id.is_(None)
    query = (
        select(func.count())
        .select_from(Bounce)
        .join(Job, Job.id == Bounce.job_id)
        .where(Bounce.address == address, Bounce.kind == kind, Bounce.received_at >= since, of_account)
    )
    return int(session.scalar(query) or 0)


def latest_for(session: Session, recipient_ids: Iterable[int]) -> dict[int, Bounce]:
    """The latest bounce or complaint of each of these recipients that has one."""
    latest: dict[int, Bounce] = {}
    ids = list(recipient_ids)
    if not ids:
        return latest
    for bounce in session.scalars(select(Bounce).where(Bounce.recipient_id.in_(ids)).order_by(Bounce.id)):
        latest[bounce.recipient_id] = bounce
    return latest
