"""Accounts: the calling services sharing this one. Each owns its API keys, jobs, stored templates,
suppressions, allowed senders, default callback URL and webhook signing secret; quotas count per account."""

from __future__ import annotations

import enum
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from email_service.config import Settings
from email_service.errors import Conflict, InvalidAddress, NotFound, ValidationFailed
from email_service.message.mailboxes import parse_mailbox
from email_service.services.job_options import Problems, check_callback_url
from email_service.storage import accounts, api_keys, dashboard_sessions
from email_service.storage.models import Account, Lane, utcnow

WEBHOOK_SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # 256 bits


class Unchanged(enum.Enum):
    """A setting left as it is (None being a value of its own)."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED


@dataclass(frozen=True)
class AccountInfo:
    """An account as it can be shown: never its webhook secret."""

    id: str
    name: str
    senders: list[str]
    callback_url: str | None
    # False for an account made from a key by the upgrade to accounts: it signs with WEBHOOK_SECRET.
    own_webhook_secret: bool
    previous_secret_until: datetime | None
    created_at: datetime
    disabled_at: datetime | None
    active_keys: int
    lane: str | None  # of its jobs that name none; None: by each job's size


def create(
    sessions: sessionmaker[Session],
    settings: Settings,
    name: str,
    *,
    senders: Sequence[str] = (),
    callback_url: str | None = None,
    lane: Lane | None = None,
) -> tuple[AccountInfo, str]:
    """A new account and its webhook signing secret, returned here and never shown again."""
    with sessions.begin() as session:
        record, secret = add(session, settings, name, senders=senders, callback_url=callback_url)
        record.lane = lane
    return _info(record, 0), secret


def add(
    session: Session,
    settings: Settings,
    name: str,
    *,
    senders: Sequence[str] = (),
    callback_url: str | None = None,
) -> tuple[Account, str]:
    """``create`` in the caller's transaction (a key made with its account is made in the same one)."""
    check_name(name)
    secret = new_webhook_secret()
    record = Account(
        id=str(uuid.uuid4()),
        name=name,
        senders=sender_addresses(senders) or None,
        callback_url=_checked_callback_url(settings, callback_url),
        webhook_secret=secret,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(record)
    except IntegrityError:
        raise Conflict(f"an account named {name!r} exists") from None
    return record, secret


def list_all(sessions: sessionmaker[Session]) -> list[AccountInfo]:
    with sessions() as session:
        return [_info(record, api_keys.count_active(session, record.id)) for record in accounts.list_all(session)]


def names(sessions: sessionmaker[Session]) -> dict[str, str]:
    """Every account's name by id."""
    with sessions() as session:
        return {record.id: record.name for record in accounts.list_all(session)}


def get(sessions: sessionmaker[Session], id_or_name: str) -> AccountInfo:
    """The account with this id or name; NotFound when there is none."""
    with sessions() as session:
        record = _find(session, id_or_name)
        return _info(record, api_keys.count_active(session, record.id))


def configure(
    sessions: sessionmaker[Session],
    settings: Settings,
    id_or_name: str,
    *,
    senders: Sequence[str] | None = None,
    callback_url: str | None = None,
    lane: Lane | Unchanged | None = UNCHANGED,
) -> AccountInfo:
    """Change an account's allowed senders (all of them, when given), default callback URL ('' removes it) and
    default lane (None: each job's by its size)."""
    with sessions.begin() as session:
        record = _find(session, id_or_name)
        if not isinstance(lane, Unchanged):
            record.lane = lane
        if senders is not None:
            record.senders = sender_addresses(senders) or None
        if callback_url is not None:
            record.callback_url = _checked_callback_url(settings, callback_url or None)
        return _info(record, api_keys.count_active(session, record.id))


def set_disabled(sessions: sessionmaker[Session], id_or_name: str, disabled: bool) -> AccountInfo:
    """Disable an account (its keys stop at once, its dashboard sessions end) or enable it again. Its jobs
    already accepted are not touched: pause or cancel them as well if they must not go out."""
    with sessions.begin() as session:
        record = _find(session, id_or_name)
        if disabled:
            record.disabled_at = record.disabled_at or utcnow()
            dashboard_sessions.end_for_account(session, record.id, record.disabled_at)
        else:
            record.disabled_at = None
        return _info(record, api_keys.count_active(session, record.id))


def rotate_webhook_secret(
    sessions: sessionmaker[Session], settings: Settings, id_or_name: str, grace: timedelta
) -> str:
    """A new signing secret for the account's webhook events; the one it replaces keeps signing beside it
    (each event then carries both signatures) for ``grace``, time to deploy the new one to the receiver.

    An account made by the upgrade signed with WEBHOOK_SECRET and used WEBHOOK_URL: WEBHOOK_SECRET is the one
    that keeps signing during the grace period, and WEBHOOK_URL becomes its own callback URL if it had none, so
    that its receiver goes on getting its events."""
    secret = new_webhook_secret()
    with sessions.begin() as session:
        record = _find(session, id_or_name)
        if grace > timedelta(0):
            record.previous_webhook_secret, record.previous_secret_until = record.webhook_secret, utcnow() + grace
        else:
            record.previous_webhook_secret = record.previous_secret_until = None
        if record.webhook_secret is None and not record.callback_url:
            record.callback_url = settings.webhook_url or None
        record.webhook_secret = secret
    return secret


def signing_secrets(session: Session, account_id: str | None, shared_secret: str, now: datetime) -> list[str]:
    """The secrets that sign an event of the account's job, newest first: its own (and the one before a
    rotation, during the grace period), or ``shared_secret`` (WEBHOOK_SECRET) for a job of no account and for
    an account that has none of its own yet. Empty when there is nothing to sign with."""
    record = session.get(Account, account_id) if account_id is not None else None
    if record is None or record.webhook_secret is None:
        return [shared_secret] if shared_secret else []
    found = [record.webhook_secret]
    if record.previous_secret_until is not None and record.previous_secret_until > now:
        # No previous secret of its own: it signed with the shared one before its first rotation.
        previous = record.previous_webhook_secret or shared_secret
        found += [previous] if previous else []
    return found


def default_callback_url(session: Session, account_id: str | None, settings: Settings) -> str | None:
    """Where the events of a job that names no callback URL go: its account's default, else WEBHOOK_URL for a
    job of no account and for an account still signing with WEBHOOK_SECRET (its receiver knows that one)."""
    record = session.get(Account, account_id) if account_id is not None else None
    if record is not None and record.callback_url:
        return record.callback_url
    if record is None or record.webhook_secret is None:
        return settings.webhook_url or None
    return None


def default_lane(session: Session, account_id: str | None) -> Lane | None:
    """The lane of the account's jobs that name none (None: chosen by each job's size)."""
    record = session.get(Account, account_id) if account_id is not None else None
    return Lane(record.lane) if record is not None and record.lane is not None else None


def new_webhook_secret() -> str:
    return WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def check_name(name: str) -> None:
    if not name or len(name) > 64 or not name.isprintable() or name != name.strip():
        raise ValidationFailed(
            "invalid name", [{"field": "name", "reason": "1 to 64 printable characters, no space at either end"}]
        )


def sender_address(sender: str) -> str | None:
    """The bare address of a From value (``Name <a@b.org>`` or ``a@b.org``), lower case; None unless it is
    exactly one mailbox (mailboxes.py)."""
    try:
        return parse_mailbox(sender).address.lower()
    except InvalidAddress:
        return None


def sender_addresses(senders: Sequence[str]) -> list[str]:
    allowed = []
    for sender in senders:
        address = sender_address(sender)
        if address is None:
            raise ValidationFailed("invalid sender", [{"field": "senders", "reason": f"{sender!r} is not an address"}])
        allowed.append(address)
    return list(dict.fromkeys(allowed))


def _checked_callback_url(settings: Settings, url: str | None) -> str | None:
    if url is None:
        return None
    problems = Problems()
    # An account made here has a secret of its own; one made by the upgrade signs with WEBHOOK_SECRET.
    check_callback_url(url, can_sign=True, allowed_networks=settings.webhook_allowed_networks, problems=problems)
    if problems:
        raise ValidationFailed("invalid callback URL", problems.items)
    return url


def _find(session: Session, id_or_name: str) -> Account:
    record = accounts.find(session, id_or_name)
    if record is None:
        raise NotFound(f"no account with id or name {id_or_name!r}")
    return record


def _info(record: Account, active_keys: int) -> AccountInfo:
    return AccountInfo(
        id=record.id,
        name=record.name,
        senders=record.senders or [],
        callback_url=record.callback_url,
        own_webhook_secret=record.webhook_secret is not None,
        previous_secret_until=record.previous_secret_until,
        created_at=record.created_at,
        disabled_at=record.disabled_at,
        active_keys=active_keys,
        lane=record.lane,
    )
