"""A test PKI made in-process with trustme, and aiosmtpd relays speaking TLS with it.

The relays note every command a client sends, and whether it came over TLS, so that a test can show
that nothing (no AUTH, no MAIL FROM) left the client after a failed handshake.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.support.smtp_sink import SinkHandler, free_port

LOGIN, PASSWORD = "relay-user", "relay-secret-7f3a"
CA_NAME = "email_service test ca"  # the test CA's organizationName


@dataclass(frozen=True)
class KeyPair:
    certificate: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate, self.key)
        return context


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA's certificate: what MAIL_TLS_CA_FILE names
    localhost: KeyPair  # signed by the CA for localhost and 127.0.0.1
    other_name: KeyPair  # signed by the CA, for relay.example.net only
    self_signed: KeyPair  # signed by its own key


def make_pki(folder: Path) -> Certificates:
    """A CA and three server certificates, with ECDSA P-256 keys (fast to make)."""
    ca = trustme.CA(organization_name=CA_NAME)
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    # Another CA's own certificate is self-signed: a client checks the chain before the names, so
    # it is refused as self-signed whatever names it holds.
    stranger = trustme.CA()
    return Certificates(
        ca=folder / "ca.pem",
        localhost=_write(folder, "localhost", ca.issue_cert("localhost", "127.0.0.1")),
        other_name=_write(folder, "other", ca.issue_cert("relay.example.net")),
        self_signed=_write(folder, "self", stranger),
    )


def _write(folder: Path, name: str, issued: trustme.LeafCert | trustme.CA) -> KeyPair:
    pair = KeyPair(folder / f"{name}.pem", folder / f"{name}.key")
    if isinstance(issued, trustme.LeafCert):
        issued.cert_chain_pems[0].write_to_path(str(pair.certificate))
    else:
        issued.cert_pem.write_to_path(str(pair.certificate))
    issued.private_key_pem.write_to_path(str(pair.key))
    return pair


@dataclass
class RecordingHandler(SinkHandler):
    """SinkHandler that also keeps every command received, as (verb, over TLS), and every login tried."""

    commands: list[tuple[str, bool]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    def verbs(self) -> list[str]:
        with self.lock:
            return [verb for verb, _ in self.commands]

    def authenticate(self, server: SMTP, session: object, envelope: object, mechanism: str, data: object) -> AuthResult:
        assert isinstance(data, LoginPassword)
        with self.lock:
            self.logins.append(data.login.decode())
        return AuthResult(success=(data.login.decode(), data.password.decode()) == (LOGIN, PASSWORD))


class _RecordingSMTP(SMTP):
    """aiosmtpd's server noting each command before handling it (an AUTH it refuses is noted too)."""

    def _note(self, verb: str) -> None:
        handler = self.event_handler
        assert isinstance(handler, RecordingHandler) and self.transport is not None
        with handler.lock:
            handler.commands.append((verb, self.transport.get_extra_info("ssl_object") is not None))

    async def smtp_EHLO(self, hostname: str) -> None:
        self._note("EHLO")
        await super().smtp_EHLO(hostname)

    async def smtp_HELO(self, hostname: str) -> None:
        self._note("HELO")
        await super().smtp_HELO(hostname)

    async def smtp_STARTTLS(self, arg: str) -> None:
        self._note("STARTTLS")
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        self._note("AUTH")
        await super().smtp_AUTH(arg)

    async def smtp_MAIL(self, arg: str | None) -> None:
        self._note("MAIL")
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        self._note("RCPT")
        await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        self._note("DATA")
        await super().smtp_DATA(arg)


class _RecordingController(Controller):
    def factory(self) -> SMTP:
        return _RecordingSMTP(self.handler, **self.SMTP_kwargs)


class TLSRelay:
    """An aiosmtpd relay on 127.0.0.1 and a free port: STARTTLS with ``starttls``, implicit TLS with
    ``implicit``, plaintext with neither. AUTH (LOGIN/PASSWORD) is offered over TLS only, unless
    ``plaintext_auth``: then a client that logs in without TLS is caught doing it."""

    def __init__(
        self, *, starttls: KeyPair | None = None, implicit: KeyPair | None = None, plaintext_auth: bool = False
    ) -> None:
        self.handler = RecordingHandler()
        self.port = free_port()
        self._controller = _RecordingController(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            ssl_context=implicit.server_context() if implicit else None,
            tls_context=starttls.server_context() if starttls else None,
            authenticator=self.handler.authenticate,
            auth_require_tls=not (plaintext_auth or implicit),  # aiosmtpd counts only STARTTLS as TLS
        )

    def start(self) -> TLSRelay:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
