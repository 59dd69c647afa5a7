"""Header-value safety: no control character may reach a message header.

Python 3.11.7's email package lets a trailing or encoded newline inject headers
(CVE-2024-6923), so the service refuses them itself, whatever the interpreter.
"""

from __future__ import annotations

import re

from email_service.message.encoded_words import decoded

# C0 controls (tab included: a folded header is ours to make), DEL, C1 controls,
# and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def find_control_character(value: str) -> int | None:
    """Index of the first character not allowed in a header value, or None."""
    match = _CONTROL.search(value)
    return match.start() if match else None


def describe_control_character(value: str) -> str | None:
    """A reason naming the first forbidden character, or None when the value is safe."""
    index = find_control_character(value)
    if index is None:
        return None
    return f"control character U+{ord(value[index]):04X} at position {index} is not allowed in a header"


def describe_unsafe_text(value: str) -> str | None:
    """Like describe_control_character, for the value as given and as a reader decodes its RFC 2047
    encoded words (``=?utf-8?b?DQo...?=`` is a line break once decoded)."""
    if reason := describe_control_character(value):
        return reason
    try:
        text = decoded(value)
    except ValueError as exc:
        return str(exc)
    if reason := describe_control_character(text):
        return f"once its encoded words are decoded, {reason}"
    return None


# A field's first line: its name (printable ASCII but ":"), then the colon.
_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+):")


def describe_header_block(block: bytes, names: list[str]) -> str | None:
    """Why a built block of header lines (each CRLF-ended) is not exactly the fields ``names`` in that order,
    or None: a CR or LF inside a line, a blank continuation, or one line more than was written is refused."""
    lines = block.split(b"\r\n")
    if lines.pop() != b"":
        return "a header block that does not end with CRLF"
    found: list[str] = []
    for line in lines:
        if b"\r" in line or b"\n" in line:
            return "a bare CR or LF inside a header line"
        if line[:1] in (b" ", b"\t"):
            if not found or not line.strip():
                return "a continuation line with nothing to continue"
            continue
        match = _FIELD_NAME.match(line)
        if match is None:
            return f"a header line that is not a field: {line[:40]!r}"
        found.append(match.group(1).decode("ascii").lower())
    if found != [name.lower() for name in names]:
        return f"header fields {found} written where {[name.lower() for name in names]} were meant"
    return None
