"""Accepting a job: check everything, store the job and all its recipients in one transaction."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..addresses import InvalidAddress, dedup_key, normalize_address
from ..composer import JobContent, compose
from ..errors import TemplateError, ValidationFailed
from ..header_values import describe_control_character
from ..rendering import is_valid_template_name
from ..storage import repository
from ..storage.models import Job, JobStatus, RecipientStatus, utcnow
from . import Services

log = logging.getLogger(__name__)


class RecipientRequest(Protocol):
    email: str
    name: str | None
    variables: dict[str, Any] | None


@dataclass(frozen=True)
class AcceptedJob:
    id: str
    status: str
    total: int


def accept_job(
    services: Services, *, recipients: Sequence[RecipientRequest], subject: str, content: str, template: str
) -> AcceptedJob:
    """Validate a bulk send and store it; ValidationFailed lists every problem and stores nothing."""
    settings = services.settings
    problems: list[dict[str, Any]] = []
    if not is_valid_template_name(template):
        problems.append(_problem("template", "must match ^[a-z0-9][a-z0-9_-]{0,63}$"))
    elif not services.renderer.exists(template):
        problems.append(_problem("template", f"unknown template {template!r}"))
    reason = describe_control_character(subject)
    if reason:
        problems.append(_problem("subject", reason))
    if not recipients:
        problems.append(_problem("recipients", "at least one recipient is required"))
    elif len(recipients) > settings.max_recipients:
        problems.append(_problem("recipients", f"at most {settings.max_recipients} recipients per job"))
        raise ValidationFailed("the job is too large", problems)

    job_id = str(uuid.uuid4())
    now = utcnow()
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, recipient in enumerate(recipients):
        try:
            address = normalize_address(recipient.email)
        except InvalidAddress as exc:
            problems.append(_problem(f"recipients[{index}]", str(exc), index=index))
            continue
        if recipient.name is not None:
            reason = describe_control_character(recipient.name)
            if reason:
                problems.append(_problem(f"recipients[{index}].name", reason, index=index))
                continue
        key = dedup_key(address)
        if key in seen:
            continue
        seen.add(key)
        position = len(rows)
        rows.append(
            {
                "job_id": job_id,
                "position": position,
                "address": address,
                "name": recipient.name,
                "variables": recipient.variables,
                "status": RecipientStatus.PENDING,
                "attempts": 0,
                "message_id": f"<{job_id}.{position}@{settings.sender_domain}>",
            }
        )
    if not problems:
        problems += _preview_problems(services, rows[0], subject, content, template)
    if problems:
        raise ValidationFailed(f"{len(problems)} problem(s) in the request; nothing was queued", problems)

    job = Job(
        id=job_id,
        status=JobStatus.QUEUED,
        subject=subject,
        content=content,
        template=template,
        sender=settings.mail_default_sender,
        total=len(rows),
        created_at=now,
    )
    with services.sessions.begin() as session:
        repository.insert_job(session, job, rows)
    log.info("job %s accepted: %d recipients (%d duplicates merged)", job_id, len(rows), len(recipients) - len(rows))
    return AcceptedJob(id=job_id, status=job.status, total=job.total)


def _preview_problems(
    services: Services, first: dict[str, Any], subject: str, content: str, template: str
) -> list[dict[str, Any]]:
    """Compose the first recipient's message, so a broken template is refused at intake."""
    job = JobContent(template=template, sender=services.settings.mail_default_sender, subject=subject, content=content)
    try:
        compose(
            services.renderer,
            job,
            address=first["address"],
            name=first["name"],
            variables=first["variables"],
            message_id=first["message_id"],
            date=utcnow(),
        )
    except TemplateError as exc:
        return [_problem("template", str(exc))]
    return []


def _problem(field: str, reason: str, *, index: int | None = None) -> dict[str, Any]:
    problem: dict[str, Any] = {"field": field, "reason": reason}
    if index is not None:
        problem["index"] = index
    return problem
