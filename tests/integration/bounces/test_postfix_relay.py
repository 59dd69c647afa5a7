"""A real Postfix as the service's relay generates the DSNs (RFC 3464) for recipients it cannot deliver and
routes them to the envelope sender's domain, where our bounce receiver (an aiosmtpd server here) gets them.

Needs the Debian postfix package (`make deploy-tools`): without it these tests fail, they never skip.
"""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage, Message
from email.utils import make_msgid
from pathlib import Path

import pytest

from tests.support.postfix import TRY_AGAIN, USER_UNKNOWN, PostfixRelay, RcptReplies, instance_pids
from tests.support.smtp_sink import Received, SMTPSink

BOUNCE_DOMAIN = "bounces.example.org"
SENDER = f"bounces+abc123@{BOUNCE_DOMAIN}"  # VERP: the token names the message
GOOD = "good@example.com"
UNKNOWN = "unknown@example.com"
LATER = "later@example.com"
DSN_WAIT = 60.0  # seconds; a 5xx DSN arrives in well under one, an expired 4xx one just after queue_lifetime


@pytest.fixture
def mailboxes() -> Iterator[SMTPSink]:
    """The recipients' server: knows no UNKNOWN (550 5.1.1) and keeps deferring LATER (450 4.2.0)."""
    server = SMTPSink(RcptReplies(replies={UNKNOWN: USER_UNKNOWN, LATER: TRY_AGAIN})).start()
    yield server
    server.stop()


@pytest.fixture
def bounce_receiver() -> Iterator[SMTPSink]:
    server = SMTPSink().start()
    yield server
    server.stop()


@pytest.fixture
def start_relay(mailboxes: SMTPSink, bounce_receiver: SMTPSink) -> Iterator[Callable[..., PostfixRelay]]:
    """Starts Postfix instances routed to both servers; stops them after the test, failed or not, and prints
    their logs (pytest shows them for a failed test)."""
    relays: list[PostfixRelay] = []

    def start(**options: object) -> PostfixRelay:
        routes = {"example.com": ("127.0.0.1", mailboxes.port), BOUNCE_DOMAIN: ("127.0.0.1", bounce_receiver.port)}
        relay = PostfixRelay(routes, **options)  # type: ignore[arg-type]
        relays.append(relay)
        return relay.start()

    yield start
    for relay in relays:
        print(f"--- Postfix log of {relay.host}:{relay.port}\n{relay.log()}")
        relay.stop()


def _send(relay: PostfixRelay, recipients: list[str], *, ret: str | None = None) -> str:
    message = EmailMessage()
    message["From"] = f"Newsletter <news@{BOUNCE_DOMAIN}>"
    message["To"] = ", ".join(recipients)
    message["Subject"] = "Our news"
    message["Message-ID"] = message_id = make_msgid(domain="sender.example.net")
    message.set_content("Hello\n")
    with smtplib.SMTP(relay.host, relay.port, timeout=10) as client:
        refused = client.send_message(
            message, SENDER, recipients, mail_options=[f"RET={ret}"] if ret else [], rcpt_options=["NOTIFY=FAILURE"]
        )
    assert refused == {}  # Postfix takes every recipient; the verdict comes later, as a DSN
    return message_id


def _wait_for(server: SMTPSink, relay: PostfixRelay, timeout: float = DSN_WAIT) -> list[Received]:
    deadline = time.monotonic() + timeout
    while not (received := server.handler.messages()):
        if time.monotonic() > deadline:
            pytest.fail(f"nothing arrived within {timeout}s; Postfix's log:\n{relay.log()}")
        time.sleep(0.05)
    return received


def _unfold(value: object) -> str:
    return " ".join(str(value).split())


def _delivery_status(dsn: EmailMessage) -> tuple[Message, list[Message]]:
    """The per-message block and the per-recipient blocks of a DSN, after checking its MIME shape."""
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    parts = list(dsn.iter_parts())
    assert [part.get_content_type() for part in parts][:2] == ["text/plain", "message/delivery-status"]
    blocks = [block for block in parts[1].get_payload() if isinstance(block, Message)]
    assert len(blocks) >= 2
    return blocks[0], blocks[1:]


def _returned_message_id(dsn: EmailMessage) -> str | None:
    returned = list(dsn.iter_parts())[2]
    if returned.get_content_type() == "text/rfc822-headers":
        found = re.search(r"^Message-ID:\s*(\S+)", returned.get_content(), re.IGNORECASE | re.MULTILINE)
        return found.group(1) if found else None
    assert returned.get_content_type() == "message/rfc822"
    original = returned.get_payload(0)
    assert isinstance(original, Message)
    return str(original["Message-ID"])


def test_an_unknown_recipient_comes_back_as_a_dsn_from_postfix(
    start_relay: Callable[..., PostfixRelay], mailboxes: SMTPSink, bounce_receiver: SMTPSink
) -> None:
    relay = start_relay()
    sent = time.monotonic()
    message_id = _send(relay, [GOOD, UNKNOWN], ret="HDRS")

    delivered = _wait_for(mailboxes, relay)
    assert [(item.sender, item.recipients, item.message["Message-ID"]) for item in delivered] == [
        (SENDER, [GOOD], message_id)
    ]

    [bounce] = _wait_for(bounce_receiver, relay)
    print(f"DSN after {time.monotonic() - sent:.2f}s")
    assert bounce.sender == "<>"  # aiosmtpd's spelling of the null sender
    assert bounce.recipients == [SENDER]
    dsn = bounce.message
    assert dsn["To"] == SENDER
    per_message, [per_recipient] = _delivery_status(dsn)
    assert per_message["Reporting-MTA"] == "dns; relay.test"
    assert _unfold(per_recipient["Final-Recipient"]) == f"rfc822; {UNKNOWN}"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert _unfold(per_recipient["Diagnostic-Code"]) == f"smtp; {USER_UNKNOWN.format(address=UNKNOWN)}"
    assert list(dsn.iter_parts())[2].get_content_type() == "text/rfc822-headers"  # RET=HDRS
    assert _returned_message_id(dsn) == message_id


def test_a_recipient_deferred_past_the_queue_lifetime_comes_back_as_a_failed_dsn(
    start_relay: Callable[..., PostfixRelay], mailboxes: SMTPSink, bounce_receiver: SMTPSink
) -> None:
    relay = start_relay(queue_lifetime="3s")
    sent = time.monotonic()
    message_id = _send(relay, [LATER])  # no RET: Postfix returns the whole message

    [bounce] = _wait_for(bounce_receiver, relay, timeout=30)
    waited = time.monotonic() - sent
    print(f"DSN after {waited:.2f}s")
    # Retried until the queue lifetime was over, not bounced at the first 4xx. Postfix keeps a message's
    # arrival in whole seconds, so it may call 3 s of age what was just over 2 s of ours.
    assert waited > 2
    log = relay.log()
    assert log.count("status=deferred") >= 2
    assert log.index("status=expired, returned to sender") > log.rindex("status=deferred")
    assert bounce.sender == "<>"
    assert bounce.recipients == [SENDER]
    _, [per_recipient] = _delivery_status(bounce.message)
    assert _unfold(per_recipient["Final-Recipient"]) == f"rfc822; {LATER}"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "4.2.0"
    assert _unfold(per_recipient["Diagnostic-Code"]) == f"smtp; {TRY_AGAIN.format(address=LATER)}"
    assert _returned_message_id(bounce.message) == message_id
    assert mailboxes.handler.messages() == []


def test_instances_run_side_by_side_and_stop_leaves_nothing() -> None:
    first = PostfixRelay().start()
    try:
        with PostfixRelay() as second:
            directory, config = second.directory, second.config_directory
            assert directory is not None and directory != first.directory
            assert second.port != first.port
            assert set(second.pids()) and not set(second.pids()) & set(first.pids())
        assert instance_pids(config) == []
        assert not Path(directory).exists()
        assert first.running and first.pids()
        with smtplib.SMTP(first.host, first.port, timeout=10) as client:  # the other one still serves
            assert client.noop()[0] == 250
    finally:
        first_config, first_directory = first.config_directory, first.directory
        first.stop()
    assert instance_pids(first_config) == []
    assert first_directory is not None and not first_directory.exists()
