"""/bounces/<provider>: the bounce and complaint events of Amazon SES (through SNS), SendGrid, Mailgun
and Postmark, each authenticated as its provider documents (no API key: the provider calls)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import Any

from flask import current_app, request
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag
from pydantic import BaseModel, Field

from email_service.api.schemas import ErrorBody
from email_service.bounces import providers
from email_service.bounces.feedback import Feedback
from email_service.errors import ForgedFeedback, NotFound
from email_service.outbound.transport import http_client
from email_service.services import Services, bounces
from email_service.storage.models import utcnow

bounces_tag = Tag(
    name="bounces",
    description="Bounce and complaint events of the relay providers, which call these endpoints themselves: each "
    "is off until its setting is given, and checks the provider's signature or credentials (docs/bounces.md).",
)
blueprint = APIBlueprint("bounces", __name__, url_prefix="/bounces", abp_tags=[bounces_tag])
ERRORS: dict[int | str, Any] = {401: ErrorBody, 404: ErrorBody, 422: ErrorBody, 503: ErrorBody}
SNS_CONFIRM_TIMEOUT = 10.0


class FeedbackReceived(BaseModel):
    recorded: int = Field(description="Reports recorded against a recipient.")
    duplicates: int = Field(description="Reports already recorded (a provider redelivering).")
    ignored: int = Field(description="Reports about no message of this service, or with a forged reference.")


def _services() -> Services:
    services: Services = current_app.extensions["email_service"]
    return services


def _received(reports: Sequence[Feedback], signature: providers.OneTimeSignature | None = None) -> dict[str, int]:
    outcomes = bounces.record_events(_services(), reports, signature)
    recorded = outcomes.count(bounces.Outcome.RECORDED)
    duplicates = outcomes.count(bounces.Outcome.DUPLICATE)
    return {"recorded": recorded, "duplicates": duplicates, "ignored": len(outcomes) - recorded - duplicates}


def _off(setting: str) -> NotFound:
    return NotFound(f"this endpoint is off: set {setting}")


@blueprint.post("/ses", summary="Amazon SES events, through an SNS topic", responses={200: FeedbackReceived, **ERRORS})
def ses() -> Any:
    """SNS POSTs its messages here: signed with Amazon's certificate, from a topic in SES_TOPIC_ARNS. A
    subscription request is confirmed; Bounce and Complaint notifications are recorded."""
    settings = _services().settings
    topics = frozenset(t.strip() for t in settings.ses_topic_arns.split(",") if t.strip())
    if not topics:
        raise _off("SES_TOPIC_ARNS")
    certificate: Callable[[str], bytes] = current_app.extensions["sns_certificate"]
    result = providers.from_ses(request.get_data(), topic_arns=topics, certificate=certificate, now=utcnow())
    if isinstance(result, providers.SnsConfirmation):
        confirm: Callable[[str], None] = current_app.extensions["sns_confirm"]
        confirm(result.subscribe_url)
        return {"recorded": 0, "duplicates": 0, "ignored": 0}
    return _received(result)


@blueprint.post("/sendgrid", summary="SendGrid's signed Event Webhook", responses={200: FeedbackReceived, **ERRORS})
def sendgrid() -> Any:
    key = _services().settings.sendgrid_webhook_public_key
    if not key:
        raise _off("SENDGRID_WEBHOOK_PUBLIC_KEY")
    reports = providers.from_sendgrid(
        request.get_data(),
        signature=request.headers.get("X-Twilio-Email-Event-Webhook-Signature"),
        timestamp=request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp"),
        public_key=key,
        now=utcnow(),
    )
    return _received(reports)


@blueprint.post("/mailgun", summary="Mailgun's webhooks", responses={200: FeedbackReceived, **ERRORS})
def mailgun() -> Any:
    """Each signature (timestamp and token) is accepted once: it does not cover the event beside it,
    so a second POST with it is refused (401) whatever event it carries."""
    key = _services().settings.mailgun_webhook_signing_key.get_secret_value()
    if not key:
        raise _off("MAILGUN_WEBHOOK_SIGNING_KEY")
    events = providers.from_mailgun(request.get_data(), signing_key=key, now=utcnow())
    return _received(events.reports, events.signature)


@blueprint.post(
    "/postmark", summary="Postmark's bounce and spam complaint webhooks", responses={200: FeedbackReceived, **ERRORS}
)
def postmark() -> Any:
    """Postmark authenticates with the basic auth of the webhook URL (POSTMARK_WEBHOOK_USER and _PASSWORD)."""
    settings = _services().settings
    password = settings.postmark_webhook_password.get_secret_value()
    if not password:
        raise _off("POSTMARK_WEBHOOK_PASSWORD")
    given = request.authorization
    if (
        given is None
        or given.type != "basic"
        or not (
            hmac.compare_digest((given.username or "").encode(), settings.postmark_webhook_user.encode())
            & hmac.compare_digest((given.password or "").encode(), password.encode())
        )
    ):
        raise ForgedFeedback("wrong or missing basic auth credentials")
    return _received(providers.from_postmark(request.get_data()))


def confirm_sns_subscription(url: str) -> None:
    """GET the SubscribeURL of a signed SubscriptionConfirmation (only Amazon's hosts: checked by from_ses; public
    addresses only, as any URL a request names)."""
    with http_client(SNS_CONFIRM_TIMEOUT) as client:
        client.get(url).raise_for_status()
