"""API keys: made random, shown once, stored as SHA-256, checked in constant time, named, revocable; and the
dashboard sessions signed in with them, kept on the server so that logging out or revoking ends them."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from email_service.errors import InvalidAddress, NotFound, ValidationFailed
from email_service.message.mailboxes import parse_mailbox
from email_service.services import Services
from email_service.storage import api_keys, dashboard_sessions
from email_service.storage.models import ApiKey, utcnow

KEY_PREFIX = "es_"
KEY_BYTES = 32  # 256 bits of randomness


@dataclass(frozen=True)
class KeyInfo:
    """An API key as it can be shown: never the key itself."""

    id: str
    name: str
    prefix: str
    senders: list[str]
    created_at: datetime
    revoked_at: datetime | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(sessions: sessionmaker[Session], name: str, senders: Sequence[str] = ()) -> tuple[KeyInfo, str]:
    """A new key named ``name``, which may send as ``senders`` besides MAIL_DEFAULT_SENDER; the key
    itself is returned here and never again. Key commands need only the database: they take its sessions."""
    if not name or len(name) > 64 or not name.isprintable():
        raise ValidationFailed("invalid key name", [{"field": "name", "reason": "1 to 64 printable characters"}])
    allowed = []
    for sender in senders:
        address = sender_address(sender)
        if address is None:
            raise ValidationFailed("invalid sender", [{"field": "senders", "reason": f"{sender!r} is not an address"}])
        allowed.append(address)
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    record = ApiKey(
        id=str(uuid.uuid4()),
        name=name,
        key_hash=hash_key(key),
        prefix=key[:10],
        senders=allowed or None,
        created_at=utcnow(),
        revoked_at=None,
    )
    with sessions.begin() as session:
        session.add(record)
    return _info(record), key


def authenticate(services: Services, presented: str) -> str | None:
    """The id of the active key ``presented`` is, or None."""
    key = active_key(services, hash_key(presented))
    return key.id if key is not None else None


def active_key(services: Services, digest: str) -> KeyInfo | None:
    """The active key whose SHA-256 is ``digest`` (what the dashboard's session keeps), or None: a key
    revoked since is None at once."""
    with services.readers() as session:
        record = api_keys.find_active(session, digest)
    # The lookup is by digest (which says nothing about the key); the comparison is in constant time anyway.
    if record is None or not hmac.compare_digest(record.key_hash, digest):
        return None
    return _info(record)


def start_dashboard_session(services: Services, key_id: str) -> str:
    """A new dashboard session of the key ``key_id``, lasting DASHBOARD_SESSION_HOURS: its random id, which
    the cookie carries (the database keeps only its SHA-256)."""
    session_id = secrets.token_urlsafe(KEY_BYTES)
    now = utcnow()
    with services.sessions.begin() as session:
        dashboard_sessions.delete_expired(session, now)
        lifetime = timedelta(hours=services.settings.dashboard_session_hours)
        dashboard_sessions.add(session, hash_key(session_id), key_id, now, now + lifetime)
    return session_id


def dashboard_session_key(services: Services, session_id: str) -> KeyInfo | None:
    """The key signed in as by the dashboard session ``session_id``; None once it is ended, expired or its
    key revoked."""
    with services.readers() as session:
        record = dashboard_sessions.find_live_key(session, hash_key(session_id), utcnow())
    return _info(record) if record is not None else None


def end_dashboard_session(services: Services, session_id: str) -> None:
    """Logging out: the session opens nothing any more, whoever kept a copy of its cookie."""
    with services.sessions.begin() as session:
        dashboard_sessions.end(session, hash_key(session_id), utcnow())


def allowed_senders(services: Services, owner: str | None) -> set[str]:
    """The From addresses (bare, lower case) a caller may send as: MAIL_DEFAULT_SENDER's, and its key's."""
    allowed = {sender_address(services.settings.mail_default_sender) or ""}
    if owner is not None:
        with services.readers() as session:
            record = session.get(ApiKey, owner)
        allowed.update(record.senders or [] if record is not None else [])
    return allowed


def sender_address(sender: str) -> str | None:
    """The bare address of a From value (``Name <a@b.org>`` or ``a@b.org``), lower case; None unless it is
    exactly one mailbox (mailboxes.py)."""
    try:
        return parse_mailbox(sender).address.lower()
    except InvalidAddress:
        return None


def list_keys(sessions: sessionmaker[Session]) -> list[KeyInfo]:
    with sessions() as session:
        return [_info(record) for record in api_keys.list_all(session)]


def revoke_key(sessions: sessionmaker[Session], id_or_name: str) -> int:
    """Revoke the key, and end its dashboard sessions with it."""
    with sessions.begin() as session:
        now = utcnow()
        dashboard_sessions.end_for_key(session, id_or_name, now)
        count = api_keys.revoke(session, id_or_name, now)
    if not count:
        raise NotFound(f"no active API key with id or name {id_or_name!r}")
    return count


def has_active_keys(sessions: sessionmaker[Session]) -> bool:
    with sessions() as session:
        return api_keys.any_active(session)


def _info(record: ApiKey) -> KeyInfo:
    return KeyInfo(record.id, record.name, record.prefix, record.senders or [], record.created_at, record.revoked_at)
