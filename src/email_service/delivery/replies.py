"""What an SMTP reply or a network failure means for the recipient: try again later, or give up."""

from __future__ import annotations

import smtplib

from ..errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError


def error_from_reply(code: int, text: bytes | str) -> DeliveryError:
    """A 5xx reply is permanent for that recipient; anything else (4xx, odd codes) is temporary."""
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    if 500 <= code <= 599:
        return PermanentDeliveryError(code, message)
    return TemporaryDeliveryError(code, message)


def error_from_exception(exc: Exception) -> DeliveryError:
    """Classify a failure raised by smtplib or the socket layer."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return error_from_reply(exc.smtp_code, exc.smtp_error)
    if isinstance(exc, TimeoutError):
        return TemporaryDeliveryError(0, f"timed out: {exc}")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TemporaryDeliveryError(0, f"connection lost: {exc}")
    return TemporaryDeliveryError(0, f"{type(exc).__name__}: {exc}")
