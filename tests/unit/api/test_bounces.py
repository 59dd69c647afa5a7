"""/bounces/<provider>: a provider's authenticated event ends its recipient, through the Flask app,
on SQLite with a real SMTP server; a forged or unauthenticated one changes nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from email import message_from_bytes
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask.testing import FlaskClient

from email_service.app import create_api
from email_service.message.verp import POSTMARK_REFERENCE_HEADER
from email_service.services import Services
from email_service.storage.models import utcnow
from tests.support import DATA
from tests.support.inline import Recipient, counts, inline_services, run
from tests.support.provider_signing import (
    FakeCertificates,
    sendgrid_public,
    sendgrid_signature,
    sns_certificate,
    sns_sign,
)
from tests.support.smtp_sink import SMTPSink

SECRET = "bounce-secret-for-the-tests-0123"
MAILGUN_KEY = "key-0123456789abcdef0123456789abcdef"
POSTMARK = ("postmark", "a-long-webhook-password")
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
SNS_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def services(tmp_path: Path, sink: SMTPSink) -> Services:
    return inline_services(
        tmp_path,
        mail_port=sink.port,
        mail_default_sender="news@example.org",
        auth_disabled=True,
        bounce_secret=SECRET,
        mailgun_webhook_signing_key=MAILGUN_KEY,
        postmark_webhook_user=POSTMARK[0],
        postmark_webhook_password=POSTMARK[1],
        ses_topic_arns=TOPIC,
        sendgrid_webhook_public_key=sendgrid_public(SENDGRID_KEY),
    )


@pytest.fixture
def certificates() -> FakeCertificates:
    return FakeCertificates(sns_certificate(SNS_KEY, now=utcnow()))


@pytest.fixture
def confirmed() -> list[str]:
    return []


@pytest.fixture
def client(services: Services, certificates: FakeCertificates, confirmed: list[str]) -> FlaskClient:
    app = create_api(services)
    app.extensions["sns_certificate"] = certificates  # Amazon's certificate, and the confirmation GET
    app.extensions["sns_confirm"] = confirmed.append
    return app.test_client()


def _sent_message(sink: SMTPSink, address: str):
    return message_from_bytes([m.data for m in sink.handler.messages() if m.recipients == [address]][-1])


def _recipient(client: FlaskClient, job_id: str, position: int) -> dict:
    page = client.get(f"/api/email/{job_id}/recipients").get_json()
    return next(r for r in page["items"] if r["position"] == position)


def _postmark_bounce(reference: str, kind: str = "HardBounce") -> dict:
    return {
        "RecordType": "Bounce",
        "ID": 4323372036854775807,
        "Type": kind,
        "TypeCode": 1,
        "Name": "Hard bounce",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": "will@example.com",
        "From": "news@example.org",
        "BouncedAt": "2026-12-05T16:33:54.9070259Z",
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Demogorgon",
        "Metadata": {"email_service_ref": reference},
    }


def test_a_postmark_hard_bounce_ends_the_recipient_named_by_its_metadata(
    services: Services, client: FlaskClient, sink: SMTPSink
):
    job_id = run(services, [Recipient("will@example.com"), Recipient("dustin@example.com")])
    reference = _sent_message(sink, "will@example.com")[POSTMARK_REFERENCE_HEADER]
    assert reference and reference != _sent_message(sink, "dustin@example.com")[POSTMARK_REFERENCE_HEADER]

    answer = client.post("/bounces/postmark", json=_postmark_bounce(reference), auth=POSTMARK)
    assert answer.status_code == 200 and answer.get_json() == {"recorded": 1, "duplicates": 0, "ignored": 0}
    again = client.post("/bounces/postmark", json=_postmark_bounce(reference), auth=POSTMARK)
    assert again.get_json() == {"recorded": 0, "duplicates": 1, "ignored": 0}

    job = client.get(f"/api/email/{job_id}").get_json()
    assert {k: v for k, v in job["counts"].items() if v} == {"sent": 1, "bounced": 1}
    will = _recipient(client, job_id, 0)
    assert will["status"] == "bounced"
    assert will["bounce"]["type"] == "hard" and will["bounce"]["source"] == "postmark"
    assert will["bounce"]["status"] == "5.1.1" and "does not exist" in will["bounce"]["diagnostic"]
    assert _recipient(client, job_id, 1)["bounce"] is None


def test_postmark_events_need_the_webhook_credentials(services: Services, client: FlaskClient, sink: SMTPSink):
    job_id = run(services, [Recipient("will@example.com")])
    reference = _sent_message(sink, "will@example.com")[POSTMARK_REFERENCE_HEADER]
    for auth in (None, (POSTMARK[0], "wrong"), ("someone", POSTMARK[1])):
        answer = client.post("/bounces/postmark", json=_postmark_bounce(reference), auth=auth)
        assert answer.status_code == 401 and answer.get_json()["error"] == "forged_feedback"
    forged = client.post("/bounces/postmark", json=_postmark_bounce("a" * 48), auth=POSTMARK)
    assert forged.get_json() == {"recorded": 0, "duplicates": 0, "ignored": 1}
    assert counts(services, job_id) == {"sent": 1}


def _mailgun(event: dict, *, key: str = MAILGUN_KEY, timestamp: int | None = None) -> dict:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    token = hashlib.sha256(json.dumps(event).encode()).hexdigest()[:50]
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": stamp, "token": token, "signature": signature}, "event-data": event}


def _mailgun_failure(address: str, message_id: str) -> dict:
    return {
        "event": "failed",
        "severity": "permanent",
        "reason": "bounce",
        "recipient": address,
        "timestamp": time.time(),
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "log-level": "error",
        "delivery-status": {
            "code": 550,
            "message": "5.1.1 The email account that you tried to reach does not exist.",
            "description": "",
            "attempt-no": 1,
        },
        "message": {"headers": {"message-id": message_id.strip("<>"), "to": address, "subject": "Demogorgon"}},
        "user-variables": {},
    }


def test_a_mailgun_failure_is_matched_by_its_message_id(services: Services, client: FlaskClient, sink: SMTPSink):
    job_id = run(services, [Recipient("will@example.com"), Recipient("dustin@example.com")])
    message_id = _sent_message(sink, "dustin@example.com")["Message-ID"]

    answer = client.post("/bounces/mailgun", json=_mailgun(_mailgun_failure("dustin@example.com", message_id)))
    assert answer.status_code == 200 and answer.get_json()["recorded"] == 1
    dustin = _recipient(client, job_id, 1)
    assert dustin["status"] == "bounced" and dustin["bounce"]["smtp_code"] == 550
    assert dustin["bounce"]["status"] == "5.1.1" and dustin["bounce"]["source"] == "mailgun"


def test_forged_or_stale_mailgun_events_change_nothing(services: Services, client: FlaskClient, sink: SMTPSink):
    job_id = run(services, [Recipient("will@example.com")])
    event = _mailgun_failure("will@example.com", _sent_message(sink, "will@example.com")["Message-ID"])
    for body in (_mailgun(event, key="key-of-somebody-else"), _mailgun(event, timestamp=int(time.time()) - 3600)):
        answer = client.post("/bounces/mailgun", json=body)
        assert answer.status_code == 401 and answer.get_json()["error"] == "forged_feedback"
    malformed = client.post("/bounces/mailgun", data=b"{not json", content_type="application/json")
    assert malformed.status_code in (400, 422)
    assert counts(services, job_id) == {"sent": 1}


def _sns(kind: str, **fields: object) -> dict:
    envelope = json.loads((DATA / "providers" / f"sns-{kind}.json").read_text())
    envelope.update(fields, Timestamp=utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    return sns_sign(envelope, SNS_KEY)


def _ses_bounce(address: str, message_id: str) -> str:
    notification = json.loads((DATA / "providers" / "ses-bounce-permanent.json").read_text())
    notification["bounce"]["bouncedRecipients"] = notification["bounce"]["bouncedRecipients"][:1]
    notification["bounce"]["bouncedRecipients"][0]["emailAddress"] = address
    notification["mail"]["headers"] = []
    notification["mail"]["commonHeaders"]["messageId"] = message_id
    return json.dumps(notification)


def test_an_ses_bounce_signed_by_sns_ends_its_recipient(
    services: Services, client: FlaskClient, sink: SMTPSink, certificates: FakeCertificates
):
    job_id = run(services, [Recipient("will@example.com"), Recipient("dustin@example.com")])
    message_id = _sent_message(sink, "will@example.com")["Message-ID"]
    answer = client.post("/bounces/ses", json=_sns("notification", Message=_ses_bounce("will@example.com", message_id)))
    assert answer.status_code == 200 and answer.get_json()["recorded"] == 1
    assert certificates.asked and all(
        url.startswith("https://sns.us-east-1.amazonaws.com/") for url in certificates.asked
    )
    will = _recipient(client, job_id, 0)
    assert will["status"] == "bounced" and will["bounce"]["source"] == "ses" and will["bounce"]["status"] == "5.1.1"


def test_ses_requests_that_are_forged_or_from_another_topic_change_nothing(
    services: Services, client: FlaskClient, sink: SMTPSink, confirmed: list[str]
):
    job_id = run(services, [Recipient("will@example.com")])
    message = _ses_bounce("will@example.com", _sent_message(sink, "will@example.com")["Message-ID"])
    tampered = {**_sns("notification", Message=message), "Message": message.replace("5.1.1", "5.1.2")}
    other_topic = _sns("notification", Message=message, TopicArn="arn:aws:sns:us-east-1:999999999999:other")
    for body in (tampered, other_topic):
        answer = client.post("/bounces/ses", json=body)
        assert answer.status_code == 401 and answer.get_json()["error"] == "forged_feedback"
    assert counts(services, job_id) == {"sent": 1} and confirmed == []


def test_an_sns_subscription_request_is_confirmed(client: FlaskClient, confirmed: list[str]):
    request = _sns("subscription-confirmation")
    answer = client.post("/bounces/ses", json=request)
    assert answer.status_code == 200 and confirmed == [request["SubscribeURL"]]


def _sendgrid_post(client: FlaskClient, events: list[dict], key: ec.EllipticCurvePrivateKey = SENDGRID_KEY):
    body = json.dumps(events).encode()
    timestamp = str(int(time.time()))
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": sendgrid_signature(key, timestamp, body),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }
    return client.post("/bounces/sendgrid", data=body, content_type="application/json", headers=headers)


def test_a_signed_sendgrid_spam_report_ends_the_recipient_as_complained(
    services: Services, client: FlaskClient, sink: SMTPSink
):
    job_id = run(services, [Recipient("will@example.com")])
    event = {
        "email": "will@example.com",
        "timestamp": int(time.time()),
        "event": "spamreport",
        "smtp-id": _sent_message(sink, "will@example.com")["Message-ID"],
        "sg_event_id": "9g4ZI7SA-xmRDv57GoPIPw==",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.3",
    }
    forged = _sendgrid_post(client, [event], key=ec.generate_private_key(ec.SECP256R1()))
    assert forged.status_code == 401 and counts(services, job_id) == {"sent": 1}
    answer = _sendgrid_post(client, [event])
    assert answer.status_code == 200 and answer.get_json()["recorded"] == 1
    assert counts(services, job_id) == {"complained": 1}
    assert _recipient(client, job_id, 0)["bounce"]["type"] == "complaint"


def test_an_endpoint_whose_setting_is_not_given_is_off(tmp_path: Path, sink: SMTPSink):
    client = create_api(inline_services(tmp_path, mail_port=sink.port, auth_disabled=True)).test_client()
    for provider in ("ses", "sendgrid", "mailgun", "postmark"):
        answer = client.post(f"/bounces/{provider}", json={})
        assert answer.status_code == 404, provider
        assert answer.get_json()["error"] == "not_found"
