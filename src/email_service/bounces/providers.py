"""The bounce and complaint events of the hosted relays, as ``Feedback``: Amazon SES (through SNS),
SendGrid, Mailgun and Postmark.

Each ``from_*`` function takes the webhook request's raw body, checks it as its provider documents
(SNS: an RSA signature by Amazon's certificate; SendGrid: ECDSA; Mailgun: HMAC; Postmark: the
caller checks basic auth), then maps the provider's events. SNS and SendGrid sign the events
themselves, so a replay can only repeat them (recorded once); Mailgun signs a timestamp and token,
not the events beside them, so its signature is returned for the caller to accept once. A request
that does not authenticate raises ForgedFeedback (401); one that authenticates but is not in the
provider's documented form raises MalformedFeedback (422), naming what was wrong. Events that are
not a bounce or a complaint (deliveries, delays, opens, a complaint marked not-spam) give nothing.

How each provider's kinds map:

- SES: ``Permanent`` is classified by its status (hard without one), ``Transient`` is soft,
  ``Undetermined`` is classified; a complaint is one unless its feedback type is ``not-spam``.
- SendGrid: ``bounce`` is classified, ``blocked`` is soft, ``spamreport`` a complaint; ``dropped``
  (SendGrid's own suppression, nothing was sent) is ignored.
- Mailgun: ``failed`` with severity ``permanent`` is classified (hard without a status), except that
  giving up after retries (reason ``old``) is soft and refusals for an earlier unsubscribe or
  complaint say nothing new; ``temporary`` is soft; ``complained`` a complaint.
- Postmark: HardBounce, BadEmailAddress and ManuallyDeactivated are hard; SoftBounce, Transient,
  DnsError and Blocked soft; SpamComplaint a complaint; auto-replies and the rest give nothing.

``fetch_sns_certificate`` is the one network call, injected by the app so that tests need none.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from email_service.bounces.classify import classify, leading_code, one_line, specific_status, status_in, typed_value
from email_service.bounces.feedback import Feedback, FeedbackKind, FeedbackSource, complaint_report
from email_service.errors import ConfigurationError, ForgedFeedback, MalformedFeedback
from email_service.outbound.transport import http_client

SNS_MAX_AGE = timedelta(hours=1)  # SNS signs a message when it first sends it, and retries for up to an hour
WEBHOOK_MAX_AGE = timedelta(minutes=5)  # SendGrid and Mailgun sign each POST: older ones are replays
SNS_CERTIFICATE_TIMEOUT = 10.0  # seconds
REFERENCE_KEY = "email_service_ref"  # the metadata key under which a message carries its token
SES_REPORTER = "amazonses.com"
SENDGRID_REPORTER = "sendgrid"
MAILGUN_REPORTER = "mailgun"
POSTMARK_REPORTER = "postmark"

# Amazon's SNS hosts only: a signing certificate from anywhere else could be anyone's.
_SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
_URL_CHARACTERS = re.compile(r"[!#-\[\]-~]+")  # printable ASCII without space, quote or backslash
_SNS_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
# The keys of each SNS message type that its signature covers, in the order AWS documents.
_SNS_SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_SNS_OPTIONAL_KEYS = frozenset({"Subject"})
_UNIX_TIME = re.compile(r"\d{1,12}")
_POSTMARK_HARD = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})
_POSTMARK_SOFT = frozenset({"SoftBounce", "Transient", "DnsError", "Blocked"})
_MAILGUN_NOTHING_NEW = frozenset({"suppress-unsubscribe", "suppress-complaint"})


@dataclass(frozen=True)
class OneTimeSignature:
    """A webhook signature to accept once: ``key`` names it, and it can be refused by age after ``expires_at``."""

    key: str
    expires_at: datetime


@dataclass(frozen=True)
class MailgunEvents:
    reports: list[Feedback]
    signature: OneTimeSignature


@dataclass(frozen=True)
class SnsConfirmation:
    """A signed SubscriptionConfirmation: GET ``subscribe_url`` (an SNS host) to confirm it."""

    topic_arn: str
    subscribe_url: str


# -- Amazon SES through SNS


def from_ses(
    body: bytes, *, topic_arns: frozenset[str], certificate: Callable[[str], bytes], now: datetime
) -> list[Feedback] | SnsConfirmation:
    """The feedback of one SNS message, or the subscription it asks to confirm."""
    envelope = _object(_json(body, "the SNS message"), "the SNS message")
    kind = _text(envelope, "Type", "the SNS message")
    if kind not in _SNS_SIGNED_KEYS:
        raise MalformedFeedback(f"the SNS message's Type {kind!r} is not one SNS sends")
    _verify_sns(envelope, kind, topic_arns=topic_arns, certificate=certificate, now=now)
    if kind == "SubscriptionConfirmation":
        url = _text(envelope, "SubscribeURL", "the SNS message")
        if not _on_sns_host(url):
            raise ForgedFeedback("the SubscribeURL is not on an Amazon SNS host")
        return SnsConfirmation(topic_arn=_text(envelope, "TopicArn", "the SNS message"), subscribe_url=url)
    if kind == "UnsubscribeConfirmation":
        return []
    message = _json(_text(envelope, "Message", "the SNS message").encode(), "the SNS Message")
    return _ses_feedback(_object(message, "the SES notification"))


@functools.lru_cache(maxsize=8)
def fetch_sns_certificate(url: str) -> bytes:
    """The PEM of SNS's signing certificate at ``url`` (checked by from_ses to be an SNS host), kept
    in memory: a burst of notifications is signed with the same one. Public addresses only, as any URL
    a request names."""
    with http_client(SNS_CERTIFICATE_TIMEOUT) as client:
        response = client.get(url)
    response.raise_for_status()  # also a redirect: the certificate is only taken from where SNS named
    return response.content


def _verify_sns(
    envelope: Mapping[str, Any],
    kind: str,
    *,
    topic_arns: frozenset[str],
    certificate: Callable[[str], bytes],
    now: datetime,
) -> None:
    """Raise unless SNS signed the message, for one of our topics, within the hour."""
    signed = _sns_string_to_sign(envelope, _SNS_SIGNED_KEYS[kind])
    if envelope["TopicArn"] not in topic_arns:  # a str: _sns_string_to_sign checked
        raise ForgedFeedback(f"the SNS topic {envelope['TopicArn']!r} is not one of SES_TOPIC_ARNS")
    _check_age(_iso_time(envelope["Timestamp"], "the SNS message's Timestamp"), now, SNS_MAX_AGE, "the SNS message")
    version = _text(envelope, "SignatureVersion", "the SNS message")
    algorithm = _SNS_HASHES.get(version)
    if algorithm is None:
        raise ForgedFeedback(f"SNS SignatureVersion {version!r} is not 1 or 2")
    signature = _base64(_text(envelope, "Signature", "the SNS message"), "the SNS Signature")
    url = _text(envelope, "SigningCertURL", "the SNS message")
    if not (_on_sns_host(url) and urlsplit(url).path.endswith(".pem")):
        raise ForgedFeedback("the SigningCertURL is not a certificate on an Amazon SNS host")
    key = _sns_public_key(certificate(url), now)
    try:
        key.verify(signature, signed, padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise ForgedFeedback("the SNS message's signature does not check") from None


def _sns_string_to_sign(envelope: Mapping[str, Any], keys: tuple[str, ...]) -> bytes:
    parts = []
    for key in keys:
        value = envelope.get(key)
        if value is None and key in _SNS_OPTIONAL_KEYS:
            continue
        if not isinstance(value, str):
            raise MalformedFeedback(f"the SNS message's {key} is missing or not a string")
        parts.append(f"{key}\n{value}\n")
    return "".join(parts).encode()


def _on_sns_host(url: str) -> bool:
    """An https URL on sns.<region>.amazonaws.com, with nothing (user, port, odd characters) that
    could make another client read it as a different host."""
    if not _URL_CHARACTERS.fullmatch(url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    # The whole netloc must be the host name: no user, password or port around it.
    return parts.scheme == "https" and _SNS_HOST.fullmatch(parts.netloc) is not None


def _sns_public_key(pem: bytes, now: datetime) -> rsa.RSAPublicKey:
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise ForgedFeedback("the SNS signing certificate is not a PEM certificate") from None
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ForgedFeedback("the SNS signing certificate is not valid now")
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ForgedFeedback("the SNS signing certificate's key is not RSA")
    return key


def _ses_feedback(notification: Mapping[str, Any]) -> list[Feedback]:
    # SES's own notifications say notificationType; configuration-set event publishing, eventType.
    kind = notification.get("notificationType", notification.get("eventType"))
    if not isinstance(kind, str):
        raise MalformedFeedback("the SES notification has no notificationType or eventType")
    if kind == "Bounce":
        return _ses_bounce(notification)
    if kind == "Complaint":
        return _ses_complaint(notification)
    return []  # Delivery, Send, Reject, DeliveryDelay, Open, ...: nothing bounced


def _ses_bounce(notification: Mapping[str, Any]) -> list[Feedback]:
    bounce = _object(notification.get("bounce"), "the SES notification's bounce")
    bounce_type = _text(bounce, "bounceType", "bounce")
    reporter = typed_value(_optional_text(bounce, "reportingMTA", "bounce") or "") or SES_REPORTER
    message_id = _ses_message_id(notification)
    reports = []
    for index, item in enumerate(_array(bounce, "bouncedRecipients", "bounce")):
        where = f"bounce.bouncedRecipients[{index}]"
        recipient = _object(item, where)
        address = _address(_optional_text(recipient, "emailAddress", where))
        action = (_optional_text(recipient, "action", where) or "failed").lower()
        if address is None or action != "failed":
            continue
        diagnostic = typed_value(_optional_text(recipient, "diagnosticCode", where) or "")
        status = status_in(_optional_text(recipient, "status", where) or "") or status_in(diagnostic)
        smtp_code = leading_code(diagnostic)
        reports.append(
            Feedback(
                kind=_ses_kind(bounce_type, status, smtp_code, diagnostic),
                source=FeedbackSource.SES,
                address=address,
                status=status,
                smtp_code=smtp_code,
                diagnostic=one_line(diagnostic or f"{bounce_type} bounce"),
                message_id=message_id,
                reporter=reporter,
            )
        )
    return reports


def _ses_kind(bounce_type: str, status: str | None, smtp_code: int | None, diagnostic: str) -> FeedbackKind:
    if bounce_type == "Transient":
        return FeedbackKind.SOFT
    if bounce_type == "Permanent" and status is None:
        return FeedbackKind.HARD  # SES gave up on the address for good, e.g. its suppression list
    # Permanent with a status, Undetermined, and any type SES may add later: what the status says.
    return classify(status, smtp_code, diagnostic)


def _ses_complaint(notification: Mapping[str, Any]) -> list[Feedback]:
    complaint = _object(notification.get("complaint"), "the SES notification's complaint")
    feedback_type = _optional_text(complaint, "complaintFeedbackType", "complaint")
    if feedback_type is not None and feedback_type.strip().lower() == "not-spam":
        return []  # the recipient took it out of the spam folder
    agent = _optional_text(complaint, "userAgent", "complaint")
    message_id = _ses_message_id(notification)
    reports = []
    for index, item in enumerate(_array(complaint, "complainedRecipients", "complaint")):
        where = f"complaint.complainedRecipients[{index}]"
        address = _address(_optional_text(_object(item, where), "emailAddress", where))
        if address is None:
            continue
        reports.append(
            complaint_report(
                FeedbackSource.SES,
                address,
                feedback_type=feedback_type or "complaint",
                agent=agent,
                message_id=message_id,
                reporter=SES_REPORTER,
            )
        )
    return reports


def _ses_message_id(notification: Mapping[str, Any]) -> str | None:
    """The Message-ID we gave the message (mail.messageId is SES's own identifier, not it)."""
    mail = _object(notification.get("mail") or {}, "the SES notification's mail")
    common = _object(mail.get("commonHeaders") or {}, "mail.commonHeaders")
    given = _optional_text(common, "messageId", "mail.commonHeaders")
    if given:
        return _bracketed(given)
    headers = mail.get("headers") or []
    if not isinstance(headers, list):
        raise MalformedFeedback("mail.headers is not an array")
    for index, header in enumerate(headers):
        where = f"mail.headers[{index}]"
        fields = _object(header, where)
        if _text(fields, "name", where).lower() == "message-id":
            return _bracketed(_text(fields, "value", where))
    return None


# -- SendGrid


def from_sendgrid(
    body: bytes, *, signature: str | None, timestamp: str | None, public_key: str, now: datetime
) -> list[Feedback]:
    """The feedback of one POST of SendGrid's Signed Event Webhook (a JSON array of events)."""
    if not signature or not timestamp:
        raise ForgedFeedback("the SendGrid event webhook's signature or timestamp header is missing")
    _check_age(_unix_time(timestamp, "the SendGrid timestamp"), now, WEBHOOK_MAX_AGE, "the SendGrid event webhook")
    der = _base64(signature, "the SendGrid signature")
    try:
        _sendgrid_key(public_key).verify(der, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ForgedFeedback("the SendGrid event webhook's signature does not check") from None
    events = _json(body, "the SendGrid events")
    if not isinstance(events, list):
        raise MalformedFeedback("the SendGrid events are not a JSON array")
    reports = []
    for index, item in enumerate(events):
        report = _sendgrid_event(_object(item, f"SendGrid event [{index}]"), f"SendGrid event [{index}]")
        if report is not None:
            reports.append(report)
    return reports


@functools.lru_cache(maxsize=4)
def _sendgrid_key(text: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key: base64 DER as its settings page shows it, or the same as PEM."""
    try:
        if "-----BEGIN" in text:
            key = serialization.load_pem_public_key(text.strip().encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigurationError("SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA P-256 public key (base64 DER or PEM)")
    return key


def _sendgrid_event(event: Mapping[str, Any], where: str) -> Feedback | None:
    name = _text(event, "event", where)
    address = _address(_optional_text(event, "email", where))
    if address is None or name not in ("bounce", "spamreport"):
        return None  # dropped (SendGrid's own suppression: nothing was sent), deferred, delivered, opens
    message_id = _optional_text(event, "smtp-id", where)
    common: dict[str, Any] = {
        "source": FeedbackSource.SENDGRID,
        "address": address,
        "message_id": _bracketed(message_id) if message_id else None,
        "reference": _reference(event),
        "reporter": SENDGRID_REPORTER,
    }
    if name == "spamreport":
        return Feedback(kind=FeedbackKind.COMPLAINT, status=None, smtp_code=None, diagnostic="spam report", **common)
    diagnostic = _optional_text(event, "reason", where) or ""
    status = specific_status(status_in(_optional_text(event, "status", where) or ""), diagnostic)
    smtp_code = leading_code(diagnostic)
    blocked = _optional_text(event, "type", where) == "blocked"  # refused for the sender or the message
    kind = FeedbackKind.SOFT if blocked else classify(status, smtp_code, diagnostic)
    return Feedback(
        kind=kind,
        status=status,
        smtp_code=smtp_code,
        diagnostic=one_line(diagnostic or ("blocked" if blocked else "bounce")),
        **common,
    )


# -- Mailgun


def from_mailgun(body: bytes, *, signing_key: str, now: datetime) -> MailgunEvents:
    """The feedback of one Mailgun webhook POST: its signature, then its event-data."""
    payload = _object(_json(body, "the Mailgun webhook"), "the Mailgun webhook")
    signature = _verify_mailgun(payload.get("signature"), signing_key=signing_key, now=now)
    event = _object(payload.get("event-data"), "the Mailgun webhook's event-data")
    name = _text(event, "event", "event-data")
    address = _address(_optional_text(event, "recipient", "event-data"))
    if address is None or name not in ("failed", "complained"):
        return MailgunEvents([], signature)  # accepted, delivered, opened, clicked, unsubscribed, ...
    common: dict[str, Any] = {
        "source": FeedbackSource.MAILGUN,
        "address": address,
        "message_id": _mailgun_message_id(event),
        "reference": _reference(_object(event.get("user-variables") or {}, "event-data.user-variables")),
        "reporter": MAILGUN_REPORTER,
    }
    if name == "complained":
        complaint = Feedback(kind=FeedbackKind.COMPLAINT, status=None, smtp_code=None, diagnostic="complaint", **common)
        return MailgunEvents([complaint], signature)
    return MailgunEvents(_mailgun_failure(event, common), signature)


def _verify_mailgun(signature: object, *, signing_key: str, now: datetime) -> OneTimeSignature:
    if not isinstance(signature, dict):
        raise ForgedFeedback("the Mailgun webhook has no signature")
    timestamp, token, given = (signature.get(key) for key in ("timestamp", "token", "signature"))
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        timestamp = str(timestamp)
    if not (isinstance(timestamp, str) and isinstance(token, str) and isinstance(given, str)):
        raise ForgedFeedback("the Mailgun webhook's signature lacks its timestamp, token or signature")
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    # As bytes: compare_digest refuses str with non-ASCII characters, which anyone can send.
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise ForgedFeedback("the Mailgun webhook's signature does not check")
    signed_at = _unix_time(timestamp, "the Mailgun timestamp")
    _check_age(signed_at, now, WEBHOOK_MAX_AGE, "the Mailgun webhook")
    # Keyed by what was signed: any split of it into a timestamp and a token is the same signature.
    return OneTimeSignature(hashlib.sha256(b"mailgun:" + expected.encode()).hexdigest(), signed_at + WEBHOOK_MAX_AGE)


def _mailgun_failure(event: Mapping[str, Any], common: dict[str, Any]) -> list[Feedback]:
    severity = _optional_text(event, "severity", "event-data")
    reason = _optional_text(event, "reason", "event-data") or ""
    if reason in _MAILGUN_NOTHING_NEW:
        return []  # Mailgun did not send because of an earlier unsubscribe or complaint
    delivery = _object(event.get("delivery-status") or {}, "event-data.delivery-status")
    message = _optional_text(delivery, "message", "delivery-status") or ""
    description = _optional_text(delivery, "description", "delivery-status") or ""
    diagnostic = message or description
    enhanced = _optional_text(delivery, "enhanced-code", "delivery-status") or ""
    status = status_in(enhanced) or status_in(message) or status_in(description)
    code = delivery.get("code")
    # Mailgun's own refusals have codes such as 605: only SMTP reply codes are kept.
    smtp_code = code if isinstance(code, int) and not isinstance(code, bool) and 200 <= code < 600 else None
    if severity == "temporary" or reason == "old":  # "old": Mailgun gave up after its retries
        kind = FeedbackKind.SOFT
    elif severity == "permanent" and status is None:
        kind = FeedbackKind.HARD
    else:
        kind = classify(status, smtp_code, diagnostic)
    return [
        Feedback(
            kind=kind,
            status=status,
            smtp_code=smtp_code,
            diagnostic=one_line(diagnostic or f"{severity or 'failed'} failure {reason}".strip()),
            **common,
        )
    ]


def _mailgun_message_id(event: Mapping[str, Any]) -> str | None:
    message = _object(event.get("message") or {}, "event-data.message")
    headers = _object(message.get("headers") or {}, "event-data.message.headers")
    value = _optional_text(headers, "message-id", "event-data.message.headers")
    return _bracketed(value) if value else None  # Mailgun gives it without its angle brackets


# -- Postmark


def from_postmark(body: bytes) -> list[Feedback]:
    """The feedback of one Postmark Bounce or SpamComplaint webhook (the caller checked its auth)."""
    record = _object(_json(body, "the Postmark webhook"), "the Postmark webhook")
    record_type = _optional_text(record, "RecordType", "the Postmark webhook")
    if record_type not in (None, "Bounce", "SpamComplaint"):
        return []  # Delivery, Open, Click, SubscriptionChange
    bounce_type = _optional_text(record, "Type", "the Postmark webhook")
    address = _address(_optional_text(record, "Email", "the Postmark webhook"))
    if address is None:
        return []
    details = _optional_text(record, "Details", "the Postmark webhook") or ""
    diagnostic = details or _optional_text(record, "Description", "the Postmark webhook") or bounce_type or ""
    common: dict[str, Any] = {
        "source": FeedbackSource.POSTMARK,
        "address": address,
        "diagnostic": one_line(diagnostic),
        "message_id": _postmark_message_id(record),
        "reference": _reference(_object(record.get("Metadata") or {}, "the Postmark webhook's Metadata")),
        "reporter": POSTMARK_REPORTER,
    }
    if record_type == "SpamComplaint" or bounce_type == "SpamComplaint":
        return [Feedback(kind=FeedbackKind.COMPLAINT, status=None, smtp_code=None, **common)]
    if bounce_type is None:
        raise MalformedFeedback("the Postmark bounce has no Type")
    if bounce_type in _POSTMARK_HARD:
        kind = FeedbackKind.HARD
    elif bounce_type in _POSTMARK_SOFT:
        kind = FeedbackKind.SOFT
    else:
        return []  # AutoResponder, Subscribe, Unsubscribe, OpenRelayTest, ChallengeVerification, ...
    typed = typed_value(details)
    return [Feedback(kind=kind, status=status_in(details), smtp_code=leading_code(typed), **common)]


def _postmark_message_id(record: Mapping[str, Any]) -> str | None:
    """Postmark's MessageID is its own UUID; only a real Message-ID (with an @) names our message."""
    value = _optional_text(record, "MessageID", "the Postmark webhook")
    return _bracketed(value) if value and "@" in value else None


# -- shared


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise MalformedFeedback(f"{what} is not JSON") from None


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedFeedback(f"{what} is not a JSON object")
    return value


def _array(container: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = container.get(key)
    if not isinstance(value, list):
        raise MalformedFeedback(f"{where}.{key} is missing or not an array")
    return value


def _text(container: Mapping[str, Any], key: str, where: str) -> str:
    value = container.get(key)
    if not isinstance(value, str):
        raise MalformedFeedback(f"{where}'s {key} is missing or not a string")
    return value


def _optional_text(container: Mapping[str, Any], key: str, where: str) -> str | None:
    value = container.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedFeedback(f"{where}'s {key} is not a string")
    return value


def _base64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ForgedFeedback(f"{what} is not base64") from None


def _iso_time(text: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedFeedback(f"{what} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _unix_time(text: str, what: str) -> datetime:
    if not _UNIX_TIME.fullmatch(text):
        raise ForgedFeedback(f"{what} is not a Unix time")
    return datetime.fromtimestamp(int(text), UTC)


def _check_age(moment: datetime, now: datetime, limit: timedelta, what: str) -> None:
    # Both ways: a time far in the future is as much a replay (or a forged clock) as an old one.
    if abs(now - moment) > limit:
        raise ForgedFeedback(f"{what} was signed more than {limit.total_seconds() / 60:g} minutes from now")


def _address(value: str | None) -> str | None:
    return (value.strip() or None) if value else None


def _bracketed(value: str) -> str | None:
    bare = value.strip().removeprefix("<").removesuffix(">").strip()
    return f"<{bare}>" if bare else None


def _reference(fields: Mapping[str, Any]) -> str | None:
    value = fields.get(REFERENCE_KEY)
    return (value.strip() or None) if isinstance(value, str) else None
