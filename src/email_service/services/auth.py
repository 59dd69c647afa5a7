"""API keys: made random, shown once, stored as SHA-256, checked in constant time, named, revocable."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from ..errors import NotFound, ValidationFailed
from ..storage import api_keys
from ..storage.models import ApiKey, utcnow
from . import Services

KEY_PREFIX = "es_"
KEY_BYTES = 32  # 256 bits of randomness


@dataclass(frozen=True)
class KeyInfo:
    """An API key as it can be shown: never the key itself."""

    id: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(services: Services, name: str) -> tuple[KeyInfo, str]:
    """A new key named ``name``; the key itself is returned here and never again."""
    if not name or len(name) > 64 or not name.isprintable():
        raise ValidationFailed("invalid key name", [{"field": "name", "reason": "1 to 64 printable characters"}])
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    record = ApiKey(
        id=str(uuid.uuid4()), name=name, key_hash=hash_key(key), prefix=key[:10], created_at=utcnow(), revoked_at=None
    )
    with services.sessions.begin() as session:
        session.add(record)
    return _info(record), key


def authenticate(services: Services, presented: str) -> str | None:
    """The id of the active key ``presented`` is, or None."""
    digest = hash_key(presented)
    with services.readers() as session:
        record = api_keys.find_active(session, digest)
    # The lookup is by digest (which says nothing about the key); the comparison is in constant time anyway.
    if record is None or not hmac.compare_digest(record.key_hash, digest):
        return None
    return record.id


def list_keys(services: Services) -> list[KeyInfo]:
    with services.readers() as session:
        return [_info(record) for record in api_keys.list_all(session)]


def revoke_key(services: Services, id_or_name: str) -> int:
    with services.sessions.begin() as session:
        count = api_keys.revoke(session, id_or_name, utcnow())
    if not count:
        raise NotFound(f"no active API key with id or name {id_or_name!r}")
    return count


def has_active_keys(services: Services) -> bool:
    with services.readers() as session:
        return api_keys.any_active(session)


def _info(record: ApiKey) -> KeyInfo:
    return KeyInfo(record.id, record.name, record.prefix, record.created_at, record.revoked_at)
