"""Idempotency-Key: a retried POST /api/email/ gets the first answer and the same job, never a second job.

The key is written by the job's own transaction, as its first statement: the key and the job are
committed together or not at all, so a request that dies (its process killed, its database connection
lost) leaves nothing behind and its retry is served at once. A concurrent duplicate's insert of the
same key waits for the first transaction (PostgreSQL's unique index, SQLite's write lock), then either
finds the first answer committed and replays it, or, when the first rolled back, takes the key itself.
Keys are forgotten after IDEMPOTENCY_HOURS.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from email_service.errors import Conflict, ValidationFailed
from email_service.services import Services
from email_service.storage.models import IdempotencyKey, utcnow

MAX_KEY_LENGTH = 255


class KeyTaken(Exception):
    """A concurrent request with the same key committed first: this one stored nothing."""


@dataclass(frozen=True)
class Claim:
    """No answer is stored for the key yet: the job's transaction must call ``record`` first."""

    key: str
    request_hash: str
    forget_before: datetime  # keys created before this moment are expired

    def record(self, session: Session, job_id: str, response: dict[str, Any]) -> None:
        """Write the key with its answer in the job's transaction; KeyTaken when a concurrent
        request with the key committed first (the transaction must then be rolled back)."""
        session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.key == self.key,
                # expired, or left unanswered by a version that claimed keys in a transaction of their own
                or_(IdempotencyKey.created_at < self.forget_before, IdempotencyKey.job_id.is_(None)),
            )
        )
        session.add(
            IdempotencyKey(
                key=self.key, request_hash=self.request_hash, job_id=job_id, response=response, created_at=utcnow()
            )
        )
        try:
            session.flush()  # first, so that a duplicate waits here rather than after our recipients
        except IntegrityError as exc:
            raise KeyTaken(self.key) from exc


@dataclass(frozen=True)
class Replay:
    """The key was used before with the same body: its first answer."""

    job_id: str
    response: dict[str, Any]


def request_hash(body: Any) -> str:
    """A digest of the parsed JSON body: the same request whatever its spacing or key order."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def claim(services: Services, key: str, account: str | None, body_hash: str) -> Claim | Replay:
    """The first answer given for ``key`` of ``account`` (the caller's account, so that two callers' keys never
    meet), or a Claim to record with the job this request stores.

    Raises ValidationFailed (422) when the key is unusable or came with another body.
    """
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise ValidationFailed(
            "invalid Idempotency-Key",
            [{"field": "Idempotency-Key", "reason": f"1 to {MAX_KEY_LENGTH} printable ASCII characters"}],
        )
    key = stored_key(account, key)
    forget_before = utcnow() - timedelta(hours=services.settings.idempotency_hours)
    with services.readers() as session:
        existing = session.scalars(
            select(IdempotencyKey).where(
                IdempotencyKey.key == key,
                IdempotencyKey.created_at >= forget_before,
                IdempotencyKey.job_id.is_not(None),
            )
        ).one_or_none()
        return Claim(key, body_hash, forget_before) if existing is None else _replay(existing, body_hash)


def replay_after_race(services: Services, taken: Claim) -> Replay:
    """The answer of the concurrent request that committed ``taken``'s key first."""
    with services.readers() as session:
        existing = session.get(IdempotencyKey, taken.key)
        if existing is None or existing.job_id is None:
            raise Conflict("a request with this Idempotency-Key changed at the same time; try again")
        return _replay(existing, taken.request_hash)


def _replay(existing: IdempotencyKey, body_hash: str) -> Replay:
    """The first answer given for the key; ValidationFailed (422) when it came with another body."""
    if existing.request_hash != body_hash:
        raise ValidationFailed(
            "this Idempotency-Key was used with another request body",
            [{"field": "Idempotency-Key", "reason": "already used with a different body; use a new key"}],
        )
    assert existing.job_id is not None and existing.response is not None
    return Replay(existing.job_id, existing.response)


def stored_key(account: str | None, key: str) -> str:
    """What is stored for a caller's key: a digest of account and key, bounded in size (the caller's
    own keys are not kept), and two owners' equal keys never meet."""
    return hashlib.sha256(f"{account or ''}\0{key}".encode()).hexdigest()


def forget_expired(session: Session, hours: float) -> int:
    """Delete the keys older than ``hours``; how many went."""
    result = session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at < utcnow() - timedelta(hours=hours))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
