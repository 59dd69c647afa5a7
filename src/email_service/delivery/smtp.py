"""Sending over SMTP: one reused connection per batch, ESMTP PIPELINING when offered, TLS that
verifies the relay's certificate and name, every step under a timeout, every failure classified."""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from collections.abc import Callable

from ..config import Settings
from ..errors import DeliveryError, RelayUnavailable
from ..messages import Envelope
from .replies import error_from_exception, error_from_reply

log = logging.getLogger(__name__)

_LEADING_DOT = re.compile(rb"(?m)^\.")
_SSL_LOCATION = re.compile(r"^\[\w+: \w+\] | \(_ssl\.c:\d+\)$")  # "[SSL: REASON] ... (_ssl.c:1006)"


class SMTPTransport:
    """Opens sessions with the relay the settings name."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._tls_context: ssl.SSLContext | None = None

    def connect(self) -> SMTPConnection:
        return SMTPConnection(self._settings, self.tls_context)

    def tls_context(self) -> ssl.SSLContext:
        """The verifying context, built at the first TLS session and shared by every connection."""
        if self._tls_context is None:
            self._tls_context = verifying_context(self._settings)
        return self._tls_context


def verifying_context(settings: Settings) -> ssl.SSLContext:
    """Checks the relay's certificate (against MAIL_TLS_CA_FILE, or the system's CAs) and its name.

    smtplib's own default context verifies nothing, so it is never left to choose.
    """
    ca_file = settings.mail_tls_ca_file
    try:
        # CERT_REQUIRED, check_hostname and TLS 1.2 at least; with a CA file, only that CA is trusted.
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ValueError) as exc:  # a missing or unreadable file is the operator's to fix: retry later
        raise RelayUnavailable(0, f"TLS: cannot load the CA file {ca_file}: {_tls_detail(exc)}") from exc


class _StaleConnection(Exception):
    """A reused connection was found closed before the message was handed over."""


class SMTPConnection:
    """A lazily opened, reused relay session.

    It reconnects after MAIL_MAX_EMAILS messages, and once when a reused connection turns out
    to be closed before MAIL FROM (nothing was sent on it, so sending again cannot duplicate).
    With PIPELINING (RFC 2920) MAIL, RCPT and DATA go in one write: two round trips a message
    instead of four.
    """

    def __init__(self, settings: Settings, tls_context: Callable[[], ssl.SSLContext] | None = None) -> None:
        self._settings = settings
        self._tls_context = tls_context or (lambda: verifying_context(settings))
        self._smtp: smtplib.SMTP | None = None
        self._sent_on_connection = 0
        self._content_sent = False

    def send(self, envelope: Envelope) -> None:
        limit = self._settings.mail_max_emails
        if self._smtp is not None and limit is not None and self._sent_on_connection >= limit:
            self.close()
        try:
            self._send_once(envelope)
        except _StaleConnection:
            self._send_once(envelope)

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        self._sent_on_connection = 0
        if smtp is None:
            return
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()

    def _send_once(self, envelope: Envelope) -> None:
        reused = self._smtp is not None
        smtp = self._smtp or self._open()
        utf8 = not (envelope.sender.isascii() and envelope.recipient.isascii())
        if utf8 and not smtp.has_extn("smtputf8"):
            raise error_from_reply(553, "the relay does not offer SMTPUTF8, needed for this address")
        smtp.command_encoding = "utf-8" if utf8 else "ascii"
        self._content_sent = False
        try:
            if smtp.has_extn("pipelining"):
                self._pipelined(smtp, envelope, utf8)
            else:
                self._step_by_step(smtp, envelope, utf8)
        except DeliveryError:
            self._reset()
            raise
        except smtplib.SMTPServerDisconnected as exc:
            self._drop()
            if reused and not self._content_sent:  # the relay had closed it: nothing was delivered
                raise _StaleConnection from exc
            raise error_from_exception(exc) from exc
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise error_from_exception(exc) from exc
        self._sent_on_connection += 1

    def _step_by_step(self, smtp: smtplib.SMTP, envelope: Envelope, utf8: bool) -> None:
        code, text = smtp.mail(envelope.sender, ["SMTPUTF8"] if utf8 else [])
        if code != 250:
            raise _sender_refused(code, text)
        code, text = smtp.rcpt(envelope.recipient)
        if code not in (250, 251):
            raise error_from_reply(code, text, to_rcpt=True)
        code, text = smtp.docmd("DATA")
        if code != 354:
            raise error_from_reply(code, text)
        self._send_content(smtp, envelope.data)

    def _pipelined(self, smtp: smtplib.SMTP, envelope: Envelope, utf8: bool) -> None:
        option = " SMTPUTF8" if utf8 else ""
        smtp.send(
            f"MAIL FROM:{smtplib.quoteaddr(envelope.sender)}{option}\r\n"
            f"RCPT TO:{smtplib.quoteaddr(envelope.recipient)}\r\nDATA\r\n"
        )
        replies = [smtp.getreply() for _ in range(3)]  # every reply is read, whatever they say
        (mail_code, mail_text), (rcpt_code, rcpt_text), (data_code, data_text) = replies
        accepted = mail_code == 250 and rcpt_code in (250, 251)
        if data_code == 354 and not accepted:
            # A relay that opened DATA after refusing the envelope gets an empty message to end it
            # (RFC 2920), and refuses that too.
            smtp.send(b".\r\n")
            smtp.getreply()
        if mail_code != 250:
            raise _sender_refused(mail_code, mail_text)
        if rcpt_code not in (250, 251):
            raise error_from_reply(rcpt_code, rcpt_text, to_rcpt=True)
        if data_code != 354:
            raise error_from_reply(data_code, data_text)
        self._send_content(smtp, envelope.data)

    def _send_content(self, smtp: smtplib.SMTP, data: bytes) -> None:
        """The message, dot-stuffed and terminated, then the relay's verdict on it."""
        content = _LEADING_DOT.sub(b"..", data)
        if not content.endswith(b"\r\n"):
            content += b"\r\n"
        self._content_sent = True  # from here on, a lost connection may have delivered it
        smtp.send(content + b".\r\n")
        code, text = smtp.getreply()
        if code != 250:
            raise error_from_reply(code, text)

    def _open(self) -> smtplib.SMTP:
        settings = self._settings
        smtp: smtplib.SMTP | None = None
        try:
            smtp = _connect(settings, settings.mail_timeout, self._tls_context)
            _greet(smtp)
            if settings.mail_use_tls:
                _start_tls(smtp, self._tls_context())
            # Only now, over TLS when it is configured: a failed handshake never reaches this line.
            if settings.mail_username:
                smtp.login(settings.mail_username, settings.mail_password.get_secret_value())
        except DeliveryError:
            _close_quietly(smtp)
            raise
        except smtplib.SMTPAuthenticationError as exc:
            _close_quietly(smtp)
            # A refused login is the operator's to fix, not the recipient's fault: try again later.
            raise RelayUnavailable(exc.smtp_code, "relay refused the login") from exc
        except (OSError, smtplib.SMTPException) as exc:
            _close_quietly(smtp)
            raise _no_session(exc) from exc
        self._smtp = smtp
        return smtp

    def _reset(self) -> None:
        """After a refused message, clear the transaction so the connection can be reused."""
        if self._smtp is None:
            return
        try:
            self._smtp.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        self._sent_on_connection = 0
        _close_quietly(smtp)


def greet_relay(settings: Settings, timeout: float) -> None:
    """Open a connection to the relay as the sender does (host, port, implicit TLS), read its 220
    greeting and say QUIT: nothing else is sent. Raises RelayUnavailable saying why not."""
    smtp: smtplib.SMTP | None = None
    try:
        smtp = _connect(settings, timeout, lambda: verifying_context(settings))
        smtp.quit()
    except (OSError, smtplib.SMTPException) as exc:
        raise _no_session(exc) from exc
    finally:
        _close_quietly(smtp)


def _connect(settings: Settings, timeout: float, tls_context: Callable[[], ssl.SSLContext]) -> smtplib.SMTP:
    """A connection to the relay whose 220 greeting was read, over implicit TLS with MAIL_USE_SSL."""
    if settings.mail_use_ssl:
        return smtplib.SMTP_SSL(settings.mail_server, settings.mail_port, timeout=timeout, context=tls_context())
    return smtplib.SMTP(settings.mail_server, settings.mail_port, timeout=timeout)


def _no_session(exc: OSError | smtplib.SMTPException) -> RelayUnavailable:
    """Why no session could be opened: a certificate or handshake failure (no session for anyone until
    the operator fixes it), or the relay's refusal, silence or absence."""
    if isinstance(exc, ssl.SSLError):
        return RelayUnavailable(0, f"TLS: {_tls_detail(exc)}")
    cause = error_from_exception(exc)
    return RelayUnavailable(cause.code, f"cannot open a session: {cause.text}")


def _greet(smtp: smtplib.SMTP) -> None:
    """EHLO, or HELO from a relay that does not know EHLO; a relay refusing both has no session for us."""
    code, text = smtp.ehlo()
    if code != 250:
        smtp.ehlo_resp = None
        code, text = smtp.helo()
        if code != 250:
            raise RelayUnavailable(code, f"the relay refused EHLO and HELO: {text.decode('utf-8', 'replace')}")


def _start_tls(smtp: smtplib.SMTP, context: ssl.SSLContext) -> None:
    """STARTTLS, then EHLO again over TLS; a relay that cannot do it gets no plaintext session instead."""
    if not smtp.has_extn("starttls"):
        raise RelayUnavailable(0, "TLS: STARTTLS is required but the relay does not offer it")
    try:
        smtp.starttls(context=context)
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        raise RelayUnavailable(exc.smtp_code, f"TLS: the relay refused STARTTLS: {text}") from exc
    _greet(smtp)


def _tls_detail(exc: Exception) -> str:
    """What went wrong, in OpenSSL's words without its codes, e.g. "certificate verify failed: self-signed
    certificate" or "certificate verify failed: Hostname mismatch, certificate is not valid for 'x'."."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, OSError) and exc.strerror:
        return _SSL_LOCATION.sub("", exc.strerror)
    return str(exc)


def _sender_refused(code: int, text: bytes) -> DeliveryError:
    """A 5xx to MAIL FROM is about the sender or our account, not a recipient: no message can go."""
    if 500 <= code <= 599:
        return RelayUnavailable(code, f"the relay refused the sender: {text.decode('utf-8', 'replace')}")
    return error_from_reply(code, text)


def _close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        try:
            smtp.close()
        except OSError:
            log.debug("closing an SMTP socket failed", exc_info=True)
