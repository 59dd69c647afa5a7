"""One-click unsubscribe links (RFC 8058): a signed token per recipient, checked without a login, and the
headers that carry it.

A token names a job and a position and carries an HMAC-SHA256 keyed with the job's own random key:
it cannot be forged for another recipient, and it needs no secret in the configuration.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

TOKEN = re.compile(r"([0-9a-f-]{36})\.(\d{1,9})\.([A-Za-z0-9_-]{22})")


@dataclass(frozen=True)
class TokenParts:
    job_id: str
    position: int
    signature: str


def new_key() -> str:
    return secrets.token_urlsafe(32)


def token_for(job_id: str, position: int, key: str) -> str:
    return f"{job_id}.{position}.{_signature(job_id, position, key)}"


def parse_token(token: str) -> TokenParts | None:
    match = TOKEN.fullmatch(token)
    if match is None:
        return None
    return TokenParts(match.group(1), int(match.group(2)), match.group(3))


def is_valid(parts: TokenParts, key: str) -> bool:
    return hmac.compare_digest(parts.signature, _signature(parts.job_id, parts.position, key))


def url_for(public_url: str, job_id: str, position: int, key: str) -> str:
    return f"{public_url.rstrip('/')}/unsubscribe/{token_for(job_id, position, key)}"


def allows_one_click(url: str) -> bool:
    """RFC 8058 section 3.1: a one-click link must be https, or receivers must not POST to it."""
    return urlsplit(url).scheme.lower() == "https"


def header_lines(url: str) -> bytes:
    """The List-Unsubscribe header of ``url``, with List-Unsubscribe-Post only when the link is https."""
    lines = f"List-Unsubscribe: <{url}>\r\n"
    if allows_one_click(url):
        lines += "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    return lines.encode("ascii")


def _signature(job_id: str, position: int, key: str) -> str:
    digest = hmac.digest(key.encode("ascii"), f"{job_id}.{position}".encode("ascii"), "sha256")
    return base64.urlsafe_b64encode(digest[:16]).decode("ascii").rstrip("=")
