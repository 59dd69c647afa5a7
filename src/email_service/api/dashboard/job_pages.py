"""The jobs pages: the list, one job with its live progress and place in its lane, and the controls (pause,
resume, cancel, retry the failed, change lane), each through the services the API calls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import flash, redirect, request, url_for

from email_service.api.dashboard.blueprint import blueprint, render, services, viewer
from email_service.api.dashboard.chart import sends_chart
from email_service.api.dashboard.statuses import RECIPIENT_STATUS_ORDER
from email_service.errors import Conflict, ValidationFailed
from email_service.services import Services, accounts, control, reports
from email_service.storage.models import UNFINISHED_JOB_STATUSES, Job, JobStatus, Lane, RecipientStatus

JOBS_PER_PAGE = 25
RECIPIENTS_PER_PAGE = 50
CHART_INTERVALS = 60
FAILURE_REASONS_SHOWN = 10


@dataclass(frozen=True)
class Control:
    """A button of the job page and what it asks before it acts."""

    label: str
    question: str
    consequence: str
    act: Callable[[Services, str, str | None], object]
    shown_when: frozenset[str]  # job statuses the button is offered in (the service decides anyway)
    danger: bool = False


CONTROLS: dict[str, Control] = {
    "pause": Control(
        "Pause",
        "Pause this job?",
        "Batches being sent give their recipients back within a second; nothing is lost, and resume goes on "
        "where it stopped.",
        control.pause,
        frozenset({JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.SENDING}),
    ),
    "resume": Control(
        "Resume",
        "Resume this job?",
        "Its remaining recipients are queued again (a job paused before it started waits for its schedule).",
        control.resume,
        frozenset({JobStatus.PAUSED}),
    ),
    "cancel": Control(
        "Cancel",
        "Cancel this job?",
        "Recipients not yet handed to a worker become cancelled and are never sent; this cannot be undone.",
        control.cancel,
        frozenset(UNFINISHED_JOB_STATUSES),
        danger=True,
    ),
    "retry": Control(
        "Retry the failed",
        "Send again to the failed recipients?",
        "Every failed recipient of this job goes back to pending and the job is queued again.",
        control.retry_failed,
        frozenset({JobStatus.COMPLETED}),
    ),
}


@blueprint.get("/")
def home() -> Any:
    return redirect(url_for("dashboard.jobs"))


@blueprint.get("/jobs")
def jobs() -> Any:
    status = _choice("status", [s.value for s in JobStatus])
    tag = request.args.get("tag", "").strip() or None
    if tag is not None and len(tag) > 64:
        raise ValidationFailed("invalid tag", [{"field": "tag", "reason": "at most 64 characters"}])
    found = reports.recent_jobs(
        services(),
        viewer().jobs_of,
        limit=JOBS_PER_PAGE,
        before=request.args.get("before") or None,
        status=status,
        tag=tag,
    )
    older = found[-1].job.id if len(found) == JOBS_PER_PAGE else None
    return render(
        "jobs.html",
        jobs=found,
        account_names=accounts.names(services().readers) if viewer().sees_other_accounts else {},
        status=status,
        tag=tag,
        older=older,
        statuses=[s.value for s in JobStatus],
        live=any(report.job.status in UNFINISHED_JOB_STATUSES for report in found),
    )


@blueprint.get("/jobs/<job_id>")
def job(job_id: str) -> Any:
    report = reports.job_report(services(), job_id, viewer().jobs_of)
    return render("job.html", **(_summary(report) | _recipients(report.job)))


# The parts of a job's page that refresh themselves while it is unfinished: each asks only for its own.
@blueprint.get("/jobs/<job_id>/summary")
def job_summary(job_id: str) -> Any:
    report = reports.job_report(services(), job_id, viewer().jobs_of)
    return render("job_summary.html", **_summary(report))


@blueprint.get("/jobs/<job_id>/recipients")
def job_recipients(job_id: str) -> Any:
    return render("job_recipients.html", **_recipients(reports.job(services(), job_id, viewer().jobs_of)))


def _summary(report: reports.JobReport) -> dict[str, Any]:
    """Counts, the chart, the failure reasons and the controls of a job."""
    job_id, account = report.job.id, viewer().jobs_of
    timeline = reports.sent_timeline(services(), job_id, account, most_buckets=CHART_INTERVALS)
    failed = report.counts[RecipientStatus.FAILED]
    return {
        "report": report,
        "chart": sends_chart(timeline) if timeline is not None else None,
        "failures": reports.failure_reasons(services(), job_id, account, limit=FAILURE_REASONS_SHOWN) if failed else [],
        "count_order": RECIPIENT_STATUS_ORDER,
        "controls": _controls_for(report),
        "queue": reports.queue_estimate(services(), report),
        "other_lane": next(lane for lane in Lane if lane != report.job.lane),
        "live": report.job.status in UNFINISHED_JOB_STATUSES,
    }


def _recipients(job: Job) -> dict[str, Any]:
    """A page of a job's recipients, as the filters in the query string ask."""
    status = _choice("status", [s.value for s in RecipientStatus])
    search = request.args.get("q", "").strip() or None
    if search is not None and len(search) > 320:
        raise ValidationFailed("invalid q", [{"field": "q", "reason": "at most 320 characters"}])
    after = _position("after")
    recipients = reports.recipient_page(
        services(),
        job.id,
        viewer().jobs_of,
        status=status,
        after=after,
        limit=RECIPIENTS_PER_PAGE,
        address_part=search,
    )
    return {
        "job": job,
        "recipients": recipients,
        "status": status,
        "search": search,
        "after": after,
        "more": recipients[-1].recipient.position if len(recipients) == RECIPIENTS_PER_PAGE else None,
        "recipient_statuses": [s.value for s in RecipientStatus],
        "live": job.status in UNFINISHED_JOB_STATUSES,
    }


@blueprint.get("/jobs/<job_id>/<any(pause, resume, cancel, retry):action>")
def confirm(job_id: str, action: str) -> Any:
    report = reports.job_report(services(), job_id, viewer().jobs_of)
    return render("confirm.html", report=report, action=action, control=CONTROLS[action])


@blueprint.post("/jobs/<job_id>/<any(pause, resume, cancel, retry):action>")
def act(job_id: str, action: str) -> Any:
    chosen = CONTROLS[action]
    try:
        chosen.act(services(), job_id, viewer().jobs_of)
    except Conflict as exc:  # the job moved on since the page was drawn: say so on the job's page
        flash(exc.message, "error")
    else:
        flash(f"{chosen.label}: done.")
    return redirect(url_for("dashboard.job", job_id=job_id), code=303)


@blueprint.post("/jobs/<job_id>/lane")
def move_to_lane(job_id: str) -> Any:
    """Move the job to the lane of the form (no confirmation: moving it back undoes it)."""
    lanes = [lane.value for lane in Lane]
    lane = request.form.get("lane", "")
    if lane not in lanes:
        raise ValidationFailed("invalid lane", [{"field": "lane", "reason": f"one of {', '.join(lanes)}"}])
    try:
        control.set_lane(services(), job_id, viewer().jobs_of, Lane(lane))
    except Conflict as exc:  # finished since the page was drawn
        flash(exc.message, "error")
    else:
        flash(f"Moved to the {lane} lane: its next recipients are sent in it.")
    return redirect(url_for("dashboard.job", job_id=job_id), code=303)


def _controls_for(report: reports.JobReport) -> dict[str, Control]:
    """The buttons that make sense now: retrying needs failed recipients (the service checks it again)."""
    offered = {name: c for name, c in CONTROLS.items() if report.job.status in c.shown_when}
    if not report.counts[RecipientStatus.FAILED]:
        offered.pop("retry", None)
    return offered


def _choice(name: str, allowed: list[str]) -> str | None:
    value = request.args.get(name) or None
    if value is not None and value not in allowed:
        raise ValidationFailed(f"invalid {name}", [{"field": name, "reason": f"one of {', '.join(allowed)}"}])
    return value


def _position(name: str) -> int | None:
    value = request.args.get(name) or None
    if value is None:
        return None
    if not value.lstrip("-").isdigit() or not -1 <= int(value) < 2**31:
        raise ValidationFailed(f"invalid {name}", [{"field": name, "reason": "a recipient position"}])
    return int(value)
