"""The header lines of an attached file, written for every reader: ``name`` on Content-Type (an RFC 2047
encoded word in quotes when it is not plain ASCII, as Thunderbird, Outlook and Gmail write it, which
munpack and older clients read) and ``filename`` on Content-Disposition (RFC 2231 ``filename*``, in
continuations when long), every line within 76 columns."""

from __future__ import annotations

import re
from urllib.parse import quote

from email_service.message.encoded_words import encoded_words
from email_service.message.folding import ENCODED_WORD_LINE_WIDTH, fold

# type/subtype as RFC 2045 tokens, lower case: the only form intake stores.
CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
# Printable ASCII a quoted string holds without escapes, no "=?" a reader would decode, and no space at
# either end (some readers strip it from a quoted value).
_PLAIN_FILENAME = re.compile(r"(?! )(?:(?!=\?)[\x20-\x21\x23-\x5b\x5d-\x7e])+(?<! )")
# RFC 2231 attribute-char beyond letters and digits; anything else is percent-encoded.
_ATTRIBUTE_CHARACTERS = "!#$&+-.^_`{|}~"
# Characters of percent-encoded name per continuation: ' filename*NN*=' + 50 + ';' stays within 76.
_SEGMENT = 50


def attachment_head(filename: str, content_type: str) -> bytes:
    """Content-Type, Content-Transfer-Encoding (base64) and Content-Disposition of a file, CRLF-ended."""
    if not CONTENT_TYPE.fullmatch(content_type):
        raise ValueError(f"content type {content_type!r} is not type/subtype")
    width = ENCODED_WORD_LINE_WIDTH
    # The value's first word is a word of its own: a long type may put the name on the next line.
    content_type_words = [(b" ", f"{content_type};".encode("ascii")), *_name_words(filename)]
    content_type_line, _ = fold(b"Content-Type:", content_type_words, width)
    disposition, _ = fold(b"Content-Disposition:", [(b" ", b"attachment;"), *_filename_words(filename)], width)
    return content_type_line + b"\r\nContent-Transfer-Encoding: base64\r\n" + disposition + b"\r\n"


def _is_plain(filename: str, parameter: str) -> bool:
    return bool(_PLAIN_FILENAME.fullmatch(filename)) and len(f' {parameter}="{filename}"') <= ENCODED_WORD_LINE_WIDTH


def _name_words(filename: str) -> list[tuple[bytes, bytes]]:
    if _is_plain(filename, "name"):
        return [(b" ", f'name="{filename}"'.encode("ascii"))]
    words = encoded_words(filename)
    words[0] = f'name="{words[0]}'
    words[-1] += '"'
    return [(b" ", word.encode("ascii")) for word in words]


def _filename_words(filename: str) -> list[tuple[bytes, bytes]]:
    if _is_plain(filename, "filename"):
        return [(b" ", f'filename="{filename}"'.encode("ascii"))]
    # Whole characters per segment: some readers decode each continuation on its own.
    segments, segment = [], ""
    for character in filename:
        encoded = quote(character, safe=_ATTRIBUTE_CHARACTERS)
        if len(segment) + len(encoded) > _SEGMENT:
            segments.append(segment)
            segment = ""
        segment += encoded
    segments.append(segment)
    if len(segments) == 1:
        return [(b" ", f"filename*=utf-8''{segments[0]}".encode("ascii"))]
    parameters = [f"filename*{index}*={segment}" for index, segment in enumerate(segments)]
    parameters[0] = f"filename*0*=utf-8''{segments[0]}"
    return [(b" ", f"{parameter};".encode("ascii")) for parameter in parameters[:-1]] + [
        (b" ", parameters[-1].encode("ascii"))
    ]
