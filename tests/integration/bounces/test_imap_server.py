"""The private Dovecot of tests/support/imap_server.py behaves as the bounce mailbox poller needs.

Unseen messages are found, read with BODY.PEEK[] byte for byte without being marked, and flagged \\Seen
on request; a wrong password is refused; the server listens on 127.0.0.1 only and leaves nothing
behind. Each test starts its server in its body, so a missing Dovecot fails the tests (never skips).
"""

from __future__ import annotations

import imaplib
import socket
import subprocess
import time
from urllib.parse import unquote, urlsplit

import pytest

from tests.support.imap_server import DovecotServer, live_members

USER, PASSWORD = "bounces", "p@ss w0rd/%?#"  # the URL must percent-encode it
FIRST = (
    b"Return-Path: <>\r\nFrom: MAILER-DAEMON@example.org\r\nTo: bounces+token@example.com\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\n\r\nFirst report.\r\n"
)
SECOND = b"From: postmaster@example.net\r\nSubject: Delivery Status Notification\r\n\r\nSecond, 8bit: \xc3\xa9\r\n"


def _login(server: DovecotServer) -> imaplib.IMAP4:
    imap = imaplib.IMAP4(server.host, server.port, timeout=10)
    imap.login(USER, PASSWORD)
    return imap


def _unseen(imap: imaplib.IMAP4) -> list[bytes]:
    status, found = imap.search(None, "UNSEEN")
    assert status == "OK"
    return found[0].split()


def _flags(imap: imaplib.IMAP4, number: str) -> tuple[bytes, ...]:
    status, data = imap.fetch(number, "(FLAGS)")
    assert status == "OK"
    assert isinstance(data[0], bytes)
    return imaplib.ParseFlags(data[0])


def _body(imap: imaplib.IMAP4, number: str) -> bytes:
    status, data = imap.fetch(number, "(BODY.PEEK[])")
    assert status == "OK"
    assert isinstance(data[0], tuple)
    return data[0][1]


def test_unseen_messages_are_peeked_byte_for_byte_then_flagged_seen() -> None:
    with DovecotServer(USER, PASSWORD) as server:
        server.deliver(FIRST)
        server.deliver(SECOND)
        with _login(server) as imap:
            status, exists = imap.select("INBOX")
            assert (status, exists) == ("OK", [b"2"])
            assert _unseen(imap) == [b"1", b"2"]

            assert _body(imap, "1") == FIRST
            assert _body(imap, "2") == SECOND
            assert b"\\Seen" not in _flags(imap, "1")  # PEEK leaves the message unseen
            assert _unseen(imap) == [b"1", b"2"]

            status, _ = imap.store("1", "+FLAGS", "(\\Seen)")
            assert status == "OK"
            assert _unseen(imap) == [b"2"]

            server.deliver(FIRST)  # while the mailbox is selected: Dovecot rescans new/ at the next command
            imap.noop()
            assert _unseen(imap) == [b"2", b"3"]

        with _login(server) as imap:  # the flag is stored, not only known to the session that set it
            imap.select("INBOX")
            assert _unseen(imap) == [b"2", b"3"]


def test_url_carries_the_credentials_percent_encoded() -> None:
    with DovecotServer(USER, PASSWORD) as server:
        parts = urlsplit(server.url)
        assert (parts.scheme, parts.hostname, parts.port, parts.path) == ("imap", "127.0.0.1", server.port, "/INBOX")
        assert (unquote(parts.username or ""), unquote(parts.password or "")) == (USER, PASSWORD)


def test_wrong_password_is_refused_and_costs_no_penalty() -> None:
    with DovecotServer(USER, PASSWORD) as server:
        imap = imaplib.IMAP4(server.host, server.port, timeout=10)
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login(USER, PASSWORD + "x")
        imap.shutdown()

        started = time.monotonic()
        with _login(server):  # Dovecot's per-IP penalty is off: this would otherwise wait 2 s
            assert time.monotonic() - started < 1.5
        assert "Password mismatch" in server.log()


def test_tls_variant_has_a_certificate_the_test_ca_signed() -> None:
    with DovecotServer(USER, PASSWORD, tls=True) as server:
        server.deliver(FIRST)
        assert server.ssl_port is not None
        assert urlsplit(server.imaps_url).port == server.ssl_port
        # create_default_context checks the chain and that the certificate names 127.0.0.1.
        with imaplib.IMAP4_SSL(server.host, server.ssl_port, ssl_context=server.client_context(), timeout=10) as imap:
            imap.login(USER, PASSWORD)
            imap.select("INBOX")
            assert _body(imap, "1") == FIRST
        with imaplib.IMAP4(server.host, server.port, timeout=10) as imap:
            imap.starttls(ssl_context=server.client_context())
            imap.login(USER, PASSWORD)


def test_listens_on_loopback_only_and_stop_leaves_nothing() -> None:
    server = DovecotServer(USER, PASSWORD, tls=True).start()
    try:
        assert server.pid is not None and server.root is not None and server.ssl_port is not None
        group, root, ports = server.pid, server.root, [server.port, server.ssl_port]
        members = set(live_members(group))
        assert group in members and len(members) > 1  # the master and its children, all in our group
        listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines()
        ours = [line for line in listening if any(f"pid={pid}," in line for pid in members)]
        assert sorted(int(line.split()[3].rsplit(":", 1)[1]) for line in ours) == sorted(ports)
        assert all(line.split()[3].startswith("127.0.0.1:") for line in ours)
    finally:
        server.stop()

    assert live_members(group) == []  # a zombie init has not reaped yet does not count: it runs nothing
    assert not root.exists()
    for port in ports:
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
