"""DKIM signatures (RFC 6376) over each built message, covering its List-Unsubscribe headers (RFC 8058)."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import dkim
import dkim.crypto

if TYPE_CHECKING:
    from .config import Settings

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

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DNS_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
# PKCS#8 (RFC 8410) Ed25519 private key: version, the Ed25519 OID, then the 32-byte seed
# (optionally followed by attributes or the public key, which are not needed).
_ED25519_PKCS8 = re.compile(rb"\x30[\x2e-\x7f]\x02\x01[\x00\x01]\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20")


class DkimError(ValueError):
    """A key or a message that cannot be signed; the message never contains key material."""


@dataclass(frozen=True)
class DkimKey:
    """A loaded private key: ``secret`` is what dkimpy takes, kept out of the repr."""

    algorithm: bytes  # b"rsa-sha256" or b"ed25519-sha256"
    bits: int
    secret: bytes = field(repr=False)


def load_key(path: Path) -> DkimKey:
    """Read and check a PEM RSA or Ed25519 private key; raises DkimError saying why, never what it holds."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DkimError(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    # The first private key block: a file may also hold a certificate or EC parameters.
    match = next((m for m in _PEM.finditer(data) if m.group(1).endswith(b"PRIVATE KEY")), None)
    if match is None:
        raise DkimError("holds no PEM private key (-----BEGIN PRIVATE KEY-----)")
    label = match.group(1)
    if label not in (b"PRIVATE KEY", b"RSA PRIVATE KEY"):
        raise DkimError(f"holds a PEM {label.decode('ascii')}; an unencrypted RSA or Ed25519 private key is needed")
    try:
        der = base64.b64decode(b"".join(match.group(2).split()), validate=True)
    except (binascii.Error, ValueError):
        raise DkimError("is not valid PEM (bad base64)") from None
    seed = _ED25519_PKCS8.match(der)
    if seed is not None and len(der) >= seed.end() + 32:
        return _ed25519_key(der[seed.end() : seed.end() + 32])
    try:
        parsed = dkim.crypto.parse_private_key(der)
    except Exception:  # dkimpy's ASN.1 errors quote key bytes: none of their text is kept
        raise DkimError("is not an RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8) private key") from None
    bits = int(parsed["modulus"]).bit_length()
    if bits < MIN_RSA_BITS:
        raise DkimError(f"is a {bits}-bit RSA key; receivers need at least {MIN_RSA_BITS} bits (use 2048)")
    # dkimpy takes PEM and only with LF line ends: hand it one canonical form, whatever the file's.
    pem = b"-----BEGIN PRIVATE KEY-----\n" + base64.b64encode(der) + b"\n-----END PRIVATE KEY-----\n"
    return DkimKey(algorithm=b"rsa-sha256", bits=bits, secret=pem)


def _ed25519_key(seed: bytes) -> DkimKey:
    import nacl.signing  # dkimpy signs ed25519-sha256 with PyNaCl: fail at start-up, not per message

    nacl.signing.SigningKey(seed)
    return DkimKey(algorithm=b"ed25519-sha256", bits=256, secret=base64.b64encode(seed))


def check_settings(domain: str, selector: str, key_file: Path | None) -> DkimKey | None:
    """The key of the DKIM settings, None when signing is off; raises ValueError naming the setting."""
    given = {"DKIM_DOMAIN": domain, "DKIM_SELECTOR": selector, "DKIM_PRIVATE_KEY_FILE": key_file}
    missing = [name for name, value in given.items() if not value]
    if len(missing) == len(given):
        return None
    if missing:
        together = "DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY_FILE go together"
        raise ValueError(f"{together}: set all three or none; missing: {', '.join(missing)}")
    for name, value in (("DKIM_DOMAIN", domain), ("DKIM_SELECTOR", selector)):
        if not DNS_NAME.fullmatch(value):
            raise ValueError(f"{name} {value!r} is not a DNS name (ASCII letters, digits, hyphens, dots; IDNA form)")
    assert key_file is not None
    try:
        return load_key(key_file)
    except DkimError as exc:
        raise ValueError(f"DKIM_PRIVATE_KEY_FILE {key_file}: {exc}") from None


class DkimSigner:
    """Signs each message with the domain's key; built once per process, shared by its threads."""

    def __init__(self, domain: str, selector: str, key: DkimKey) -> None:
        self.domain = domain
        self.selector = selector
        self.key = key
        self._domain = domain.encode("ascii")
        self._selector = selector.encode("ascii")

    def __repr__(self) -> str:
        return f"DkimSigner(d={self.domain}, s={self.selector}, a={self.key.algorithm.decode()})"

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        """The signer of DKIM_DOMAIN, or None when signing is off; the key was loaded when settings were."""
        key = settings.dkim_key
        if key is None:
            return None
        log.info(
            "DKIM signing as d=%s s=%s (%s, %d bits)",
            settings.dkim_domain,
            settings.dkim_selector,
            key.algorithm.decode(),
            key.bits,
        )
        return cls(settings.dkim_domain, settings.dkim_selector, key)

    def sign(self, message: bytes) -> bytes:
        """The message with a DKIM-Signature header first (relaxed/relaxed, CRLF-folded, ASCII)."""
        try:
            signer = dkim.DKIM(message, signature_algorithm=self.key.algorithm, linesep=b"\r\n")
            present = {name.lower() for name, _ in signer.headers}
            include = [name for name in SIGNED_HEADERS if name in present] + list(OVERSIGNED_HEADERS)
            header: bytes = signer.sign(
                self._selector,
                self._domain,
                self.key.secret,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=include,
            )
        except dkim.KeyFormatError:
            raise DkimError("the DKIM key cannot sign") from None  # its text may quote the key
        except dkim.DKIMException as exc:
            raise DkimError(f"DKIM signing failed: {exc}") from None
        return header + message
