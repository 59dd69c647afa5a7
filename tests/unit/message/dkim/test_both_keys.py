"""DKIM that every verifier sees: an Ed25519 and an RSA signature together, and the headers a forger
would add a second copy of oversigned."""

from __future__ import annotations

import logging
from pathlib import Path

import click
import dkim
import pytest

from email_service.bootstrap import dkim_signer
from email_service.cli.startup import check_setting_files
from email_service.config import Settings
from email_service.message.dkim.signing import DkimSigner
from tests.unit.message.dkim.test_signing import DOMAIN, SELECTOR, Key, _compose, _generate, _tags

RSA_SELECTOR = "rsa2026"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Key]:
    folder = tmp_path_factory.mktemp("dkim-both")
    return {
        "rsa": _generate(folder, "rsa", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"),
        "ed25519": _generate(folder, "ed25519", "-algorithm", "ed25519"),
    }


def _settings(keys: dict[str, Key], **changes: object) -> Settings:
    fields: dict[str, object] = {
        "dkim_domain": DOMAIN,
        "dkim_selector": SELECTOR,
        "dkim_private_key_file": keys["ed25519"].path,
        "dkim_second_selector": RSA_SELECTOR,
        "dkim_second_private_key_file": keys["rsa"].path,
    }
    return Settings(**(fields | changes))


def _both(keys: dict[str, Key]) -> DkimSigner:
    signer = dkim_signer(_settings(keys))
    assert signer is not None
    return signer


def _dns(keys: dict[str, Key]):
    records = {
        f"{SELECTOR}._domainkey.{DOMAIN}.".encode(): keys["ed25519"].txt_record,
        f"{RSA_SELECTOR}._domainkey.{DOMAIN}.".encode(): keys["rsa"].txt_record,
    }

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        return records.get(name)

    return lookup


def _verified(data: bytes, keys: dict[str, Key]) -> list[bool]:
    """Whether each DKIM-Signature of ``data`` verifies, top first."""
    verifier = dkim.DKIM(data)
    count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    return [verifier.verify(idx=index, dnsfunc=_dns(keys)) for index in range(count)]


def _signatures(data: bytes) -> list[dict[bytes, bytes]]:
    """The tags of each DKIM-Signature, top first."""
    tags = []
    while data.startswith(b"DKIM-Signature:"):
        tags.append(_tags(data))
        end = data.index(b"\r\n")
        while data[end + 2 : end + 3] in (b" ", b"\t"):
            end = data.index(b"\r\n", end + 2)
        data = data[end + 2 :]
    return tags


REPLY_TO = (("Reply-To", "Support <support@example.org>"),)


def test_both_keys_give_two_signatures_that_dkimpy_verifies(keys: dict[str, Key]):
    data = _compose(_both(keys), headers=REPLY_TO)
    signatures = _signatures(data)
    assert [(s[b"a"], s[b"s"]) for s in signatures] == [
        (b"ed25519-sha256", SELECTOR.encode()),
        (b"rsa-sha256", RSA_SELECTOR.encode()),
    ]
    assert signatures[0][b"h"] == signatures[1][b"h"] and signatures[0][b"bh"] == signatures[1][b"bh"]
    assert _verified(data, keys) == [True, True]


def test_the_rsa_signature_alone_verifies_for_a_verifier_that_knows_no_ed25519(keys: dict[str, Key]):
    data = _compose(_both(keys))
    without_ed25519 = data[data.index(b"DKIM-Signature:", 1) :]  # what remains when the first is ignored
    assert dkim.verify(without_ed25519, dnsfunc=_dns(keys))


# A second copy of each header a reader might show instead of ours, added above or below the signed one.
SECOND_COPIES = {
    "To": b"To: boss@example.org\r\n",
    "Subject": b"Subject: Your account is locked\r\n",
    "Date": b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n",
    "Message-ID": b"Message-ID: <other@example.org>\r\n",
    "MIME-Version": b"MIME-Version: 1.0\r\n",
    "Content-Type": b"Content-Type: text/html; charset=utf-8\r\n",
    "Reply-To": b"Reply-To: thief@example.net\r\n",
}


@pytest.mark.parametrize("where", ["above", "below"])
@pytest.mark.parametrize("header", SECOND_COPIES)
@pytest.mark.parametrize("reply_to", [True, False], ids=["with-reply-to", "without-reply-to"])
def test_a_second_copy_of_an_oversigned_header_breaks_both_signatures(
    keys: dict[str, Key], header: str, where: str, reply_to: bool
):
    data = _compose(_both(keys), headers=REPLY_TO if reply_to else ())
    assert _verified(data, keys) == [True, True]
    listed = [name.strip() for name in _signatures(data)[0][b"h"].split(b":")]
    present = 1 if header != "Reply-To" or reply_to else 0
    assert listed.count(header.lower().encode()) == present + 1, "named once more than the message has it"
    line = SECOND_COPIES[header]
    if where == "above":
        at = data.index(b"\r\nFrom: ") + 2
        forged = data[:at] + line + data[at:]
    else:
        forged = data.replace(b"\r\n\r\n", b"\r\n" + line.rstrip(b"\r\n") + b"\r\n\r\n", 1)
    assert _verified(forged, keys) == [False, False]


def test_the_settings_take_both_keys_and_refuse_half_a_second_key(keys: dict[str, Key]):
    settings = _settings(keys)
    assert (settings.dkim_second_selector, settings.dkim_second_private_key_file) == (RSA_SELECTOR, keys["rsa"].path)
    with pytest.raises(ValueError, match="DKIM_SECOND_SELECTOR and DKIM_SECOND_PRIVATE_KEY_FILE go together"):
        _settings(keys, dkim_second_selector="")
    with pytest.raises(ValueError, match="DKIM_SECOND_SELECTOR and DKIM_SECOND_PRIVATE_KEY_FILE go together"):
        _settings(keys, dkim_second_private_key_file="")
    with pytest.raises(ValueError, match="must differ from DKIM_SELECTOR"):
        _settings(keys, dkim_second_selector=SELECTOR.upper())
    with pytest.raises(ValueError, match="DKIM_SECOND_SELECTOR 'rsa 2026'"):
        _settings(keys, dkim_second_selector="rsa 2026")
    with pytest.raises(ValueError, match="missing: DKIM_DOMAIN, DKIM_SELECTOR, DKIM_PRIVATE_KEY_FILE"):
        _settings(keys, dkim_domain="", dkim_selector="", dkim_private_key_file="")


def test_startup_refuses_a_second_key_that_cannot_be_used(keys: dict[str, Key], tmp_path: Path):
    check_setting_files(_settings(keys))  # both fine
    (tmp_path / "bad.pem").write_text("not a key")
    same_kind = {"dkim_second_private_key_file": keys["ed25519"].path}
    for changes, reason in (
        ({"dkim_second_private_key_file": tmp_path / "absent.pem"}, "cannot be read"),
        ({"dkim_second_private_key_file": tmp_path / "bad.pem"}, "no PEM private key"),
        (same_kind, "must be of the other algorithm"),
    ):
        with pytest.raises(click.ClickException, match="DKIM_SECOND_PRIVATE_KEY_FILE") as raised:
            check_setting_files(_settings(keys, **changes))
        assert reason in raised.value.message


def test_an_ed25519_key_alone_is_warned_about(
    keys: dict[str, Key], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(logging.getLogger("email_service"), "propagate", True)  # let caplog see it
    with caplog.at_level(logging.WARNING):
        dkim_signer(_settings(keys))
        assert not [r for r in caplog.records if "Ed25519 key alone" in r.getMessage()]
        dkim_signer(_settings(keys, dkim_second_selector="", dkim_second_private_key_file=""))
    assert [r for r in caplog.records if "Ed25519 key alone is not enough" in r.getMessage()]
