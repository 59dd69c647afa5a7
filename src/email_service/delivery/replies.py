"""What an SMTP reply or a network failure means for the recipient: try again later, or give up."""

from __future__ import annotations

import re
import smtplib

from email_service.errors import DeliveryError, PermanentDeliveryError, RecipientRefused, TemporaryDeliveryError

# 5.1.7 and 5.1.8 (RFC 3463) are about the sender's address, not the recipient's.
_ADDRESS_UNKNOWN = re.compile(r"5\.1\.(?![78]\b)\d{1,3}\b|5\.2\.1\b")


def error_from_reply(code: int, text: bytes | str, *, to_rcpt: bool = False) -> DeliveryError:
    """A 5xx reply is permanent for that recipient; anything else (4xx, odd codes) is temporary.

    A 5xx to RCPT whose enhanced status says the address does not exist (5.1.x but the sender's 5.1.7 and
    5.1.8, or 5.2.1 mailbox disabled) is a hard bounce. Other refusals (5.7.1 relaying denied, 5.2.2 mailbox full, no
    enhanced status) say nothing certain about the address: they fail the recipient, no more.
    """
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    if 500 <= code <= 599:
        if to_rcpt and _ADDRESS_UNKNOWN.match(message):
            return RecipientRefused(code, message)
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
