"""A Python client for the service's HTTP API: one method per operation, plain dicts back."""

# It depends on httpx alone (never on Flask, SQLAlchemy or Celery), so other services can use it.

from __future__ import annotations

import base64
import mimetypes
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, NotRequired, TypedDict, cast
from urllib.parse import quote

import httpx

from email_service import __version__

DEFAULT_URL = "http://127.0.0.1:8000"
FINAL_JOB_STATUSES = frozenset({"completed", "cancelled"})


# ---- what the API answers


class ErrorDetail(TypedDict):
    field: str
    reason: str
    index: NotRequired[int | None]  # which recipient, for a recipient's problem
    address: NotRequired[str | None]  # the refused address, as given (cut after 100 characters)
    line: NotRequired[int | None]  # template line, for a render error
    variable: NotRequired[str | None]  # the undefined variable, for a render error


class RecipientSpec(TypedDict):
    """A recipient with a display name or variables of its own (a plain address string works too)."""

    email: str
    name: NotRequired[str | None]
    variables: NotRequired[dict[str, Any] | None]


class Attachment(TypedDict):
    filename: str
    content: str  # base64
    content_type: NotRequired[str]


class JobAccepted(TypedDict):
    id: str
    status: str
    total: int
    replayed: bool  # not in the body: the Idempotent-Replayed header (an earlier request with the same key)


class Job(TypedDict):
    id: str
    status: str  # scheduled, queued, sending, paused, completed or cancelled
    template: str
    template_version: int | None  # of a stored template; None for a template file
    subject: str
    total: int
    counts: dict[str, int]  # recipient status -> how many
    current: int  # recipients with a final outcome
    progress: float  # current / total
    tags: list[str]
    metadata: dict[str, Any] | None
    send_at: str | None  # ISO 8601 times, as the API writes them
    expires_at: str | None
    callback_url: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    lane: str  # transactional or bulk
    queue: QueuePosition | None  # while it is queued or sending: where it stands among the work waiting


class QueuePosition(TypedDict):
    waiting: int  # its recipients still to send
    share: float  # of the sending rate its turns get now (0: transactional work due goes first)
    ahead: int  # transactional recipients due before it
    estimated_seconds: float | None  # at its share of SEND_RATE; None without one


class Suppression(TypedDict):
    email: str
    reason: str  # unsubscribed, bounced, soft_bounced, complained or manual
    job_id: str | None
    created_at: str
    shared: bool  # on the shared list (every account's jobs skip it), not the account's own


class Account(TypedDict):
    id: str | None  # null when the service runs without API keys
    name: str | None
    key: str | None  # the name of the key the client uses
    role: str  # account, or admin (also manages the shared templates and suppressions)
    senders: list[str]
    callback_url: str | None
    webhook_signing: str  # own (the account's secret) or shared (WEBHOOK_SECRET)
    previous_secret_until: str | None


class SuppressionPage(TypedDict):
    items: list[Suppression]
    next_after: str | None


class JobPage(TypedDict):
    items: list[Job]
    next_before: str | None


class Recipient(TypedDict):
    position: int
    email: str
    name: str | None
    status: str  # pending, sending, sent, deferred, failed, suppressed, cancelled or expired
    attempts: int
    message_id: str
    error_code: int | None
    error: str | None
    next_attempt_at: str | None
    sent_at: str | None
    updated_at: str | None


class RecipientPage(TypedDict):
    items: list[Recipient]
    next_after: int | None


class TemplateSource(TypedDict, total=False):
    """A template's content: ``eml`` alone, or a subject with a text and/or an HTML body."""

    subject: str | None
    text: str | None
    html: str | None
    eml: str | None


class Template(TypedDict):
    name: str
    version: int | None
    source: str  # "stored" or "file"
    shared: bool  # every account's (a shared stored template, or a file), not the calling account's own
    subject: str | None
    text: str | None
    html: str | None
    eml: str | None
    created_at: str | None


class Preview(TypedDict):
    subject: str
    text: str | None
    html: str | None


# ---- errors


class ClientError(Exception):
    """Base of everything this client raises."""


class ConnectionFailed(ClientError):
    """The service could not be reached or did not answer in time; ``__cause__`` is httpx's error."""


class WaitTimeout(ClientError, TimeoutError):
    """``wait`` gave up before the job finished; ``job`` is the last state seen."""

    def __init__(self, message: str, job: Job) -> None:
        super().__init__(message)
        self.job = job


class ApiError(ClientError):
    """The service answered with an error: its status, code, message and details."""

    def __init__(self, status_code: int, code: str, message: str, details: Sequence[ErrorDetail] = ()) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = list(details)
        super().__init__(self.describe())

    def describe(self) -> str:
        """One line for the error, then one per detail (field, recipient index, template line: reason)."""
        lines = [f"{self.status_code} {self.code}: {self.message}"]
        for detail in self.details:
            where = [str(detail.get("field") or "body")]
            if detail.get("index") is not None:
                where.append(f"recipient {detail['index']}")
            if detail.get("line") is not None:
                where.append(f"line {detail['line']}")
            if detail.get("variable"):
                where.append(f"variable {detail['variable']!r}")
            lines.append(f"  - {', '.join(where)}: {detail.get('reason', '')}")
        return "\n".join(lines)


# ---- helpers


def attachment(
    path_or_bytes: str | os.PathLike[str] | bytes, filename: str | None = None, content_type: str | None = None
) -> Attachment:
    """An attachment for ``send``: a file's content (or bytes) in base64, its name and content type.

    The content type is guessed from the file name when not given (application/octet-stream if unknown).
    """
    if isinstance(path_or_bytes, bytes):
        if not filename:
            raise ValueError("an attachment given as bytes needs a filename")
        data = path_or_bytes
    else:
        path = Path(path_or_bytes)
        data = path.read_bytes()
        filename = filename or path.name
    guessed = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return {"filename": filename, "content": base64.b64encode(data).decode("ascii"), "content_type": guessed}


def when(value: datetime | timedelta | str) -> str:
    """``send_at``/``expires_at`` as the API takes them: ISO 8601 datetime with offset, or duration from now."""
    if isinstance(value, datetime):
        if value.utcoffset() is None:  # the API needs the offset; say so before the request
            raise ValueError(f"{value!r} has no time zone; use an aware datetime or a timedelta")
        return value.isoformat()
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError(f"{value!r} is in the past; the service takes delays from now")
        seconds = value.total_seconds()
        number = str(int(seconds)) if seconds == int(seconds) else f"{seconds:.6f}".rstrip("0")
        return f"PT{number}S"
    return value


def _follow(fetch: Callable[[Any], Any], cursor: str = "next_after") -> Iterator[Any]:
    """Every item of a paginated listing: ``fetch(cursor)`` gives a page, None the first one."""
    position = None
    while True:
        page = fetch(position)
        yield from page["items"]
        position = page[cursor]
        if position is None:
            return


def _compact(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The body without the fields left out (None), so the service applies its defaults."""
    return {key: value for key, value in fields.items() if value is not None}


def _shared(shared: bool) -> dict[str, str]:
    """The query naming what is shared (templates, the suppression list); none for the account's own."""
    return {"shared": "true"} if shared else {}


def _segment(value: str | int) -> str:
    return quote(str(value), safe="")


# ---- the client


class EmailServiceClient:
    """The HTTP API over one ``httpx.Client``; use it as a context manager or call ``close()``.

    Every method returns the JSON the service answered, as plain dicts; errors raise ``ApiError``
    (the service refused) or ``ConnectionFailed`` (it could not be reached), both ``ClientError``.
    """

    attachment = staticmethod(attachment)

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        all_headers = {"User-Agent": f"email-service-client/{__version__}", "Accept": "application/json"}
        if api_key:
            all_headers["Authorization"] = f"Bearer {api_key}"
        all_headers.update(headers or {})
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=all_headers, timeout=timeout, transport=transport)

    def __enter__(self) -> EmailServiceClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- the account

    def account(self) -> Account:
        """The account of the client's API key: every job, stored template and suppression it makes is the
        account's, seen by all its keys and by no other account."""
        return cast(Account, self._json("GET", "/api/account"))

    # ---- jobs

    def send(
        self,
        recipients: Sequence[str | RecipientSpec],
        subject: str,
        content: str = "",
        template: str = "default",
        *,
        idempotency_key: str | None = None,
        template_version: int | None = None,
        variables: Mapping[str, Any] | None = None,
        reply_to: str | None = None,
        headers: Mapping[str, str] | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        attachments: Sequence[Attachment] | None = None,
        send_at: datetime | timedelta | str | None = None,
        expires_at: datetime | timedelta | str | None = None,
        callback_url: str | None = None,
        list_unsubscribe: bool | None = None,
        lane: str | None = None,
    ) -> JobAccepted:
        """Queue one message per recipient (POST /api/email/); the job's id, status and total.

        With ``idempotency_key``, sending the same request again answers the first job
        (``replayed`` is then true) instead of queuing a second one. ``lane`` is ``transactional`` (sent
        before any bulk work) or ``bulk``; when absent, the account's default, else by the job's size.
        """
        body = _compact(
            {
                "recipients": list(recipients),
                "subject": subject,
                "content": content,
                "template": template,
                "template_version": template_version,
                "variables": dict(variables) if variables is not None else None,
                "reply_to": reply_to,
                "headers": dict(headers) if headers is not None else None,
                "tags": list(tags) if tags is not None else None,
                "metadata": dict(metadata) if metadata is not None else None,
                "attachments": list(attachments) if attachments is not None else None,
                "send_at": when(send_at) if send_at is not None else None,
                "expires_at": when(expires_at) if expires_at is not None else None,
                "callback_url": callback_url,
                "list_unsubscribe": list_unsubscribe,
                "lane": lane,
            }
        )
        extra = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = self._request("POST", "/api/email/", json=body, headers=extra)
        accepted = cast(JobAccepted, response.json())
        accepted["replayed"] = response.headers.get("Idempotent-Replayed", "").lower() == "true"
        return accepted

    def get_job(self, job_id: str) -> Job:
        return cast(Job, self._json("GET", f"/api/email/{_segment(job_id)}"))

    def list_jobs(self, limit: int = 20, before: str | None = None) -> JobPage:
        """One page of jobs, newest first; pass ``next_before`` as ``before`` for the next one."""
        return cast(JobPage, self._json("GET", "/api/email/", params=_compact({"limit": limit, "before": before})))

    def iter_jobs(self, page_size: int = 100) -> Iterator[Job]:
        """Every job, newest first, one page at a time."""
        return _follow(lambda before: self.list_jobs(limit=page_size, before=before), "next_before")

    def list_recipients(
        self, job_id: str, status: str | None = None, after: int | None = None, limit: int = 100
    ) -> RecipientPage:
        """One page of a job's recipients in job order; pass ``next_after`` as ``after`` for the next one."""
        params = _compact({"status": status, "after": after, "limit": limit})
        return cast(RecipientPage, self._json("GET", f"/api/email/{_segment(job_id)}/recipients", params=params))

    def iter_recipients(self, job_id: str, status: str | None = None, page_size: int = 1000) -> Iterator[Recipient]:
        """Every recipient of a job (only those in ``status`` if given), following the pages."""
        return _follow(lambda after: self.list_recipients(job_id, status=status, after=after, limit=page_size))

    # ---- suppressions

    # With ``shared`` these work on the shared list (a key with the admin role only), else on the key's account's.

    def list_suppressions(self, after: str | None = None, limit: int = 100, *, shared: bool = False) -> SuppressionPage:
        """One page of suppressed addresses, in address order; pass ``next_after`` as ``after``."""
        params = _compact({"after": after, "limit": limit, **_shared(shared)})
        return cast(SuppressionPage, self._json("GET", "/api/suppressions/", params=params))

    def iter_suppressions(self, page_size: int = 1000, *, shared: bool = False) -> Iterator[Suppression]:
        return _follow(lambda after: self.list_suppressions(after=after, limit=page_size, shared=shared))

    def suppress(self, email: str, *, shared: bool = False) -> bool:
        """Never send to ``email`` again; False when it already was on that list."""
        answer = self._json("POST", "/api/suppressions/", json={"email": email}, params=_shared(shared))
        return bool(answer["added"])

    def unsuppress(self, email: str, *, shared: bool = False) -> None:
        """Take ``email`` off the list (404 when it is not on that list)."""
        self._request("DELETE", f"/api/suppressions/{_segment(email)}", params=_shared(shared))

    def cancel(self, job_id: str) -> Job:
        """Recipients not yet handed to a worker become cancelled (409 once the job has finished)."""
        return self._control(job_id, "cancel")

    def pause(self, job_id: str) -> Job:
        """No new message leaves until ``resume``; messages in flight finish."""
        return self._control(job_id, "pause")

    def resume(self, job_id: str) -> Job:
        return self._control(job_id, "resume")

    def set_lane(self, job_id: str, lane: str) -> Job:
        """Move an unfinished job to the ``transactional`` or ``bulk`` lane: its next claims are made in it."""
        return cast(Job, self._json("POST", f"/api/email/{_segment(job_id)}/lane", json={"lane": lane}))

    def retry(self, job_id: str) -> Job:
        """Send again to the failed recipients of a completed job (409 when there is none)."""
        return self._control(job_id, "retry")

    def wait(
        self,
        job_id: str,
        *,
        poll_interval: float = 1.0,
        timeout: float | None = None,
        on_progress: Callable[[Job], object] | None = None,
    ) -> Job:
        """Poll the job until it is completed or cancelled and return it; ``on_progress(job)`` after each poll.

        Raises ``WaitTimeout`` after ``timeout`` seconds; the job itself goes on.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get_job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job["status"] in FINAL_JOB_STATUSES:
                return job
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(f"job {job_id} is still {job['status']} after {timeout}s", job)
                time.sleep(min(poll_interval, left))
            else:
                time.sleep(poll_interval)

    def _control(self, job_id: str, action: str) -> Job:
        return cast(Job, self._json("POST", f"/api/email/{_segment(job_id)}/{action}"))

    # ---- templates

    def list_templates(self) -> list[Template]:
        """The account's stored templates, the shared ones and the template files, each at its current version."""
        return cast(list[Template], self._json("GET", "/api/templates")["items"])

    def get_template(self, name: str, version: int | None = None) -> Template:
        params = _compact({"version": version})
        return cast(Template, self._json("GET", f"/api/templates/{_segment(name)}", params=params))

    def create_template(
        self,
        name: str,
        *,
        subject: str | None = None,
        text: str | None = None,
        html: str | None = None,
        eml: str | None = None,
        shared: bool = False,
    ) -> Template:
        """Store a new template of the account, version 1 (409 if the name is taken); ``shared``: a shared
        template (a key with the admin role)."""
        body = _compact({"name": name, "subject": subject, "text": text, "html": html, "eml": eml})
        return cast(Template, self._json("POST", "/api/templates", json=body, params=_shared(shared)))

    def update_template(
        self,
        name: str,
        *,
        subject: str | None = None,
        text: str | None = None,
        html: str | None = None,
        eml: str | None = None,
        shared: bool = False,
    ) -> Template:
        """Store a new version of the account's template (PUT), or create it if it does not exist (then it
        replaces a shared template of that name for this account); ``shared``: of the shared template (admin)."""
        body = _compact({"subject": subject, "text": text, "html": html, "eml": eml})
        return cast(Template, self._json("PUT", f"/api/templates/{_segment(name)}", json=body, params=_shared(shared)))

    def delete_template(self, name: str, *, shared: bool = False) -> None:
        """Delete the account's template; ``shared``: the shared one (a key with the admin role)."""
        self._request("DELETE", f"/api/templates/{_segment(name)}", params=_shared(shared))

    def template_versions(self, name: str) -> list[Template]:
        return cast(list[Template], self._json("GET", f"/api/templates/{_segment(name)}/versions")["items"])

    def preview_template(
        self,
        template_name: str,
        /,
        *,
        variables: Mapping[str, Any] | None = None,
        subject: str | None = None,
        content: str | None = None,
        email: str | None = None,
        name: str | None = None,
    ) -> Preview:
        """Render a stored template or template file for one recipient, without sending anything.

        A template that does not render raises ``ApiError`` (422) whose details name the line and variable.
        """
        body = _preview_body(variables, subject, content, email, name)
        return cast(Preview, self._json("POST", f"/api/templates/{_segment(template_name)}/preview", json=body))

    def preview_draft(
        self,
        template: TemplateSource,
        *,
        variables: Mapping[str, Any] | None = None,
        subject: str | None = None,
        content: str | None = None,
        email: str | None = None,
        name: str | None = None,
    ) -> Preview:
        """Render a template that is not stored (``{"subject", "text", "html"}`` or ``{"eml"}``)."""
        body = {"template": _compact(template), **_preview_body(variables, subject, content, email, name)}
        return cast(Preview, self._json("POST", "/api/templates/preview", json=body))

    # ---- transport

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"{method} {self.base_url}{path}: {exc or type(exc).__name__}") from exc
        if response.is_error:
            raise _api_error(response)
        return response


def _preview_body(
    variables: Mapping[str, Any] | None, subject: str | None, content: str | None, email: str | None, name: str | None
) -> dict[str, Any]:
    return _compact(
        {
            "variables": dict(variables) if variables is not None else None,
            "subject": subject,
            "content": content,
            "email": email,
            "name": name,
        }
    )


def _api_error(response: httpx.Response) -> ApiError:
    """The service's JSON error envelope; anything else (a proxy's HTML page) keeps its status and text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        details = body.get("details")
        return ApiError(
            response.status_code,
            body["error"],
            str(body.get("message", "")),
            details if isinstance(details, list) else [],
        )
    text = " ".join(response.text.split())[:200] or response.reason_phrase
    return ApiError(response.status_code, "http_error", text)
