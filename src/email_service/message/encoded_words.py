"""RFC 2047 encoded words: written short enough for a 76-column line, and decoded from callers' text to check it."""

from __future__ import annotations

import base64
from email.errors import HeaderParseError
from email.header import decode_header

PREFIX = "=?utf-8?b?"
# RFC 2047 section 2 allows 75 characters a word and 76 a line holding one. 39 octets make 52 base64
# characters and a word of 64, so a word fits after "Reply-To: " or ' name="' with room for a closing '";'.
_WORD_OCTETS = 39


def encoded_words(text: str) -> list[str]:
    """``text`` as base64 encoded words, each holding whole characters (RFC 2047 section 5)."""
    words, chunk = [], b""
    for character in text:
        octets = character.encode("utf-8")
        if len(chunk) + len(octets) > _WORD_OCTETS:
            words.append(chunk)
            chunk = b""
        chunk += octets
    words.append(chunk)
    return [f"{PREFIX}{base64.b64encode(word).decode('ascii')}?=" for word in words]


def decoded(text: str) -> str:
    """``text`` with its encoded words decoded, as a mail reader shows it; ValueError if one does not decode."""
    if "=?" not in text:
        return text
    try:
        chunks = decode_header(text)
        # decode_header gives the text between encoded words as raw-unicode-escape octets (charset None).
        return "".join(
            chunk.decode(charset or "raw-unicode-escape", errors="replace") if isinstance(chunk, bytes) else chunk
            for chunk, charset in chunks
        )
    except (HeaderParseError, LookupError) as exc:  # LookupError: an unknown charset
        raise ValueError(f"an encoded word that does not decode ({exc})") from None
