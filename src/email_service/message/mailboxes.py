"""Strict parsing of the mailboxes callers give (From, Reply-To): plain names and addresses, nothing a
reader could take for a second address.

RFC 5322 also allows groups, comments, route addresses and obsolete forms, which readers disagree on:
``Bob <news@bob.test>, CEO <ceo@victim.example>`` is two Froms to a relay and one to a lenient check.
Here a mailbox is ``addr@domain`` or ``Display Name <addr@domain>`` (the name as words or one quoted
string) and nothing else; the service writes the header itself from the parsed parts.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from email_service.errors import InvalidAddress
from email_service.message.encoded_words import decoded
from email_service.message.header_values import describe_control_character

# atext (RFC 5322 section 3.2.3), with the non-ASCII characters RFC 6532 adds.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_PHRASE = rf"{_ATEXT}+(?: +{_ATEXT}+)*"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_ADDR_SPEC = rf"{_DOT_ATOM}@{_DOT_ATOM}"
_MAILBOX = re.compile(rf" *(?:(?P<name>{_PHRASE}|{_QUOTED})? *<(?P<angle>{_ADDR_SPEC})>|(?P<bare>{_ADDR_SPEC})) *")
_PLAIN_NAME = re.compile(rf"{_ATEXT}+(?: {_ATEXT}+)*")  # a phrase that reads back the same
_QUOTED_PAIR = re.compile(r"\\(.)")
# Something a reader would take for an address, inside a display name.
_ADDRESS_LIKE = re.compile(r"[^\s<>\"'(),;:\[\]@]+@[^\s<>\"'(),;:\[\]@]+")
# Punctuation that ends or separates addresses: an encoded word may not hide it from a parser.
_ADDRESS_PUNCTUATION = re.compile(r"[,;:<>@\"\\]")
_HINT = "one address, as addr@example.org or Name <addr@example.org>"


@dataclass(frozen=True)
class Mailbox:
    """One parsed mailbox: its display name (None when there is none) and its address as given."""

    name: str | None
    address: str

    @property
    def formatted(self) -> str:
        """The header value it is stored and shown as, which parse_mailbox reads back to the same Mailbox."""
        if self.name is None:
            return self.address
        if _PLAIN_NAME.fullmatch(self.name):
            return f"{self.name} <{self.address}>"
        quoted = self.name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{self.address}>'


def parse_mailbox(value: str) -> Mailbox:
    """The one mailbox ``value`` names; InvalidAddress says why it is not exactly one."""
    mailboxes = parse_mailbox_list(value)
    if len(mailboxes) != 1:
        raise InvalidAddress(f"{len(mailboxes)} addresses where one is allowed ({_HINT})")
    return mailboxes[0]


def parse_mailbox_list(value: str) -> list[Mailbox]:
    """The mailboxes of ``value``, a comma-separated list of mailboxes (no group, comment or route)."""
    if reason := describe_control_character(value):
        raise InvalidAddress(reason)
    mailboxes, position = [], 0
    while True:
        match = _MAILBOX.match(value, position)
        if match is None:
            raise InvalidAddress(f"not {_HINT} at position {position} (no group, comment, route or obsolete syntax)")
        mailboxes.append(_mailbox(match.group("name"), match.group("angle") or match.group("bare")))
        position = match.end()
        if position == len(value):
            return mailboxes
        if value[position] != ",":
            raise InvalidAddress(f"not {_HINT}: unexpected {value[position]!r} at position {position}")
        position += 1


def _mailbox(raw_name: str | None, raw_address: str) -> Mailbox:
    if raw_name is None:
        return Mailbox(None, raw_address)
    # A quoted string without its quotes and escapes; words with one space between them, as readers show them.
    name = _QUOTED_PAIR.sub(r"\1", raw_name[1:-1]) if raw_name.startswith('"') else " ".join(raw_name.split())
    try:
        shown = decoded(name)
    except ValueError as exc:
        raise InvalidAddress(f"display name: {exc}") from None
    if shown != name:
        if reason := describe_control_character(shown):
            raise InvalidAddress(f"display name, once its encoded words are decoded: {reason}")
        if "=?" in shown or _ADDRESS_PUNCTUATION.search(shown):
            raise InvalidAddress("display name: an encoded word may not hide address punctuation or an encoded word")
    # As readers show it: a full-width or small "@" (U+FF20, U+FE6B) reads as an address all the same.
    for found in _ADDRESS_LIKE.findall(unicodedata.normalize("NFKC", shown)):
        if found.lower() != raw_address.lower():
            raise InvalidAddress(f"display name holds another address ({found}) than the mailbox's own")
    return Mailbox(shown or None, raw_address)
