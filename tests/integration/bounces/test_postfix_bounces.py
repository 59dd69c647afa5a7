"""The whole path through a real Postfix: the service sends through it, Postfix cannot deliver one
recipient, generates the DSN itself and mails it to that message's envelope sender (VERP), whose
domain it routes to `email-service bounces`' receiver; the recipient ends bounced and suppressed.

Needs the Debian postfix package (`make deploy-tools`): without it these tests fail, never skip.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from email_service.runtime.bounce_receiver import start_bounce_receiver
from email_service.services import Services, intake
from email_service.storage.models import Bounce, Suppression
from tests.support.inline import Recipient, counts, inline_services, run
from tests.support.postfix import TRY_AGAIN, USER_UNKNOWN, PostfixRelay, RcptReplies
from tests.support.smtp_sink import SMTPSink, free_port

BOUNCE_DOMAIN = "bounces.example.org"
KNOWN, UNKNOWN, FULL = "will@example.com", "nobody@example.com", "later@example.com"
WAIT = 60.0  # a 5xx DSN comes within a second; a 4xx one after Postfix's 10 s queue lifetime


@pytest.fixture
def mailboxes() -> Iterator[SMTPSink]:
    """The recipients' server: has no UNKNOWN (550 5.1.1), and keeps deferring FULL (450 4.2.0)."""
    server = SMTPSink(RcptReplies(replies={UNKNOWN: USER_UNKNOWN, FULL: TRY_AGAIN})).start()
    yield server
    server.stop()


@pytest.fixture
def services_through_postfix(tmp_path: Path, mailboxes: SMTPSink) -> Iterator[tuple[Services, PostfixRelay]]:
    receiver_port = free_port()
    relay = PostfixRelay({"example.com": ("127.0.0.1", mailboxes.port), BOUNCE_DOMAIN: ("127.0.0.1", receiver_port)})
    relay.start()
    services = inline_services(
        tmp_path,
        mail_port=relay.port,
        mail_default_sender="Hawkins Lab <news@example.org>",
        bounce_domain=BOUNCE_DOMAIN,
        bounce_secret="bounce-secret-for-the-tests-0123",
    )
    receiver = start_bounce_receiver(services, "127.0.0.1", receiver_port)
    try:
        yield services, relay
    finally:
        receiver.stop()
        print(f"--- Postfix log\n{relay.log()}")
        relay.stop()


def _wait_until(services: Services, job_id: str, expected: dict[str, int], relay: PostfixRelay) -> None:
    deadline = time.monotonic() + WAIT
    while counts(services, job_id) != expected:
        if time.monotonic() > deadline:
            pytest.fail(f"counts {counts(services, job_id)} != {expected} after {WAIT}s; Postfix:\n{relay.log()}")
        time.sleep(0.1)


def test_a_recipient_postfix_cannot_deliver_ends_bounced_and_suppressed(services_through_postfix):
    services, relay = services_through_postfix
    job_id = run(services, [Recipient(KNOWN), Recipient(UNKNOWN)])
    assert counts(services, job_id) == {"sent": 2}, "Postfix took both: the verdict comes later"
    _wait_until(services, job_id, {"sent": 1, "bounced": 1}, relay)
    with services.sessions() as session:
        [bounce] = session.scalars(select(Bounce)).all()
        suppressed = {s.address: s.reason for s in session.scalars(select(Suppression))}
    assert (bounce.address, bounce.kind, bounce.source, bounce.status, bounce.smtp_code) == (
        UNKNOWN,
        "hard",
        "dsn",
        "5.1.1",
        550,
    )
    assert "User unknown" in bounce.diagnostic and bounce.reporter == "relay.test"
    assert suppressed == {UNKNOWN: "bounced"}
    again = intake.accept_job(services, intake.JobRequest(recipients=[UNKNOWN, KNOWN], subject="Again"))
    assert counts(services, again.id) == {"suppressed": 1, "pending": 1}, "a later job skips the bounced address"


def test_a_recipient_postfix_gives_up_on_is_a_soft_bounce(services_through_postfix):
    services, relay = services_through_postfix
    job_id = run(services, [Recipient(FULL)])
    deadline = time.monotonic() + WAIT
    while True:
        with services.sessions() as session:
            bounce = session.scalars(select(Bounce)).one_or_none()
        if bounce is not None:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"no soft bounce after {WAIT}s; Postfix:\n{relay.log()}")
        time.sleep(0.2)
    assert (bounce.kind, bounce.status[:2]) == ("soft", "4.")
    assert counts(services, job_id) == {"sent": 1}, "a soft bounce leaves the recipient sent"
