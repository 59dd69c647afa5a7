"""`bounce-mailbox`'s poll against a real Dovecot: reports in an IMAP mailbox end their recipient,
are flagged seen once recorded, and stay unseen when they could not be recorded."""

from __future__ import annotations

import imaplib
from pathlib import Path

import pytest

from email_service.message.mime import envelope_sender, message_id_for
from email_service.runtime.bounce_mailbox import MailboxAddress, poll_once
from email_service.services import Services
from email_service.services.bounces import Outcome
from tests.support.bounce_mail import dsn
from tests.support.imap_server import DovecotServer
from tests.support.inline import Recipient, counts, inline_services, run
from tests.support.smtp_sink import SMTPSink

SENDER = "Hawkins Lab <news@example.org>"


@pytest.fixture
def mailbox() -> DovecotServer:
    with DovecotServer() as server:
        yield server


def _unseen(server: DovecotServer) -> int:
    with imaplib.IMAP4(server.host, server.port, timeout=10) as imap:
        imap.login(server.user, server.password)
        imap.select("INBOX")
        return len(imap.search(None, "UNSEEN")[1][0].split())


def _report_about(services: Services, sink: SMTPSink, job_id: str, address: str) -> bytes:
    to = [m.sender for m in sink.handler.messages() if m.recipients == [address]][-1]
    return dsn(
        to=to,
        final_recipient=address,
        status="5.1.1",
        diagnostic=f"550 5.1.1 <{address}>: Recipient address rejected: User unknown",
        message_id=message_id_for(
            job_id, 0, envelope_sender(SENDER), services.settings.bounce_secret.get_secret_value()
        ),
    )


def test_a_report_in_the_mailbox_ends_its_recipient_and_is_flagged_seen(
    tmp_path: Path, sink: SMTPSink, mailbox: DovecotServer
):
    services = inline_services(
        tmp_path,
        mail_port=sink.port,
        mail_default_sender=SENDER,
        bounce_domain="bounces.example.org",
        bounce_secret="s" * 32,
    )
    job_id = run(services, [Recipient("will@example.com"), Recipient("dustin@example.com")])
    mailbox.deliver(_report_about(services, sink, job_id, "will@example.com"))
    mailbox.deliver(b"From: friend@example.net\r\nSubject: hi\r\n\r\nNot a bounce.\r\n")
    address = MailboxAddress.parse(mailbox.url)
    assert poll_once(services, address) == 2
    assert counts(services, job_id) == {"sent": 1, "bounced": 1}
    assert _unseen(mailbox) == 0
    assert poll_once(services, address) == 0, "read once"


def test_a_report_that_could_not_be_recorded_stays_unseen(tmp_path: Path, sink: SMTPSink, mailbox: DovecotServer):
    services = inline_services(tmp_path, mail_port=sink.port, mail_default_sender=SENDER)
    mailbox.deliver(b"From: MAILER-DAEMON@relay.test\r\nSubject: Undelivered Mail\r\n\r\n...\r\n")

    def database_down(*_: object) -> list[Outcome]:
        raise ConnectionError("the database did not answer")

    assert poll_once(services, MailboxAddress.parse(mailbox.url), record=database_down) == 0
    assert _unseen(mailbox) == 1, "read again at the next poll"


def test_the_mailbox_url_is_checked():
    assert MailboxAddress.parse("imaps://b%40example.org:p%2Fw@imap.example.org/Bounces") == MailboxAddress(
        True, "imap.example.org", 993, "b@example.org", "p/w", "Bounces"
    )
    for wrong in ("imap://user:pw@imap.example.org/INBOX", "https://user:pw@host/", "imaps://host/INBOX"):
        with pytest.raises(ValueError, match="BOUNCE_IMAP_URL"):
            MailboxAddress.parse(wrong)
