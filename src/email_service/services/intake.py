"""Accepting a job: check everything, store the job and all its recipients in one transaction."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..addresses import InvalidAddress, dedup_key, normalize_address
from ..composer import JobContent, compose
from ..errors import TemplateError, ValidationFailed
from ..header_values import describe_control_character
from ..rendering import TEMPLATE_NAME, is_valid_template_name
from ..storage import repository
from ..storage.models import Job, JobStatus, RecipientStatus, utcnow
from ..storage.repository import NewRecipient
from . import Services

log = logging.getLogger(__name__)


class RecipientRequest(Protocol):
    """A recipient given with a name or variables; a plain string is an address alone."""

    email: str
    name: str | None
    variables: dict[str, Any] | None


@dataclass(frozen=True)
class AcceptedJob:
    id: str
    status: str
    total: int


def accept_job(
    services: Services, *, recipients: Sequence[str | RecipientRequest], subject: str, content: str, template: str
) -> AcceptedJob:
    """Validate a bulk send and store it; ValidationFailed lists every problem and stores nothing."""
    settings = services.settings
    problems: list[dict[str, Any]] = []
    if not is_valid_template_name(template):
        problems.append(_problem("template", f"must match {TEMPLATE_NAME.pattern}"))
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
    rows: list[NewRecipient] = []
    seen: set[str] = set()
    for index, recipient in enumerate(recipients):
        email, name, variables = (
            (recipient, None, None)
            if isinstance(recipient, str)
            else (recipient.email, recipient.name, recipient.variables)
        )
        try:
            address = normalize_address(email)
        except InvalidAddress as exc:
            problems.append(_problem(f"recipients[{index}]", str(exc), index=index))
            continue
        if name is not None and (reason := describe_control_character(name)):
            problems.append(_problem(f"recipients[{index}].name", reason, index=index))
            continue
        key = dedup_key(address)
        if key in seen:
            continue
        seen.add(key)
        if not rows and not problems:
            problems += _preview_problems(services, job_id, address, name, variables, subject, content, template)
        encoded = json.dumps(variables) if variables is not None else None
        rows.append((job_id, len(rows), address, name, encoded, RecipientStatus.PENDING.value, 0))
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
        created_at=utcnow(),
    )
    with services.sessions.begin() as session:
        repository.insert_job(session, job, rows)
    log.info("job %s accepted: %d recipients (%d duplicates merged)", job_id, len(rows), len(recipients) - len(rows))
    return AcceptedJob(id=job_id, status=job.status, total=job.total)


def _preview_problems(
    services: Services,
    job_id: str,
    address: str,
    name: str | None,
    variables: dict[str, Any] | None,
    subject: str,
    content: str,
    template: str,
) -> list[dict[str, Any]]:
    """Compose the first recipient's message, so a broken template is refused at intake."""
    if not services.renderer.exists(template):
        return []  # already reported
    job = JobContent(
        job_id=job_id, template=template, sender=services.settings.mail_default_sender, subject=subject, content=content
    )
    try:
        compose(services.renderer, job, address=address, name=name, variables=variables, position=0, date=utcnow())
    except TemplateError as exc:
        return [_problem("template", str(exc))]
    return []


def _problem(field: str, reason: str, *, index: int | None = None) -> dict[str, Any]:
    problem: dict[str, Any] = {"field": field, "reason": reason}
    if index is not None:
        problem["index"] = index
    return problem
