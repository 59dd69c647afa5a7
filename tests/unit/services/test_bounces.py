"""Bounces and complaints recorded against the message they are about, on SQLite with a real SMTP
server: the ledger, the suppression list, the webhook outbox and the job's counts."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from email_service.message.mime import envelope_sender, message_id_for
from email_service.message.verp import Reference, read_token, token_in
from email_service.services import Services
from email_service.services.bounces import Outcome, record_mail
from email_service.storage import jobs
from email_service.storage.models import Bounce, Suppression, WebhookEvent
from tests.support.bounce_mail import abuse_report, dsn
from tests.support.inline import Recipient, counts, inline_services, run
from tests.support.smtp_sink import SMTPSink

SECRET = "bounce-secret-for-the-tests-0123"
DOMAIN = "bounces.example.org"
SENDER = "Hawkins Lab <news@example.org>"
UNKNOWN = "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table"


@pytest.fixture
def services(tmp_path: Path, sink: SMTPSink) -> Services:
    return inline_services(
        tmp_path,
        mail_port=sink.port,
        mail_default_sender=SENDER,
        bounce_domain=DOMAIN,
        bounce_secret=SECRET,
        webhook_secret="w" * 32,
    )


def _sent(services: Services, *addresses: str, **options: object) -> str:
    job_id = run(services, [Recipient(a) for a in addresses], **options)
    assert counts(services, job_id) == {"sent": len(addresses)}
    return job_id


def _envelope_of(sink: SMTPSink, address: str) -> str:
    """The envelope sender of the latest message to ``address``."""
    return [m.sender for m in sink.handler.messages() if m.recipients == [address]][-1]


def _bounce_for(sink: SMTPSink, address: str, job_id: str, position: int, **changes: str) -> tuple[bytes, str]:
    """The DSN Postfix would mail about the message to ``address``, and the address it is mailed to."""
    to = _envelope_of(sink, address)
    fields = {
        "to": to,
        "final_recipient": address,
        "status": "5.1.1",
        "diagnostic": UNKNOWN.format(address),
        "message_id": message_id_for(job_id, position, envelope_sender(SENDER), SECRET),
        **changes,
    }
    return dsn(**fields), to


def _suppressed(services: Services) -> dict[str, str]:
    with services.sessions() as session:
        return {s.address: s.reason for s in session.scalars(select(Suppression))}


def _events(services: Services) -> list[tuple[str, dict]]:
    with services.sessions() as session:
        return [(e.type, e.payload) for e in session.scalars(select(WebhookEvent).order_by(WebhookEvent.id))]


def _ignored(reason: str) -> float:
    return REGISTRY.get_sample_value("email_service_feedback_unmatched_total", {"reason": reason}) or 0.0


def test_every_message_has_its_own_signed_envelope_sender(services: Services, sink: SMTPSink):
    job_id = _sent(services, "will@example.com", "dustin@example.com")
    for position, address in enumerate(["will@example.com", "dustin@example.com"]):
        token = token_in(_envelope_of(sink, address), "bounces", DOMAIN)
        assert token is not None
        assert read_token(token, SECRET) == Reference(job_id, position)


def test_a_hard_bounce_ends_the_recipient_suppresses_it_and_fires_its_event(services: Services, sink: SMTPSink):
    job_id = _sent(services, "will@example.com", "dustin@example.com", callback_url="https://hooks.example.com/x")
    raw, to = _bounce_for(sink, "dustin@example.com", job_id, 1)
    assert record_mail(services, raw, [to]) == [Outcome.RECORDED]
    assert counts(services, job_id) == {"sent": 1, "bounced": 1}, "moved from sent to bounced: counted once"
    with services.sessions() as session:
        job = jobs.get_job(session, job_id)
        assert job.status == "completed", "a finished job stays finished"
        dustin = jobs.list_recipients(session, job_id, status="bounced", after=None, limit=10)[0]
        assert (dustin.address, dustin.last_error_code) == ("dustin@example.com", 550)
        assert "User unknown in virtual mailbox table" in (dustin.last_error or "")
    assert _suppressed(services) == {"dustin@example.com": "bounced"}
    bounced = [payload for kind, payload in _events(services) if kind == "recipient.bounced"]
    assert len(bounced) == 1
    assert bounced[0] | {"received_at": None} == {
        "job_id": job_id,
        "position": 1,
        "email": "dustin@example.com",
        "type": "hard",
        "status": "5.1.1",
        "smtp_code": 550,
        "diagnostic": UNKNOWN.format("dustin@example.com"),
        "source": "dsn",
        "received_at": None,
    }


def test_the_same_report_twice_is_recorded_once(services: Services, sink: SMTPSink):
    job_id = _sent(services, "will@example.com", callback_url="https://hooks.example.com/x")
    raw, to = _bounce_for(sink, "will@example.com", job_id, 0)
    assert record_mail(services, raw, [to]) == [Outcome.RECORDED]
    assert record_mail(services, raw, [to]) == [Outcome.DUPLICATE]
    with services.sessions() as session:
        assert len(list(session.scalars(select(Bounce)))) == 1
    assert [kind for kind, _ in _events(services)].count("recipient.bounced") == 1


def test_a_forged_token_changes_nothing_and_is_counted(services: Services, sink: SMTPSink):
    job_id = _sent(services, "will@example.com")
    raw, to = _bounce_for(sink, "will@example.com", job_id, 0)
    token = token_in(to, "bounces", DOMAIN)
    assert token is not None
    forged = to.replace(token, token[:-2] + ("aa" if not token.endswith("aa") else "bb"))
    before = _ignored("forged_token")
    assert record_mail(services, raw.replace(token.encode(), forged.partition("+")[2][:48].encode()), [forged]) == [
        Outcome.FORGED
    ]
    assert _ignored("forged_token") == before + 1
    assert counts(services, job_id) == {"sent": 1} and _suppressed(services) == {}


def test_without_a_token_the_message_id_matches_only_with_the_same_recipient(tmp_path: Path, sink: SMTPSink):
    services = inline_services(tmp_path, mail_port=sink.port, mail_default_sender=SENDER)  # no BOUNCE_DOMAIN
    job_id = _sent(services, "will@example.com", "dustin@example.com")
    sender = envelope_sender(SENDER)
    assert _envelope_of(sink, "will@example.com") == sender, "MAIL FROM is the sender's address"
    message_id = message_id_for(job_id, 0, sender, "")
    other = dsn(
        to=sender,
        final_recipient="dustin@example.com",
        status="5.1.1",
        diagnostic=UNKNOWN.format("dustin@example.com"),
        message_id=message_id,
    )
    assert record_mail(services, other, [sender]) == [Outcome.UNMATCHED], "about someone else"
    assert counts(services, job_id) == {"sent": 2}
    right = dsn(
        to=sender,
        final_recipient="Will@Example.com",
        status="5.1.1",
        diagnostic=UNKNOWN.format("will@example.com"),
        message_id=message_id,
    )
    assert record_mail(services, right, [sender]) == [Outcome.RECORDED]
    assert counts(services, job_id) == {"sent": 1, "bounced": 1}


def test_a_complaint_ends_the_recipient_as_complained(services: Services, sink: SMTPSink):
    job_id = _sent(services, "will@example.com", callback_url="https://hooks.example.com/x")
    report = abuse_report(
        to="fbl@example.org",
        original_recipient="will@example.com",
        message_id=message_id_for(job_id, 0, envelope_sender(SENDER), SECRET),
    )
    assert record_mail(services, report, ["fbl@example.org"]) == [Outcome.RECORDED]
    assert counts(services, job_id) == {"complained": 1}
    assert _suppressed(services) == {"will@example.com": "complained"}
    assert [kind for kind, _ in _events(services)][-1] == "recipient.complained"


def test_soft_bounces_are_recorded_and_suppress_only_after_the_limit(services: Services, sink: SMTPSink):
    for attempt in range(3):
        job_id = _sent(services, "hopper@example.com")
        raw, to = _bounce_for(
            sink, "hopper@example.com", job_id, 0, status="4.2.2", diagnostic="452 4.2.2 Mailbox full"
        )
        assert record_mail(services, raw, [to]) == [Outcome.RECORDED]
        assert counts(services, job_id) == {"sent": 1}, "a soft bounce leaves the recipient sent"
        expected = {"hopper@example.com": "soft_bounced"} if attempt == 2 else {}
        assert _suppressed(services) == expected


def test_mail_that_reports_nothing_or_is_too_large_changes_nothing(services: Services, sink: SMTPSink):
    job_id = _sent(services, "will@example.com")
    raw, to = _bounce_for(sink, "will@example.com", job_id, 0, action="delayed", status="4.4.1")
    assert record_mail(services, raw, [to]) == [Outcome.NOT_A_REPORT], "a delay warning"
    assert record_mail(services, b"Subject: hello\r\n\r\nJust mail.\r\n", [to]) == [Outcome.NOT_A_REPORT]
    before = _ignored("too_large")
    huge, _ = _bounce_for(sink, "will@example.com", job_id, 0)
    huge += b"x" * services.settings.bounce_max_bytes
    assert record_mail(services, huge, [to]) == [Outcome.NOT_A_REPORT]
    assert _ignored("too_large") == before + 1
    assert counts(services, job_id) == {"sent": 1} and _suppressed(services) == {}
