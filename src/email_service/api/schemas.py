"""Request and response bodies of the HTTP API (one pydantic model per schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag
from pydantic.config import JsonDict

from ..storage.models import RecipientStatus

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
    name: str | None = Field(None, description="Display name in the To header; no control characters.", max_length=256)
    variables: dict[str, Any] | None = Field(None, description="Template variables for this recipient only.")


# Tags of the two forms a recipient takes; they appear in pydantic's error locations.
RECIPIENT_FORMS = ("address", "object")


def _recipient_form(value: Any) -> str | None:
    if isinstance(value, str):
        return "address"
    return "object" if isinstance(value, dict) else None


# A tagged union: pydantic validates each item against its one form (plain strings stay strings,
# 100,000 of them in ~10 ms) and reports errors for that form only.
Recipient = Annotated[
    Annotated[Annotated[str, StringConstraints(max_length=320)], Tag("address")]
    | Annotated[RecipientIn, Tag("object")],
    Discriminator(
        _recipient_form,
        custom_error_type="recipient_type",
        custom_error_message="a recipient is an address string or an object {email, name, variables}",
    ),
]


class SendEmailBody(BaseModel):
    """The tutorial's request, unchanged: who, what, and which template."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": TUTORIAL_EXAMPLE})

    recipients: list[Recipient] = Field(
        description="Addresses (strings) or {email, name, variables} objects; duplicates are merged.",
        min_length=1,
    )
    subject: str = Field(description="Subject line; no control characters.", max_length=998)
    content: str = Field(description="Text given to the template as `content`.")
    template: str = Field("default", description="Template name, matching ^[a-z0-9][a-z0-9_-]{0,63}$.", max_length=64)


class JobPath(BaseModel):
    id: str = Field(description="Job id returned by POST /api/email/.", max_length=64)


class JobAccepted(BaseModel):
    id: str = Field(description="Job id.")
    status: str = Field(description="Job status: queued until a worker starts it.")
    total: int = Field(description="Recipients to send to, after merging duplicates.")


class JobView(BaseModel):
    id: str
    status: str = Field(description="queued, sending, completed or cancelled.")
    template: str
    subject: str
    total: int = Field(description="Recipients in the job.")
    counts: dict[str, int] = Field(description="Recipients per status; they add up to total.")
    current: int = Field(description="Recipients whose outcome is final (sent, failed, ...).")
    progress: float = Field(description="current / total, from 0 to 1.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobList(BaseModel):
    items: list[JobView]
    next_before: str | None = Field(description="Pass as `before` for the next (older) page; null at the end.")


class JobListQuery(BaseModel):
    limit: int = Field(20, ge=1, le=200, description="Jobs per page.")
    before: str | None = Field(None, description="Job id from the previous page's next_before.", max_length=64)


class RecipientView(BaseModel):
    position: int = Field(description="Order of the recipient in the job, from 0.")
    email: str
    name: str | None
    status: str = Field(description="pending, sending, sent, deferred, failed, suppressed, cancelled or expired.")
    attempts: int
    message_id: str = Field(description="Message-ID header, the same on every attempt.")
    error_code: int | None = Field(description="SMTP reply code of the last failure, if any.")
    error: str | None = Field(description="Reason of the last failure, if any.")
    next_attempt_at: datetime | None = Field(description="When a deferred recipient is tried again.")
    sent_at: datetime | None
    updated_at: datetime | None


class RecipientList(BaseModel):
    items: list[RecipientView]
    next_after: int | None = Field(description="Pass as `after` for the next page; null at the end.")


class RecipientQuery(BaseModel):
    status: RecipientStatus | None = Field(None, description="Only recipients in this status.")
    after: int | None = Field(None, ge=-1, description="Position from the previous page's next_after.")
    limit: int = Field(100, ge=1, le=1000, description="Recipients per page.")


class ErrorDetail(BaseModel):
    field: str = Field(description="Where the problem is, e.g. `recipients[3]` or `subject`.")
    reason: str
    index: int | None = Field(None, description="Index in `recipients`, for a recipient's problem.")


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable code, e.g. validation_error.")
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)
