"""SQLAlchemy models of jobs and their recipients."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    false,
    func,
    literal_column,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class JobStatus(enum.StrEnum):
    SCHEDULED = "scheduled"  # waits for send_at; the scheduler starts it
    QUEUED = "queued"
    SENDING = "sending"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class Lane(enum.StrEnum):
    """Which work a job's messages wait with: transactional work is sent before any bulk work."""

    TRANSACTIONAL = "transactional"  # one person waits for it: a password reset, a receipt
    BULK = "bulk"  # newsletters, announcements: may wait behind transactional mail


# A job in one of these may still send: it can be paused, cancelled, or expire.
UNFINISHED_JOB_STATUSES = frozenset({JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.SENDING, JobStatus.PAUSED})


class RecipientStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    BOUNCED = "bounced"  # was sent, then a hard bounce came back
    COMPLAINED = "complained"  # was sent, then its recipient reported it as spam


TERMINAL_RECIPIENT_STATUSES = frozenset(
    {
        RecipientStatus.SENT,
        RecipientStatus.BOUNCED,
        RecipientStatus.COMPLAINED,
        RecipientStatus.FAILED,
        RecipientStatus.SUPPRESSED,
        RecipientStatus.CANCELLED,
        RecipientStatus.EXPIRED,
    }
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def scope_key(account_id: Mapped[str | None]) -> ColumnElement[str]:
    """The ``account_id`` of a scoped table (templates, suppressions) as its unique index has it: '' for a
    shared row. Queries naming it so use the index; the '' is a literal, not a parameter, for PostgreSQL to
    recognize the index's expression."""
    return func.coalesce(account_id, literal_column("''"))


# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigIntegerKey = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Account(Base):
    """A calling service: it owns its API keys, jobs, stored templates, suppressions, allowed senders and
    webhook signing secret; no other account sees or changes them."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # From addresses its keys may send as, besides MAIL_DEFAULT_SENDER.
    senders: Mapped[list[str] | None] = mapped_column(JSON)
    callback_url: Mapped[str | None] = mapped_column(Text)  # of its jobs that name none
    # Signs its webhook events. Null for an account made from an API key by the upgrade to accounts: it
    # signs with WEBHOOK_SECRET, as before, until the operator gives it a secret of its own.
    webhook_secret: Mapped[str | None] = mapped_column(String(128))
    # The secret before the last rotation, which signs beside the new one until previous_secret_until (null
    # then: the account signed with WEBHOOK_SECRET before, which is the one that signs beside it).
    previous_webhook_secret: Mapped[str | None] = mapped_column(String(128))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # its keys are refused from then on
    lane: Mapped[str | None] = mapped_column(String(16))  # of its jobs that name none (null: by their size)


class KeyRole(enum.StrEnum):
    ACCOUNT = "account"  # the account's own things only
    ADMIN = "admin"  # also the shared templates and suppressions, and every account's jobs in the dashboard


class ApiKey(Base):
    """A named API key of an account; only its SHA-256 is kept (the key itself is shown once, at creation).
    An account has any number of them: a key is rotated by creating the next one, then revoking it."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(36), index=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))  # KeyRole
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the key's first characters, to recognize it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DashboardSession(Base):
    """A dashboard login: its cookie carries the random id, the row keeps only the id's SHA-256. Logging
    out or revoking the key ends it here, so a copy of the cookie opens nothing after that."""

    __tablename__ = "dashboard_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(36), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_account_created_at", "account_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # The account whose key created the job (null when authentication is off): only it sees the job.
    account_id: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16), index=True)
    subject: Mapped[str] = mapped_column(Text)
    content: Mapped[str] = mapped_column(Text)
    template: Mapped[str] = mapped_column(String(64))
    # The stored template's version the job renders, and that version's row: an account's template and a
    # shared one may have the same name (both null for a template file).
    template_version: Mapped[int | None] = mapped_column(Integer)
    template_id: Mapped[int | None] = mapped_column(BigInteger)
    sender: Mapped[str] = mapped_column(String(320))
    total: Mapped[int] = mapped_column(Integer)
    variables: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # under each recipient's own
    reply_to: Mapped[str | None] = mapped_column(String(320))
    headers: Mapped[dict[str, str] | None] = mapped_column(JSON)  # X-* headers added to every message
    tags: Mapped[list[str] | None] = mapped_column(JSON)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)  # `metadata` is SQLAlchemy's
    callback_url: Mapped[str | None] = mapped_column(Text)
    # Key of the job's List-Unsubscribe links (random, per job); null when the job has none.
    unsubscribe_key: Mapped[str | None] = mapped_column(String(64))
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lane: Mapped[str] = mapped_column(String(16), default=Lane.BULK)  # Lane
    # The job's place in its lane's round, counted in recipients claimed (storage.scheduling): the
    # account and the job furthest behind go next; null until its first claim.
    served: Mapped[int | None] = mapped_column(BigInteger)


class SuppressionReason(enum.StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"  # a 5xx reply to RCPT, or a hard bounce after the relay took the message
    SOFT_BOUNCED = "soft_bounced"  # SOFT_BOUNCE_LIMIT soft bounces within SOFT_BOUNCE_WINDOW
    COMPLAINED = "complained"  # its recipient reported a message as spam
    MANUAL = "manual"  # added through /api/suppressions or the dashboard


class Suppression(Base):
    """An address nothing is sent to any more, checked at intake and again before sending: for one account
    (an unsubscribe, a complaint, the account's own entry), or shared by all (a hard bounce, the operator's)."""

    __tablename__ = "suppressions"
    __table_args__ = (Index("ix_suppressions_scope_address", text("coalesce(account_id, '')"), "address", unique=True),)

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    account_id: Mapped[str | None] = mapped_column(String(36))  # null: shared, every account's recipients
    address: Mapped[str] = mapped_column(String(320))  # addresses.dedup_key form
    reason: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[str | None] = mapped_column(String(36))  # the job it came from, if any
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Attachment(Base):
    """A file sent with every message of a job: stored once, never copied per recipient."""

    __tablename__ = "attachments"
    __table_args__ = (Index("ix_attachments_job", "job_id", "position", unique=True),)

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36))
    position: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class StoredTemplate(Base):
    """One version of a template kept in the database; a change adds a version, never edits one,
    so a job always renders the version it was accepted with."""

    __tablename__ = "templates"
    __table_args__ = (
        Index("ix_templates_scope_name_version", text("coalesce(account_id, '')"), "name", "version", unique=True),
    )

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    # The account that owns it; null for a shared template, which every account may use and only operators change.
    account_id: Mapped[str | None] = mapped_column(String(36))
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    eml: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Set on every version when the template is deleted: jobs still use them, new ones cannot.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IdempotencyKey(Base):
    """A POST /api/email/ made with an Idempotency-Key: its body's hash and, once done, its answer."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str | None] = mapped_column(String(36))  # null while the first request runs
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class EventStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # retried until WEBHOOK_RETRY_LIFETIME, then given up


class WebhookEvent(Base):
    """The webhook outbox: an event is written in the transaction that makes it true, then
    delivered (and retried) by the workers."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index(
            "ix_webhook_events_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_events_job", "job_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Recipient(Base):
    """One recipient of a job. No foreign key to jobs: see the 0001 migration for why."""

    __tablename__ = "recipients"
    __table_args__ = (
        Index("ix_recipients_job_position", "job_id", "position", unique=True),
        # Only rows still to be sent have a lease (see lease_until), so these partial indexes stay
        # as small as the work in progress and the intake's inserts never touch them.
        # The scheduler's sweep: is any work due anywhere (a row whose lease or retry time has passed)?
        Index(
            "ix_recipients_lease",
            "lease_until",
            postgresql_where=text("lease_until IS NOT NULL"),
            sqlite_where=text("lease_until IS NOT NULL"),
        ),
        # Is anything of this job left to send, and what of it is due, oldest first: asked at every claim.
        Index(
            "ix_recipients_job_due",
            "job_id",
            "lease_until",
            postgresql_where=text("lease_until IS NOT NULL"),
            sqlite_where=text("lease_until IS NOT NULL"),
        ),
        # Failures not yet reported by a recipient.failed webhook event.
        Index(
            "ix_recipients_failure_unreported",
            "job_id",
            postgresql_where=text("failure_unreported"),
            sqlite_where=text("failure_unreported"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36))
    position: Mapped[int] = mapped_column(Integer)
    address: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(256))
    variables: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the row is due to be claimed: once its claim's lease has run out while sending (its worker
    # died), at the retry time while deferred, at once (the job's start) or at a wake-up time given
    # back with it while pending. Null before the job starts, and once the row is final: every row of
    # a started job that is still to be sent has one.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set with a failure when the job has a webhook; cleared when a recipient.failed event reports it.
    failure_unreported: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)


class Bounce(Base):
    """A bounce or complaint about one sent message: at most one of each kind per recipient row, so a
    report received twice (a redelivered webhook, a mailbox read again) counts once."""

    __tablename__ = "bounces"
    __table_args__ = (
        Index("ix_bounces_recipient_kind", "recipient_id", "kind", unique=True),
        Index("ix_bounces_address_received", "address", "received_at"),  # soft bounces in the window
        Index("ix_bounces_job", "job_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    recipient_id: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[str] = mapped_column(String(36))
    address: Mapped[str] = mapped_column(String(320))  # addresses.dedup_key form, as suppressions
    kind: Mapped[str] = mapped_column(String(16))  # bounces.feedback.FeedbackKind
    source: Mapped[str] = mapped_column(String(16))  # bounces.feedback.FeedbackSource
    status: Mapped[str | None] = mapped_column(String(16))  # enhanced status code, e.g. 5.1.1
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    diagnostic: Mapped[str] = mapped_column(Text)
    reporter: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UsedWebhookSignature(Base):
    """A provider webhook's signature already accepted, kept while it is young enough to check: a
    signature that does not cover the events it comes with (Mailgun's) is accepted once."""

    __tablename__ = "used_webhook_signatures"
    __table_args__ = (Index("ix_used_webhook_signatures_expires", "expires_at"),)

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 hex of the provider and its token
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True, slots=True)
class ClaimedRecipient:
    """A recipient as its batch claimed it: what sending to it needs. A plain row, not an ORM object:
    a batch claims a hundred at a time, and building mapped instances cost more than the claim itself."""

    id: int
    position: int
    address: str
    name: str | None
    variables: dict[str, Any] | None
    attempts: int
