"""The service's exception tree; the API turns it into JSON, the worker into recipient outcomes.

EmailServiceError
├── RequestError            the caller's fault: 4xx, nothing stored or queued
│   ├── InvalidRequest      400 malformed body
│   ├── ValidationFailed    422 fields or addresses that do not pass
│   ├── NotFound            404
│   └── PayloadTooLarge     413
├── TemplateError           a template is missing, unsafe or does not render
└── DeliveryError           the relay did not take a message
    ├── TemporaryDeliveryError   4xx reply, connection refused or dropped, timeout
    └── PermanentDeliveryError   5xx reply: that recipient failed
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


class InvalidRequest(RequestError):
    status = 400
    code = "invalid_request"


class ValidationFailed(RequestError):
    status = 422
    code = "validation_error"


class NotFound(RequestError):
    status = 404
    code = "not_found"


class PayloadTooLarge(RequestError):
    status = 413
    code = "payload_too_large"


class TemplateError(EmailServiceError):
    """A template that cannot be used: unknown name, unsafe header, or a render failure."""


class DeliveryError(EmailServiceError):
    """The relay did not accept a message; ``code`` is the SMTP reply code (0 without a reply)."""

    permanent = False

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}" if code else text)
        self.code = code
        self.text = text


class TemporaryDeliveryError(DeliveryError):
    permanent = False


class PermanentDeliveryError(DeliveryError):
    permanent = True
