"""Per-recipient envelope senders (VERP): ``bounces+<token>@<bounce domain>``, so that a bounce names
its recipient whatever the relay did to the returned headers.

The token is the job id and the recipient's position, with an HMAC-SHA256 keyed with BOUNCE_SECRET:
a bounce for a made-up token is recognised without a database query. It is lowercase base32 (MTAs
may change the case of a local part) and short: the whole local part stays within 64 octets.
The same key signs each Message-ID (``message_id_mac``), so that a report returning only the
Message-ID proves it is about a message we sent: the job id and position alone are known to every
recipient of the job.
"""

from __future__ import annotations

import base64
import hmac
import uuid
from dataclasses import dataclass

_MAC_BYTES = 10  # 80 bits
_BODY_BYTES = 20  # a UUID and a 32-bit position
TOKEN_LENGTH = 48  # base32 of 30 bytes
MESSAGE_ID_MAC_LENGTH = 16  # base32 of _MAC_BYTES
POSTMARK_REFERENCE_HEADER = "X-PM-Metadata-email_service_ref"  # comes back as Metadata.email_service_ref


@dataclass(frozen=True)
class BounceTracking:
    """How a job's messages name their recipient to whoever reports a bounce."""

    secret: str  # BOUNCE_SECRET
    local_part: str
    domain: str  # BOUNCE_DOMAIN; empty: the envelope sender stays the sender's address
    reference_header: str | None = None  # a header carrying the token, for providers that echo it back

    def envelope_for(self, job_id: str, position: int) -> str | None:
        if not self.domain:
            return None
        return f"{self.local_part}+{token_for(job_id, position, self.secret)}@{self.domain}"


@dataclass(frozen=True)
class Reference:
    job_id: str
    position: int


def token_for(job_id: str, position: int, secret: str) -> str:
    body = _body(job_id, position)
    return base64.b32encode(body + _mac(b"verp:", body, secret)).decode("ascii").lower()


def message_id_mac(job_id: str, position: int, secret: str) -> str:
    """The MAC a Message-ID of ours carries: lowercase base32, ``MESSAGE_ID_MAC_LENGTH`` characters."""
    return base64.b32encode(_mac(b"message-id:", _body(job_id, position), secret)).decode("ascii").lower()


def read_token(token: str, secret: str) -> Reference | None:
    """The recipient a token names; None when it is not one of ours (malformed, or its HMAC does not check)."""
    if len(token) != TOKEN_LENGTH:
        return None
    try:
        raw = base64.b32decode(token.upper())
    except ValueError:
        return None
    body, mac = raw[:_BODY_BYTES], raw[_BODY_BYTES:]
    if not hmac.compare_digest(mac, _mac(b"verp:", body, secret)):
        return None
    return Reference(str(uuid.UUID(bytes=body[:16])), int.from_bytes(body[16:], "big"))


def token_in(address: str, local_part: str, domain: str) -> str | None:
    """The token of ``local_part+token@domain`` (case-insensitive), or None for any other address."""
    local, _, at = address.strip().strip("<>").rpartition("@")
    prefix, plus, token = local.partition("+")
    if not plus or prefix.lower() != local_part.lower() or at.lower() != domain.lower():
        return None
    return token.lower()


def _body(job_id: str, position: int) -> bytes:
    return uuid.UUID(job_id).bytes + position.to_bytes(4, "big")


def _mac(purpose: bytes, body: bytes, secret: str) -> bytes:
    """The truncated HMAC of ``body``; ``purpose`` keeps a token's MAC from serving as a Message-ID's."""
    return hmac.digest(secret.encode("utf-8"), purpose + body, "sha256")[:_MAC_BYTES]
