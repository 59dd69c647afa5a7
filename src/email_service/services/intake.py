"""Accepting a job: check everything, store the job and all its recipients in one transaction."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from email_service import metrics
from email_service.errors import InvalidAddress, TemplateError, ValidationFailed
from email_service.message import unsubscribe
from email_service.message.addresses import dedup_key, normalize_address
from email_service.message.composing import JobContent, compose
from email_service.message.header_values import describe_unsafe_text
from email_service.message.mailboxes import Mailbox, parse_mailbox
from email_service.message.mime import AttachmentFile
from email_service.message.rendering import TemplateSource
from email_service.services import Services, accounts, auth, job_options, templates
from email_service.services.idempotency import Claim
from email_service.services.job_options import AttachmentIn, Problems
from email_service.storage import jobs, suppressions
from email_service.storage.jobs import NewRecipient
from email_service.storage.models import Attachment, Job, JobStatus, Lane, RecipientStatus, utcnow

log = logging.getLogger(__name__)


class RecipientRequest(Protocol):
    """A recipient given with a name or variables; a plain string is an address alone."""

    email: str
    name: str | None
    variables: dict[str, Any] | None


@dataclass(frozen=True)
class JobRequest:
    """A bulk send as the caller asked for it (the API's body, already of the right types)."""

    recipients: Sequence[str | RecipientRequest]
    subject: str
    content: str = ""
    template: str = "default"
    template_version: int | None = None
    variables: dict[str, Any] | None = None
    reply_to: str | None = None
    headers: dict[str, str] | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    attachments: Sequence[AttachmentIn] = field(default_factory=tuple)
    send_at: str | None = None
    expires_at: str | None = None
    callback_url: str | None = None
    list_unsubscribe: bool = True
    sender: str | None = None  # From; MAIL_DEFAULT_SENDER when absent
    lane: Lane | None = None  # the account's default, else by the job's size, when absent


@dataclass(frozen=True)
class AcceptedJob:
    id: str
    status: str
    total: int

    def response(self) -> dict[str, Any]:
        """The body of the 202 answer (also replayed for a repeated Idempotency-Key)."""
        return {"id": self.id, "status": self.status, "total": self.total}


def accept_job(
    services: Services, request: JobRequest, *, account: str | None = None, idempotency: Claim | None = None
) -> AcceptedJob:
    """Validate a bulk send and store it for ``account`` (that of the API key sending it); ValidationFailed lists
    every problem and stores nothing."""
    settings = services.settings
    now = utcnow()
    problems = Problems()
    source: TemplateSource | None = None
    try:
        source = templates.resolve(services, request.template, request.template_version, account=account)
    except TemplateError as exc:
        problems.add("template", str(exc))
    if reason := describe_unsafe_text(request.subject):
        problems.add("subject", reason)
    sender = _sender(services, request.sender, account, problems)
    reply_to = _reply_to(request.reply_to, problems)
    job_options.check_extra_headers(request.headers, problems)
    job_options.check_metadata(request.metadata, problems)
    attachments = job_options.decode_attachments(
        list(request.attachments),
        max_count=settings.max_attachments,
        max_bytes=settings.max_attachment_bytes,
        problems=problems,
    )
    send_at, expires_at = _schedule(services, request, now, problems)
    callback_url = _callback_url(services, request.callback_url, account, problems)
    if not request.recipients:
        problems.add("recipients", "at least one recipient is required")
    elif len(request.recipients) > settings.max_recipients:
        problems.add("recipients", f"at most {settings.max_recipients} recipients per job")
        raise ValidationFailed("the job is too large", problems.items)

    job = Job(
        id=str(uuid.uuid4()),
        account_id=account,
        status=JobStatus.SCHEDULED if send_at is not None and send_at > now else JobStatus.QUEUED,
        subject=request.subject,
        content=request.content,
        template=request.template,
        # The version's row, not its name: a template of the same name stored later, in any scope, never
        # changes what the job sends.
        template_version=source.version if source is not None else None,
        template_id=source.stored_id if source is not None else None,
        sender=sender,
        total=0,
        variables=request.variables,
        reply_to=reply_to,
        headers=request.headers or None,
        tags=request.tags or None,
        meta=request.metadata,
        callback_url=callback_url,
        unsubscribe_key=unsubscribe.new_key() if request.list_unsubscribe else None,
        send_at=send_at,
        expires_at=expires_at,
        created_at=now,
    )
    content = templates.job_content(services, job, attachments, source) if source is not None and not problems else None
    rows, keys = _recipient_rows(
        services, job.id, request.recipients, content, problems, settings.allowed_recipient_domains
    )
    if problems:
        raise ValidationFailed(f"{len(problems.items)} problem(s) in the request; nothing was queued", problems.items)
    job.total = len(rows)
    with services.readers() as session:
        job.lane = request.lane or accounts.default_lane(session, account) or _lane_by_size(services, job.total)
        found = suppressions.suppressed(session, keys, account)
    # Never sent to: final from the start, saying which list and why.
    explanations = {row[1]: found[key].explanation() for row, key in zip(rows, keys, strict=True) if key in found}
    if explanations:
        rows = [(*row[:5], RecipientStatus.SUPPRESSED.value, 0) if row[1] in explanations else row for row in rows]
    accepted = AcceptedJob(id=job.id, status=job.status, total=job.total)
    with services.sessions.begin() as session:
        if idempotency is not None:  # first: the key is committed with the job or not at all
            idempotency.record(session, job.id, accepted.response())
        jobs.insert_job(session, job, rows)
        if explanations:
            jobs.explain_suppressed(session, job.id, explanations)
        session.add_all(_attachment_rows(job.id, attachments))
    metrics.job_accepted(len(rows), suppressed=len(explanations))
    log.info(
        "job %s accepted: %d recipients (%d duplicates merged), %s",
        job.id,
        len(rows),
        len(request.recipients) - len(rows),
        job.status,
    )
    return accepted


def _lane_by_size(services: Services, total: int) -> Lane:
    """A few recipients are mail someone waits for (a reset, a receipt); more are a newsletter."""
    return Lane.TRANSACTIONAL if total <= services.settings.transactional_max_recipients else Lane.BULK


def _recipient_rows(
    services: Services,
    job_id: str,
    recipients: Sequence[str | RecipientRequest],
    content: JobContent | None,
    problems: Problems,
    allowed_domains: frozenset[str],
) -> tuple[list[NewRecipient], list[str]]:
    """The recipients to store, normalized and deduplicated, and their dedup keys; the first one's
    message is built now, so a template or option that cannot make a message is refused at intake."""
    rows: list[NewRecipient] = []
    seen: dict[str, None] = {}  # insertion-ordered: the keys of the rows
    for index, recipient in enumerate(recipients):
        email, name, variables = (
            (recipient, None, None)
            if isinstance(recipient, str)
            else (recipient.email, recipient.name, recipient.variables)
        )
        try:
            address = normalize_address(email)
        except InvalidAddress as exc:
            problems.add(f"recipients[{index}]", str(exc), index=index, address=email)
            continue
        domain = address.rpartition("@")[2].lower()
        if allowed_domains and domain not in allowed_domains:
            problems.add(
                f"recipients[{index}]", f"domain {domain!r} is not in RECIPIENT_DOMAINS", index=index, address=email
            )
            continue
        if name is not None and (reason := describe_unsafe_text(name)):
            problems.add(f"recipients[{index}].name", reason, index=index)
            continue
        key = dedup_key(address)
        if key in seen:
            continue
        seen[key] = None
        if not rows and content is not None:
            try:
                compose(
                    services.renderer,
                    content,
                    address=address,
                    name=name,
                    variables=variables,
                    position=0,
                    date=utcnow(),
                )
            except TemplateError as exc:
                problems.items.append(exc.detail())
        encoded = json.dumps(variables) if variables is not None else None
        rows.append((job_id, len(rows), address, name, encoded, RecipientStatus.PENDING.value, 0))
    return rows, list(seen)


def _schedule(
    services: Services, request: JobRequest, now: datetime, problems: Problems
) -> tuple[datetime | None, datetime | None]:
    horizon = services.settings.max_schedule_days
    send_at = expires_at = None
    if request.send_at is not None:
        send_at = job_options.parse_when(request.send_at, "send_at", now=now, horizon_days=horizon, problems=problems)
    if request.expires_at is not None:
        expires_at = job_options.parse_when(
            request.expires_at, "expires_at", now=now, horizon_days=horizon, problems=problems
        )
    job_options.check_schedule(send_at, expires_at, now=now, problems=problems)
    return send_at, expires_at


def _callback_url(services: Services, given: str | None, account: str | None, problems: Problems) -> str | None:
    """The job's callback URL: the one given, checked, or its account's default."""
    with services.readers() as session:
        if not given:
            return accounts.default_callback_url(session, account, services.settings)
        can_sign = bool(
            accounts.signing_secrets(session, account, services.settings.webhook_secret.get_secret_value(), utcnow())
        )
    job_options.check_callback_url(
        given, can_sign=can_sign, allowed_networks=services.settings.webhook_allowed_networks, problems=problems
    )
    return given


def _sender(services: Services, value: str | None, account: str | None, problems: Problems) -> str:
    """The From the job stores: the one mailbox ``value`` names, written again from its parts (the
    caller's text itself is never a header), or MAIL_DEFAULT_SENDER's when absent."""
    default = services.settings.mail_default_sender
    try:
        mailbox = parse_mailbox(value if value is not None else default)
    except InvalidAddress as exc:
        problems.add("sender", str(exc), address=value)
        return default
    if value is not None and mailbox.address.lower() not in auth.allowed_senders(services, account):
        problems.add(
            "sender", "not a sender this account may use (MAIL_DEFAULT_SENDER or the account's senders)", address=value
        )
    return mailbox.formatted


def _reply_to(value: str | None, problems: Problems) -> str | None:
    """The Reply-To the job stores: one mailbox, its name kept, its address normalized."""
    if value is None:
        return None
    try:
        mailbox = parse_mailbox(value)
        address = normalize_address(mailbox.address)
    except InvalidAddress as exc:
        problems.add("reply_to", str(exc), address=value)
        return None
    if not address.rpartition("@")[0].isascii():
        # Only an SMTPUTF8 message can carry it, and a job's recipients are mostly ASCII addresses.
        problems.add("reply_to", "a non-ASCII local part is not accepted in Reply-To", address=value)
        return None
    return Mailbox(mailbox.name, address).formatted


def _attachment_rows(job_id: str, attachments: Sequence[AttachmentFile]) -> list[Attachment]:
    return [
        Attachment(job_id=job_id, position=i, filename=a.filename, content_type=a.content_type, data=a.data)
        for i, a in enumerate(attachments)
    ]
