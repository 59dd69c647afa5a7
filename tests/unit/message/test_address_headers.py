"""Address header lines: how a display name is written, folded and read back."""

from __future__ import annotations

import email
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from email_service.errors import TemplateError
from email_service.message.address_headers import address_line, parse_mailboxes


def _read(line: bytes) -> EmailMessage:
    text = line.decode("utf-8") + "\r\n"
    message = email.message_from_string(text, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _decoded_name(line: bytes) -> str:
    """The display name as an RFC 2047 decoder reads it: the email package's modern parser keeps
    white space between two encoded words across a fold, which RFC 2047 says to drop."""
    unfolded = line.decode("utf-8").partition(":")[2].replace("\r\n", "").strip()
    return str(make_header(decode_header(unfolded))).rpartition(" <")[0]


def _same_but_white_space(found: str, given: str) -> bool:
    return "".join(found.split()) == "".join(given.split())


@pytest.mark.parametrize(
    ("name", "written"),
    [
        (None, b"To: ann@example.com\r\n"),
        ("Ann Lee", b"To: Ann Lee <ann@example.com>\r\n"),
        ("Lee, Ann", b'To: "Lee, Ann" <ann@example.com>\r\n'),
        ('Ann "the boss"', b'To: "Ann \\"the boss\\"" <ann@example.com>\r\n'),
        ("Zoë", b"To: =?utf-8?b?Wm/Dqw==?= <ann@example.com>\r\n"),
        # Some readers decode an encoded word even in a quoted string: such a name is encoded whole.
        ("=?utf-8?b?QQ==?=", b"To: =?utf-8?b?PT91dGYtOD9iP1FRPT0/PQ==?= <ann@example.com>\r\n"),
    ],
)
def test_a_display_name_is_written_plain_quoted_or_encoded(name: str | None, written: bytes) -> None:
    line = address_line("To", [(name, "ann@example.com")], utf8=False)
    assert line == written
    (address,) = _read(line)["To"].addresses
    assert (address.display_name, address.addr_spec) == (name or "", "ann@example.com")


def test_a_long_name_is_folded_into_encoded_words_of_at_most_75_characters() -> None:
    name = "Ann, eve@example.net, " + "w " * 40 + "é" * 30
    line = address_line("To", [(name, "ann@example.com")], utf8=False)
    lines = line.removesuffix(b"\r\n").split(b"\r\n")
    assert len(lines) > 2 and all(len(part) <= 78 for part in lines)
    assert all(len(word) <= 75 for part in lines for word in part.split() if word.startswith(b"=?"))
    assert _decoded_name(line) == name
    (address,) = _read(line)["To"].addresses
    assert address.addr_spec == "ann@example.com" and _same_but_white_space(address.display_name, name)


def test_an_internationalized_domain_is_written_in_ascii_and_a_utf8_local_part_only_with_smtputf8() -> None:
    assert address_line("Reply-To", [(None, "desk@bücher.de")], utf8=False) == b"Reply-To: desk@xn--bcher-kva.de\r\n"
    assert address_line("To", [(None, "jörg@bücher.de")], utf8=True) == "To: jörg@xn--bcher-kva.de\r\n".encode()
    with pytest.raises(TemplateError, match="non-ASCII local part"):
        address_line("To", [(None, "jörg@example.com")], utf8=False)


def test_several_mailboxes_of_a_template_header_are_kept_apart() -> None:
    mailboxes = parse_mailboxes("Reply-To", 'Desk <desk@example.org>, "Sales, EU" <sales@example.org>, x@example.org')
    line = address_line("Reply-To", mailboxes, utf8=False)
    found = [(a.display_name, a.addr_spec) for a in _read(line)["Reply-To"].addresses]
    assert found == [("Desk", "desk@example.org"), ("Sales, EU", "sales@example.org"), ("", "x@example.org")]


@pytest.mark.parametrize("value", ["", "not an address", "a@b@c", "<@example.org>", "a b@example.org"])
def test_a_template_header_that_is_not_an_address_is_refused(value: str) -> None:
    with pytest.raises(TemplateError, match="Reply-To"):
        address_line("Reply-To", parse_mailboxes("Reply-To", value), utf8=False)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(name=st.text(st.characters(exclude_categories=["Cc", "Cs", "Zl", "Zp"]), min_size=1, max_size=256))
def test_any_display_name_reads_back_as_one_mailbox_with_short_lines(name: str) -> None:
    line = address_line("To", [(name, "ann@example.com")], utf8=False)
    assert line.isascii()
    assert all(len(part) <= 78 for part in line.removesuffix(b"\r\n").split(b"\r\n"))
    (address,) = _read(line)["To"].addresses
    assert address.addr_spec == "ann@example.com" and _same_but_white_space(address.display_name, name)
    if b"=?" in line:
        assert _decoded_name(line) == name
