"""Webhook signatures: the documented string is what is signed, and verify refuses anything else without raising."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from email_service.webhooks.signing import SIGNATURE_HEADER, sign, verify
from tests.support import REPOSITORY

SECRET = "whsec_test"
BODY = b'{"type":"recipient.delivered","job_id":"j1"}'
NOW = 1_700_000_000
DOC = REPOSITORY / "docs" / "webhooks.md"


def test_header_name():
    assert SIGNATURE_HEADER == "X-Email-Service-Signature"


def test_signs_the_timestamp_a_dot_and_the_body():
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == f"t=1700000000,v1={expected}"


def test_known_vector():
    # From `printf '1.{}' | openssl dgst -sha256 -hmac key`, the check docs/webhooks.md shows.
    assert sign("key", 1, b"{}") == "t=1,v1=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"


def test_secret_is_utf8():
    expected = hmac.new("clé".encode(), b"5.x", hashlib.sha256).hexdigest()
    assert sign("clé", 5, b"x") == f"t=5,v1={expected}"


def test_verifies_its_own_signature():
    assert verify(SECRET, sign(SECRET, NOW, BODY), BODY, now=NOW)


def test_refuses_another_body_secret_or_timestamp():
    header = sign(SECRET, NOW, BODY)
    assert not verify(SECRET, header, BODY + b" ", now=NOW)
    assert not verify("other", header, BODY, now=NOW)
    forged = header.replace(f"t={NOW}", f"t={NOW + 1}")
    assert not verify(SECRET, forged, BODY, now=NOW)


@pytest.mark.parametrize(("age", "fresh"), [(0, True), (300, True), (-300, True), (301, False), (-301, False)])
def test_timestamp_must_be_within_tolerance(age: int, fresh: bool):
    header = sign(SECRET, NOW - age, BODY)
    assert verify(SECRET, header, BODY, now=NOW) is fresh


def test_tolerance_is_configurable():
    header = sign(SECRET, NOW - 60, BODY)
    assert not verify(SECRET, header, BODY, tolerance=30, now=NOW)
    assert verify(SECRET, header, BODY, tolerance=60, now=NOW)


def test_now_defaults_to_the_clock():
    assert verify(SECRET, sign(SECRET, int(time.time()), BODY), BODY)
    assert not verify(SECRET, sign(SECRET, int(time.time()) - 3600, BODY), BODY)


def test_any_one_of_several_signatures_may_match():
    # During a secret rotation the sender signs with the old and the new secret.
    old, new = sign("old", NOW, BODY), sign("new", NOW, BODY)
    header = f"t={NOW},v1={old.split('v1=')[1]},v1={new.split('v1=')[1]}"
    assert verify("old", header, BODY, now=NOW)
    assert verify("new", header, BODY, now=NOW)
    assert not verify("neither", header, BODY, now=NOW)


def test_tolerant_of_spaces_unknown_keys_and_order():
    digest = sign(SECRET, NOW, BODY).split("v1=")[1]
    assert verify(SECRET, f" v0=abc , v1 = {digest.upper()} ,  t = {NOW} , extra", BODY, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        ",,,",
        "t=",
        f"t={NOW}",
        "v1=abc",
        f"t=abc,v1={'0' * 64}",
        f"t=-{NOW},v1={'0' * 64}",
        f"t=+{NOW},v1={'0' * 64}",
        f"t=1_700_000_000,v1={'0' * 64}",
        f"t=١٧٠٠٠٠٠٠٠٠,v1={'0' * 64}",  # Arabic-Indic digits int() would accept
        f"t={'9' * 5000},v1={'0' * 64}",  # past int()'s digit limit
        f"t={NOW},t={NOW},v1={'0' * 64}",
        f"t={NOW},v1=é",
        f"t={NOW},v1=",
    ],
)
def test_malformed_header_is_false(header: str):
    assert verify(SECRET, header, BODY, now=NOW) is False


def test_two_timestamps_are_refused_even_if_one_is_signed():
    header = sign(SECRET, NOW, BODY) + f",t={NOW - 10_000}"
    assert not verify(SECRET, header, BODY, now=NOW)


@settings(max_examples=1000, deadline=None)
@given(header=st.text(max_size=120), body=st.binary(max_size=50))
def test_never_raises(header: str, body: bytes):
    assert verify(SECRET, header, body, now=NOW) in (True, False)


@settings(max_examples=200, deadline=None)
@given(secret=st.text(st.characters(blacklist_categories=("Cs",))), timestamp=st.integers(0, 2**40), body=st.binary())
def test_round_trip(secret: str, timestamp: int, body: bytes):
    assert verify(secret, sign(secret, timestamp, body), body, now=timestamp)


def _documented_section() -> str:
    return DOC.read_text().split("## Verifying a signature", 1)[1].split("\n## ", 1)[0]


def test_documented_example_values_are_right():
    section = _documented_section()
    header = sign("whsec_example", 1_700_000_000, b'{"example":true}')
    assert f"X-Email-Service-Signature: {header}" in section
    assert f"SHA2-256(stdin)= {header.split('v1=')[1]}" in section


def test_documented_receiver_agrees_with_sign():
    namespace: dict[str, object] = {}
    exec(re.findall(r"```python\n(.*?)```", _documented_section(), re.S)[0], namespace)
    documented_verify = namespace["verify"]
    assert callable(documented_verify)
    now = int(time.time())
    assert documented_verify(SECRET, sign(SECRET, now, BODY), BODY)
    assert documented_verify(SECRET, f"t={now}, v1=00, v1={sign(SECRET, now, BODY).split('v1=')[1]}", BODY)
    assert not documented_verify(SECRET, sign(SECRET, now - 301, BODY), BODY)
    assert not documented_verify("other", sign(SECRET, now, BODY), BODY)
    assert not documented_verify(SECRET, f"t={now},v1=é", BODY)
