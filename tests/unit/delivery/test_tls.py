"""TLS to the relay against real aiosmtpd servers and certificates made at test time: the certificate
and the relay's name are verified, and when they fail (or STARTTLS is missing) nothing is sent, no
login is tried, and every recipient waits with a reason starting with "TLS:"."""

from __future__ import annotations

import re
import ssl
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from email_service.config import Settings
from email_service.delivery.smtp import SMTPTransport, greet_relay
from email_service.errors import RelayUnavailable
from email_service.message.mime import Envelope
from email_service.services import Services, build_services, dispatch, intake
from email_service.storage import jobs
from email_service.storage.migrate import upgrade
from tests.support.queues import RecordingQueue
from tests.support.tls_relay import CA_NAME, LOGIN, PASSWORD, Certificates, TLSRelay, make_pki


@pytest.fixture(scope="module")
def pki() -> Iterator[Certificates]:
    with tempfile.TemporaryDirectory(prefix="email-service-pki-") as folder:
        yield make_pki(Path(folder))


StartRelay = Callable[..., TLSRelay]
SELF_SIGNED = "self[- ]signed certificate"  # OpenSSL 3 spells it with a hyphen, 1.1 without


@pytest.fixture
def start_relay() -> Iterator[StartRelay]:
    """Starts relays (TLSRelay's options); all are stopped at the end of the test."""
    started: list[TLSRelay] = []

    def start(**options: object) -> TLSRelay:
        started.append(TLSRelay(**options).start())
        return started[-1]

    yield start
    for relay in started:
        relay.stop()


def _settings(relay: TLSRelay, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "mail_server": "127.0.0.1",
        "mail_port": relay.port,
        "mail_timeout": 3,
        "mail_username": LOGIN,
        "mail_password": PASSWORD,
    }
    return Settings(**(values | overrides))


def _send(relay: TLSRelay, count: int = 1, **settings: object) -> None:
    """Send ``count`` messages over one connection, as a batch does."""
    connection = SMTPTransport(_settings(relay, **settings)).connect()
    try:
        for i in range(count):
            connection.send(_envelope(f"r{i}@example.com"))
    finally:
        connection.close()


def _envelope(recipient: str) -> Envelope:
    return Envelope(sender="s@example.org", recipient=recipient, data=b"Subject: t\r\n\r\nover TLS\r\n")


def _refused(relay: TLSRelay, **settings: object) -> str:
    """The reason the relay session could not be opened; asserts nothing reached the relay."""
    with pytest.raises(RelayUnavailable) as refused:
        _send(relay, **settings)
    handler = relay.handler
    assert handler.logins == [] and handler.messages() == []
    assert not {"AUTH", "MAIL", "RCPT", "DATA"} & set(handler.verbs())
    return refused.value.text


# ---- STARTTLS


@pytest.mark.parametrize("server", ["127.0.0.1", "localhost"])  # the certificate names both
def test_starttls_with_the_ca_delivers_and_logs_in_over_tls_only(
    start_relay: StartRelay, pki: Certificates, server: str
):
    relay = start_relay(starttls=pki.localhost, plaintext_auth=True)  # AUTH offered before TLS too
    _send(relay, 3, mail_use_tls=True, mail_tls_ca_file=pki.ca, mail_server=server)
    assert [m.recipients for m in relay.handler.messages()] == [
        ["r0@example.com"],
        ["r1@example.com"],
        ["r2@example.com"],
    ]
    assert relay.handler.messages()[0].message.get_content().strip() == "over TLS"
    assert relay.handler.logins == [LOGIN]
    commands = relay.handler.commands
    assert commands[:4] == [("EHLO", False), ("STARTTLS", False), ("EHLO", True), ("AUTH", True)]
    assert all(over_tls for _, over_tls in commands[2:])  # everything after STARTTLS went encrypted


def test_starttls_to_a_certificate_the_system_does_not_trust_sends_nothing(start_relay: StartRelay, pki: Certificates):
    relay = start_relay(starttls=pki.localhost, plaintext_auth=True)
    reason = _refused(relay, mail_use_tls=True)  # no MAIL_TLS_CA_FILE: the system's CAs never signed it
    assert reason == "TLS: certificate verify failed: unable to get local issuer certificate"
    assert relay.handler.commands == [("EHLO", False), ("STARTTLS", False)]


@pytest.mark.parametrize("ca_file", [False, True], ids=["system CAs", "our CA"])
def test_a_self_signed_relay_is_refused(start_relay: StartRelay, pki: Certificates, ca_file: bool):
    relay = start_relay(starttls=pki.self_signed)
    reason = _refused(relay, mail_use_tls=True, mail_tls_ca_file=pki.ca if ca_file else None)
    assert re.fullmatch(f"TLS: certificate verify failed: {SELF_SIGNED}", reason)


def test_starttls_required_but_not_offered_sends_nothing_not_even_the_login(start_relay: StartRelay):
    relay = start_relay(plaintext_auth=True)  # no STARTTLS, and AUTH offered in clear
    reason = _refused(relay, mail_use_tls=True)
    assert reason == "TLS: STARTTLS is required but the relay does not offer it"
    assert relay.handler.verbs() == ["EHLO"]


def test_the_relay_without_starttls_would_have_seen_a_plaintext_login(start_relay: StartRelay):
    """The control of the test above: without MAIL_USE_TLS the same relay records the login."""
    relay = start_relay(plaintext_auth=True)
    _send(relay)
    assert relay.handler.logins == [LOGIN] and ("AUTH", False) in relay.handler.commands


# ---- implicit TLS


def test_implicit_tls_with_the_ca_delivers(start_relay: StartRelay, pki: Certificates):
    relay = start_relay(implicit=pki.localhost)
    _send(relay, 2, mail_use_ssl=True, mail_tls_ca_file=pki.ca)
    assert len(relay.handler.messages()) == 2 and relay.handler.logins == [LOGIN]
    assert relay.handler.commands and all(over_tls for _, over_tls in relay.handler.commands)


def test_implicit_tls_without_the_ca_is_refused_before_any_command(start_relay: StartRelay, pki: Certificates):
    relay = start_relay(implicit=pki.localhost)
    reason = _refused(relay, mail_use_ssl=True)
    assert reason == "TLS: certificate verify failed: unable to get local issuer certificate"
    assert relay.handler.commands == []


def test_the_readiness_greeting_verifies_tls_like_the_sender_and_sends_no_command(
    start_relay: StartRelay, pki: Certificates
):
    relay = start_relay(implicit=pki.localhost)
    greet_relay(_settings(relay, mail_use_ssl=True, mail_tls_ca_file=pki.ca), timeout=3)
    with pytest.raises(RelayUnavailable) as refused:
        greet_relay(_settings(relay, mail_use_ssl=True), timeout=3)
    assert refused.value.text == "TLS: certificate verify failed: unable to get local issuer certificate"
    assert relay.handler.verbs() == [] and relay.handler.logins == []  # no EHLO, no AUTH: the 220, then QUIT


def test_implicit_tls_to_a_plaintext_relay_is_a_tls_failure(start_relay: StartRelay):
    relay = start_relay()
    reason = _refused(relay, mail_use_ssl=True)
    assert reason.startswith("TLS: ") and "wrong version number" in reason
    assert relay.handler.commands == []


# ---- the relay's name


@pytest.mark.parametrize("mode", ["mail_use_tls", "mail_use_ssl"])
def test_a_certificate_for_another_name_is_refused(start_relay: StartRelay, pki: Certificates, mode: str):
    relay = start_relay(**{"starttls" if mode == "mail_use_tls" else "implicit": pki.other_name})
    reason = _refused(relay, **{mode: True}, mail_tls_ca_file=pki.ca)  # signed by our CA, but for relay.example.net
    assert reason == "TLS: certificate verify failed: IP address mismatch, certificate is not valid for '127.0.0.1'."


def test_a_certificate_for_another_host_name_is_refused(start_relay: StartRelay, pki: Certificates):
    relay = start_relay(starttls=pki.other_name)
    reason = _refused(relay, mail_use_tls=True, mail_tls_ca_file=pki.ca, mail_server="localhost")
    assert reason == "TLS: certificate verify failed: Hostname mismatch, certificate is not valid for 'localhost'."


# ---- the context


def test_the_context_verifies_and_is_built_once(pki: Certificates, tmp_path: Path):
    transport = SMTPTransport(Settings(mail_use_tls=True, mail_tls_ca_file=pki.ca))
    context = transport.tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert [dict(name[0] for name in c["subject"])["organizationName"] for c in context.get_ca_certs()] == [CA_NAME]
    assert transport.tls_context() is context


def test_a_missing_ca_file_defers_with_a_tls_reason(start_relay: StartRelay, pki: Certificates, tmp_path: Path):
    relay = start_relay(starttls=pki.localhost)
    reason = _refused(relay, mail_use_tls=True, mail_tls_ca_file=tmp_path / "missing.pem")
    assert reason.startswith(f"TLS: cannot load the CA file {tmp_path / 'missing.pem'}: ")


def test_an_empty_ca_file_variable_means_the_system_cas(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MAIL_TLS_CA_FILE", "")
    assert Settings().mail_tls_ca_file is None


# ---- through the service: a batch on SQLite


@pytest.fixture
def make_services(tmp_path: Path) -> Iterator[Callable[[Settings], Services]]:
    """The service on a new SQLite database, with the settings given; its engine is closed at the end."""
    built: list[Services] = []

    def make(settings: Settings) -> Services:
        upgrade(settings.database_url)
        built.append(build_services(settings))
        return built[-1]

    yield make
    for services in built:
        services.engine.dispose()


def _send_job(services: Services, addresses: list[str]) -> str:
    """Accept a job and serve it inline, as a woken worker thread would."""
    accepted = intake.accept_job(services, intake.JobRequest(recipients=addresses, subject="s", content="c"))
    services.queue = RecordingQueue()
    dispatch.serve(services)
    return accepted.id


@pytest.mark.parametrize("relay_kind", ["untrusted certificate", "no STARTTLS"])
def test_a_batch_to_a_relay_failing_tls_is_deferred_and_nothing_reaches_it(
    start_relay: StartRelay, pki: Certificates, tmp_path: Path, make_services, relay_kind: str
):
    relay = start_relay(starttls=pki.self_signed) if relay_kind == "untrusted certificate" else start_relay()
    services = make_services(_settings(relay, data_dir=tmp_path, mail_use_tls=True, mail_tls_ca_file=pki.ca))
    job_id = _send_job(services, ["a@example.com", "b@example.com", "c@example.com"])
    with services.sessions() as session:
        recipients = jobs.list_recipients(session, job_id, status=None, after=None, limit=10)
    assert [r.status for r in recipients] == ["deferred"] * 3
    assert all(r.last_error.startswith("TLS: ") and r.next_attempt_at is not None for r in recipients)
    expected = SELF_SIGNED if relay_kind == "untrusted certificate" else "does not offer it"
    assert re.search(expected, recipients[0].last_error)
    assert relay.handler.messages() == [] and relay.handler.logins == []
    assert not {"AUTH", "MAIL"} & set(relay.handler.verbs())


def test_a_batch_over_verified_starttls_is_sent(
    start_relay: StartRelay, pki: Certificates, tmp_path: Path, make_services
):
    relay = start_relay(starttls=pki.localhost)
    services = make_services(_settings(relay, data_dir=tmp_path, mail_use_tls=True, mail_tls_ca_file=pki.ca))
    job_id = _send_job(services, ["a@example.com", "b@example.com"])
    with services.sessions() as session:
        assert jobs.count_by_status(session, [job_id])[job_id]["sent"] == 2
    assert sorted(m.recipients[0] for m in relay.handler.messages()) == ["a@example.com", "b@example.com"]
    assert relay.handler.logins == [LOGIN]  # one connection, one login, over TLS
