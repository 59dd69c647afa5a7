"""The service's exception tree; the API turns it into JSON, the worker into recipient outcomes.

EmailServiceError
├── RequestError            the caller's fault: 4xx, nothing stored or queued
│   ├── MalformedJSON       400 a body that is not JSON at all
│   ├── Unauthenticated     401 no API key, or not an active one
│   │   └── ForgedFeedback  401 a provider's bounce event whose signature does not check
│   ├── ValidationFailed    422 fields or addresses that do not pass
│   │   └── MalformedFeedback   422 a provider's bounce event that is not what the provider sends
│   ├── NotFound            404
│   ├── Conflict            409 not possible in the job's current state
│   ├── FormRefused         403 a dashboard form without its session's CSRF token
│   └── TooManyRequests     429 over a quota of the API key (retry_after seconds)
├── ConfigurationError      a setting that cannot be used; the process does not start
├── DatabaseNotReady        the database did not answer, or its schema is not migrated, in time
├── DestinationRefused      an outbound HTTP destination that is not public, nor in an allowed network
├── InvalidAddress          not deliverable address syntax (also a ValueError)
├── TemplateError           a template is missing, unsafe or does not render
│   ├── RenderLimit         a template went past one of the sandbox's bounds
│   └── DkimError           a built message that cannot be signed
│       └── MessageFormatError   bytes that are not an SMTP message (bare CR or LF, no header)
└── DeliveryError           the relay did not take a message
    ├── TemporaryDeliveryError   4xx reply, connection dropped, timeout: try again later
    │   └── RelayUnavailable     no session at all (refused, greeting 4xx, TLS, login)
    └── PermanentDeliveryError   5xx reply: that recipient failed
        └── RecipientRefused     5xx to RCPT, 5.1.x/5.2.1: the address does not exist (a hard bounce)
"""

from __future__ import annotations

from typing import Any


class EmailServiceError(Exception):
    """Base of every error the service raises on purpose."""


class RequestError(EmailServiceError):
    """A request the service refuses; ``details`` name each bad field and why."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class MalformedJSON(RequestError):
    """The body is not JSON at all, or nests deeper than the service parses."""

    status = 400
    code = "malformed_json"


class Unauthenticated(RequestError):
    """No API key, or one that is not active."""

    status = 401
    code = "unauthorized"


class FormRefused(RequestError):
    """A dashboard form posted without the CSRF token of the session it came from (a forged or stale form)."""

    status = 403
    code = "form_refused"


class Forbidden(RequestError):
    """An API key that may not do this: changing what is shared by every account needs the admin role."""

    status = 403
    code = "forbidden"


class ValidationFailed(RequestError):
    """Fields or addresses that do not pass; each detail names one."""

    status = 422
    code = "validation_error"


class ForgedFeedback(Unauthenticated):
    """A provider's bounce or complaint event whose signature, credentials or certificate do not check."""

    code = "forged_feedback"


class MalformedFeedback(ValidationFailed):
    """A provider's bounce or complaint event that is not in the form that provider documents."""

    code = "malformed_feedback"


class NotFound(RequestError):
    """No such job, template, key or suppression for this caller."""

    status = 404
    code = "not_found"


class Conflict(RequestError):
    """Not possible in the job's current state (e.g. resuming a finished job)."""

    status = 409
    code = "conflict"


class TooManyRequests(RequestError):
    """Over one of the account's quotas; ``retry_after`` says in how many seconds to try again."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigurationError(EmailServiceError, ValueError):
    """A setting that cannot be used (e.g. an unreadable DKIM key); the message names the setting."""


class DatabaseNotReady(EmailServiceError):
    """The database did not answer, or its schema was not migrated, within the time allowed."""


class DestinationRefused(EmailServiceError):
    """A request on a caller's behalf to a host or address that is not public (loopback, private, link-local,
    metadata...), nor in a network the operator allowed: refused before connecting, and for good."""


class InvalidAddress(EmailServiceError, ValueError):
    """The address is not deliverable syntax; the message says why."""


class TemplateError(EmailServiceError):
    """A template that cannot be used: unknown name, unsafe header, or a render failure.

    ``part`` (subject, text, html or eml), ``line`` and ``variable`` say where, when known.
    """

    def __init__(
        self, message: str, *, part: str | None = None, line: int | None = None, variable: str | None = None
    ) -> None:
        super().__init__(message)
        self.part = part
        self.line = line
        self.variable = variable

    def detail(self, prefix: str | None = "template") -> dict[str, Any]:
        """The error as an API error detail, its field named ``<prefix>.<part>``."""
        field = ".".join(name for name in (prefix, self.part) if name) or "template"
        detail: dict[str, Any] = {"field": field, "reason": str(self)}
        if self.line is not None:
            detail["line"] = self.line
        if self.variable is not None:
            detail["variable"] = self.variable
        return detail


class RenderLimit(TemplateError):
    """A template went past one of the sandbox's bounds (output size, loop length, power)."""


class DkimError(TemplateError):
    """A built message that cannot be signed; the message never contains key material."""


class MessageFormatError(DkimError):
    """The bytes are not an SMTP message whose header and body can be canonicalised."""


class DeliveryError(EmailServiceError):
    """The relay did not accept a message; ``code`` is the SMTP reply code (0 without a reply)."""

    permanent = False

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}" if code else text)
        self.code = code
        self.text = text

    @property
    def is_throttle(self) -> bool:
        """The relay asks us to slow down (421, or 454 "Throttling failure" as SES says)."""
        return not self.permanent and (self.code in (421, 454) or "throttl" in self.text.lower())


class TemporaryDeliveryError(DeliveryError):
    """A 4xx reply, a dropped connection or a timeout: the message is tried again later."""

    permanent = False


class RelayUnavailable(TemporaryDeliveryError):
    """No session could be opened: every message waiting for this relay must wait."""


class PermanentDeliveryError(DeliveryError):
    """A 5xx reply: that recipient failed."""

    permanent = True


class RecipientRefused(PermanentDeliveryError):
    """The relay says the address does not exist: it goes on the shared suppression list."""
