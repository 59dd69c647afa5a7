"""Webhook signatures: an HMAC-SHA256 of the timestamp and the body, so a receiver can tell they are ours and fresh."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

SIGNATURE_HEADER = "X-Email-Service-Signature"


def sign(secrets: str | Sequence[str], timestamp: int, body: bytes) -> str:
    """The signature header's value: ``t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>." + body>``, with a
    ``v1=`` for each secret (two while a rotation's grace period lasts: the receiver checks either)."""
    if isinstance(secrets, str):
        secrets = [secrets]
    return ",".join([f"t={timestamp}", *(f"v1={_digest(secret, timestamp, body)}" for secret in secrets)])


def verify(secret: str, header: str, body: bytes, *, tolerance: int = 300, now: int | None = None) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` at a time within ``tolerance`` seconds of ``now``.

    Any one of several ``v1=`` values may match (the sender signs with each secret during a rotation);
    keys other than ``t`` and ``v1`` are ignored. A malformed header is False, never an exception.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, equals, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not equals:
            continue
        if key == "t":
            # Two timestamps make the header ambiguous. int() alone would take "+1_0" and non-ASCII digits.
            if timestamp is not None or not (value.isascii() and value.isdigit()):
                return False
            try:
                timestamp = int(value)
            except ValueError:  # more digits than int() converts
                return False
        elif key == "v1":
            candidates.append(value)
    if timestamp is None:
        return False
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = _digest(secret, timestamp, body)
    # compare_digest takes str only when ASCII; anything else is no hex digest of ours anyway.
    return any(candidate.isascii() and hmac.compare_digest(expected, candidate.lower()) for candidate in candidates)


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
