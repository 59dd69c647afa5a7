"""Signing a provider's webhook request as the provider does, with keys made for the test: SNS's
RSA signatures over its certificate, SendGrid's ECDSA signature."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from email_service.bounces import providers


def sns_certificate(key: rsa.RSAPrivateKey, *, now: datetime, not_after: datetime | None = None) -> bytes:
    """A self-signed PEM certificate for ``key``, valid from a day before ``now`` to ``not_after`` (a day after)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class FakeCertificates:
    """The ``certificate`` seam: serves one PEM and records every URL asked for."""

    def __init__(self, pem: bytes) -> None:
        self.pem = pem
        self.asked: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.asked.append(url)
        return self.pem


def sns_sign(envelope: dict[str, Any], key: rsa.RSAPrivateKey, version: str = "1") -> dict[str, Any]:
    """The envelope with SignatureVersion and Signature, signed as SNS documents."""
    keys = providers._SNS_SIGNED_KEYS[envelope["Type"]]
    signed = "".join(f"{k}\n{envelope[k]}\n" for k in keys if envelope.get(k) is not None).encode()
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(signed, padding.PKCS1v15(), algorithm)
    return {**envelope, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode()}


def sendgrid_public(key: ec.EllipticCurvePrivateKey, encoding: str = "der") -> str:
    if encoding == "pem":
        pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return pem.decode()
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()  # as SendGrid's settings page shows it


def sendgrid_signature(key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    return base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
