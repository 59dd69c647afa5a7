"""Request and response bodies of the HTTP API (one pydantic model per schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag
from pydantic.config import JsonDict

from email_service.message.addresses import QUOTED_MAX
from email_service.storage.models import JobStatus, Lane, RecipientStatus

TUTORIAL_EXAMPLE: JsonDict = {
    "recipients": ["will@example.com", {"email": "eleven@example.com", "name": "Eleven", "variables": {"code": "011"}}],
    "subject": "Demogorgon",
    "content": "Run for your life",
    "template": "default",
}


class RecipientIn(BaseModel):
    """A recipient with a display name or variables of its own."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(description="Address; validated and normalized (no DNS lookup).", max_length=320)
    name: str | None = Field(
        None,
        description="Display name in the To header, and `{{ name }}` unless the job's or its own `variables` have a "
        "`name`; no control characters.",
        max_length=256,
    )
    variables: dict[str, Any] | None = Field(
        None, description="Template variables for this recipient only, over the job's and the built-in names."
    )


# Tags of the two forms a recipient takes; they appear in pydantic's error locations.
RECIPIENT_FORMS = ("address", "object")


def _recipient_form(value: Any) -> str | None:
    if isinstance(value, str):
        return "address"
    return "object" if isinstance(value, dict) else None


# A tagged union: pydantic validates each item against its one form (plain strings stay strings,
# the cheap case: bench/costs.py) and reports errors for that form only.
Recipient = Annotated[
    Annotated[Annotated[str, StringConstraints(max_length=320)], Tag("address")]
    | Annotated[RecipientIn, Tag("object")],
    Discriminator(
        _recipient_form,
        custom_error_type="recipient_type",
        custom_error_message="a recipient is an address string or an object {email, name, variables}",
    ),
]


class AttachmentBody(BaseModel):
    """A file sent with every message of the job."""

    model_config = ConfigDict(extra="forbid")

    filename: str = Field(
        description="File name shown to the recipient; no path, no control characters, also once RFC 2047 encoded "
        "words (`=?utf-8?b?...?=`) are decoded (the decoded name is stored, trimmed).",
        max_length=255,
    )
    content: str = Field(description="The file, base64-encoded.")
    content_type: str | None = Field(
        None, description="MIME type; guessed from the file name when absent.", max_length=190
    )


FULL_EXAMPLE: JsonDict = {
    "recipients": [
        {"email": "will@example.com", "name": "Will", "variables": {"code": "W-1"}},
        {"email": "eleven@example.com", "name": "Eleven", "variables": {"code": "011"}},
    ],
    "subject": "Your access code",
    "content": "Run for your life",
    "template": "welcome",
    "variables": {"town": "Hawkins"},
    "reply_to": "support@example.org",
    "headers": {"X-Campaign": "spring"},
    "tags": ["onboarding"],
    "metadata": {"batch": 42},
    "attachments": [{"filename": "map.txt", "content": "SGF3a2lucyBsYWI=", "content_type": "text/plain"}],
    "send_at": "PT10M",
    "expires_at": "2030-12-01T18:00:00Z",
    "callback_url": "https://hooks.example.org/email-events",
}


class SendEmailBody(BaseModel):
    """The tutorial's request (recipients, subject, content, template) and the options around it."""

    model_config = ConfigDict(
        extra="forbid",
        # Swagger UI shows `example` (the tutorial's request); `examples` adds one with every option.
        json_schema_extra={"example": TUTORIAL_EXAMPLE, "examples": [TUTORIAL_EXAMPLE, FULL_EXAMPLE]},
    )

    recipients: list[Recipient] = Field(
        description="Addresses (strings) or {email, name, variables} objects; duplicates are merged.",
        min_length=1,
    )
    subject: str = Field(
        description="Subject line (a template may set its own); no control characters.", max_length=998
    )
    content: str = Field("", description="Text given to the template as `content`.")
    template: str = Field(
        "default",
        description="Name of a stored template or a template file, matching ^[a-z0-9][a-z0-9_-]{0,63}$.",
        max_length=64,
    )
    template_version: int | None = Field(
        None,
        ge=1,
        le=2_147_483_647,
        description="A stored template's version; its current one when absent. The job records it.",
    )
    variables: dict[str, Any] | None = Field(
        None,
        description="Template variables of every recipient, over the built-in names (`name`, `to`, `subject`...); "
        "a recipient's own variables win.",
    )
    reply_to: str | None = Field(
        None,
        description="Reply-To of every message: one mailbox, `support@example.org` or `Service Clients "
        "<support@example.org>` (its local part ASCII; an internationalized domain is fine); a list, group, comment "
        "or route address is a 422.",
        max_length=320,
    )
    headers: dict[str, str] | None = Field(
        None, description="Extra headers, `X-*` names only (at most 20); they replace a template's of the same name."
    )
    tags: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None = Field(
        None, max_length=10, description="Labels stored with the job and returned with it and its events."
    )
    metadata: dict[str, Any] | None = Field(
        None, description="Your own data (at most 4 KB as JSON), stored and returned with the job and its events."
    )
    attachments: list[AttachmentBody] = Field(
        default_factory=list,
        description="Files attached to every message; stored once per job. At most MAX_ATTACHMENTS files and "
        "MAX_ATTACHMENT_BYTES bytes in all (decoded). Each carries `name=` on Content-Type and `filename` or RFC 2231 "
        "`filename*` on Content-Disposition.",
    )
    send_at: str | None = Field(
        None,
        description="Start sending at this time (ISO 8601 with offset, e.g. `2030-12-01T09:00:00+01:00`) or after "
        "this delay (ISO 8601 duration, e.g. `PT30M`). The job is `scheduled` until then.",
        max_length=64,
    )
    expires_at: str | None = Field(
        None,
        description="Send nothing after this time (same forms as send_at; a duration counts from now): "
        "recipients not sent by then end `expired`.",
        max_length=64,
    )
    sender: str | None = Field(
        None,
        description="From, exactly one mailbox, e.g. `News <news@example.org>`: MAIL_DEFAULT_SENDER (the default) or "
        "one of the senders of the key's account (`email-service accounts configure NAME --sender ...`); anything "
        "else, a list, group, comment, route address, or a display name holding another address or hiding one in "
        "encoded words, is a 422. The From written is made from the parsed mailbox.",
        max_length=320,
    )
    list_unsubscribe: bool = Field(
        True,
        strict=True,  # a JSON boolean, as documented: not 0, 1 or "yes"
        description="Give each message a one-click `List-Unsubscribe` link (RFC 8058) to PUBLIC_URL/unsubscribe/...; "
        "an address that uses it is suppressed for this account's jobs. Turn off for transactional mail only.",
    )
    lane: Lane | None = Field(
        None,
        description="`transactional` (mail someone waits for: a password reset, a receipt) or `bulk` (newsletters). "
        "Transactional jobs are sent before any bulk work, at every shared limit; within a lane, accounts take "
        "turns, then each account's jobs. When absent: the account's default lane, else `transactional` for a "
        "job of at most TRANSACTIONAL_MAX_RECIPIENTS recipients and `bulk` above.",
    )
    callback_url: str | None = Field(
        None,
        description="Where webhook events of this job are POSTed (job.completed, job.cancelled, recipient.failed), "
        "signed with HMAC-SHA256; WEBHOOK_URL when absent. An http(s) URL of a public host, without credentials: "
        "loopback, private, link-local, shared (CGNAT), multicast and reserved addresses (also written as one "
        "number, in hex or octal, or inside IPv6), localhost, cloud metadata and internal names are refused "
        "(422), and so is a name that resolves to such an address when the events are sent (the event fails "
        "for good), unless the operator allows its network with WEBHOOK_ALLOWED_NETWORKS. Redirects are never "
        "followed.",
        max_length=2000,
    )


# Ids are UUIDs; the pattern keeps anything a database could not even compare (U+0000) out.
JOB_ID_PATTERN = r"^[0-9A-Za-z-]{1,64}$"
# Text in paths and queries: anything but U+0000, which no database stores.
NO_NUL_PATTERN = r"^[^\x00]*$"


class JobPath(BaseModel):
    id: str = Field(description="Job id returned by POST /api/email/.", pattern=JOB_ID_PATTERN)


class JobAccepted(BaseModel):
    id: str = Field(description="Job id.")
    status: str = Field(description="`queued` until a worker starts it, or `scheduled` until its send_at.")
    total: int = Field(description="Recipients to send to, after merging duplicates.")


class QueueView(BaseModel):
    waiting: int = Field(description="Its recipients still to send (pending, deferred, being sent).")
    share: float = Field(
        description="Share of the sending rate its turns get now, from 0 to 1: accounts with work due in its lane "
        "share it equally, then each account's jobs. 0 while transactional work due comes first, and while "
        "none of its recipients is due (all being sent, or deferred until a retry)."
    )
    ahead: int = Field(description="Recipients of transactional jobs due now, sent before this bulk job.")
    estimated_seconds: float | None = Field(
        description="Seconds to send what waits at its share of SEND_RATE, if the work due stays as it is; "
        "null without a SEND_RATE."
    )


class JobView(BaseModel):
    id: str
    status: str = Field(description="scheduled, queued, sending, paused, completed or cancelled.")
    lane: Lane = Field(description="`transactional` or `bulk`: see the `lane` of the job's POST.")
    queue: QueueView | None = Field(
        None, description="Where a queued or sending job stands among the work waiting; null otherwise."
    )
    template: str
    template_version: int | None = Field(description="Version of the stored template used; null for a file.")
    subject: str
    total: int = Field(description="Recipients in the job.")
    counts: dict[str, int] = Field(
        description="Recipients per status, bounced and complained included; they add up to total (a sent "
        "recipient that bounces later moves from sent to bounced)."
    )
    current: int = Field(description="Recipients whose outcome is final (sent, failed, ...).")
    progress: float = Field(description="current / total, from 0 to 1.")
    tags: list[str]
    metadata: dict[str, Any] | None
    send_at: datetime | None = Field(description="When a scheduled job starts.")
    expires_at: datetime | None = Field(description="After this, nothing more is sent.")
    callback_url: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class LaneBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lane: Lane = Field(description="The job's new lane; its next recipients are claimed in it.")


class JobList(BaseModel):
    items: list[JobView]
    next_before: str | None = Field(description="Pass as `before` for the next (older) page; null at the end.")


class JobListQuery(BaseModel):
    limit: int = Field(20, ge=1, le=200, description="Jobs per page.")
    before: str | None = Field(None, description="Job id from the previous page's next_before.", pattern=JOB_ID_PATTERN)
    status: JobStatus | None = Field(None, description="Only jobs in this status.")
    tag: str | None = Field(
        None, min_length=1, max_length=64, pattern=NO_NUL_PATTERN, description="Only jobs carrying this tag."
    )


class BounceView(BaseModel):
    type: str = Field(description="hard, soft or complaint.")
    status: str | None = Field(description="Enhanced status code (RFC 3463) of a bounce, e.g. 5.1.1.")
    smtp_code: int | None = Field(description="SMTP reply code the remote server gave, if the report says.")
    diagnostic: str = Field(description="What the remote server or provider said.")
    source: str = Field(description="dsn, text, arf (a mailed report), ses, sendgrid, mailgun or postmark.")
    reporter: str | None = Field(description="The MTA or provider that reported it.")
    received_at: datetime


class RecipientView(BaseModel):
    position: int = Field(description="Order of the recipient in the job, from 0.")
    email: str
    name: str | None
    status: str = Field(
        description="pending, sending, sent, deferred, failed, suppressed, cancelled, expired, or, after it was "
        "sent, bounced (a hard bounce came back) or complained (its recipient reported it as spam)."
    )
    attempts: int
    message_id: str = Field(description="Message-ID header, the same on every attempt.")
    error_code: int | None = Field(description="SMTP reply code of the last failure, if any.")
    error: str | None = Field(
        description="Reason of the last failure, if any; for a suppressed recipient, which suppression list "
        "(this account's or the shared one) and why, e.g. `suppressed: on the shared suppression list (bounced)`."
    )
    next_attempt_at: datetime | None = Field(description="When a deferred recipient is tried again.")
    sent_at: datetime | None
    updated_at: datetime | None
    bounce: BounceView | None = Field(
        description="The latest bounce or complaint about the message (a soft bounce leaves the status sent)."
    )


class RecipientList(BaseModel):
    items: list[RecipientView]
    next_after: int | None = Field(description="Pass as `after` for the next page; null at the end.")


class RecipientQuery(BaseModel):
    status: RecipientStatus | None = Field(None, description="Only recipients in this status.")
    search: str | None = Field(
        None,
        min_length=1,
        max_length=320,
        pattern=NO_NUL_PATTERN,
        description="Only recipients whose address contains this text, in any case.",
    )
    after: int | None = Field(
        None, ge=-1, le=2_147_483_647, description="Position from the previous page's next_after."
    )
    limit: int = Field(100, ge=1, le=1000, description="Recipients per page.")


class ErrorDetail(BaseModel):
    field: str = Field(description="Where the problem is, e.g. `recipients[3]` or `subject`.")
    reason: str
    index: int | None = Field(None, description="Index in `recipients`, for a recipient's problem.")
    address: str | None = Field(
        None,
        description=f"The address refused, as given (JSON-escaped like any string): its first {QUOTED_MAX} "
        "characters, then `…` when it is longer.",
    )
    line: int | None = Field(None, description="Template line of a template error.")
    variable: str | None = Field(None, description="The undefined variable a template used.")


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable code, e.g. validation_error.")
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)
