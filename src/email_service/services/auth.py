"""API keys: made random, shown once, stored as SHA-256, checked in constant time, named, revocable, each
belonging to an account; and the dashboard sessions signed in with them, kept on the server so that logging
out, revoking the key or disabling its account ends them."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from email_service.config import Settings
from email_service.errors import NotFound, ValidationFailed
from email_service.services import Services, accounts
from email_service.services.accounts import sender_address
from email_service.storage import accounts as account_store
from email_service.storage import api_keys, dashboard_sessions
from email_service.storage.models import Account, ApiKey, KeyRole, utcnow

KEY_PREFIX = "es_"
KEY_BYTES = 32  # 256 bits of randomness


@dataclass(frozen=True)
class Caller:
    """Who is calling: a key of an account, or anyone when authentication is off (``account`` None: the
    service is not shared, everything is visible and every new thing is shared)."""

    account: str | None  # the account's id
    admin: bool  # may change shared templates and suppressions, sees every account's jobs in the dashboard
    account_name: str | None = None
    key_name: str | None = None


# Authentication off: one caller, who is the operator.
OPEN_CALLER = Caller(account=None, admin=True)


@dataclass(frozen=True)
class KeyInfo:
    """An API key as it can be shown: never the key itself."""

    id: str
    name: str
    account_id: str
    account_name: str
    role: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None

    def caller(self) -> Caller:
        return Caller(self.account_id, self.role == KeyRole.ADMIN, self.account_name, self.name)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(
    sessions: sessionmaker[Session],
    settings: Settings,
    name: str,
    *,
    account: str | None = None,
    role: str = KeyRole.ACCOUNT,
    senders: Sequence[str] = (),
) -> tuple[KeyInfo, str, str | None]:
    """A new key named ``name`` of the account ``account`` (id or name); with no account, a new account named
    ``name`` is made for it, which may send as ``senders`` besides MAIL_DEFAULT_SENDER. Returns the key's
    information, the key itself (here and never again) and the new account's webhook secret (None when the
    account existed). Key commands need only the database: they take its sessions."""
    accounts.check_name(name)
    if role not in set(KeyRole):
        raise ValidationFailed("invalid role", [{"field": "role", "reason": f"one of {', '.join(KeyRole)}"}])
    if account is not None and senders:
        raise ValidationFailed(
            "senders belong to the account",
            [{"field": "senders", "reason": "set them with `accounts configure`, not on a key of an account"}],
        )
    key, webhook_secret = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES), None
    with sessions.begin() as session:  # a new account and its first key, or neither
        if account is None:
            owner, webhook_secret = accounts.add(session, settings, name, senders=senders)
        else:
            found = account_store.find(session, account)
            if found is None:
                raise NotFound(f"no account with id or name {account!r}")
            owner = found
        record = ApiKey(
            id=str(uuid.uuid4()),
            account_id=owner.id,
            name=name,
            role=role,
            key_hash=hash_key(key),
            prefix=key[:10],
            created_at=utcnow(),
            revoked_at=None,
        )
        session.add(record)
        session.flush()
        return _info(record, owner), key, webhook_secret


def authenticate(services: Services, presented: str) -> Caller | None:
    """Who the key ``presented`` is: None unless it is active and its account enabled."""
    key = active_key(services, hash_key(presented))
    return key.caller() if key is not None else None


def active_key(services: Services, digest: str) -> KeyInfo | None:
    """The active key whose SHA-256 is ``digest`` (what the dashboard's login checks), or None: a key revoked,
    or whose account was disabled, is None at once."""
    with services.readers() as session:
        found = api_keys.find_active(session, digest)
    # The lookup is by digest (which says nothing about the key); the comparison is in constant time anyway.
    if found is None or not hmac.compare_digest(found[0].key_hash, digest):
        return None
    return _info(*found)


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
    """The key signed in as by the dashboard session ``session_id``; None once it is ended, expired, its
    key revoked or its account disabled."""
    with services.readers() as session:
        found = dashboard_sessions.find_live_key(session, hash_key(session_id), utcnow())
    return _info(*found) if found is not None else None


def end_dashboard_session(services: Services, session_id: str) -> None:
    """Logging out: the session opens nothing any more, whoever kept a copy of its cookie."""
    with services.sessions.begin() as session:
        dashboard_sessions.end(session, hash_key(session_id), utcnow())


def allowed_senders(services: Services, account: str | None) -> set[str]:
    """The From addresses (bare, lower case) a caller may send as: MAIL_DEFAULT_SENDER's, and its account's."""
    allowed = {sender_address(services.settings.mail_default_sender) or ""}
    if account is not None:
        with services.readers() as session:
            record = session.get(Account, account)
        allowed.update(record.senders or [] if record is not None else [])
    return allowed


def list_keys(sessions: sessionmaker[Session]) -> list[KeyInfo]:
    with sessions() as session:
        return [_info(key, account) for key, account in api_keys.list_all(session)]


def revoke_key(sessions: sessionmaker[Session], id_or_name: str, account: str | None = None) -> int:
    """Revoke the key (by id, or every active key with this name) of ``account`` (id or name; needed only when
    keys of several accounts have that name), and end its dashboard sessions with it."""
    with sessions.begin() as session:
        owners = api_keys.accounts_of_active(session, id_or_name)
        if account is not None:
            chosen = account_store.find(session, account)
            owners &= {chosen.id} if chosen is not None else set()
        if not owners:
            raise NotFound(f"no active API key with id or name {id_or_name!r}")
        if len(owners) > 1:
            reason = "keys of several accounts have this name: give the key's id, or its account"
            raise ValidationFailed("ambiguous key name", [{"field": "id_or_name", "reason": reason}])
        owner, now = owners.pop(), utcnow()
        dashboard_sessions.end_for_key(session, id_or_name, owner, now)
        return api_keys.revoke(session, id_or_name, owner, now)


def has_active_keys(sessions: sessionmaker[Session]) -> bool:
    with sessions() as session:
        return api_keys.any_active(session)


def _info(record: ApiKey, account: Account) -> KeyInfo:
    return KeyInfo(
        id=record.id,
        name=record.name,
        account_id=account.id,
        account_name=account.name,
        role=record.role,
        prefix=record.prefix,
        created_at=record.created_at,
        revoked_at=record.revoked_at,
    )
