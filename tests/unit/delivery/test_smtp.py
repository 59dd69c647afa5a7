"""The SMTP connection against a real aiosmtpd server: reuse, reconnects and classified failures."""

from __future__ import annotations

import smtplib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from email_service.config import Settings
from email_service.delivery.smtp import SMTPTransport
from email_service.errors import (
    PermanentDeliveryError,
    RecipientRefused,
    RelayUnavailable,
    TemporaryDeliveryError,
)
from email_service.message.mime import Envelope
from tests.support.fake_relay import Behaviour, FakeRelay
from tests.support.smtp_sink import SMTPSink, free_port


def _envelope(recipient: str = "r@example.com") -> Envelope:
    return Envelope(sender="s@example.org", recipient=recipient, data=b"Subject: t\r\n\r\nbody\r\n")


def _connection(port: int, **settings):
    return SMTPTransport(Settings(mail_server="127.0.0.1", mail_port=port, **settings)).connect()


def test_one_connection_is_reused_for_many_messages(sink: SMTPSink):
    connection = _connection(sink.port)
    for i in range(10):
        connection.send(_envelope(f"r{i}@example.com"))
    connection.close()
    assert [m.recipients for m in sink.handler.messages()] == [[f"r{i}@example.com"] for i in range(10)]
    assert sink.handler.connections == 1


def test_mail_max_emails_reconnects(sink: SMTPSink):
    connection = _connection(sink.port, mail_max_emails=3)
    for _ in range(7):
        connection.send(_envelope())
    connection.close()
    assert len(sink.handler.messages()) == 7
    assert sink.handler.connections == 3


def test_a_reused_connection_closed_by_the_relay_is_reopened_without_losing_the_message():
    sink = SMTPSink(timeout=0.3).start()  # the relay drops connections idle for 0.3 s
    try:
        connection = _connection(sink.port)
        connection.send(_envelope("first@example.com"))
        time.sleep(0.8)
        connection.send(_envelope("second@example.com"))
        connection.close()
        assert [m.recipients[0] for m in sink.handler.messages()] == ["first@example.com", "second@example.com"]
        assert sink.handler.connections == 2
    finally:
        sink.stop()


def test_a_refused_recipient_is_permanent_and_the_connection_goes_on(sink: SMTPSink):
    sink.handler.reject_rcpt.add("gone@example.com")
    connection = _connection(sink.port)
    with pytest.raises(PermanentDeliveryError) as refused:
        connection.send(_envelope("gone@example.com"))
    assert refused.value.code == 550 and "No such user" in refused.value.text
    connection.send(_envelope("here@example.com"))
    connection.close()
    assert [m.recipients for m in sink.handler.messages()] == [["here@example.com"]]
    assert sink.handler.connections == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [("451 4.3.0 Try later", TemporaryDeliveryError), ("554 5.7.1 Rejected", PermanentDeliveryError)],
)
def test_a_reply_after_data_is_classified(sink: SMTPSink, reply: str, error: type):
    sink.handler.data_reply = reply
    connection = _connection(sink.port)
    with pytest.raises(error) as failure:
        connection.send(_envelope())
    assert failure.value.code == int(reply[:3])
    connection.close()


def test_a_refused_connection_is_temporary():
    with pytest.raises(TemporaryDeliveryError) as failure:
        _connection(free_port()).send(_envelope())
    assert "ConnectionRefused" in failure.value.text


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_a_relay_that_never_answers_times_out(silent_server: int):
    started = time.monotonic()
    with pytest.raises(TemporaryDeliveryError) as failure:
        _connection(silent_server, mail_timeout=0.5).send(_envelope())
    assert "timed out" in failure.value.text
    assert time.monotonic() - started < 5


def test_starttls_required_but_not_offered_sends_nothing(sink: SMTPSink):
    with pytest.raises(TemporaryDeliveryError, match="STARTTLS"):
        _connection(sink.port, mail_use_tls=True).send(_envelope())
    assert sink.handler.messages() == []


def test_a_non_ascii_mailbox_goes_with_smtputf8(sink: SMTPSink):
    connection = _connection(sink.port)
    connection.send(Envelope(sender="s@example.org", recipient="jörg@example.com", data=b"Subject: t\r\n\r\nb\r\n"))
    connection.close()
    assert [m.recipients for m in sink.handler.messages()] == [["jörg@example.com"]]


# ---- against the scriptable relay, which offers PIPELINING


@pytest.fixture
def relay() -> Iterator[FakeRelay]:
    server = FakeRelay(Behaviour(keep_data=True)).start()
    yield server
    server.stop()


def test_pipelined_sending_delivers_the_exact_bytes_dot_stuffed(relay: FakeRelay):
    data = b"Message-ID: <p@x>\r\nSubject: t\r\n\r\n.leading dot\r\nbody\r\n"
    connection = _connection(relay.port)
    connection.send(Envelope(sender="s@example.org", recipient="r@example.com", data=data))
    connection.send(_envelope("r2@example.com"))
    connection.close()
    assert relay.connections == 1
    assert relay.accepted[0].data == data.replace(b"\r\n.leading", b"\r\n..leading")


def test_pipelined_refused_recipient_is_permanent_and_the_connection_goes_on(relay: FakeRelay):
    relay.behaviour.rcpt_replies = {"gone@example.com": "550 5.1.1 No such user"}
    connection = _connection(relay.port)
    with pytest.raises(PermanentDeliveryError) as refused:
        connection.send(_envelope("gone@example.com"))
    assert refused.value.code == 550
    connection.send(_envelope("here@example.com"))
    connection.close()
    assert [a.recipients for a in relay.accepted] == [["here@example.com"]] and relay.connections == 1


def test_a_refused_sender_means_no_session_for_anyone(relay: FakeRelay):
    relay.behaviour.mail_reply = "530 5.7.0 Authentication required"
    with pytest.raises(RelayUnavailable) as refused:
        _connection(relay.port).send(_envelope())
    assert refused.value.code == 530 and "sender" in refused.value.text


def test_a_relay_without_ehlo_is_greeted_with_helo(relay: FakeRelay):
    relay.behaviour.ehlo_reply = "502 5.5.2 Command not recognized"
    connection = _connection(relay.port)
    connection.send(_envelope())
    connection.close()
    assert relay.count() == 1


# ---- streamed PIPELINING: the next message's envelope goes with the previous message's content


def _stream(connection, recipients: list[str]) -> dict[str, Exception | None]:
    return dict(connection.stream((r, _envelope(r)) for r in recipients))


def test_each_streamed_write_carries_a_content_and_the_next_envelope(relay: FakeRelay, monkeypatch):
    writes: list[bytes] = []
    send = smtplib.SMTP.send

    def recorded(self, data):
        writes.append(data if isinstance(data, bytes) else data.encode())
        return send(self, data)

    monkeypatch.setattr(smtplib.SMTP, "send", recorded)
    connection = _connection(relay.port)
    recipients = [f"r{i}@example.com" for i in range(5)]
    assert _stream(connection, recipients) == dict.fromkeys(recipients)
    connection.close()
    message_writes = [w for w in writes if b"MAIL FROM" in w or w.endswith(b"\r\n.\r\n")]
    assert len(message_writes) == 6  # one write, so one round trip, a message, and the last content
    assert all(b"\r\n.\r\nMAIL FROM" in w for w in message_writes[1:-1])
    assert [a.recipients[0] for a in relay.accepted] == recipients and relay.connections == 1


def test_a_refused_recipient_mid_stream_fails_alone_and_is_reset(relay: FakeRelay):
    relay.behaviour.rcpt_replies = {"gone@example.com": "550 5.1.1 No such user"}
    connection = _connection(relay.port)
    answers = _stream(connection, ["a@example.com", "gone@example.com", "b@example.com", "c@example.com"])
    connection.close()
    assert isinstance(answers.pop("gone@example.com"), RecipientRefused)
    assert answers == dict.fromkeys(["a@example.com", "b@example.com", "c@example.com"])
    # The relay refuses a MAIL in an open transaction: RSET went before the next envelope.
    assert relay.replies["503"] == 0 and relay.connections == 1


def test_a_reply_after_the_data_mid_stream_belongs_to_its_message(relay: FakeRelay):
    relay.behaviour.data_replies = {"full@example.com": "452 4.2.2 Mailbox full"}
    connection = _connection(relay.port)
    answers = _stream(connection, ["a@example.com", "full@example.com", "b@example.com"])
    connection.close()
    assert answers["a@example.com"] is None and answers["b@example.com"] is None
    assert isinstance(answers["full@example.com"], TemporaryDeliveryError)
    assert answers["full@example.com"].code == 452
    assert [a.recipients[0] for a in relay.accepted] == ["a@example.com", "b@example.com"]


def test_a_drop_after_a_content_fails_it_and_the_envelope_sent_with_it_goes_on_a_new_connection(relay: FakeRelay):
    relay.behaviour.drop_after_data = 1
    connection = _connection(relay.port)
    answers = _stream(connection, ["a@example.com", "b@example.com", "c@example.com"])
    connection.close()
    # a arrived but its answer did not: temporary, so it is retried (the one possible duplicate).
    assert isinstance(answers.pop("a@example.com"), TemporaryDeliveryError)
    assert answers == dict.fromkeys(["b@example.com", "c@example.com"])
    assert [a.recipients[0] for a in relay.accepted] == ["a@example.com", "b@example.com", "c@example.com"]
    assert relay.connections == 2


def test_a_421_after_the_data_ends_the_session_and_the_next_message_goes_on_a_new_one(relay: FakeRelay):
    relay.behaviour.data_replies = {"a@example.com": "421 4.7.0 Too many messages, closing"}
    connection = _connection(relay.port)
    answers = _stream(connection, ["a@example.com", "b@example.com"])
    connection.close()
    assert answers["a@example.com"].is_throttle and answers["b@example.com"] is None
    assert [a.recipients[0] for a in relay.accepted] == ["b@example.com"] and relay.connections == 2


def test_mail_max_emails_ends_a_streamed_session_after_its_last_content(relay: FakeRelay):
    connection = _connection(relay.port, mail_max_emails=2)
    recipients = [f"r{i}@example.com" for i in range(5)]
    assert _stream(connection, recipients) == dict.fromkeys(recipients)
    connection.close()
    assert relay.count() == 5 and relay.connections == 3


def test_a_stream_left_with_an_envelope_accepted_sends_nothing_of_that_message(relay: FakeRelay):
    connection = _connection(relay.port)
    answers = connection.stream((r, _envelope(r)) for r in ["a@example.com", "b@example.com", "c@example.com"])
    assert next(answers) == ("a@example.com", None)  # b's envelope is accepted, its content not sent
    answers.close()
    connection.close()
    time.sleep(0.2)  # anything wrongly sent would have arrived by now
    assert [a.recipients[0] for a in relay.accepted] == ["a@example.com"]


def test_a_relay_without_pipelining_gets_one_command_at_a_time(relay: FakeRelay):
    relay.behaviour.pipelining = False
    relay.behaviour.rcpt_replies = {"gone@example.com": "550 5.1.1 No such user"}
    connection = _connection(relay.port)
    answers = _stream(connection, ["a@example.com", "gone@example.com", "b@example.com"])
    connection.close()
    assert isinstance(answers.pop("gone@example.com"), RecipientRefused)
    assert answers == dict.fromkeys(["a@example.com", "b@example.com"]) and relay.replies["503"] == 0
