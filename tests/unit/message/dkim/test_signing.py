"""DKIM signatures: dkimpy verifies them, they cover List-Unsubscribe, and the key never shows."""

from __future__ import annotations

import base64
import logging
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dkim
import dkim.util
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from email_service.bootstrap import dkim_signer
from email_service.config import Settings
from email_service.errors import ConfigurationError, DkimError, TemplateError
from email_service.message.composing import JobContent, compose
from email_service.message.dkim.signing import DkimSigner
from email_service.message.mime import AttachmentFile
from email_service.message.rendering import TemplateRenderer, TemplateSource

DATE = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DOMAIN = "example.org"
SELECTOR = "mail2026"


@dataclass(frozen=True)
class Key:
    path: Path
    pem_body: str  # the base64 of the private key, to look for where it must not be
    txt_record: bytes  # what <selector>._domainkey.<domain> publishes


def _generate(folder: Path, name: str, *options: str) -> Key:
    path = folder / f"{name}.pem"
    subprocess.run(["openssl", "genpkey", *options, "-out", str(path)], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "pkey", "-in", str(path), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    if name == "ed25519":
        record = b"v=DKIM1; k=ed25519; p=" + base64.b64encode(public[-32:])  # RFC 8463: the raw 32-byte key
    else:
        record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    pem_body = "".join(path.read_text().splitlines()[1:-1])
    return Key(path, pem_body, record)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Key]:
    folder = tmp_path_factory.mktemp("dkim")
    return {
        "rsa": _generate(folder, "rsa", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"),
        "ed25519": _generate(folder, "ed25519", "-algorithm", "ed25519"),
    }


def _dns(key: Key):
    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        return key.txt_record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    return lookup


def _settings(key_file: Path | str | None, domain: str = DOMAIN, selector: str = SELECTOR, **more) -> Settings:
    return Settings(dkim_domain=domain, dkim_selector=selector, dkim_private_key_file=key_file, **more)


def _signer(key: Key) -> DkimSigner:
    signer = dkim_signer(_settings(key.path))
    assert signer is not None
    return signer


HTML_AND_TEXT = TemplateSource(
    name="both",
    origin="stored",
    version=1,
    stored_id=1,
    subject="{{ subject }}",
    text="Hello {{ name }},\n\n{{ content }}\n",
    html="<p>Hello {{ name }},</p><p>{{ content }}</p>",
)


def _compose(
    signer: DkimSigner | None,
    content: str = "Run for your life",
    unsubscribe: bool = True,
    *,
    subject: str = "Démogorgon",
    template: TemplateSource | None = None,
    address: str = "will@example.com",
    name: str = "Will",
    headers: tuple[tuple[str, str], ...] = (),
    attachments: tuple[AttachmentFile, ...] = (),
) -> bytes:
    renderer = TemplateRenderer()
    template = template or renderer.file_source("default")
    assert template is not None
    job = JobContent(
        job_id="8b56a168-ea95-4ea4-ab88-8b5ada5991c9",
        template=template,
        sender="Service <service@example.org>",
        subject=subject,
        content=content,
        headers=headers,
        attachments=attachments,
        unsubscribe=("https://mail.example.org", "k" * 43) if unsubscribe else None,
    )
    envelope = compose(renderer, job, address=address, name=name, variables=None, position=17, date=DATE, signer=signer)
    return envelope.data


def _tags(data: bytes) -> dict[bytes, bytes]:
    header = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n ")  # unfold the signature's own lines
    value = b" ".join(header).split(b"\r\n", 1)[0].split(b":", 1)[1]
    return dkim.util.parse_tag_value(value)


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_a_composed_message_is_signed_and_verifies(keys: dict[str, Key], kind: str):
    unsigned = _compose(None)
    data = _compose(_signer(keys[kind]))
    assert data.startswith(b"DKIM-Signature: ") and data.endswith(unsigned)
    assert dkim.verify(data, dnsfunc=_dns(keys[kind]))
    tags = _tags(data)
    assert tags[b"a"] == (b"rsa-sha256" if kind == "rsa" else b"ed25519-sha256")
    assert (tags[b"c"], tags[b"d"], tags[b"s"]) == (b"relaxed/relaxed", DOMAIN.encode(), SELECTOR.encode())
    signed = [name.strip() for name in tags[b"h"].split(b":")]
    for name in (b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type"):
        assert name in signed
    assert b"list-unsubscribe" in signed and b"list-unsubscribe-post" in signed
    assert signed.count(b"from") == 2, "From oversigned: a second one breaks the signature"
    # Still SMTP bytes: CRLF only, ASCII, the folded signature within 78 columns.
    assert data.isascii() and data.count(b"\n") == data.count(b"\r\n") and b"\r\r" not in data
    signature = data[: len(data) - len(unsigned)]
    assert signature.endswith(b"\r\n") and max(len(line) for line in signature.split(b"\r\n")) <= 78


def test_headers_absent_from_the_message_are_not_listed_but_reply_to_whose_absence_is_signed(keys: dict[str, Key]):
    data = _compose(_signer(keys["ed25519"]), unsubscribe=False)
    assert dkim.verify(data, dnsfunc=_dns(keys["ed25519"]))
    signed = [name.strip() for name in _tags(data)[b"h"].split(b":")]
    assert b"list-unsubscribe" not in signed and signed.count(b"reply-to") == 1


def _replace(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1
    return data.replace(old, new)


def _add_after_signature(data: bytes, line: bytes) -> bytes:
    at = data.index(b"\r\nFrom: ") + 2
    return data[:at] + line + data[at:]


TAMPERINGS = {
    "unsubscribe link": lambda d: _replace(d, b"/unsubscribe/8b56a168", b"/unsubscribe/8b56a169"),
    "unsubscribe post": lambda d: _replace(d, b"List-Unsubscribe=One-Click", b"List-Unsubscribe=Two-Clicks"),
    "post removed": lambda d: _replace(d, b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b""),
    "body": lambda d: _replace(d, b"Run for your life", b"Run for your lift"),
    "second From above": lambda d: _add_after_signature(d, b"From: boss@example.org\r\n"),
    "second From below": lambda d: d.replace(b"\r\n\r\n", b"\r\nFrom: boss@example.org\r\n\r\n", 1),
}


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_a_changed_list_unsubscribe_body_or_from_fails_verification(keys: dict[str, Key], kind: str, tampering: str):
    data = _compose(_signer(keys[kind]))
    assert dkim.verify(data, dnsfunc=_dns(keys[kind]))
    assert not dkim.verify(TAMPERINGS[tampering](data), dnsfunc=_dns(keys[kind]))


def test_relaxed_canonicalization_survives_a_relay_refolding_headers(keys: dict[str, Key]):
    data = _compose(_signer(keys["rsa"]))
    refolded = _replace(data, b"\r\nSubject: ", b"\r\nSubject:  \r\n\t")
    assert dkim.verify(refolded, dnsfunc=_dns(keys["rsa"]))


def test_a_signing_failure_fails_the_message_as_a_template_error(keys: dict[str, Key], monkeypatch):
    signer = _signer(keys["rsa"])

    def broken(message: bytes) -> bytes:
        raise DkimError("DKIM signing failed: test")

    monkeypatch.setattr(signer, "sign", broken)
    with pytest.raises(TemplateError, match="DKIM signing failed"):
        _compose(signer)


def test_signing_is_off_without_settings_and_read_from_the_environment(keys: dict[str, Key], monkeypatch):
    assert dkim_signer(Settings()) is None
    monkeypatch.setenv("DKIM_DOMAIN", DOMAIN)
    monkeypatch.setenv("DKIM_SELECTOR", SELECTOR)
    monkeypatch.setenv("DKIM_PRIVATE_KEY_FILE", str(keys["ed25519"].path))
    signer = dkim_signer(Settings())
    assert signer is not None and (signer.domain, [s.name for s in signer.selectors]) == (DOMAIN, [SELECTOR])
    for name in ("DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_PRIVATE_KEY_FILE"):
        monkeypatch.setenv(name, "")
    assert dkim_signer(Settings()) is None


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"dkim_domain": DOMAIN}, "DKIM_SELECTOR, DKIM_PRIVATE_KEY_FILE"),
        ({"dkim_domain": DOMAIN, "dkim_selector": SELECTOR}, "DKIM_PRIVATE_KEY_FILE"),
        ({"dkim_private_key_file": "/etc/dkim.pem"}, "DKIM_DOMAIN, DKIM_SELECTOR"),
    ],
)
def test_partial_dkim_settings_are_refused(given: dict[str, str], missing: str):
    with pytest.raises(ValueError, match=f"missing: {missing}"):
        Settings(**given)


def test_a_bad_domain_or_selector_is_refused(keys: dict[str, Key]):
    with pytest.raises(ValueError, match="DKIM_DOMAIN 'example org'"):
        _settings(keys["rsa"].path, domain="example org")
    with pytest.raises(ValueError, match="DKIM_SELECTOR"):
        _settings(keys["rsa"].path, selector="s1;x=y")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _pem(label: str, body: str) -> str:
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


def test_an_unreadable_or_unusable_key_file_is_refused_naming_the_setting(tmp_path: Path):
    canary = "MIIcanaryKEYcanaryKEYcanaryKEYAA"  # valid base64, not a key
    cases = {
        tmp_path / "absent.pem": "cannot be read",
        tmp_path: "cannot be read",  # a folder
        _write(tmp_path / "empty.pem", ""): "no PEM private key",
        _write(tmp_path / "bad.pem", _pem("PRIVATE KEY", canary)): "not an RSA",
        _write(tmp_path / "b64.pem", _pem("PRIVATE KEY", canary + "!")): "base64",
        _write(tmp_path / "enc.pem", _pem("ENCRYPTED PRIVATE KEY", canary)): "ENCRYPTED",
        _write(tmp_path / "ec.pem", _pem("EC PRIVATE KEY", canary)): "EC PRIVATE KEY",
    }
    for path, reason in cases.items():
        with pytest.raises(ConfigurationError, match="DKIM_PRIVATE_KEY_FILE") as raised:
            dkim_signer(_settings(path))
        assert reason in str(raised.value) and canary not in str(raised.value)


def test_a_short_rsa_key_is_refused(tmp_path: Path):
    key = _generate(tmp_path, "short", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:768")
    with pytest.raises(ConfigurationError, match="768-bit RSA key") as raised:
        dkim_signer(_settings(key.path))
    assert key.pem_body[:40] not in str(raised.value)


def test_a_pkcs1_key_with_crlf_lines_after_a_certificate_signs(keys: dict[str, Key], tmp_path: Path):
    pkcs1 = subprocess.run(
        ["openssl", "pkey", "-in", str(keys["rsa"].path), "-traditional"], check=True, capture_output=True
    ).stdout
    assert pkcs1.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    path = tmp_path / "pkcs1.pem"
    path.write_bytes((_pem("CERTIFICATE", "MIIBAAAA").encode() + pkcs1).replace(b"\n", b"\r\n"))
    signer = dkim_signer(_settings(path))
    assert signer is not None and dkim.verify(_compose(signer), dnsfunc=_dns(keys["rsa"]))


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_the_private_key_never_shows_in_settings_signer_or_logs(
    keys: dict[str, Key], kind: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    secret = keys[kind].pem_body[-40:]  # the end of the PEM: the private part of either key
    monkeypatch.setattr(logging.getLogger("email_service"), "propagate", True)  # let caplog see it
    with caplog.at_level(logging.DEBUG):
        settings = _settings(keys[kind].path)
        signer = dkim_signer(settings)
        assert signer is not None
        signer.sign(_compose(None))
    shown = [repr(settings), str(settings), settings.model_dump_json(), repr(signer), repr(signer.selectors)]
    shown += [record.getMessage() for record in caplog.records]
    assert any("DKIM signing as d=example.org" in text for text in shown)
    assert not any(secret in text for text in shown)
    raw = base64.b64decode(keys[kind].pem_body)[-32:]  # nor the raw key bytes in any encoding we hand out
    assert not any(base64.b64encode(raw).decode()[:20] in text for text in shown)


PDF = AttachmentFile("rapport été.pdf", "application/pdf", bytes(range(256)) * 40)
NOTES = AttachmentFile("notes.txt", "text/plain", b"line one   \nline two\t\n\n\n")
# Each case names what it must show in the signed bytes, so that it really exercises what it is named for.
MESSAGES: dict[str, tuple[dict[str, Any], list[bytes]]] = {
    "encoded-word subject": (
        {"subject": "Démogorgon ☃ — 日本語の件名, " * 4, "name": "Élodie Ñúñez"},
        [b"Subject: =?utf-8?", b"To: =?utf-8?"],
    ),
    "folded headers": (
        {
            "name": "Hawkins National Laboratory, Department of Energy, Indiana, United States",
            "headers": (("Reply-To", "Joyce Byers <joyce@example.net>"), ("X-Campaign", "winter " * 20)),
        },
        [b"\r\nReply-To: ", b"\r\nX-Campaign: winter", b"winter\r\n winter"],
    ),
    "multipart with attachments": (
        {"template": HTML_AND_TEXT, "attachments": (PDF, NOTES)},
        [b"multipart/mixed", b"multipart/alternative", b"text/html", b'filename="notes.txt"', b"base64"],
    ),
    "trailing blank lines and white space": (
        {"content": "trailing spaces   \n\ttabbed  line\t\n\n\n\n"},
        [b"trailing spaces   \r\n\ttabbed  line\t\r\n\r\n\r\n\r\n"],
    ),
    "internationalized recipient": ({"address": "wíll@exämple.com"}, [b"To: Will <w\xc3\xadll@xn--exmple-cua.com>"]),
}


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
@pytest.mark.parametrize("case", MESSAGES)
def test_every_kind_of_message_the_builder_makes_verifies(keys: dict[str, Key], kind: str, case: str):
    options, shown = MESSAGES[case]
    data = _compose(_signer(keys[kind]), **options)
    for piece in shown:
        assert piece in data, piece
    assert dkim.verify(data, dnsfunc=_dns(keys[kind]))
    assert not dkim.verify(data.replace(b"\r\n\r\n", b"\r\n\r\nP.S.\r\n", 1), dnsfunc=_dns(keys[kind]))


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_relaxed_canonicalisation_survives_a_relay_changing_white_space_but_not_words(keys: dict[str, Key], kind: str):
    data = _compose(_signer(keys[kind]), **MESSAGES["trailing blank lines and white space"][0])
    respaced = _replace(data, b"trailing spaces   \r\n\ttabbed  line\t\r\n", b"trailing \t spaces\r\n tabbed line\r\n")
    assert dkim.verify(respaced + b"\r\n\r\n", dnsfunc=_dns(keys[kind]))
    assert not dkim.verify(_replace(data, b"tabbed  line", b"tabbed  lime"), dnsfunc=_dns(keys[kind]))


RAW = (
    b"Received: from relay\r\n"
    b"From:   Service\t<service@example.org>  \r\n"
    b"Subject: folded\r\n\t and   tabbed \r\n  twice\r\n"
    b"X-Tag: first\r\n"
    b"To: will@example.com\r\n"
    b"X-Tag: second\r\n"
    b"\r\n"
    b"  body with\t\truns  \r\n\r\nand blank lines\r\n\r\n\r\n"
)


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_a_message_of_any_header_layout_verifies_and_lists_only_what_it_has(keys: dict[str, Key], kind: str):
    data = _signer(keys[kind]).sign(RAW)
    assert data.endswith(RAW) and dkim.verify(data, dnsfunc=_dns(keys[kind]))
    listed = [name.strip() for name in _tags(data)[b"h"].split(b":")]
    assert listed == [b"from", b"from", b"to", b"to", b"subject", b"subject", b"reply-to"]
    assert not dkim.verify(_replace(data, b"and   tabbed", b"and   tabbet"), dnsfunc=_dns(keys[kind]))


def test_a_message_that_is_not_smtp_text_is_refused_saying_why(keys: dict[str, Key]):
    signer = _signer(keys["rsa"])
    with pytest.raises(DkimError, match="bare CR or LF"):
        signer.sign(RAW.replace(b"\r\n", b"\n"))
    with pytest.raises(DkimError, match="no From header"):
        signer.sign(b"To: will@example.com\r\n\r\nbody\r\n")


HEADER_TEXT = st.text(st.characters(exclude_categories=["Cs", "Cc", "Zl", "Zp"]), max_size=120)
BODY_PIECES = ["a", "é", "☃", " ", "  ", "\t", "\n", ".", "From ", "=", "-" * 80]
BODY_TEXT = st.lists(st.sampled_from(BODY_PIECES), max_size=60).map("".join)


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(subject=HEADER_TEXT, name=HEADER_TEXT, content=BODY_TEXT, html=st.booleans())
def test_any_subject_name_and_content_signs_and_verifies(
    keys: dict[str, Key], kind: str, subject: str, name: str, content: str, html: bool
):
    try:
        data = _compose(
            _signer(keys[kind]), content, subject=subject, name=name, template=HTML_AND_TEXT if html else None
        )
    except TemplateError:
        assume(False)  # refused by the builder (see test_header_properties.py), so never signed
    assert dkim.verify(data, dnsfunc=_dns(keys[kind]))
