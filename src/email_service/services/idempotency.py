"""Idempotency-Key: a retried POST /api/email/ gets the first answer and the same job, never a second job.

A key is claimed in a transaction of its own before the job is checked and stored, so a concurrent
duplicate sees it at once and gets 409 instead of waiting; the job's transaction then records the
answer on the key (both or neither are committed). A key whose first request died while holding
it is taken over after a while; keys are forgotten after IDEMPOTENCY_HOURS.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from email_service.errors import Conflict, ValidationFailed
from email_service.services import Services
from email_service.storage.models import IdempotencyKey, utcnow

# A first request still unanswered after this long has died: its key may be taken over.
ABANDONED_AFTER = timedelta(minutes=5)
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Claim:
    """This request owns the key: the job's transaction must call ``complete``."""

    key: str
    request_hash: str

    def complete(self, session: Session, job_id: str, response: dict[str, Any]) -> None:
        result = session.execute(
            update(IdempotencyKey)
            .where(
                IdempotencyKey.key == self.key,
                IdempotencyKey.request_hash == self.request_hash,
                IdempotencyKey.job_id.is_(None),
            )
            .values(job_id=job_id, response=response)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise Conflict("another request took over this Idempotency-Key; nothing was queued")


@dataclass(frozen=True)
class Replay:
    """The key was used before with the same body: its first answer."""

    job_id: str
    response: dict[str, Any]


def request_hash(body: Any) -> str:
    """A digest of the parsed JSON body: the same request whatever its spacing or key order."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def claim(services: Services, key: str, owner: str | None, body_hash: str) -> Claim | Replay:
    """Own ``key`` of ``owner`` (the API key, so that two callers' keys never meet) for this request,
    or the first answer given for it.

    Raises Conflict (409) while another request with the key runs, ValidationFailed (422) when the
    key came with another body.
    """
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise ValidationFailed(
            "invalid Idempotency-Key",
            [{"field": "Idempotency-Key", "reason": f"1 to {MAX_KEY_LENGTH} printable ASCII characters"}],
        )
    key = stored_key(owner, key)
    for _ in range(2):  # a concurrent first insert of the same key: look again once it is committed
        try:
            return _claim_once(services, key, body_hash)
        except IntegrityError:
            continue
    raise Conflict("a request with this Idempotency-Key is being processed; try again later")


def stored_key(owner: str | None, key: str) -> str:
    """What is stored for a caller's key: a digest of owner and key, bounded in size (the caller's
    own keys are not kept), and two owners' equal keys never meet."""
    return hashlib.sha256(f"{owner or ''}\0{key}".encode()).hexdigest()


def release(services: Services, claimed: Claim) -> None:
    """Forget a key whose request stored nothing (refused, or failed): it may be used again."""
    with services.sessions.begin() as session:
        session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.key == claimed.key, IdempotencyKey.job_id.is_(None))
        )


def forget_expired(session: Session, hours: float) -> int:
    """Delete the keys older than ``hours``; how many went."""
    result = session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at < utcnow() - timedelta(hours=hours))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _claim_once(services: Services, key: str, body_hash: str) -> Claim | Replay:
    now = utcnow()
    with services.sessions.begin() as session:
        existing = session.get(IdempotencyKey, key, with_for_update=True)
        if existing is not None and existing.created_at < now - timedelta(hours=services.settings.idempotency_hours):
            session.delete(existing)
            session.flush()
            existing = None
        if existing is None:
            session.add(IdempotencyKey(key=key, request_hash=body_hash, created_at=now))
            session.flush()
            return Claim(key, body_hash)
        if existing.request_hash != body_hash:
            raise ValidationFailed(
                "this Idempotency-Key was used with another request body",
                [{"field": "Idempotency-Key", "reason": "already used with a different body; use a new key"}],
            )
        if existing.job_id is not None and existing.response is not None:
            return Replay(existing.job_id, existing.response)
        if existing.created_at > now - ABANDONED_AFTER:
            raise Conflict("a request with this Idempotency-Key is being processed; try again later")
        existing.created_at = now  # its first request died: this one takes over
        return Claim(key, body_hash)
