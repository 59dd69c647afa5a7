"""One HTTP delivery attempt of a webhook event: a signed POST whose outcome is a value, never an exception."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx

import email_service
from email_service.errors import DestinationRefused
from email_service.webhooks.signing import SIGNATURE_HEADER, sign

USER_AGENT = f"email-service-webhooks/{getattr(email_service, '__version__', '1')}"
_BODY_READ_MAX = 1024
_BODY_SHOWN_MAX = 200
_ERROR_MAX = 300
_TIMEOUTS: dict[type[httpx.TimeoutException], str] = {
    httpx.ConnectTimeout: "timed out connecting",
    httpx.WriteTimeout: "timed out sending the request",
    httpx.ReadTimeout: "timed out waiting for the response",
    httpx.PoolTimeout: "timed out waiting for a free connection",
}


@dataclass(frozen=True)
class DeliveryAttempt:
    delivered: bool
    status_code: int | None
    error: str | None
    final: bool = False  # a failure that no retry can mend: the destination is refused


def post_event(
    client: httpx.Client,
    url: str,
    body: bytes,
    *,
    secrets: Sequence[str],
    event_type: str,
    delivery_id: str,
    now: int,
) -> DeliveryAttempt:
    """POST ``body`` to ``url`` once, signed with each of ``secrets`` at time ``now``; delivered on a 2xx
    answer only.

    ``client`` is outbound.transport's: it refuses destinations that are not public (nor allowed).
    """
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        # Only the start of an error answer is read, so it had better not be compressed.
        "Accept-Encoding": "identity",
        "X-Email-Service-Event": event_type,
        "X-Email-Service-Delivery": delivery_id,
        SIGNATURE_HEADER: sign(secrets, now, body),
    }
    try:
        with client.stream("POST", url, content=body, headers=headers, follow_redirects=False) as response:
            status = response.status_code
            if 200 <= status < 300:
                # A short answer read to its end lets the connection serve the next event to this receiver.
                _read_start(response)
                return DeliveryAttempt(True, status, None)
            if 300 <= status < 400:
                location = response.headers.get("Location")
                target = f" to {location}" if location else ""
                return DeliveryAttempt(False, status, _short(f"HTTP {status}: redirect{target} not followed"))
            return DeliveryAttempt(False, status, _short(f"HTTP {status}: {_body_start(response)}"))
    except DestinationRefused as exc:
        return DeliveryAttempt(False, None, _short(f"destination refused: {exc}"), final=True)
    except httpx.TimeoutException as exc:
        return DeliveryAttempt(False, None, _TIMEOUTS.get(type(exc), "timed out"))
    except httpx.ConnectError as exc:
        return DeliveryAttempt(False, None, _short(f"connection failed: {exc}"))
    except httpx.HTTPError as exc:
        return DeliveryAttempt(False, None, _short(f"{type(exc).__name__}: {exc}"))
    except httpx.InvalidURL as exc:
        return DeliveryAttempt(False, None, _short(f"invalid URL: {exc}"))


def _read_start(response: httpx.Response) -> bytes:
    """At most the first KB of the answer's body; what came before a transport error, if one comes."""
    raw = b""
    try:
        for chunk in response.iter_raw():
            raw += chunk
            if len(raw) >= _BODY_READ_MAX:
                break
    except httpx.HTTPError:
        pass  # the status is the outcome; the body only explains it
    return raw[:_BODY_READ_MAX]


def _body_start(response: httpx.Response) -> str:
    """The first characters of the answer, whitespace collapsed; the reason phrase when it has no body."""
    text = " ".join(_read_start(response).decode(response.encoding or "utf-8", errors="replace").split())
    return text[:_BODY_SHOWN_MAX] or response.reason_phrase


def _short(error: str) -> str:
    return error if len(error) <= _ERROR_MAX else error[: _ERROR_MAX - 1] + "…"
