"""Logging set-up: stderr always, plus the tutorial's rotating file when LOG_PATH is set; credentials and
tokens masked in every line (``mask_secrets``, which gunicorn's logs use too), addresses at INFO and above."""

from __future__ import annotations

import logging
import re
import sys
from logging.handlers import RotatingFileHandler
from urllib.parse import unquote

from email_service.config import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
_HANDLER_MARK = "_email_service_handler"
# An address anywhere in a line: a local part and a domain with a dot, without the characters that
# surround addresses in text (<>, quotes, brackets, commas, colons).
_DELIMITERS = r"\s<>()\[\]{},;:\"'@"
_ADDRESS = re.compile(rf"([^{_DELIMITERS}]+)@([^{_DELIMITERS}]+\.[^{_DELIMITERS}.]+)")


MASK = "***"
# An API key of this service (``es_`` and 43 URL-safe characters), wherever a client put it.
_API_KEY = re.compile(r"\bes_[A-Za-z0-9_-]{16,}")
# Credentials after a header name, in any scheme: ``Authorization: Basic …``, ``X-API-Key=…``, ``cookie': '…``.
_CREDENTIAL_HEADER = re.compile(
    r"((?:proxy-)?authorization|x-api-key|(?:set-)?cookie)(['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n]+", re.IGNORECASE
)
_AUTH_SCHEME = re.compile(
    r"\b(basic|bearer|digest|token|negotiate|ntlm|hoba|mutual|aws4-hmac-sha256)\s+[^\s'\"]+", re.IGNORECASE
)
# What follows /unsubscribe/ in a path (any case, any slashes): only the job and position stay readable.
_UNSUBSCRIBE = re.compile(r"(/+unsubscribe/+)([^\s?#'\"<>]*)", re.IGNORECASE)
_TOKEN_HEAD = re.compile(r"[0-9a-f-]{36}\.\d{1,9}\.", re.IGNORECASE)
# An unsubscribe token wherever it stands (a path the router did not take as /unsubscribe/ still carries it).
_TOKEN = re.compile(rf"({_TOKEN_HEAD.pattern})[A-Za-z0-9_-]+", re.IGNORECASE)
# A query string, and its parameters: every value is masked (a token, a key or a signature may be any of them).
_QUERY = re.compile(r"(?<=[^\s?])\?([^\s#'\"<>]+)")
_PARAMETER_NAME = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,32}")
# The user and password of a URL (``https://user:pass@host/``).
_USERINFO = re.compile(r"(?<=//)[^/\s@'\"<>]+@")
# A path segment or a query name or value: an address never spans two of them.
_URL_PIECE = re.compile(r"[^/?&=\s]+")
_DECODINGS = 3  # %2540 is %40 is @: decoded until it stops changing, this many times at most


def mask_addresses(text: str) -> str:
    """``will@example.com`` becomes ``w***@example.com``: the domain is enough to follow deliveries."""
    return _ADDRESS.sub(lambda match: f"{match.group(1)[0]}***@{match.group(2)}", text)


def mask_secrets(text: str) -> str:
    """``text`` percent-decoded, with what a request can carry as a credential masked: API keys, the
    credentials of any Authorization scheme, a URL's user and password, unsubscribe signatures (in any
    case) and query values."""
    for _ in range(_DECODINGS):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    text = _CREDENTIAL_HEADER.sub(rf"\1\2{MASK}", text)
    text = _AUTH_SCHEME.sub(rf"\1 {MASK}", text)
    text = _USERINFO.sub(f"{MASK}@", text)
    text = _UNSUBSCRIBE.sub(_masked_unsubscribe, text)
    text = _TOKEN.sub(rf"\1{MASK}", text)
    text = _QUERY.sub(lambda query: "?" + "&".join(map(_masked_parameter, query.group(1).split("&"))), text)
    return _API_KEY.sub(f"es_{MASK}", text)


def mask_url(text: str) -> str:
    """A URL (or request line) with its secrets masked and every address in it too, at any level."""
    return _URL_PIECE.sub(lambda piece: mask_addresses(piece.group()), mask_secrets(text))


def _masked_unsubscribe(match: re.Match[str]) -> str:
    head = _TOKEN_HEAD.match(match.group(2))
    return f"{match.group(1)}{head.group() if head else ''}{MASK}" if match.group(2) else match.group()


def _masked_parameter(parameter: str) -> str:
    name, has_value, _ = parameter.partition("=")
    name = name if _PARAMETER_NAME.fullmatch(name) else MASK
    return f"{name}={MASK}" if has_value else MASK  # a lone piece may be the token itself


class MaskingFormatter(logging.Formatter):
    """Masks credentials and tokens in every record, and addresses in records at INFO and above, exception
    text included. Relays often quote the recipient in their replies, and the service logs replies; DEBUG
    (asked for to trace one delivery) keeps addresses, never secrets."""

    def format(self, record: logging.LogRecord) -> str:
        text = mask_secrets(super().format(record))
        return mask_addresses(text) if record.levelno >= logging.INFO else text


def configure_logging(settings: Settings) -> None:
    """Attach the service's handlers to the ``email_service`` logger, once per process."""
    logger = logging.getLogger("email_service")
    logger.setLevel(settings.log_level.upper())
    logger.propagate = False
    for handler in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
        logger.removeHandler(handler)
        handler.close()

    formatter = MaskingFormatter(LOG_FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings.log_path:
        settings.log_path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            RotatingFileHandler(
                settings.log_path,
                maxBytes=settings.log_size,
                backupCount=settings.log_count,
                encoding=settings.log_encoding,
            )
        )
    for handler in handlers:
        setattr(handler, _HANDLER_MARK, True)
        handler.setFormatter(formatter)
        logger.addHandler(handler)
