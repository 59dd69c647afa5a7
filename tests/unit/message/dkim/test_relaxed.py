"""Relaxed canonicalisation: the same bytes as dkimpy's for any header and body, and RFC 6376's own examples."""

from __future__ import annotations

import dkim
import pytest
from dkim.canonicalization import Relaxed
from hypothesis import given, settings
from hypothesis import strategies as st

from email_service.message.dkim.relaxed import (
    MessageFormatError,
    field_name,
    relaxed_body,
    relaxed_field,
    split_message,
)

EXAMPLES = settings(max_examples=300, deadline=None, derandomize=True, database=None)

# Line content as it can reach the signer: printable ASCII, runs of spaces and tabs, UTF-8 (SMTPUTF8).
PIECES = [" ", "\t", "  ", "a", "Z", "=", ":", ";", "é", "日", "x" * 30]
LINE = st.lists(st.sampled_from(PIECES), max_size=12).map(lambda pieces: "".join(pieces).encode("utf-8"))
NAME = st.sampled_from([b"Subject", b"X-Tag", b"to", b"List-Unsubscribe", b"Content-Type"])
# No white space before the colon: dkimpy refuses that obsolete syntax (the RFC example below has it).
FIELD = st.builds(
    lambda name, first, more: name + b":" + first + b"".join(b"\r\n" + fold + line for fold, line in more),
    NAME,
    LINE,
    st.lists(st.tuples(st.sampled_from([b" ", b"\t", b"  \t"]), LINE), max_size=3),
)
BODY = st.lists(LINE, max_size=8).map(lambda lines: b"".join(line + b"\r\n" for line in lines))


def _dkimpy_view(message: bytes) -> tuple[list[bytes], bytes]:
    """What dkimpy, as a verifier, canonicalises: each field relaxed, and the body relaxed."""
    headers, body = dkim.rfc822_parse(message)
    return [name + b":" + value for name, value in Relaxed.canonicalize_headers(headers)], Relaxed.canonicalize_body(
        body
    )


@EXAMPLES
@given(fields=st.lists(FIELD, min_size=1, max_size=5), body=BODY)
def test_header_fields_and_body_canonicalise_as_dkimpy_does(fields: list[bytes], body: bytes) -> None:
    message = b"".join(field + b"\r\n" for field in fields) + b"\r\n" + body
    split_fields, split_body = split_message(message)
    assert split_fields == fields and split_body == body
    theirs_fields, theirs_body = _dkimpy_view(message)
    assert [relaxed_field(field) + b"\r\n" for field in split_fields] == theirs_fields
    assert relaxed_body(split_body) == theirs_body
    assert [field_name(field) for field in fields] == [field.split(b":")[0].rstrip(b" \t").lower() for field in fields]


def test_rfc_6376_example_canonicalises_as_section_3_4_6_shows() -> None:
    message = b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n"
    fields, body = split_message(message)
    assert [relaxed_field(field) for field in fields] == [b"a:X", b"b:Y Z"]
    assert relaxed_body(body) == b" C\r\nD E\r\n"


@pytest.mark.parametrize(
    ("body", "canonical"),
    [
        (b"", b""),
        (b"\r\n\r\n", b""),  # an empty body stays empty (RFC 6376 errata 1384)
        (b" \t \r\n", b""),
        (b"last line without CRLF  ", b"last line without CRLF\r\n"),  # it gets one on the wire
        (b"text\r\n \r\n\t\r\n", b"text\r\n"),  # lines of white space only are empty lines
        (b"  lead  and  inner\t\ttabs  \r\nx", b" lead and inner tabs\r\nx\r\n"),
    ],
)
def test_body_edges(body: bytes, canonical: bytes) -> None:
    assert relaxed_body(body) == canonical


def test_a_message_with_only_headers_has_an_empty_body() -> None:
    assert split_message(b"From: a@example.org\r\n") == ([b"From: a@example.org"], b"")
    assert split_message(b"\r\nbody\r\n") == ([], b"body\r\n")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"From: a@example.org\nTo: b@example.org\n\nbody\n", "bare CR or LF"),
        (b"From: a@example.org\r\n\r\nbody\rmore\r\n", "bare CR or LF"),
        (b"From: a@example.org\r\n\r\nbody\n", "bare CR or LF"),
        (b" continued\r\nFrom: a@example.org\r\n\r\nbody\r\n", "continuation line"),
        (b"From: a@example.org\r\nnot a header\r\n\r\nbody\r\n", "no colon"),
    ],
)
def test_bytes_that_are_not_an_smtp_message_are_refused(message: bytes, reason: str) -> None:
    with pytest.raises(MessageFormatError, match=reason):
        split_message(message)
