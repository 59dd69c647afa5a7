"""/api/email: accept a bulk send, follow a job, list its recipients' outcomes."""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app, request, url_for
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag

from email_service.api import quotas
from email_service.api.auth import current_account
from email_service.api.errors import API_KEY, BODY_ERRORS, COMMON_ERRORS
from email_service.api.schemas import (
    BounceView,
    ErrorBody,
    JobAccepted,
    JobList,
    JobListQuery,
    JobPath,
    JobView,
    LaneBody,
    QueueView,
    RecipientList,
    RecipientQuery,
    RecipientView,
    SendEmailBody,
)
from email_service.services import Services, control, dispatch, idempotency, intake, reports
from email_service.storage.models import Bounce, JobStatus, Lane, RecipientStatus

log = logging.getLogger(__name__)

email_tag = Tag(
    name="email",
    description="Bulk sends and their per-recipient outcomes. A job belongs to the account of the key that posted "
    "it: every key of that account sees and steers it, another account's key gets 404.",
)
blueprint = APIBlueprint("email", __name__, url_prefix="/api/email", abp_tags=[email_tag], abp_security=API_KEY)

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"


def _services() -> Services:
    services: Services = current_app.extensions["email_service"]
    return services


@blueprint.post(
    "/",
    strict_slashes=False,
    summary="Send one message to each recipient",
    description=(
        "Validates every address and option (all problems reported at once, with their index), stores the job, "
        "its recipients and attachments, queues the work and answers 202 at once. Follow the job at the "
        "`Location` URL. With `send_at` the job is `scheduled` and the scheduler starts it then.\n\n"
        "**Idempotency**: send an `Idempotency-Key` header (1-255 printable ASCII characters) to make retries "
        "safe. The same key with the same body within 24 h answers the first answer again (same job, header "
        "`Idempotent-Replayed: true`); with another body, 422. A duplicate sent while the first request is "
        "still being handled waits for it and gets its answer; a request that died before answering left "
        "nothing behind, so its retry is handled at once."
    ),
    responses={202: JobAccepted, 409: ErrorBody, **BODY_ERRORS},
)
def send_email(body: SendEmailBody) -> Any:
    services = _services()
    key = request.headers.get(IDEMPOTENCY_HEADER)
    claim = None
    if key is not None:
        claimed = idempotency.claim(services, key, current_account(), idempotency.request_hash(request.get_json()))
        if isinstance(claimed, idempotency.Replay):
            return _accepted(claimed.job_id, claimed.response, {REPLAYED_HEADER: "true"})
        claim = claimed
    account, counted = current_account(), 0
    try:
        quotas.take(account, "recipients", len(body.recipients))
        counted = len(body.recipients)
        accepted = intake.accept_job(services, _job_request(body), account=account, idempotency=claim)
    except idempotency.KeyTaken:  # a concurrent duplicate committed first: its answer is ours
        quotas.give_back(account, "recipients", counted)
        assert claim is not None
        replay = idempotency.replay_after_race(services, claim)
        return _accepted(replay.job_id, replay.response, {REPLAYED_HEADER: "true"})
    except BaseException:  # nothing stored: the request uses up no quota
        quotas.give_back(account, "recipients", counted)
        raise
    if accepted.status == JobStatus.QUEUED:
        dispatch.wake_for_new_work(services)
    return _accepted(accepted.id, accepted.response(), {})


def _accepted(job_id: str, response: dict[str, Any], headers: dict[str, str]) -> Any:
    return response, 202, {"Location": url_for("email.get_job", id=job_id), **headers}


def _job_request(body: SendEmailBody) -> intake.JobRequest:
    return intake.JobRequest(
        recipients=body.recipients,
        subject=body.subject,
        content=body.content,
        template=body.template,
        template_version=body.template_version,
        variables=body.variables,
        reply_to=body.reply_to,
        headers=body.headers,
        tags=body.tags,
        metadata=body.metadata,
        attachments=body.attachments,
        send_at=body.send_at,
        expires_at=body.expires_at,
        callback_url=body.callback_url,
        list_unsubscribe=body.list_unsubscribe,
        sender=body.sender,
        lane=body.lane,
    )


@blueprint.get(
    "/",
    strict_slashes=False,
    summary="List recent jobs",
    description="Newest first, optionally of one `status` or `tag`, paginated with `before` (without `queue`: "
    "follow one job for it).",
    responses={200: JobList, 404: ErrorBody, **COMMON_ERRORS},
)
def list_jobs(query: JobListQuery) -> Any:
    jobs = reports.recent_jobs(
        _services(), current_account(), limit=query.limit, before=query.before, status=query.status, tag=query.tag
    )
    next_before = jobs[-1].job.id if len(jobs) == query.limit else None
    return JobList(items=[_job_view(report) for report in jobs], next_before=next_before).model_dump(mode="json")


@blueprint.get(
    "/<id>",
    summary="Follow a job",
    description="Status, counts per recipient status, `current` (final outcomes so far), `progress`, its `lane` "
    "and, while it waits or sends, where it stands in the `queue`.",
    responses={200: JobView, 404: ErrorBody, **COMMON_ERRORS},
)
def get_job(path: JobPath) -> Any:
    return _current_view(_services(), path.id)


@blueprint.get(
    "/<id>/recipients",
    summary="Per-recipient outcomes",
    description="In job order, optionally filtered by `status` and by `search` (part of the address), paginated "
    "with `after`.",
    responses={200: RecipientList, 404: ErrorBody, **COMMON_ERRORS},
)
def list_recipients(path: JobPath, query: RecipientQuery) -> Any:
    page = reports.recipient_page(
        _services(),
        path.id,
        current_account(),
        status=query.status,
        after=query.after,
        limit=query.limit,
        address_part=query.search,
    )
    next_after = page[-1].recipient.position if len(page) == query.limit else None
    return RecipientList(items=[_recipient_view(r) for r in page], next_after=next_after).model_dump(mode="json")


@blueprint.post(
    "/<id>/cancel",
    summary="Cancel a job",
    description=(
        "Recipients not yet handed to a worker become `cancelled`; messages already in flight finish. "
        "A scheduled or paused job can be cancelled too; a finished job cannot (409)."
    ),
    responses={200: JobView, 404: ErrorBody, 409: ErrorBody, **COMMON_ERRORS},
)
def cancel_job(path: JobPath) -> Any:
    services = _services()
    control.cancel(services, path.id, current_account())
    return _current_view(services, path.id)


@blueprint.post(
    "/<id>/pause",
    summary="Pause a job",
    description=(
        "A scheduled, queued or sending job stops: batches being sent give their recipients back within a "
        "second (messages in flight finish). Nothing is lost; resume goes on where it stopped. 409 otherwise."
    ),
    responses={200: JobView, 404: ErrorBody, 409: ErrorBody, **COMMON_ERRORS},
)
def pause_job(path: JobPath) -> Any:
    services = _services()
    control.pause(services, path.id, current_account())
    return _current_view(services, path.id)


@blueprint.post(
    "/<id>/resume",
    summary="Resume a paused job",
    description=(
        "A job paused before it started waits for its `send_at` again (or is queued); a job paused while "
        "sending has its remaining recipients queued again. 409 when the job is not paused."
    ),
    responses={200: JobView, 404: ErrorBody, 409: ErrorBody, **COMMON_ERRORS},
)
def resume_job(path: JobPath) -> Any:
    services = _services()
    control.resume(services, path.id, current_account())
    return _current_view(services, path.id)


@blueprint.post(
    "/<id>/lane",
    summary="Move a job to another lane",
    description=(
        "An unfinished job's next recipients are claimed in the lane given (within 2 seconds: claims in "
        "progress finish). 409 for a finished job."
    ),
    responses={200: JobView, 404: ErrorBody, 409: ErrorBody, **BODY_ERRORS},
)
def change_lane(path: JobPath, body: LaneBody) -> Any:
    services = _services()
    control.set_lane(services, path.id, current_account(), body.lane)
    return _current_view(services, path.id)


@blueprint.post(
    "/<id>/retry",
    summary="Send again to the failed recipients",
    description=(
        "Only for a completed job: its failed recipients go back to `pending` and the job is queued again. "
        "409 when the job is not completed or has no failed recipient."
    ),
    responses={202: JobView, 404: ErrorBody, 409: ErrorBody, **COMMON_ERRORS},
)
def retry_job(path: JobPath) -> Any:
    services = _services()
    control.retry_failed(services, path.id, current_account())
    return _current_view(services, path.id), 202


def _current_view(services: Services, job_id: str) -> dict[str, Any]:
    report = reports.job_report(services, job_id, current_account())
    return _job_view(report, reports.queue_estimate(services, report)).model_dump(mode="json")


def _job_view(report: reports.JobReport, queue: reports.QueueEstimate | None = None) -> JobView:
    job = report.job
    return JobView(
        id=job.id,
        status=job.status,
        lane=Lane(job.lane),
        queue=QueueView(
            waiting=queue.waiting, share=queue.share, ahead=queue.ahead, estimated_seconds=queue.estimated_seconds
        )
        if queue is not None
        else None,
        template=job.template,
        template_version=job.template_version,
        subject=job.subject,
        total=job.total,
        counts=report.counts,
        current=report.current,
        progress=report.progress,
        tags=job.tags or [],
        metadata=job.meta,
        send_at=job.send_at,
        expires_at=job.expires_at,
        callback_url=job.callback_url,
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
        bounce=_bounce_view(report.bounce),
    )


def _bounce_view(bounce: Bounce | None) -> BounceView | None:
    if bounce is None:
        return None
    return BounceView(
        type=bounce.kind,
        status=bounce.status,
        smtp_code=bounce.smtp_code,
        diagnostic=bounce.diagnostic,
        source=bounce.source,
        reporter=bounce.reporter,
        received_at=bounce.received_at,
    )
