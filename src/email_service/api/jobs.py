"""/api/email: accept a bulk send, follow a job, list its recipients' outcomes."""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app, url_for
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag

from ..services import Services, control, intake, reports
from ..storage.models import RecipientStatus
from .schemas import (
    ErrorBody,
    JobAccepted,
    JobList,
    JobListQuery,
    JobPath,
    JobView,
    RecipientList,
    RecipientQuery,
    RecipientView,
    SendEmailBody,
)

log = logging.getLogger(__name__)

email_tag = Tag(name="email", description="Bulk sends and their per-recipient outcomes")
blueprint = APIBlueprint("email", __name__, url_prefix="/api/email", abp_tags=[email_tag])

ERRORS: dict[int | str, Any] = {400: ErrorBody, 413: ErrorBody, 415: ErrorBody, 422: ErrorBody}


def _services() -> Services:
    services: Services = current_app.extensions["email_service"]
    return services


@blueprint.post(
    "/",
    strict_slashes=False,
    summary="Send one message to each recipient",
    description=(
        "Validates every address (all problems reported at once, with their index), stores the job and "
        "its recipients, queues the work and answers 202 at once. Follow the job at the `Location` URL."
    ),
    responses={202: JobAccepted, **ERRORS},
)
def send_email(body: SendEmailBody) -> Any:
    services = _services()
    accepted = intake.accept_job(
        services, recipients=body.recipients, subject=body.subject, content=body.content, template=body.template
    )
    assert services.queue is not None
    try:
        services.queue.start_job(accepted.id)
    except Exception:  # the job is stored; it stays queued until the broker answers again
        log.exception("job %s stored but could not be queued", accepted.id)
    location = url_for("email.get_job", id=accepted.id)
    return (
        JobAccepted(id=accepted.id, status=accepted.status, total=accepted.total).model_dump(),
        202,
        {"Location": location},
    )


@blueprint.get(
    "/",
    strict_slashes=False,
    summary="List recent jobs",
    description="Newest first, paginated with `before`.",
    responses={200: JobList, **ERRORS},
)
def list_jobs(query: JobListQuery) -> Any:
    jobs = reports.recent_jobs(_services(), limit=query.limit, before=query.before)
    next_before = jobs[-1].job.id if len(jobs) == query.limit else None
    return JobList(items=[_job_view(report) for report in jobs], next_before=next_before).model_dump(mode="json")


@blueprint.get(
    "/<id>",
    summary="Follow a job",
    description="Status, counts per recipient status, `current` (final outcomes so far) and `progress`.",
    responses={200: JobView, 404: ErrorBody},
)
def get_job(path: JobPath) -> Any:
    return _current_view(_services(), path.id)


@blueprint.get(
    "/<id>/recipients",
    summary="Per-recipient outcomes",
    description="In job order, optionally filtered by `status`, paginated with `after`.",
    responses={200: RecipientList, 404: ErrorBody, 422: ErrorBody},
)
def list_recipients(path: JobPath, query: RecipientQuery) -> Any:
    page = reports.recipient_page(_services(), path.id, status=query.status, after=query.after, limit=query.limit)
    next_after = page[-1].recipient.position if len(page) == query.limit else None
    return RecipientList(items=[_recipient_view(r) for r in page], next_after=next_after).model_dump(mode="json")


@blueprint.post(
    "/<id>/cancel",
    summary="Cancel a job",
    description=(
        "Recipients not yet handed to a worker become `cancelled`; messages already in flight finish. "
        "A finished job cannot be cancelled (409)."
    ),
    responses={200: JobView, 404: ErrorBody, 409: ErrorBody},
)
def cancel_job(path: JobPath) -> Any:
    services = _services()
    control.cancel(services, path.id)
    return _current_view(services, path.id)


@blueprint.post(
    "/<id>/retry",
    summary="Send again to the failed recipients",
    description=(
        "Only for a completed job: its failed recipients go back to `pending` and the job is queued again. "
        "409 when the job is not completed or has no failed recipient."
    ),
    responses={202: JobView, 404: ErrorBody, 409: ErrorBody},
)
def retry_job(path: JobPath) -> Any:
    services = _services()
    control.retry_failed(services, path.id)
    return _current_view(services, path.id), 202


def _current_view(services: Services, job_id: str) -> dict[str, Any]:
    return _job_view(reports.job_report(services, job_id)).model_dump(mode="json")


def _job_view(report: reports.JobReport) -> JobView:
    job = report.job
    return JobView(
        id=job.id,
        status=job.status,
        template=job.template,
        subject=job.subject,
        total=job.total,
        counts=report.counts,
        current=report.current,
        progress=report.progress,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def _recipient_view(report: reports.RecipientReport) -> RecipientView:
    recipient = report.recipient
    return RecipientView(
        position=recipient.position,
        email=recipient.address,
        name=recipient.name,
        status=recipient.status,
        attempts=recipient.attempts,
        message_id=report.message_id,
        error_code=recipient.last_error_code,
        error=recipient.last_error,
        next_attempt_at=recipient.next_attempt_at if recipient.status == RecipientStatus.DEFERRED else None,
        sent_at=recipient.sent_at,
        updated_at=recipient.updated_at,
    )
