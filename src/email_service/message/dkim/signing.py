"""DKIM signatures (RFC 6376) over each built message, covering its List-Unsubscribe headers (RFC 8058)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import time
from collections import Counter
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

# Signed when present, in this order.
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
# Headers a forger could add a second copy of, which a reader may show instead of ours: h= names each
# one more time than the message has it, so that adding one breaks the signature (oversigning, RFC
# 6376 §8.15). Reply-To is named even when absent: its absence is signed too.
OVERSIGNED_HEADERS = tuple(name for name in SIGNED_HEADERS if not name.startswith(b"list-"))
_SIGNED_WHEN_ABSENT = frozenset({b"reply-to"})
MIN_RSA_BITS = 1024  # receivers ignore shorter keys (RFC 8301); 2048 is the usual size

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class DkimKey:
    """A loaded private key, parsed once at start-up and kept out of the repr."""

    algorithm: bytes  # b"rsa-sha256" or b"ed25519-sha256"
    bits: int
    private_key: RSAPrivateKey | Ed25519PrivateKey = field(repr=False)


def load_key(path: Path, setting: str = "DKIM_PRIVATE_KEY_FILE") -> DkimKey:
    """Read and check a PEM RSA or Ed25519 private key; raises ConfigurationError naming the
    ``setting`` and saying why, never what the file holds."""
    key_or_reason = _read_key(path)
    if isinstance(key_or_reason, DkimKey):
        return key_or_reason
    raise ConfigurationError(f"{setting} {path}: {key_or_reason}")


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


def header_list(names: list[bytes]) -> list[bytes]:
    """The h= list of a message whose header names (lowercase, in order) are ``names``."""
    present = Counter(names)
    listed: list[bytes] = []
    for name in SIGNED_HEADERS:
        oversigned = name in OVERSIGNED_HEADERS and (present[name] > 0 or name in _SIGNED_WHEN_ABSENT)
        listed += [name] * (present[name] + oversigned)
    return listed


@dataclass(frozen=True)
class _Selector:
    """One key and the tags before t= of its signatures, the same for every message, as (separator,
    word) pairs for fold."""

    name: str
    key: DkimKey
    fixed_words: list[tuple[bytes, bytes]]


class DkimSigner:
    """Signs each message with the domain's key, or with two keys of different algorithms (one
    DKIM-Signature each: RSA for the verifiers that know no Ed25519, RFC 8463 §4); built once per
    process, shared by its threads."""

    def __init__(self, domain: str, selector: str, key: DkimKey, second: tuple[str, DkimKey] | None = None) -> None:
        self.domain = domain
        self.selectors = [
            _Selector(name, key, self._fixed_words(name, key))
            for name, key in [(selector, key), *filter(None, [second])]
        ]

    def _fixed_words(self, selector: str, key: DkimKey) -> list[tuple[bytes, bytes]]:
        return [
            (b" ", b"v=1;"),
            (b" ", b"a=" + key.algorithm + b";"),
            (b" ", b"c=relaxed/relaxed;"),
            (b" ", b"d=" + self.domain.encode("ascii") + b";"),
            (b" ", b"s=" + selector.encode("ascii") + b";"),
        ]

    def __repr__(self) -> str:
        keys = ", ".join(f"s={s.name} a={s.key.algorithm.decode()}" for s in self.selectors)
        return f"DkimSigner(d={self.domain}, {keys})"

    @classmethod
    def load(cls, domain: str, selector: str, key_file: Path, second: tuple[str, Path] | None = None) -> DkimSigner:
        """The signer of ``domain`` with the key in ``key_file``, and the ``second`` (selector, key file)
        when given, of the other algorithm; raises ConfigurationError if a key cannot be used."""
        key = load_key(key_file)
        keys = [(selector, key)]
        if second is not None:
            other = load_key(second[1], setting="DKIM_SECOND_PRIVATE_KEY_FILE")
            if other.algorithm == key.algorithm:
                raise ConfigurationError(
                    f"DKIM_SECOND_PRIVATE_KEY_FILE {second[1]}: holds a {other.algorithm.decode()} key like "
                    "DKIM_PRIVATE_KEY_FILE; the second key must be of the other algorithm (RSA beside Ed25519)"
                )
            keys.append((second[0], other))
        for name, loaded in keys:
            log.info("DKIM signing as d=%s s=%s (%s, %d bits)", domain, name, loaded.algorithm.decode(), loaded.bits)
        if all(loaded.algorithm == b"ed25519-sha256" for _, loaded in keys):
            log.warning(
                "DKIM: an Ed25519 key alone is not enough: verifiers without Ed25519 (Mail::DKIM in SpamAssassin "
                "and amavis) see the mail unsigned; add an RSA key (DKIM_SECOND_SELECTOR, DKIM_SECOND_PRIVATE_KEY_FILE)"
            )
        return cls(domain, selector, key, keys[1] if len(keys) > 1 else None)

    def sign(self, message: bytes) -> bytes:
        """The message with a DKIM-Signature header first per key (relaxed/relaxed, CRLF-folded, ASCII)."""
        try:
            fields, body = split_message(message)
        except MessageFormatError as exc:
            raise DkimError(f"DKIM signing failed: {exc}") from None
        names = [field_name(f) for f in fields]
        if b"from" not in names:
            raise DkimError("DKIM signing failed: the message has no From header, which must be signed")
        include = header_list(names)
        signed_fields = b"".join(_selected(fields, names, include))
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())
        now = int(time.time())
        headers = [self._header(selector, include, signed_fields, body_hash, now) for selector in self.selectors]
        return b"".join(headers) + message

    def _header(
        self, selector: _Selector, include: list[bytes], signed_fields: bytes, body_hash: bytes, now: int
    ) -> bytes:
        """One DKIM-Signature header with its CRLF."""
        *h_names, last = include
        words = [
            *selector.fixed_words,
            (b" ", b"t=%d;" % now),
            (b" ", b"h=" + h_names[0] + b":"),  # h= may be folded after any colon
            *((b"", name + b":") for name in h_names[1:]),
            (b"", last + b";"),
            (b" ", b"bh=" + body_hash + b";"),
            (b" ", b"b="),
        ]
        unsigned, column = fold(b"DKIM-Signature:", words)
        # What is signed (RFC 6376 §3.7): the fields h= names, then this header with b= empty, no final CRLF.
        signature = base64.b64encode(_signature(selector.key, signed_fields + relaxed_field(unsigned)))
        # b= may be folded anywhere: verifiers remove its value, folding included, before hashing.
        room, width = max(LINE_WIDTH - column, 0), LINE_WIDTH - 1
        lines = [signature[:room], *(signature[i : i + width] for i in range(room, len(signature), width))]
        return unsigned + b"\r\n ".join(lines) + b"\r\n"


def _signature(key: DkimKey, data: bytes) -> bytes:
    """The private-key operation, in OpenSSL through cryptography (its cost: bench/dkim_signing.py)."""
    private_key = key.private_key
    if isinstance(private_key, RSAPrivateKey):
        return private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return private_key.sign(hashlib.sha256(data).digest())  # ed25519-sha256 signs the data's SHA-256 (RFC 8463)


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
