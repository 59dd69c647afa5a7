"""Address header lines (From, To, Reply-To), written without the email package's folder.

Python 3.11's folder drops the quotes of a display name it has to fold (``"Ann, eve@example.net"``
then reads as two addresses), leaves the name of an SMTPUTF8 message unfolded past 998 octets, and
writes RFC 2047 encoded words inside an internationalized address. Here a display name is written
as plain words, as one short quoted string, or as base64 encoded words, each of which may start a
folded line of at most 76 characters (RFC 2047 section 2); an address is never encoded, only its
domain put in its ASCII (IDNA) form.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import idna

from email_service.errors import InvalidAddress, TemplateError
from email_service.message.encoded_words import encoded_words
from email_service.message.folding import ENCODED_WORD_LINE_WIDTH, fold
from email_service.message.mailboxes import parse_mailbox, parse_mailbox_list

# atext without "=" and "?": a plain word can never be read as an encoded word.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/^_`{|}~-]+)*")
# Printable ASCII that a quoted string holds with \ escapes only.
_QUOTABLE_NAME = re.compile(r"[\x20-\x7e]*")
_LOCAL_PART = re.compile(r"[^\x00-\x20\x7f\"(),:;<>@\[\\\]]+")
_ASCII_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*")


def transport_address(address: str) -> str:
    """The address as relays expect it: an internationalized domain in its ASCII (IDNA) form."""
    local, _, domain = address.rpartition("@")
    if domain.isascii():
        return address
    return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"


def address_line(header: str, mailboxes: Sequence[tuple[str | None, str]], *, utf8: bool) -> bytes:
    """The header line naming ``mailboxes`` (display name or None, address), folded, CRLF-ended.

    ``utf8`` is true for an SMTPUTF8 message, the only kind that may carry a non-ASCII local part.
    """
    if not mailboxes:
        raise TemplateError(f"header {header}: no address")
    tokens: list[str] = []
    for index, (name, address) in enumerate(mailboxes):
        spec = _address_spec(header, address, utf8=utf8)
        tokens += _display_name_tokens(name) if name else []
        tokens.append((f"<{spec}>" if name else spec) + ("," if index < len(mailboxes) - 1 else ""))
    words = [(b" ", token.encode("utf-8")) for token in tokens]
    folded, _ = fold(f"{header}:".encode(), words, ENCODED_WORD_LINE_WIDTH)
    return folded + b"\r\n"


def parse_mailboxes(header: str, value: str, *, single: bool = False) -> list[tuple[str | None, str]]:
    """The (display name, address) pairs of a header value such as ``Desk <desk@example.org>, b@example.org``,
    parsed strictly (mailboxes.py); ``single`` asks for exactly one (From)."""
    try:
        mailboxes = [parse_mailbox(value)] if single else parse_mailbox_list(value)
    except InvalidAddress as exc:
        raise TemplateError(f"header {header}: {exc}") from None
    return [(mailbox.name, mailbox.address) for mailbox in mailboxes]


def _address_spec(header: str, address: str, *, utf8: bool) -> str:
    try:
        spec = transport_address(address)
    except idna.IDNAError as exc:
        raise TemplateError(f"header {header}: {address!r} has an invalid domain ({exc})") from None
    local, at, domain = spec.rpartition("@")
    if not (at and _LOCAL_PART.fullmatch(local) and _ASCII_DOMAIN.fullmatch(domain)):
        raise TemplateError(f"header {header}: {address!r} is not an address")
    if not (utf8 or local.isascii()):
        raise TemplateError(f"header {header}: {address!r} has a non-ASCII local part, which needs SMTPUTF8")
    return spec


def _display_name_tokens(name: str) -> list[str]:
    room = ENCODED_WORD_LINE_WIDTH - len("Reply-To: ")  # the longest word that fits a line
    if _PLAIN_NAME.fullmatch(name) and all(len(word) <= room for word in name.split(" ")):
        return name.split(" ")
    quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    # A quoted string is never folded here; an "=?" in it is decoded by some readers all the same.
    if _QUOTABLE_NAME.fullmatch(name) and "=?" not in name and len(quoted) <= room:
        return [quoted]
    return encoded_words(name)  # split into words short enough to fold
