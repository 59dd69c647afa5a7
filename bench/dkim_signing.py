"""DKIM signing cost per message: the service's signer (RSA-2048 and Ed25519) beside dkimpy's, in one run.

The messages are what a worker signs: one per recipient, built by the service's own compose() and
MessageBuilder from a text + HTML template, with one-click List-Unsubscribe headers, and for the
second workload a PDF attachment (multipart/mixed). Building is not timed. Each signer then signs
every message of a workload once, one after another in this process, as a worker thread does:

(a) dkimpy 1.1.8, RSA-2048: the service's signer before, a pure-Python RSA (the baseline);
(b) the service's DkimSigner, RSA-2048: relaxed canonicalisation in Python, RSA in OpenSSL (cryptography);
(c) the service's DkimSigner, Ed25519;
(d) dkimpy 1.1.8, Ed25519 (PyNaCl), for reference;
(f) the service's DkimSigner with both keys: an Ed25519 and an RSA-2048 signature per message.

Both keys are made in this run and loaded through the service's own load_key, as at start-up. Each
signer signs the same headers, relaxed/relaxed; the first, middle and last message of each run are
checked with dkimpy's verify against the public key record before any figure is printed. Figures:
wall and CPU time per message; messages per second and the ratio to the baseline come from the CPU
time, which other processes on a shared machine do not inflate as they do the wall time. The RSA
private-key operation alone (cryptography, one 2048-bit signature) is printed as the floor.

    .venv/bin/python bench/dkim_signing.py
    .venv/bin/python bench/dkim_signing.py --count 500 --attachment-kb 100
"""

from __future__ import annotations

import argparse
import base64
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from _support import print_machine, print_table
from email_service.message.composing import JobContent, compose
from email_service.message.dkim.signing import DkimKey, DkimSigner, header_list, load_key
from email_service.message.mime import AttachmentFile, MessageBuilder
from email_service.message.rendering import TemplateRenderer, TemplateSource

DOMAIN = "example.org"
SELECTOR = "bench"
DATE = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TEMPLATE = TemplateSource(
    name="newsletter",
    origin="stored",
    version=1,
    stored_id=1,
    subject="{{ subject }}",
    text="Hello {{ name }},\n\n{{ content }}\n\nSee you next week.\n",
    html="<h1>Hello {{ name }}</h1>\n<p>{{ content }}</p>\n<p>See you <b>next week</b>.</p>\n",
)
CONTENT = "Our winter schedule, the new opening hours and three stories from the lab. " * 12

Sign = Callable[[bytes], bytes]


def make_keys(folder: Path) -> dict[str, tuple[Path, bytes]]:
    """PEM files of a fresh RSA-2048 and Ed25519 key, with the TXT record each publishes."""
    made: dict[str, tuple[Path, bytes]] = {}
    for kind, key in (
        ("rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("ed25519", ed25519.Ed25519PrivateKey.generate()),
    ):
        path = folder / f"{kind}.pem"
        path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        public = key.public_key()
        if kind == "rsa":
            der = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        else:
            der = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        made[kind] = (path, b"v=DKIM1; k=" + kind.encode() + b"; p=" + base64.b64encode(der))
    return made


def build_messages(count: int, attachment_kb: int) -> list[bytes]:
    """One message per recipient, as a batch builds them: one MessageBuilder, per-recipient headers."""
    renderer = TemplateRenderer()
    attachments = ()
    if attachment_kb:
        attachments = (AttachmentFile("programme.pdf", "application/pdf", bytes(range(256)) * (attachment_kb * 4)),)
    job = JobContent(
        job_id="8b56a168-ea95-4ea4-ab88-8b5ada5991c9",
        template=TEMPLATE,
        sender="Hawkins Lab <news@example.org>",
        subject="Winter newsletter — nouvelles de l'hiver",
        content=CONTENT,
        attachments=attachments,
        unsubscribe=("https://mail.example.org", "k" * 43),
    )
    builder = MessageBuilder()
    return [
        compose(
            renderer,
            job,
            address=f"reader{i}@example{i % 50}.com",
            name=f"Reader Number {i}",
            variables=None,
            position=i,
            date=DATE,
            builder=builder,
        ).data
        for i in range(count)
    ]


def dkimpy_signer(algorithm: bytes, pem_path: Path) -> Sign:
    """dkimpy as the service called it before: the same headers, relaxed/relaxed."""
    if algorithm == b"rsa-sha256":
        secret = pem_path.read_bytes()
    else:  # dkimpy takes the base64 of the 32-byte Ed25519 seed
        key = serialization.load_pem_private_key(pem_path.read_bytes(), password=None)
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        secret = base64.b64encode(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))

    def sign(message: bytes) -> bytes:
        signer = dkim.DKIM(message, signature_algorithm=algorithm, linesep=b"\r\n")
        include = header_list([name.lower() for name, _ in signer.headers])
        header: bytes = signer.sign(
            SELECTOR.encode(), DOMAIN.encode(), secret, canonicalize=(b"relaxed", b"relaxed"), include_headers=include
        )
        return header + message

    return sign


@dataclass(frozen=True)
class Signer:
    label: str
    sign: Sign
    record: bytes | None  # the TXT record its signatures verify with; None for the bare RSA operation


def rsa_operation(key: DkimKey) -> Sign:
    """One RSA-2048 PKCS#1 v1.5 signature by cryptography over ~600 bytes: what the signer cannot avoid."""
    private = key.private_key
    assert isinstance(private, rsa.RSAPrivateKey)
    data = b"x" * 600  # about the size of the header fields a message signs
    return lambda message: private.sign(data, padding.PKCS1v15(), hashes.SHA256())


def measure(signers: list[Signer], messages: list[bytes], chunk: int = 50) -> list[tuple[float, float]]:
    """Every signer signs every message once, (wall, CPU) seconds per message for each.

    They take turns, chunk by chunk, so that a change in what else a shared machine runs falls on
    all of them alike. The first, middle and last signed message of each must verify with dkimpy.
    """
    for signer in signers:
        for message in messages[:5]:  # warm-up, untimed
            signer.sign(message)
    totals = [[0.0, 0.0] for _ in signers]
    checked = (0, len(messages) // 2, len(messages) - 1)
    for first in range(0, len(messages), chunk):
        part = messages[first : first + chunk]
        for signer, total in zip(signers, totals, strict=True):
            wall, cpu = time.perf_counter(), time.process_time()
            signed = [signer.sign(message) for message in part]
            total[0] += time.perf_counter() - wall
            total[1] += time.process_time() - cpu
            for index in checked:
                if signer.record is not None and first <= index < first + len(part):
                    check(signed[index - first], signer.record, f"{signer.label}, message {index}")
    return [(wall / len(messages), cpu / len(messages)) for wall, cpu in totals]


def check(signed: bytes, record: bytes, what: str) -> None:
    def dns(name: bytes, timeout: float = 5) -> bytes | None:
        return record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    if not dkim.verify(signed, dnsfunc=dns):
        raise SystemExit(f"{what} does not verify: the figures would mean nothing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2_000, help="messages per workload")
    parser.add_argument("--attachment-kb", type=int, default=20, help="PDF size of the second workload (0: skip it)")
    args = parser.parse_args()
    print_machine()

    with tempfile.TemporaryDirectory(prefix="bench_dkim_") as folder:
        keys = make_keys(Path(folder))
        loaded = {kind: load_key(path) for kind, (path, _) in keys.items()}  # as at start-up
        signers = [
            Signer("(a) dkimpy RSA-2048 (baseline)", dkimpy_signer(b"rsa-sha256", keys["rsa"][0]), keys["rsa"][1]),
            Signer("(b) DkimSigner RSA-2048", DkimSigner(DOMAIN, SELECTOR, loaded["rsa"]).sign, keys["rsa"][1]),
            Signer("(c) DkimSigner Ed25519", DkimSigner(DOMAIN, SELECTOR, loaded["ed25519"]).sign, keys["ed25519"][1]),
            Signer("(d) dkimpy Ed25519", dkimpy_signer(b"ed25519-sha256", keys["ed25519"][0]), keys["ed25519"][1]),
            Signer("(e) the RSA-2048 operation alone", rsa_operation(loaded["rsa"]), None),
            Signer(
                "(f) DkimSigner Ed25519 + RSA-2048",
                DkimSigner(DOMAIN, SELECTOR, loaded["ed25519"], ("bench-rsa", loaded["rsa"])).sign,
                keys["ed25519"][1],  # the first signature, which dkimpy's verify checks
            ),
        ]
        workloads = [("text + HTML", 0)]
        if args.attachment_kb:
            workloads.append((f"text + HTML + {args.attachment_kb} KB PDF", args.attachment_kb))
        for title, attachment_kb in workloads:
            messages = build_messages(args.count, attachment_kb)
            size = statistics.mean(len(message) for message in messages)
            print(f"\n== {title}: {len(messages):,} messages of {size / 1024:.1f} KB on average", flush=True)
            figures = measure(signers, messages)
            baseline = figures[0][1]
            rows = [
                [signer.label, f"{wall * 1000:.3f}", f"{cpu * 1000:.3f}", f"{1 / cpu:,.0f}", f"{cpu / baseline:.3f}"]
                for signer, (wall, cpu) in zip(signers, figures, strict=True)
            ]
            print_table(["signer", "ms/msg (wall)", "ms/msg (CPU)", "msg/s per core", "CPU vs (a)"], rows)
            print(f"load average: {Path('/proc/loadavg').read_text().split()[0]}", flush=True)


if __name__ == "__main__":
    main()
