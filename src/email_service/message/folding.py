"""Folding a header field (RFC 5322 §2.2.3): CRLF and a space stand for white space where a line would
pass the recommended 78 octets."""

from __future__ import annotations

from collections.abc import Iterable

LINE_WIDTH = 78  # RFC 5322's recommended limit; only a word longer than that makes a longer line
ENCODED_WORD_LINE_WIDTH = 76  # RFC 2047 section 2: a line holding an encoded word


def fold(start: bytes, words: Iterable[tuple[bytes, bytes]], width: int = LINE_WIDTH) -> tuple[bytes, int]:
    """``start`` then each (separator, word), with CRLF SP instead of the separator before a word that
    would pass ``width`` (never before the first word); returns the text and the column it ends at."""
    out = [start]
    column = len(start)
    for index, (separator, word) in enumerate(words):
        if column + len(separator) + len(word) > width and index:
            out.append(b"\r\n " + word)
            column = 1 + len(word)
        else:
            out.append(separator + word)
            column += len(separator) + len(word)
    return b"".join(out), column
