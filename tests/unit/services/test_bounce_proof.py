"""A bounce must prove it is about a message we sent: with BOUNCE_SECRET, a mailed report without our
envelope token is matched only by a Message-ID carrying its MAC (the job id and position are in every
copy of a job's message), and a Mailgun signature, which does not cover its event, is accepted once."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from email_service.app import create_api
from email_service.bounces.providers import from_mailgun
from email_service.errors import ForgedFeedback
from email_service.message.mime import envelope_sender, message_id_for, read_message_id
from email_service.message.verp import MESSAGE_ID_MAC_LENGTH, message_id_mac
from email_service.services import Services
from email_service.services.bounces import Outcome, record_events, record_mail
from email_service.storage import bounces as stored_bounces
from email_service.storage import webhook_signatures
from email_service.storage.models import Suppression, UsedWebhookSignature, utcnow
from tests.support.bounce_mail import dsn
from tests.support.inline import Recipient, counts, inline_services, run
from tests.support.smtp_sink import SMTPSink

SECRET = "bounce-secret-for-the-tests-0123"
MAILGUN_KEY = "key-0123456789abcdef0123456789abcdef"
SENDER = "Hawkins Lab <news@example.org>"
ADDRESSES = ("will@example.com", "dustin@example.com", "lucas@example.com")
BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


@pytest.fixture
def services(tmp_path: Path, sink: SMTPSink) -> Services:
    # No BOUNCE_DOMAIN: the envelope sender is the sender's address, so no token names the recipient.
    return inline_services(
        tmp_path,
        mail_port=sink.port,
        mail_default_sender=SENDER,
        bounce_secret=SECRET,
        mailgun_webhook_signing_key=MAILGUN_KEY,
        auth_disabled=True,
    )


def _sent(services: Services) -> str:
    job_id = run(services, [Recipient(address) for address in ADDRESSES])
    assert counts(services, job_id) == {"sent": len(ADDRESSES)}
    return job_id


def _message_id_sent_to(sink: SMTPSink, address: str) -> str:
    [sent] = [m for m in sink.handler.messages() if m.recipients == [address]]
    return str(message_from_bytes(sent.data)["Message-ID"])


def _report(address: str, message_id: str) -> bytes:
    return dsn(
        to="news@example.org",
        final_recipient=address,
        status="5.1.1",
        diagnostic=f"550 5.1.1 <{address}>: Recipient address rejected: User unknown",
        message_id=message_id,
    )


def _suppressed(services: Services) -> set[str]:
    with services.sessions() as session:
        return set(session.scalars(select(Suppression.address)))


def _unchanged(services: Services, job_id: str) -> None:
    assert counts(services, job_id) == {"sent": len(ADDRESSES)}
    assert _suppressed(services) == set()


def test_each_message_id_carries_the_mac_of_its_job_and_position(services: Services, sink: SMTPSink):
    job_id = _sent(services)
    domain = envelope_sender(SENDER).rpartition("@")[2]
    for position, address in enumerate(ADDRESSES):
        mac = message_id_mac(job_id, position, SECRET)
        assert len(mac) == MESSAGE_ID_MAC_LENGTH
        assert _message_id_sent_to(sink, address) == f"<{job_id}.{position}.{mac}@{domain}>"
        assert message_id_for(job_id, position, SENDER, SECRET) == _message_id_sent_to(sink, address), "fixed"


def test_forged_message_ids_change_nothing(services: Services, sink: SMTPSink):
    job_id = _sent(services)
    other_job = str(uuid.uuid4())
    genuine = _message_id_sent_to(sink, "dustin@example.com")
    mac = message_id_mac(job_id, 1, SECRET)
    forged = [
        f"<{job_id}.1@example.org>",  # what a Message-ID was before it carried a MAC
        f"<{job_id}.1.{'a' * MESSAGE_ID_MAC_LENGTH}@example.org>",  # a wrong MAC
        f"<{job_id}.1.{message_id_mac(job_id, 0, SECRET)}@example.org>",  # the MAC of another position
        f"<{job_id}.1.{message_id_mac(other_job, 1, SECRET)}@example.org>",  # of another job
        f"<{job_id}.1.{message_id_mac(job_id, 1, 'another-secret-0123456789')}@example.org>",  # another key
        genuine.replace(mac, mac[:-1]),  # the MAC cut short
        genuine.replace(mac, mac[:-1] + ("a" if mac[-1] != "a" else "b")),  # its last character changed
    ]
    for message_id in forged:
        assert record_mail(services, _report("dustin@example.com", message_id), ["news@example.org"]) == [
            Outcome.UNMATCHED
        ], message_id
    _unchanged(services, job_id)


def test_the_genuine_message_id_matches(services: Services, sink: SMTPSink):
    job_id = _sent(services)
    genuine = _message_id_sent_to(sink, "dustin@example.com")
    assert record_mail(services, _report("dustin@example.com", genuine.upper()), ["news@example.org"]) == [
        Outcome.RECORDED
    ], "case does not matter: relays may change it"
    assert counts(services, job_id) == {"sent": 2, "bounced": 1}
    assert _suppressed(services) == {"dustin@example.com"}


def test_made_up_message_ids_never_name_a_message(services: Services):
    job_id = _sent(services)

    @settings(max_examples=150, deadline=None)
    @given(
        position=st.integers(min_value=0, max_value=2),
        mac=st.one_of(
            st.none(),
            st.text(alphabet=BASE32, min_size=MESSAGE_ID_MAC_LENGTH, max_size=MESSAGE_ID_MAC_LENGTH),
            st.text(alphabet=BASE32 + "0189-_", min_size=1, max_size=40),
        ),
        domain=st.sampled_from(["example.org", "EXAMPLE.ORG", "attacker.example", "localhost"]),
        upper=st.booleans(),
    )
    def made_up(position: int, mac: str | None, domain: str, upper: bool) -> None:
        assume(mac != message_id_mac(job_id, position, SECRET))  # 80 bits: never, but not for hypothesis to say
        message_id = f"<{job_id}.{position}{'' if mac is None else '.' + mac}@{domain}>"
        message_id = message_id.upper() if upper else message_id
        assert read_message_id(message_id, SECRET) is None
        report = _report(ADDRESSES[position], message_id)
        assert record_mail(services, report, ["news@example.org"]) == [Outcome.UNMATCHED]

    made_up()
    _unchanged(services, job_id)


def test_without_bounce_secret_the_plain_message_id_still_matches(tmp_path: Path, sink: SMTPSink):
    services = inline_services(tmp_path, mail_port=sink.port, mail_default_sender=SENDER)
    job_id = run(services, [Recipient("will@example.com")])
    message_id = _message_id_sent_to(sink, "will@example.com")
    assert message_id == f"<{job_id}.0@example.org>"
    assert record_mail(services, _report("will@example.com", message_id), ["news@example.org"]) == [Outcome.RECORDED]


# -- Mailgun: a signature is accepted once


def _signed(event: dict, *, token: str, timestamp: int | None = None) -> dict:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = hmac.new(MAILGUN_KEY.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": stamp, "token": token, "signature": signature}, "event-data": event}


def _failed(address: str, message_id: str) -> dict:
    return {
        "event": "failed",
        "severity": "permanent",
        "reason": "bounce",
        "recipient": address,
        "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist."},
        "message": {"headers": {"message-id": message_id.strip("<>")}},
    }


@pytest.fixture
def client(services: Services) -> FlaskClient:
    return create_api(services).test_client()


def test_a_mailgun_signature_replayed_with_another_event_is_refused(
    services: Services, client: FlaskClient, sink: SMTPSink
):
    job_id = _sent(services)
    delivered = {"event": "delivered", "recipient": "will@example.com"}
    genuine = _signed(delivered, token="a" * 50)
    assert client.post("/bounces/mailgun", json=genuine).get_json() == {"recorded": 0, "duplicates": 0, "ignored": 0}
    for address in ("dustin@example.com", "will@example.com"):
        replay = {**genuine, "event-data": _failed(address, _message_id_sent_to(sink, address))}
        answer = client.post("/bounces/mailgun", json=replay)
        assert answer.status_code == 401 and answer.get_json()["error"] == "forged_feedback"
        assert "already used" in answer.get_json()["message"]
    again = client.post("/bounces/mailgun", json=genuine)
    assert again.status_code == 401, "the same POST twice is a replay too"
    _unchanged(services, job_id)
    fresh = _signed(_failed("dustin@example.com", _message_id_sent_to(sink, "dustin@example.com")), token="b" * 50)
    assert client.post("/bounces/mailgun", json=fresh).get_json()["recorded"] == 1, "a new signature is taken"


def test_a_signature_whose_event_could_not_be_recorded_stays_unused(
    services: Services, sink: SMTPSink, monkeypatch: pytest.MonkeyPatch
):
    job_id = _sent(services)
    body = json.dumps(
        _signed(_failed("will@example.com", _message_id_sent_to(sink, "will@example.com")), token="c" * 50)
    )
    events = from_mailgun(body.encode(), signing_key=MAILGUN_KEY, now=utcnow())

    def database_fails(*_: object) -> bool:
        raise ConnectionError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(stored_bounces, "add", database_fails)
        with pytest.raises(ConnectionError):
            record_events(services, events.reports, events.signature)
    assert record_events(services, events.reports, events.signature) == [Outcome.RECORDED], "the retry is taken"
    with pytest.raises(ForgedFeedback):
        record_events(services, events.reports, events.signature)
    assert counts(services, job_id) == {"sent": 2, "bounced": 1}


def test_used_signatures_are_forgotten_once_too_old_to_check(services: Services):
    now = utcnow()
    with services.sessions.begin() as session:
        assert webhook_signatures.claim(session, "k" * 64, now + timedelta(minutes=5), now)
        assert not webhook_signatures.claim(session, "k" * 64, now + timedelta(minutes=5), now)
    later = now + timedelta(minutes=6)
    with services.sessions.begin() as session:
        assert webhook_signatures.claim(session, "j" * 64, later + timedelta(minutes=5), later)
        assert session.scalar(select(func.count()).select_from(UsedWebhookSignature)) == 1, "the expired one went"
