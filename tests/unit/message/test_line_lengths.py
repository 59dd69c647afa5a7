"""Line lengths of whole built messages, as sent (signed): quoted-printable body lines and header lines
holding an encoded word within 76 characters (RFC 2045 section 6.7, RFC 2047 section 2), others within 78."""

from __future__ import annotations

import email
import subprocess
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from email_service.errors import TemplateError
from email_service.message.composing import JobContent, compose
from email_service.message.dkim.signing import DkimSigner
from email_service.message.mime import AttachmentFile
from email_service.message.rendering import TemplateRenderer, TemplateSource

DATE = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
RENDERER = TemplateRenderer()
TEMPLATE = TemplateSource(
    name="lines",
    origin="stored",
    version=1,
    stored_id=1,
    subject="{{ subject }}",
    text="{{ content }}",
    html="<p>{{ content }}</p>",
)
# Text that has made long lines: non-ASCII of every width, long words, runs of spaces, "=" and mixtures.
PIECES = st.sampled_from(["é", "日本語", "🎃", "x" * 90, "a" * 75, "=", " ", "  ", ".", "ü" * 40, "-" * 80, "𩢻" * 30])
TEXT = st.lists(
    st.one_of(st.text(st.characters(exclude_categories=["Cs", "Cc", "Zl", "Zp"]), max_size=30), PIECES), max_size=12
).map("".join)
EXAMPLES = settings(
    max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> DkimSigner:
    path = tmp_path_factory.mktemp("dkim") / "rsa.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path)],
        check=True,
        capture_output=True,
    )
    return DkimSigner.load("example.org", "selector", Path(path))


def check_line_lengths(data: bytes) -> None:
    """76 for a line holding an encoded word and for a quoted-printable body line; 78 for any other."""
    for line in data.split(b"\r\n"):
        assert len(line) <= (76 if b"=?" in line else 78), line
    message = email.message_from_bytes(data, policy=policy.default)
    for part in message.walk():
        if part.get("Content-Transfer-Encoding") == "quoted-printable":
            body = part.get_payload(decode=False)
            assert all(len(line) <= 76 for line in body.splitlines()), body


@EXAMPLES
@given(subject=TEXT, name=st.one_of(st.none(), TEXT.map(lambda text: text[:256])), content=TEXT, other=TEXT)
def test_no_line_of_a_built_and_signed_message_passes_its_limit(
    signer: DkimSigner, subject: str, name: str | None, content: str, other: str
) -> None:
    display = other[:60].replace('"', "").replace("\\", "")
    headers = (("Reply-To", f'"{display}" <desk@example.org>'), ("X-Campaign", other))
    attachment = AttachmentFile(filename=f"{other[:200]}.txt", content_type="text/plain", data=b"x" * 200)
    job = JobContent(
        "job",
        TEMPLATE,
        f'"{display}" <service@example.org>',
        subject,
        content,
        headers=headers,
        attachments=(attachment,),
    )
    try:
        envelope = compose(
            RENDERER, job, address="will@example.com", name=name, variables=None, position=3, date=DATE, signer=signer
        )
    except TemplateError as exc:
        event(f"refused: {str(exc)[:40]}")
        return
    event("built")
    check_line_lengths(envelope.data)


def test_a_long_non_ascii_subject_and_body_stay_within_76() -> None:
    job = JobContent("job", TEMPLATE, "Sérvice <service@example.org>", "Démogorgon " * 20, "é" * 500 + " x" * 100)
    envelope = compose(
        RENDERER, job, address="will@example.com", name="Zoë " * 30, variables=None, position=3, date=DATE
    )
    check_line_lengths(envelope.data)
