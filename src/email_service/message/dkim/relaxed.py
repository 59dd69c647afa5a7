"""DKIM's relaxed canonicalisation (RFC 6376 §3.4.2, §3.4.4) of a message's header fields and body."""

from __future__ import annotations

from email_service.errors import MessageFormatError

_WSP = b" \t"


def split_message(message: bytes) -> tuple[list[bytes], bytes]:
    """The message's header fields (each with its continuation lines, without the last CRLF) and its body.

    SMTP messages end every line with CRLF; a bare CR or LF would be read differently by each
    relay and verifier, so it is refused rather than guessed at.
    """
    if not message.count(b"\r") == message.count(b"\n") == message.count(b"\r\n"):
        raise MessageFormatError("the message has a bare CR or LF: SMTP lines end with CRLF")
    if message.startswith(b"\r\n"):
        head, body = b"", message[2:]
    else:
        head, separator, body = message.partition(b"\r\n\r\n")
        if not separator:  # header fields only
            head, body = head.removesuffix(b"\r\n"), b""
    fields: list[bytes] = []
    for line in head.split(b"\r\n") if head else ():
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise MessageFormatError("the message starts with a continuation line")
            fields[-1] += b"\r\n" + line
        elif b":" in line:
            fields.append(line)
        else:
            raise MessageFormatError("a header line has no colon")
    return fields, body


def field_name(field: bytes) -> bytes:
    """The field's name, lowercase, as h= lists it."""
    return field.partition(b":")[0].rstrip(_WSP).lower()


def relaxed_field(field: bytes) -> bytes:
    """``name:value`` with the name lowercase, the value unfolded, runs of WSP one space, none at either end."""
    name, _, value = field.partition(b":")
    value = _compress(value.replace(b"\r\n", b"")).strip(_WSP)
    return name.rstrip(_WSP).lower() + b":" + value


def relaxed_body(body: bytes) -> bytes:
    """Runs of WSP one space, none at line ends, no empty lines at the end, a final CRLF unless empty."""
    body = _compress(body).replace(b" \r\n", b"\r\n")
    # A last line without CRLF goes on the wire with one, so its trailing WSP is ignored too.
    body = body.rstrip(b" ").rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


def _compress(text: bytes) -> bytes:
    """Every run of spaces and tabs as one space; most text has neither a tab nor two spaces in a row,
    and these scans cost far less than a regular expression's pass over every byte."""
    if b"\t" in text:
        text = text.replace(b"\t", b" ")
    while b"  " in text:
        text = text.replace(b"  ", b" ")
    return text
