"""DKIM signatures (RFC 6376) over each built message, covering its List-Unsubscribe headers (RFC 8058)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from email_service.errors import ConfigurationError, DkimError, MessageFormatError
from email_service.message.dkim.relaxed import (
    field_name,
    relaxed_body,
    relaxed_field,
    split_message,
)
from email_service.message.folding import LINE_WIDTH, fold

log = logging.getLogger(__name__)

# Signed when present, in this order; "from" once more at the end: a header named in h= more times
# than the message has it cannot be added without breaking the signature (oversigning).
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"mime-version",
    b"content-type",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)
OVERSIGNED_HEADERS = (b"from",)
MIN_RSA_BITS = 1024  # receivers ignore shorter keys (RFC 8301); 2048 is the usual size

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class DkimKey:
    """A loaded private key, parsed once at start-up and kept out of the repr."""

    algorithm: bytes  # b"rsa-sha256" or b"ed25519-sha256"
    bits: int
    private_key: RSAPrivateKey | Ed25519PrivateKey = field(repr=False)


def load_key(path: Path) -> DkimKey:
    """Read and check a PEM RSA or Ed25519 private key; raises ConfigurationError naming
    DKIM_PRIVATE_KEY_FILE and saying why, never what the file holds."""
    key_or_reason = _read_key(path)
    if isinstance(key_or_reason, DkimKey):
        return key_or_reason
    raise ConfigurationError(f"DKIM_PRIVATE_KEY_FILE {path}: {key_or_reason}")


def _read_key(path: Path) -> DkimKey | str:
    """The key at ``path``, or the reason it cannot be used."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    # The first private key block: a file may also hold a certificate or EC parameters.
    match = next((m for m in _PEM.finditer(data) if m.group(1).endswith(b"PRIVATE KEY")), None)
    if match is None:
        return "holds no PEM private key (-----BEGIN PRIVATE KEY-----)"
    label = match.group(1)
    if label not in (b"PRIVATE KEY", b"RSA PRIVATE KEY"):
        return f"holds a PEM {label.decode('ascii')}; an unencrypted RSA or Ed25519 private key is needed"
    try:
        der = base64.b64decode(b"".join(match.group(2).split()), validate=True)
    except (binascii.Error, ValueError):
        return "is not valid PEM (bad base64)"
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # their texts may quote key bytes: none is kept
        key = None
    if isinstance(key, Ed25519PrivateKey):
        return DkimKey(algorithm=b"ed25519-sha256", bits=256, private_key=key)
    if not isinstance(key, RSAPrivateKey):
        return "is not an RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8) private key"
    if key.key_size < MIN_RSA_BITS:
        return f"is a {key.key_size}-bit RSA key; receivers need at least {MIN_RSA_BITS} bits (use 2048)"
    return DkimKey(algorithm=b"rsa-sha256", bits=key.key_size, private_key=key)


class DkimSigner:
    """Signs each message with the domain's key; built once per process, shared by its threads."""

    def __init__(self, domain: str, selector: str, key: DkimKey) -> None:
        self.domain = domain
        self.selector = selector
        self.key = key
        # The tags before t=, the same for every message, as (separator, word) pairs for fold.
        self._fixed_words = [
            (b" ", b"v=1;"),
            (b" ", b"a=" + key.algorithm + b";"),
            (b" ", b"c=relaxed/relaxed;"),
            (b" ", b"d=" + domain.encode("ascii") + b";"),
            (b" ", b"s=" + selector.encode("ascii") + b";"),
        ]

    def __repr__(self) -> str:
        return f"DkimSigner(d={self.domain}, s={self.selector}, a={self.key.algorithm.decode()})"

    @classmethod
    def load(cls, domain: str, selector: str, key_file: Path) -> DkimSigner:
        """The signer of ``domain`` with the key in ``key_file``; raises ConfigurationError if it cannot be used."""
        key = load_key(key_file)
        log.info("DKIM signing as d=%s s=%s (%s, %d bits)", domain, selector, key.algorithm.decode(), key.bits)
        return cls(domain, selector, key)

    def sign(self, message: bytes) -> bytes:
        """The message with a DKIM-Signature header first (relaxed/relaxed, CRLF-folded, ASCII)."""
        try:
            fields, body = split_message(message)
        except MessageFormatError as exc:
            raise DkimError(f"DKIM signing failed: {exc}") from None
        names = [field_name(f) for f in fields]
        if b"from" not in names:
            raise DkimError("DKIM signing failed: the message has no From header, which must be signed")
        include = [name for name in SIGNED_HEADERS if name in names] + list(OVERSIGNED_HEADERS)
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())
        *h_names, last = include
        words = [
            *self._fixed_words,
            (b" ", b"t=%d;" % time.time()),
            (b" ", b"h=" + h_names[0] + b":"),  # h= may be folded after any colon
            *((b"", name + b":") for name in h_names[1:]),
            (b"", last + b";"),
            (b" ", b"bh=" + body_hash + b";"),
            (b" ", b"b="),
        ]
        unsigned, column = fold(b"DKIM-Signature:", words)
        # What is signed (RFC 6376 §3.7): the fields h= names, then this header with b= empty, no final CRLF.
        signed_data = b"".join(_selected(fields, names, include)) + relaxed_field(unsigned)
        signature = base64.b64encode(self._signature(signed_data))
        # b= may be folded anywhere: verifiers remove its value, folding included, before hashing.
        room, width = max(LINE_WIDTH - column, 0), LINE_WIDTH - 1
        lines = [signature[:room], *(signature[i : i + width] for i in range(room, len(signature), width))]
        return unsigned + b"\r\n ".join(lines) + b"\r\n" + message

    def _signature(self, data: bytes) -> bytes:
        """The private-key operation, in OpenSSL through cryptography (its cost: bench/dkim_signing.py)."""
        key = self.key.private_key
        if isinstance(key, RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return key.sign(hashlib.sha256(data).digest())  # ed25519-sha256 signs the data's SHA-256 (RFC 8463)


def _selected(fields: list[bytes], names: list[bytes], include: list[bytes]) -> list[bytes]:
    """The canonical fields h= names, each name taking its last instance not yet taken (RFC 6376 §5.4.2).

    A name listed more often than the message has it takes nothing: that is what makes oversigning work.
    """
    remaining: dict[bytes, list[int]] = {}
    for index, name in enumerate(names):
        remaining.setdefault(name, []).append(index)
    selected = []
    for name in include:
        indexes = remaining.get(name)
        if indexes:
            selected.append(relaxed_field(fields[indexes.pop()]) + b"\r\n")
    return selected
