"""Sending over SMTP: one reused connection per batch, messages streamed with ESMTP PIPELINING when
offered, TLS that verifies the relay's certificate and name, every step under a timeout, every failure
classified."""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from email_service.config import Settings
from email_service.delivery.replies import error_from_exception, error_from_reply
from email_service.errors import DeliveryError, RelayUnavailable
from email_service.message.mime import Envelope

log = logging.getLogger(__name__)

T = TypeVar("T")

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


@dataclass
class _Message(Generic[T]):
    item: T
    envelope: Envelope
    resent: bool = False  # its envelope went out once on a connection that broke before its content


@dataclass
class _Round(Generic[T]):
    """What one pipelined write and its replies gave."""

    answers: list[tuple[T, DeliveryError | None]] = field(default_factory=list)
    open_data: _Message[T] | None = None  # its envelope was accepted: its content goes next
    # When the connection broke (or the relay said 421, closing it): why, and what got no answer.
    lost: DeliveryError | None = None
    unanswered_content: _Message[T] | None = None  # may have been delivered: it gets ``lost``
    unanswered_envelope: _Message[T] | None = None  # nothing of it was delivered: it can go again
    closing: bool = False  # the relay said 421: the session ends after this round


class SMTPConnection:
    """A lazily opened, reused relay session.

    With PIPELINING (RFC 2920) messages are streamed: each write carries the previous message's
    content and the next message's MAIL, RCPT and DATA (section 3.1 lets the content open a
    group), so a message costs one round trip. Only one message's content is ever waiting for its
    reply, so a crash can leave at most one message per connection sent but not recorded. A message
    whose envelope went out on a connection that broke before its content goes again on a new one
    (nothing of it was delivered). It reconnects after MAIL_MAX_EMAILS messages.
    """

    def __init__(self, settings: Settings, tls_context: Callable[[], ssl.SSLContext] | None = None) -> None:
        self._settings = settings
        self._tls_context = tls_context or (lambda: verifying_context(settings))
        self._smtp: smtplib.SMTP | None = None
        self._sent_on_connection = 0
        self._content_sent = False
        self._in_transaction = False  # a refused envelope left a transaction open: RSET before the next

    def send(self, envelope: Envelope) -> None:
        """Send one message; raise the DeliveryError the relay's answer means, if any."""
        for _, error in self.stream([(None, envelope)]):
            if error is not None:
                raise error

    def stream(self, messages: Iterable[tuple[T, Envelope]]) -> Generator[tuple[T, DeliveryError | None]]:
        """Send each (item, envelope) as it is taken from ``messages``; yield (item, None) for each
        message the relay accepted and (item, error) for each it did not, as the answers come.

        The next message is taken before the previous one's answer is known. RelayUnavailable comes
        raised (no session could be opened) or as the answer of a message whose sender the relay
        refused; either way no message can go until the relay is fixed, and the items taken without
        an answer are the caller's to account for.
        """
        source = (_Message(item, envelope) for item, envelope in messages)
        resend: deque[_Message[T]] = deque()
        open_data: _Message[T] | None = None
        try:
            while True:
                if open_data is None and self._at_max_emails():
                    self.close()
                message = resend.popleft() if resend else next(source, None)
                if message is None and open_data is None:
                    return
                if message is not None and not self._session().has_extn("pipelining"):
                    yield message.item, self._send_step_by_step(message.envelope)
                    continue
                if message is not None and self._at_max_emails():
                    resend.appendleft(message)  # it goes on the next connection, after this one's last content
                    message = None
                if message is not None and (refusal := self._utf8_refusal(message.envelope)) is not None:
                    yield message.item, refusal
                    message = None
                if message is None and open_data is None:
                    continue
                result = self._round(open_data, message)
                open_data = result.open_data
                yield from result.answers
                if result.lost is not None:
                    yield from self._after_loss(result, resend)
                if result.closing:
                    self.close()
        finally:
            if open_data is not None:  # the relay waits for content that will not come: end the session
                self._drop()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        self._sent_on_connection = 0
        self._in_transaction = False
        if smtp is None:
            return
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()

    # ---- streamed PIPELINING
    def _round(self, open_data: _Message[T] | None, message: _Message[T] | None) -> _Round[T]:
        """One write (the open message's content, then the next message's envelope) and its replies."""
        smtp = self._session()
        result: _Round[T] = _Round(unanswered_content=open_data, unanswered_envelope=message)
        reset = message is not None and self._in_transaction
        payload = _content(open_data.envelope.data) if open_data is not None else b""
        if reset:
            payload += b"RSET\r\n"
        if message is not None:
            payload += _envelope_commands(message.envelope)
            self._sent_on_connection += 1
        try:
            smtp.send(payload)
            if open_data is not None:
                code, text = smtp.getreply()
                result.answers.append((open_data.item, None if code == 250 else error_from_reply(code, text)))
                result.unanswered_content = None
                if code == 421:  # the relay ends the session: what follows in this write gets no answer
                    result.lost = error_from_reply(code, text)
                    return result
            if reset:
                code, text = smtp.getreply()
                if code != 250:
                    result.lost = error_from_reply(code, text)
                    return result
                self._in_transaction = False
            if message is not None:
                error, result.closing = self._envelope_replies(smtp)
                result.unanswered_envelope = None
                if error is None:
                    result.open_data = message
                else:
                    result.answers.append((message.item, error))
                    self._in_transaction = True
        except (OSError, smtplib.SMTPException) as exc:
            result.lost = error_from_exception(exc)
        return result

    def _envelope_replies(self, smtp: smtplib.SMTP) -> tuple[DeliveryError | None, bool]:
        """The replies to MAIL, RCPT and DATA: why the message cannot go (None: send its content), and
        whether the relay said it is closing the session."""
        replies = [smtp.getreply() for _ in range(3)]  # every reply is read, whatever they say
        (mail_code, mail_text), (rcpt_code, rcpt_text), (data_code, data_text) = replies
        accepted = mail_code == 250 and rcpt_code in (250, 251)
        if data_code == 354 and not accepted:
            # A relay that opened DATA after refusing the envelope gets an empty message to end it
            # (RFC 2920), and refuses that too.
            smtp.send(b".\r\n")
            smtp.getreply()
        closing = 421 in (mail_code, rcpt_code, data_code)
        if mail_code != 250:
            return _sender_refused(mail_code, mail_text), closing
        if rcpt_code not in (250, 251):
            return error_from_reply(rcpt_code, rcpt_text, to_rcpt=True), closing
        if data_code != 354:
            return error_from_reply(data_code, data_text), closing
        return None, closing

    def _after_loss(self, result: _Round[T], resend: deque[_Message[T]]) -> Iterator[tuple[T, DeliveryError]]:
        """The connection is gone: the message whose content was sent gets the error (it may have been
        delivered); the one whose envelope alone was sent goes again, once, on a new connection."""
        assert result.lost is not None
        self._drop()
        if result.unanswered_content is not None:
            yield result.unanswered_content.item, result.lost
        waiting = result.unanswered_envelope
        if waiting is not None and waiting.resent:
            yield waiting.item, result.lost
        elif waiting is not None:
            waiting.resent = True
            resend.appendleft(waiting)

    def _utf8_refusal(self, envelope: Envelope) -> DeliveryError | None:
        if _needs_utf8(envelope) and not self._session().has_extn("smtputf8"):
            return error_from_reply(553, "the relay does not offer SMTPUTF8, needed for this address")
        return None

    def _at_max_emails(self) -> bool:
        limit = self._settings.mail_max_emails
        return self._smtp is not None and limit is not None and self._sent_on_connection >= limit

    def _session(self) -> smtplib.SMTP:
        return self._smtp or self._open()

    # ---- one command at a time, for relays without PIPELINING
    def _send_step_by_step(self, envelope: Envelope) -> DeliveryError | None:
        try:
            return self._step_by_step_once(envelope)
        except _StaleConnection:
            return self._step_by_step_once(envelope)

    def _step_by_step_once(self, envelope: Envelope) -> DeliveryError | None:
        reused = self._smtp is not None
        smtp = self._session()
        if (refusal := self._utf8_refusal(envelope)) is not None:
            return refusal
        utf8 = _needs_utf8(envelope)
        smtp.command_encoding = "utf-8" if utf8 else "ascii"
        self._content_sent = False
        self._sent_on_connection += 1
        try:
            self._step_by_step(smtp, envelope, utf8)
        except DeliveryError as error:
            self._reset()
            return error
        except smtplib.SMTPServerDisconnected as exc:
            self._drop()
            if reused and not self._content_sent:  # the relay had closed it: nothing was delivered
                raise _StaleConnection from exc
            return error_from_exception(exc)
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return error_from_exception(exc)
        return None

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
        self._content_sent = True  # from here on, a lost connection may have delivered it
        smtp.send(_content(envelope.data))
        code, text = smtp.getreply()
        if code != 250:
            raise error_from_reply(code, text)

    # ---- the session
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
        self._in_transaction = False
        _close_quietly(smtp)


def _needs_utf8(envelope: Envelope) -> bool:
    return not (envelope.sender.isascii() and envelope.recipient.isascii())


def _envelope_commands(envelope: Envelope) -> bytes:
    """MAIL, RCPT and DATA of one message, as one pipelined group."""
    utf8 = _needs_utf8(envelope)
    option = " SMTPUTF8" if utf8 else ""
    # An envelope holds bare addresses (checked at intake), so each only needs its angle brackets.
    commands = f"MAIL FROM:<{envelope.sender}>{option}\r\nRCPT TO:<{envelope.recipient}>\r\nDATA\r\n"
    return commands.encode("utf-8" if utf8 else "ascii")


def _content(data: bytes) -> bytes:
    """The message as DATA carries it: dot-stuffed, ending in CRLF, then the terminating dot."""
    content = _LEADING_DOT.sub(b"..", data)
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    return content + b".\r\n"


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
