"""Prometheus metrics: what the processes count (metrics_export serves them).

The API's gunicorn workers, the Celery worker processes and the scheduler count through the
functions below, called from the few places where a job is accepted, a recipient ends, a message
is handed to the relay or waits for a rate limit, and a bounce or complaint comes back.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

from email_service.errors import DeliveryError
from email_service.storage.models import TERMINAL_RECIPIENT_STATUSES, Lane

SMTP_ERROR_CLASSES = ("4xx", "5xx", "connection", "tls")

JOBS_ACCEPTED = Counter("email_service_jobs_accepted", "Jobs accepted by the API (answered 202; replays not counted).")
RECIPIENTS_ACCEPTED = Counter(
    "email_service_recipients_accepted", "Recipients stored with the jobs accepted (duplicates merged)."
)
RECIPIENTS_FINAL = Counter(
    "email_service_recipients_final",
    "Recipients that reached a final status (a retried job's recipients count again when they end again).",
    ["status"],
)
SEND_SECONDS = Histogram(
    "email_service_send_seconds",
    "Time to hand one message to the relay, for the messages it accepted (the first of a connection "
    "includes opening the session).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ACCEPT_TO_RELAY_SECONDS = Histogram(
    "email_service_accept_to_relay_seconds",
    "How long the caller waited for a message the relay accepted, by the job's lane: from the job's acceptance "
    "(its send_at, if scheduled) to the relay's 250; retries, pauses and waits behind other work included.",
    ["lane"],
    # A transactional message within a second or so; a bulk one behind a large send, up to hours.
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600),
)
SENDS_IN_PROGRESS = Gauge(
    "email_service_sends_in_progress",
    "Messages being handed to the relay right now, over all worker processes.",
    multiprocess_mode="livesum",
)
SMTP_ERRORS = Counter(
    "email_service_smtp_errors",
    "Sends the relay did not take, by class: a 4xx or 5xx reply, a connection that failed, dropped or "
    "timed out, or TLS.",
    ["class"],
)
RATE_LIMITED = Counter(
    "email_service_rate_limited",
    "Messages delayed by a rate limit: waited for their slot, or released to the scheduler (slot too far off).",
    ["action"],
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "email_service_rate_limit_wait_seconds", "Seconds worker threads spent waiting for a rate-limit slot."
)

FEEDBACK_KINDS = ("hard", "soft", "complaint")
UNMATCHED_REASONS = ("forged_token", "replayed_signature", "unknown_recipient", "not_a_report", "too_large")
FEEDBACK = Counter(
    "email_service_feedback",
    "Bounces and complaints matched to a sent message, by kind (hard, soft, complaint) and source "
    "(dsn, text, arf, ses, sendgrid, mailgun, postmark); a report received twice counts once.",
    ["kind", "source"],
)
FEEDBACK_UNMATCHED = Counter(
    "email_service_feedback_unmatched",
    "Bounce mail and events ignored: a token whose signature does not check, no recipient of ours, "
    "mail that reports nothing, or mail over BOUNCE_MAX_BYTES.",
    ["reason"],
)

# Every series exists from the start, at 0, so that rate() sees the first increase.
for _status in sorted(TERMINAL_RECIPIENT_STATUSES):
    RECIPIENTS_FINAL.labels(_status)
for _class in SMTP_ERROR_CLASSES:
    SMTP_ERRORS.labels(_class)
for _action in ("waited", "released"):
    RATE_LIMITED.labels(_action)
for _reason in UNMATCHED_REASONS:
    FEEDBACK_UNMATCHED.labels(_reason)
for _lane in Lane:
    ACCEPT_TO_RELAY_SECONDS.labels(_lane)


def job_accepted(recipients: int, suppressed: int) -> None:
    """A job was stored with ``recipients`` recipients, ``suppressed`` of them suppressed from the start."""
    JOBS_ACCEPTED.inc()
    RECIPIENTS_ACCEPTED.inc(recipients)
    recipients_ended("suppressed", suppressed)


def feedback_recorded(kind: str, source: str) -> None:
    FEEDBACK.labels(kind, source).inc()


def feedback_ignored(reason: str) -> None:
    """One of UNMATCHED_REASONS."""
    FEEDBACK_UNMATCHED.labels(reason).inc()


def recipients_ended(status: str, count: int = 1) -> None:
    """``count`` recipients reached the final ``status`` (sent, failed, suppressed, cancelled, expired)."""
    if count:
        RECIPIENTS_FINAL.labels(status).inc(count)


def send_started() -> float:
    """A message was handed to the relay: in progress until ``send_answered``; when, for its duration."""
    SENDS_IN_PROGRESS.inc()
    return time.perf_counter()


def send_answered(started: float, error: DeliveryError | None) -> None:
    """The relay answered a message handed over at ``started``: its time if it took it, its class if not."""
    SENDS_IN_PROGRESS.dec()
    if error is None:
        SEND_SECONDS.observe(time.perf_counter() - started)
    else:
        SMTP_ERRORS.labels(smtp_error_class(error)).inc()


def message_relayed(lane: str, waited_seconds: float) -> None:
    """The relay accepted a message of a job of ``lane`` that could be sent ``waited_seconds`` ago."""
    ACCEPT_TO_RELAY_SECONDS.labels(lane).observe(max(waited_seconds, 0.0))  # hosts' clocks may differ a little


def smtp_error_class(error: DeliveryError) -> str:
    """4xx or 5xx by the reply code; tls for a failed handshake or certificate; connection otherwise
    (refused, dropped, timed out: no reply at all)."""
    if error.text.startswith("TLS:"):
        return "tls"
    if 400 <= error.code <= 499:
        return "4xx"
    if 500 <= error.code <= 599:
        return "5xx"
    return "connection"


def rate_limit_waited(seconds: float) -> None:
    RATE_LIMITED.labels("waited").inc()
    RATE_LIMIT_WAIT_SECONDS.inc(seconds)


def rate_limit_released() -> None:
    RATE_LIMITED.labels("released").inc()
