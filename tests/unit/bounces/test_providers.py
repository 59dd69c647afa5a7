"""The providers' webhook events as Feedback: payloads in each provider's documented form
(tests/support/data/providers/), signed here with keys made for the test, and forged ones."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from email_service.bounces import providers
from email_service.bounces.feedback import Feedback, FeedbackKind, FeedbackSource
from email_service.bounces.providers import SnsConfirmation, from_mailgun, from_postmark, from_sendgrid, from_ses
from email_service.errors import ConfigurationError, ForgedFeedback, MalformedFeedback
from tests.support import DATA
from tests.support.provider_signing import (
    FakeCertificates,
    sendgrid_public,
    sendgrid_signature,
    sns_certificate,
    sns_sign,
)

PROVIDERS = DATA / "providers"
NOW = datetime(2024, 5, 2, 9, 20, tzinfo=UTC)
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem"
REF_JANE = "aaaabbbbccccddddeeeeffffgggghhhhiiiijjjjkkkkllll"
REF_WILL = "mmmmnnnnooooppppqqqqrrrrssssttttuuuuvvvvwwwwxxxx"
JANE_ID = "<4f1e8c2a-7b3d-4e5f-9a6b-1c2d3e4f5a6b.3@example.org>"


def sample(name: str) -> Any:
    return json.loads((PROVIDERS / name).read_text())


# -- Amazon SES through SNS


@pytest.fixture(scope="module")
def sns_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def certificates(sns_key: rsa.RSAPrivateKey) -> FakeCertificates:
    return FakeCertificates(sns_certificate(sns_key, now=NOW))


def notification(ses: str | dict[str, Any], **changes: Any) -> dict[str, Any]:
    envelope = sample("sns-notification.json")
    envelope["Message"] = json.dumps(sample(ses) if isinstance(ses, str) else ses)
    envelope.update(changes)
    return {k: v for k, v in envelope.items() if v is not None}


def ses(envelope: dict[str, Any], certificates: FakeCertificates) -> list[Feedback] | SnsConfirmation:
    body = json.dumps(envelope).encode()
    return from_ses(body, topic_arns=frozenset({TOPIC}), certificate=certificates, now=NOW)


def ses_feedback(envelope: dict[str, Any], certificates: FakeCertificates) -> list[Feedback]:
    result = ses(envelope, certificates)
    assert isinstance(result, list)
    return result


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_permanent_bounce_classified_by_status(
    version: str, sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates
) -> None:
    reports = ses(sns_sign(notification("ses-bounce-permanent.json"), sns_key, version), certificates)
    assert reports == [
        Feedback(
            kind=FeedbackKind.HARD,
            source=FeedbackSource.SES,
            address="jane@example.com",
            status="5.1.1",
            smtp_code=550,
            diagnostic="550 5.1.1 <jane@example.com>: Recipient address rejected: "
            "User unknown in virtual mailbox table",  # the folded line made one
            message_id=JANE_ID,
            reporter="a8-70.smtp-out.amazonses.com",
        ),
        Feedback(
            kind=FeedbackKind.SOFT,  # 5.2.2 mailbox full
            source=FeedbackSource.SES,
            address="richard@example.com",
            status="5.2.2",
            smtp_code=552,
            diagnostic="552 5.2.2 Mailbox full",
            message_id=JANE_ID,
            reporter="a8-70.smtp-out.amazonses.com",
        ),
    ]
    assert certificates.asked == [CERT_URL]


def test_ses_permanent_without_status_is_hard_and_message_id_from_headers(
    sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates
) -> None:
    [report] = ses_feedback(sns_sign(notification("ses-bounce-suppressed.json"), sns_key), certificates)
    assert report.kind is FeedbackKind.HARD
    assert (report.address, report.status, report.smtp_code) == ("jonathan@example.com", None, None)
    assert report.message_id == "<4f1e8c2a-7b3d-4e5f-9a6b-1c2d3e4f5a6b.7@example.org>"  # brackets added
    assert report.reporter == "amazonses.com"
    assert report.diagnostic.startswith("Amazon SES did not send the message")


def test_ses_transient_is_soft_whatever_its_status(sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates) -> None:
    [report] = ses_feedback(sns_sign(notification("ses-bounce-transient.json"), sns_key), certificates)
    assert (report.kind, report.status, report.smtp_code) == (FeedbackKind.SOFT, "5.1.1", 550)
    assert report.message_id == "<4f1e8c2a-7b3d-4e5f-9a6b-1c2d3e4f5a6b.4@example.org>"


def test_ses_event_publishing_undetermined_is_classified_and_skips_no_address(
    sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates
) -> None:
    [report] = ses_feedback(sns_sign(notification("ses-event-bounce-undetermined.json"), sns_key), certificates)
    assert (report.kind, report.address, report.status, report.smtp_code) == (
        FeedbackKind.SOFT,
        "nancy@example.com",
        "4.4.7",
        421,
    )
    assert report.reporter == "c1-72.smtp-out.amazonses.com"


def test_ses_complaint(sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates) -> None:
    assert ses(sns_sign(notification("ses-complaint.json"), sns_key), certificates) == [
        Feedback(
            kind=FeedbackKind.COMPLAINT,
            source=FeedbackSource.SES,
            address="will@example.com",
            status=None,
            smtp_code=None,
            diagnostic="abuse report by Yahoo!-Mail-Feedback/2.0",
            message_id="<4f1e8c2a-7b3d-4e5f-9a6b-1c2d3e4f5a6b.6@example.org>",
            reporter="amazonses.com",
        )
    ]


@pytest.mark.parametrize("name", ["ses-complaint-not-spam.json", "ses-delivery.json"])
def test_ses_events_that_are_no_feedback(name: str, sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates) -> None:
    assert ses(sns_sign(notification(name), sns_key), certificates) == []


def test_ses_notification_without_subject(sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates) -> None:
    envelope = notification("ses-complaint.json", Subject=None)
    assert "Subject" not in envelope
    assert len(ses_feedback(sns_sign(envelope, sns_key, "2"), certificates)) == 1


def test_ses_subscription_confirmation(sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates) -> None:
    envelope = sample("sns-subscription-confirmation.json")
    result = ses(sns_sign(envelope, sns_key), certificates)
    assert result == SnsConfirmation(topic_arn=TOPIC, subscribe_url=envelope["SubscribeURL"])


def test_ses_unsubscribe_confirmation_gives_nothing(sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates) -> None:
    envelope = {**sample("sns-subscription-confirmation.json"), "Type": "UnsubscribeConfirmation"}
    assert ses(sns_sign(envelope, sns_key), certificates) == []


def test_ses_subscribe_url_elsewhere_is_refused(sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates) -> None:
    envelope = {**sample("sns-subscription-confirmation.json"), "SubscribeURL": "https://evil.test/?Action=x"}
    with pytest.raises(ForgedFeedback, match="SubscribeURL"):
        ses(sns_sign(envelope, sns_key), certificates)


def test_ses_signature_of_another_key_is_forged(certificates: FakeCertificates) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ForgedFeedback, match="signature"):
        ses(sns_sign(notification("ses-bounce-permanent.json"), other), certificates)


@pytest.mark.parametrize("field", ["Message", "Subject", "MessageId", "Type"])
def test_ses_tampered_message_is_forged(field: str, sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates) -> None:
    envelope = sns_sign(notification("ses-complaint.json"), sns_key)
    if field == "Message":
        envelope["Message"] = envelope["Message"].replace("will@example.com", "mike@example.com")
    elif field == "Type":
        envelope["Type"] = "UnsubscribeConfirmation"  # signed as a Notification
        envelope.update(SubscribeURL=CERT_URL, Token="t")
    else:
        envelope[field] += "x"
    with pytest.raises(ForgedFeedback):
        ses(envelope, certificates)


def test_ses_signature_made_for_the_other_version_is_forged(
    sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates
) -> None:
    envelope = {**sns_sign(notification("ses-complaint.json"), sns_key, "1"), "SignatureVersion": "2"}
    with pytest.raises(ForgedFeedback):
        ses(envelope, certificates)


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem",
        "https://sns.us-east-1.amazonaws.com.evil.test/SimpleNotificationService-0.pem",
        "https://evil.test/sns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem",
        "https://sns.us-east-1.amazonaws.com@evil.test/SimpleNotificationService-0.pem",
        "https://evil.test\\@sns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-0.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem.txt",
        "https://sqs.us-east-1.amazonaws.com/SimpleNotificationService-0.pem",
        "https://snsXus-east-1.amazonaws.com/SimpleNotificationService-0.pem",
        "https://sns.us-east-1.amazonaws.com /SimpleNotificationService-0.pem",
        "",
    ],
)
def test_ses_certificate_url_off_amazon_is_forged_and_not_fetched(
    url: str, sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates
) -> None:
    envelope = sns_sign(notification("ses-complaint.json", SigningCertURL=url), sns_key)
    with pytest.raises(ForgedFeedback, match="SigningCertURL"):
        ses(envelope, certificates)
    assert certificates.asked == []


def test_ses_china_region_certificate_url_is_taken(sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates) -> None:
    url = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-0.pem"
    envelope = sns_sign(notification("ses-complaint.json", SigningCertURL=url), sns_key)
    assert len(ses_feedback(envelope, certificates)) == 1
    assert certificates.asked == [url]


def test_ses_unknown_topic_is_forged_and_not_fetched(
    sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates
) -> None:
    envelope = sns_sign(notification("ses-complaint.json", TopicArn="arn:aws:sns:us-east-1:999999999999:x"), sns_key)
    with pytest.raises(ForgedFeedback, match="topic"):
        ses(envelope, certificates)
    assert certificates.asked == []


@pytest.mark.parametrize("offset", [timedelta(hours=-1, seconds=-1), timedelta(hours=2)])
def test_ses_message_signed_more_than_an_hour_away_is_forged(
    offset: timedelta, sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates
) -> None:
    timestamp = (NOW + offset).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    envelope = sns_sign(notification("ses-complaint.json", Timestamp=timestamp), sns_key)
    with pytest.raises(ForgedFeedback, match="minutes"):
        ses(envelope, certificates)
    assert certificates.asked == []


def test_ses_expired_certificate_is_forged(sns_key: rsa.RSAPrivateKey) -> None:
    expired = FakeCertificates(sns_certificate(sns_key, now=NOW, not_after=NOW - timedelta(minutes=1)))
    with pytest.raises(ForgedFeedback, match="not valid"):
        ses(sns_sign(notification("ses-complaint.json"), sns_key), expired)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"SignatureVersion": "3"}, "SignatureVersion"),
        ({"Signature": "not base64!"}, "base64"),
    ],
)
def test_ses_unusable_signature_is_forged(
    changes: dict[str, str], reason: str, sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates
) -> None:
    envelope = {**sns_sign(notification("ses-complaint.json"), sns_key), **changes}
    with pytest.raises(ForgedFeedback, match=reason):
        ses(envelope, certificates)


def test_ses_certificate_that_is_no_certificate_is_forged(sns_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ForgedFeedback, match="PEM"):
        ses(sns_sign(notification("ses-complaint.json"), sns_key), FakeCertificates(b"<html>not found</html>"))


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"\xff\xfe", b"[]", b'"text"', b'{"Type": 1}', b'{"Type": "Hello"}', b"[" * 100_000],
)
def test_ses_body_that_is_no_sns_message_is_malformed(body: bytes, certificates: FakeCertificates) -> None:
    with pytest.raises(MalformedFeedback):
        from_ses(body, topic_arns=frozenset({TOPIC}), certificate=certificates, now=NOW)
    assert certificates.asked == []


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"MessageId": None}, "MessageId"),
        ({"Subject": 5}, "Subject"),
        ({"Timestamp": "yesterday"}, "Timestamp"),
        ({"SigningCertURL": None}, "SigningCertURL"),
    ],
)
def test_ses_envelope_missing_or_wrong_fields_is_malformed(
    changes: dict[str, Any], reason: str, sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates
) -> None:
    envelope = {k: v for k, v in {**notification("ses-complaint.json"), **changes}.items() if v is not None}
    with pytest.raises(MalformedFeedback, match=reason):
        ses(sns_sign(envelope, sns_key), certificates)
    assert certificates.asked == []


def _broken(name: str, path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """A sample with the value at ``path`` replaced (``...`` removes it)."""
    data: dict[str, Any] = copy.deepcopy(sample(name))
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("not json", "not JSON"),
        ([1, 2], "not a JSON object"),
        ({"mail": {}}, "notificationType"),
        (_broken("ses-bounce-permanent.json", ("bounce",), ...), "bounce"),
        (_broken("ses-bounce-permanent.json", ("bounce", "bounceType"), 1), "bounceType"),
        (_broken("ses-bounce-permanent.json", ("bounce", "bouncedRecipients"), ...), "bouncedRecipients"),
        (_broken("ses-bounce-permanent.json", ("bounce", "bouncedRecipients", 0), "jane@example.com"), r"\[0\]"),
        (_broken("ses-bounce-permanent.json", ("bounce", "bouncedRecipients", 1, "status"), 5.1), "status"),
        (_broken("ses-bounce-permanent.json", ("mail", "commonHeaders"), ["x"]), "commonHeaders"),
        (_broken("ses-bounce-suppressed.json", ("mail", "headers"), {"Message-ID": "x"}), "headers"),
        (_broken("ses-complaint.json", ("complaint", "complainedRecipients"), None), "complainedRecipients"),
        (_broken("ses-complaint.json", ("complaint", "complainedRecipients", 0), None), r"\[0\]"),
    ],
)
def test_ses_notification_of_the_wrong_shape_is_malformed(
    message: Any, reason: str, sns_key: rsa.RSAPrivateKey, certificates: FakeCertificates
) -> None:
    envelope = notification({})
    envelope["Message"] = message if isinstance(message, str) else json.dumps(message)
    with pytest.raises(MalformedFeedback, match=reason):
        ses(sns_sign(envelope, sns_key), certificates)


def _sns_answers(monkeypatch: pytest.MonkeyPatch, response: httpx.Response) -> list[tuple[str, float]]:
    """``response`` to every request of fetch_sns_certificate's client; the (URL, timeout) of each."""
    asked: list[tuple[str, float]] = []

    def client(timeout: float) -> httpx.Client:
        def answer(request: httpx.Request) -> httpx.Response:
            asked.append((str(request.url), timeout))
            return response

        return httpx.Client(transport=httpx.MockTransport(answer))

    monkeypatch.setattr(providers, "http_client", client)
    return asked


def test_fetch_sns_certificate_fetches_once(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _sns_answers(monkeypatch, httpx.Response(200, content=b"PEM"))
    providers.fetch_sns_certificate.cache_clear()
    try:
        assert [providers.fetch_sns_certificate(CERT_URL) for _ in range(3)] == [b"PEM"] * 3
    finally:
        providers.fetch_sns_certificate.cache_clear()
    assert asked == [(CERT_URL, 10.0)]


def test_fetch_sns_certificate_refuses_a_redirect(monkeypatch: pytest.MonkeyPatch) -> None:
    _sns_answers(monkeypatch, httpx.Response(302, headers={"Location": "https://evil.test/x.pem"}))
    providers.fetch_sns_certificate.cache_clear()
    try:
        with pytest.raises(httpx.HTTPStatusError):
            providers.fetch_sns_certificate(CERT_URL)
    finally:
        providers.fetch_sns_certificate.cache_clear()


# -- SendGrid


@pytest.fixture(scope="module")
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sendgrid(
    body: bytes,
    key: ec.EllipticCurvePrivateKey,
    *,
    at: datetime = NOW,
    signature: str | None = "",
    public_key: str | None = None,
) -> list[Feedback]:
    timestamp = str(int(at.timestamp()))
    if signature == "":
        signature = sendgrid_signature(key, timestamp, body)
    return from_sendgrid(
        body, signature=signature, timestamp=timestamp, public_key=public_key or sendgrid_public(key), now=NOW
    )


SENDGRID_EVENTS = (PROVIDERS / "sendgrid-events.json").read_bytes()


def test_sendgrid_events(sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    assert sendgrid(SENDGRID_EVENTS, sendgrid_key) == [
        Feedback(
            kind=FeedbackKind.HARD,
            source=FeedbackSource.SENDGRID,
            address="jane@example.com",
            status="5.1.1",
            smtp_code=550,
            diagnostic="550 5.1.1 The email account that you tried to reach does not exist.",
            message_id=JANE_ID,
            reference=REF_JANE,
            reporter="sendgrid",
        ),
        Feedback(
            kind=FeedbackKind.SOFT,  # blocked: the sender's reputation, not the address
            source=FeedbackSource.SENDGRID,
            address="richard@example.com",
            status="5.7.1",
            smtp_code=554,
            diagnostic="554 5.7.1 Service unavailable; client host blocked using Spamhaus",
            message_id="<4f1e8c2a-7b3d-4e5f-9a6b-1c2d3e4f5a6b.4@example.org>",  # brackets added
            reporter="sendgrid",
        ),
        Feedback(
            kind=FeedbackKind.COMPLAINT,
            source=FeedbackSource.SENDGRID,
            address="will@example.com",
            status=None,
            smtp_code=None,
            diagnostic="spam report",
            message_id=None,
            reference=REF_WILL,
            reporter="sendgrid",
        ),
    ]  # dropped, deferred, delivered and the event without an address give nothing


def test_sendgrid_blocked_is_soft_even_with_a_hard_status(sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    body = json.dumps([{"email": "a@example.com", "event": "bounce", "type": "blocked", "status": "5.1.1"}]).encode()
    [report] = sendgrid(body, sendgrid_key)
    assert (report.kind, report.status) == (FeedbackKind.SOFT, "5.1.1")


def test_sendgrid_catch_all_status_takes_the_reasons_precise_one(sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    event = {"email": "a@example.com", "event": "bounce", "status": "5.0.0", "reason": "550 5.1.1 user unknown"}
    [report] = sendgrid(json.dumps([event]).encode(), sendgrid_key)
    assert (report.kind, report.status, report.smtp_code) == (FeedbackKind.HARD, "5.1.1", 550)


def test_sendgrid_pem_public_key_is_taken(sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    assert len(sendgrid(SENDGRID_EVENTS, sendgrid_key, public_key=sendgrid_public(sendgrid_key, "pem"))) == 3


@pytest.mark.parametrize("signature", [None, "not base64!", base64.b64encode(b"\x30\x00").decode()])
def test_sendgrid_missing_or_invalid_signature_is_forged(
    signature: str | None, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(ForgedFeedback):
        sendgrid(SENDGRID_EVENTS, sendgrid_key, signature=signature)


def test_sendgrid_missing_timestamp_is_forged(sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    signature = sendgrid_signature(sendgrid_key, "", SENDGRID_EVENTS)
    with pytest.raises(ForgedFeedback):
        from_sendgrid(
            SENDGRID_EVENTS, signature=signature, timestamp=None, public_key=sendgrid_public(sendgrid_key), now=NOW
        )


def test_sendgrid_other_key_and_tampered_body_are_forged(sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    timestamp = str(int(NOW.timestamp()))
    other = ec.generate_private_key(ec.SECP256R1())
    cases = [
        (SENDGRID_EVENTS, sendgrid_signature(other, timestamp, SENDGRID_EVENTS), timestamp),
        (
            SENDGRID_EVENTS.replace(b"jane@", b"mike@"),
            sendgrid_signature(sendgrid_key, timestamp, SENDGRID_EVENTS),
            timestamp,
        ),
        (SENDGRID_EVENTS, sendgrid_signature(sendgrid_key, timestamp, SENDGRID_EVENTS), str(int(timestamp) + 1)),
    ]
    for body, signature, signed_at in cases:
        with pytest.raises(ForgedFeedback, match="does not check"):
            from_sendgrid(
                body, signature=signature, timestamp=signed_at, public_key=sendgrid_public(sendgrid_key), now=NOW
            )


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_sendgrid_stale_timestamp_is_forged(offset: timedelta, sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ForgedFeedback, match="minutes"):
        sendgrid(SENDGRID_EVENTS, sendgrid_key, at=NOW + offset)


def test_sendgrid_timestamp_that_is_no_time_is_forged(sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    signature = sendgrid_signature(sendgrid_key, "soon", SENDGRID_EVENTS)
    with pytest.raises(ForgedFeedback, match="Unix time"):
        from_sendgrid(
            SENDGRID_EVENTS, signature=signature, timestamp="soon", public_key=sendgrid_public(sendgrid_key), now=NOW
        )


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        (b"not json", "not JSON"),
        (b'{"event": "bounce"}', "array"),
        (b'["bounce"]', "object"),
        (b'[{"email": "a@example.com"}]', "event"),
        (b'[{"email": 5, "event": "bounce"}]', "email"),
        (b'[{"email": "a@example.com", "event": "bounce", "reason": ["x"]}]', "reason"),
    ],
)
def test_sendgrid_events_of_the_wrong_shape_are_malformed(
    events: bytes, reason: str, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(MalformedFeedback, match=reason):
        sendgrid(events, sendgrid_key)


@pytest.mark.parametrize("public_key", ["not a key", base64.b64encode(b"garbage").decode()])
def test_sendgrid_unusable_public_key_is_a_configuration_error(
    public_key: str, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(ConfigurationError, match="SENDGRID_WEBHOOK_PUBLIC_KEY"):
        sendgrid(SENDGRID_EVENTS, sendgrid_key, public_key=public_key)


# -- Mailgun

MAILGUN_KEY = secrets.token_hex(16)


def mailgun_body(event_data: Any, *, at: datetime = NOW, key: str = MAILGUN_KEY, **signature: Any) -> bytes:
    timestamp = str(int(at.timestamp()))
    token = secrets.token_hex(25)
    digest = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    signed = {"timestamp": timestamp, "token": token, "signature": digest, **signature}
    return json.dumps({"signature": signed, "event-data": event_data}).encode()


def mailgun(event_data: Any, **options: Any) -> list[Feedback]:
    return from_mailgun(mailgun_body(event_data, **options), signing_key=MAILGUN_KEY, now=NOW).reports


def test_mailgun_permanent_failure() -> None:
    assert mailgun(sample("mailgun-failed-permanent.json")) == [
        Feedback(
            kind=FeedbackKind.HARD,
            source=FeedbackSource.MAILGUN,
            address="Jane@Example.com",
            status="5.1.1",
            smtp_code=550,
            diagnostic="The email account that you tried to reach does not exist. Please try double-checking the "
            "recipient's email address for typos or unnecessary spaces.",
            message_id=JANE_ID,  # Mailgun's comes without brackets
            reference=REF_JANE,
            reporter="mailgun",
        )
    ]


def test_mailgun_permanent_without_status_is_hard() -> None:
    [report] = mailgun(sample("mailgun-failed-suppressed.json"))
    assert (report.kind, report.status, report.smtp_code) == (FeedbackKind.HARD, None, None)  # 605 is no SMTP code
    assert report.diagnostic == "Not delivering to previously bounced address"
    assert report.reference is None


def test_mailgun_temporary_failure_is_soft() -> None:
    [report] = mailgun(sample("mailgun-failed-temporary.json"))
    assert (report.kind, report.status, report.smtp_code) == (FeedbackKind.SOFT, "4.2.2", 452)
    assert report.message_id == "<4f1e8c2a-7b3d-4e5f-9a6b-1c2d3e4f5a6b.4@example.org>"
    assert report.diagnostic == "452 4.2.2 The email account that you tried to reach is over quota."


def test_mailgun_giving_up_after_retries_is_soft() -> None:
    event = {**sample("mailgun-failed-temporary.json"), "severity": "permanent", "reason": "old"}
    [report] = mailgun(event)
    assert report.kind is FeedbackKind.SOFT


def test_mailgun_complaint() -> None:
    [report] = mailgun(sample("mailgun-complained.json"))
    assert (report.kind, report.address, report.status, report.reference) == (
        FeedbackKind.COMPLAINT,
        "will@example.com",
        None,
        REF_WILL,
    )
    assert report.message_id == "<4f1e8c2a-7b3d-4e5f-9a6b-1c2d3e4f5a6b.6@example.org>"


@pytest.mark.parametrize(
    "event",
    [
        sample("mailgun-delivered.json"),
        {**sample("mailgun-failed-suppressed.json"), "reason": "suppress-unsubscribe"},
        {**sample("mailgun-complained.json"), "recipient": None},
        {"event": "opened", "recipient": "a@example.com"},
    ],
)
def test_mailgun_events_that_are_no_feedback(event: dict[str, Any]) -> None:
    assert mailgun(event) == []


@pytest.mark.parametrize(
    "body",
    [
        mailgun_body(sample("mailgun-complained.json"), key="another key"),
        mailgun_body(sample("mailgun-complained.json"), signature="é" * 64),  # non-ASCII: still no TypeError
        mailgun_body(sample("mailgun-complained.json"), token="another token"),
        mailgun_body(sample("mailgun-complained.json"), timestamp=None),
        json.dumps({"event-data": sample("mailgun-complained.json")}).encode(),
        json.dumps({"signature": "abc", "event-data": sample("mailgun-complained.json")}).encode(),
    ],
    ids=["other-key", "non-ascii-signature", "other-token", "no-timestamp", "no-signature", "signature-not-object"],
)
def test_mailgun_bad_signature_is_forged(body: bytes) -> None:
    with pytest.raises(ForgedFeedback):
        from_mailgun(body, signing_key=MAILGUN_KEY, now=NOW)


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_mailgun_stale_timestamp_is_forged(offset: timedelta) -> None:
    with pytest.raises(ForgedFeedback, match="minutes"):
        mailgun(sample("mailgun-complained.json"), at=NOW + offset)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (None, "event-data"),
        (["failed"], "event-data"),
        ({"recipient": "a@example.com"}, "event"),
        ({"event": "failed", "recipient": ["a@example.com"]}, "recipient"),
        ({**sample("mailgun-failed-permanent.json"), "delivery-status": "550"}, "delivery-status"),
        (_broken("mailgun-failed-permanent.json", ("delivery-status", "message"), 550), "message"),
        (_broken("mailgun-failed-permanent.json", ("message", "headers"), ["x"]), "headers"),
        (_broken("mailgun-failed-permanent.json", ("message", "headers", "message-id"), 1), "message-id"),
        ({**sample("mailgun-complained.json"), "user-variables": "ref"}, "user-variables"),
    ],
)
def test_mailgun_event_of_the_wrong_shape_is_malformed(event: Any, reason: str) -> None:
    with pytest.raises(MalformedFeedback, match=reason):
        mailgun(event)


@pytest.mark.parametrize("body", [b"not json", b"[]"])
def test_mailgun_body_that_is_no_webhook_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedFeedback):
        from_mailgun(body, signing_key=MAILGUN_KEY, now=NOW)


# -- Postmark


def postmark(record: Any) -> list[Feedback]:
    return from_postmark(json.dumps(record).encode())


def test_postmark_hard_bounce() -> None:
    assert postmark(sample("postmark-hard-bounce.json")) == [
        Feedback(
            kind=FeedbackKind.HARD,
            source=FeedbackSource.POSTMARK,
            address="jane@example.com",
            status="5.1.1",
            smtp_code=550,
            diagnostic="smtp;550 5.1.1 The email account that you tried to reach does not exist.",
            message_id=None,  # Postmark's MessageID is its own UUID
            reference=REF_JANE,
            reporter="postmark",
        )
    ]


def test_postmark_soft_bounce_without_details() -> None:
    [report] = postmark(sample("postmark-soft-bounce.json"))
    assert (report.kind, report.status, report.smtp_code) == (FeedbackKind.SOFT, None, None)
    assert report.diagnostic == "Unable to temporarily deliver this email."
    assert report.reference == REF_WILL


@pytest.mark.parametrize(
    ("bounce_type", "kind"),
    [
        ("BadEmailAddress", FeedbackKind.HARD),
        ("ManuallyDeactivated", FeedbackKind.HARD),
        ("Transient", FeedbackKind.SOFT),
        ("DnsError", FeedbackKind.SOFT),
        ("Blocked", FeedbackKind.SOFT),
    ],
)
def test_postmark_bounce_types(bounce_type: str, kind: FeedbackKind) -> None:
    [report] = postmark({**sample("postmark-hard-bounce.json"), "Type": bounce_type})
    assert report.kind is kind


def test_postmark_spam_complaint() -> None:
    [report] = postmark(sample("postmark-spam-complaint.json"))
    assert (report.kind, report.address, report.status, report.smtp_code, report.reference) == (
        FeedbackKind.COMPLAINT,
        "will@example.com",
        None,
        None,
        REF_WILL,
    )


def test_postmark_legacy_bounce_without_record_type_and_with_a_message_id() -> None:
    record = {**sample("postmark-hard-bounce.json"), "MessageID": "4f1e8c2a-7b3d-4e5f-9a6b-1c2d3e4f5a6b.3@example.org"}
    del record["RecordType"]
    [report] = postmark(record)
    assert (report.kind, report.message_id) == (FeedbackKind.HARD, JANE_ID)


@pytest.mark.parametrize(
    "record",
    [
        sample("postmark-auto-responder.json"),
        {**sample("postmark-hard-bounce.json"), "Type": "Unsubscribe"},
        {**sample("postmark-hard-bounce.json"), "Type": "OpenRelayTest"},
        {**sample("postmark-hard-bounce.json"), "Type": "ChallengeVerification"},
        {**sample("postmark-hard-bounce.json"), "Email": ""},
        {"RecordType": "Delivery", "Recipient": "a@example.com", "MessageID": "x"},
    ],
)
def test_postmark_records_that_are_no_feedback(record: dict[str, Any]) -> None:
    assert postmark(record) == []


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ([], "object"),
        ({**sample("postmark-hard-bounce.json"), "Metadata": "ref"}, "Metadata"),
        ({**sample("postmark-hard-bounce.json"), "Details": 550}, "Details"),
        ({**sample("postmark-hard-bounce.json"), "RecordType": 1}, "RecordType"),
        (_broken("postmark-hard-bounce.json", ("Type",), ...), "Type"),
    ],
)
def test_postmark_record_of_the_wrong_shape_is_malformed(record: Any, reason: str) -> None:
    with pytest.raises(MalformedFeedback, match=reason):
        postmark(record)


def test_postmark_body_that_is_not_json_is_malformed() -> None:
    with pytest.raises(MalformedFeedback, match="not JSON"):
        from_postmark(b"{")
