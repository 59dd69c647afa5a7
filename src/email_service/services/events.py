"""Delivering a job's webhook events from the outbox: in order, signed, retried with backoff.

Delivery is at least once: a worker dying after the receiver answered but before the outcome was
written sends the event again, with the same X-Email-Service-Delivery id for the receiver to
recognize it.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

from email_service.delivery.retry import backoff_delay
from email_service.outbound.transport import http_client
from email_service.services import Services, accounts
from email_service.storage import webhook_events
from email_service.storage.models import WebhookEvent, utcnow
from email_service.webhooks.sender import DeliveryAttempt, post_event

log = logging.getLogger(__name__)

LONGEST_RETRY_DELAY = 3600.0
# Time to deliver one event before another delivery may take it over: httpx's timeout bounds each
# phase (connect, send, wait, read), so an attempt lasts at most four of them, plus a margin.
CLAIM_MARGIN = 30.0


def event_body(event: WebhookEvent) -> bytes:
    """The JSON POSTed for an event: the same bytes on every attempt."""
    document = {
        "id": str(event.id),
        "type": event.type,
        "created_at": event.created_at.isoformat(),
        "data": event.payload,
    }
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def deliver_events(services: Services, job_id: str) -> int:
    """Report the job's new failures, then deliver its due events oldest first; how many were delivered.

    Stops at the first event the receiver does not take (it is retried later, and the events after
    it wait for it), unless that event has run out of retries or its destination is refused.
    """
    settings = services.settings
    with services.sessions.begin() as session:
        job = webhook_events.job_with_webhook(session, job_id)
        if job is None:
            return 0
        webhook_events.pack_failures(session, job, utcnow())
        # Looked up at each delivery: a rotation applies to the events still waiting.
        secrets = accounts.signing_secrets(
            session, job.account_id, settings.webhook_secret.get_secret_value(), utcnow()
        )
    delivered = 0
    with http_client(settings.webhook_timeout, settings.webhook_allowed_networks) as client:
        while True:
            now = utcnow()
            lease_until = now + timedelta(seconds=4 * settings.webhook_timeout + CLAIM_MARGIN)
            with services.sessions.begin() as session:
                event = webhook_events.claim_next(session, job_id, now, lease_until)
            if event is None:
                return delivered
            attempt = post_event(
                client,
                event.url,
                event_body(event),
                secrets=secrets,
                event_type=event.type,
                delivery_id=str(event.id),
                now=int(time.time()),
            )
            if not _record(services, event, attempt):
                return delivered
            delivered += attempt.delivered


def _record(services: Services, event: WebhookEvent, attempt: DeliveryAttempt) -> bool:
    """Write the attempt's outcome; False when the job's later events must wait (a retry is due)."""
    settings = services.settings
    with services.sessions.begin() as session:
        if attempt.delivered:
            webhook_events.mark_delivered(session, event, utcnow())
            return True
        error = attempt.error or "not delivered"
        delay = backoff_delay(settings.webhook_retry_first_delay, LONGEST_RETRY_DELAY, event.attempts, services.rng)
        retry_at = utcnow() + timedelta(seconds=delay)
        if attempt.final or retry_at > event.created_at + timedelta(seconds=settings.webhook_retry_lifetime):
            webhook_events.mark_abandoned(session, event, error)
            log.warning("job %s webhook event %d (%s) given up: %s", event.job_id, event.id, event.type, error)
            return True
        webhook_events.mark_retry(session, event, error, retry_at)
    log.info(
        "job %s webhook event %d (%s) not delivered, retry at %s: %s",
        event.job_id,
        event.id,
        event.type,
        retry_at.isoformat(),
        error,
    )
    return False
