"""Address validation: the fast path agrees with email-validator, and fixes the tutorial's regex."""

from __future__ import annotations

import re

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from email_service.addresses import InvalidAddress, dedup_key, normalize_address

TUTORIAL_REGEX = re.compile(r"(^[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$)")


def _reference(address: str) -> str | None:
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        return None


def _ours(address: str) -> str | None:
    try:
        return normalize_address(address)
    except InvalidAddress:
        return None


@pytest.mark.parametrize(
    "address",
    [
        "a..b@x.com",
        ".a@x.com",
        "a.@x.com",
        "a@x.com.",
        "a@x.com\n",
        "a@-x.com",
        "a@x",
        "a@localhost",
        "@x.com",
        "a@",
        "",
    ],
)
def test_refuses_what_the_tutorial_regex_got_wrong_or_is_invalid(address: str):
    with pytest.raises(InvalidAddress):
        normalize_address(address)


@pytest.mark.parametrize(
    ("address", "normalized"),
    [
        ("o'reilly@example.com", "o'reilly@example.com"),
        ("user+tag@EXAMPLE.com", "user+tag@example.com"),
        ("jörg@bücher.de", "jörg@bücher.de"),
        ("用户@例子.广告", "用户@例子.广告"),
        ("a@xn--bcher-kva.de", "a@bücher.de"),
    ],
)
def test_accepts_valid_addresses_the_tutorial_regex_refused(address: str, normalized: str):
    assert normalize_address(address) == normalized


def test_tutorial_regex_really_had_these_flaws():
    # Guard that the cases above are the regression they claim to be.
    assert TUTORIAL_REGEX.match("a..b@x.com") and TUTORIAL_REGEX.match("a@x.com\n")
    assert not TUTORIAL_REGEX.match("o'reilly@example.com")


def test_dedup_key_ignores_case():
    assert dedup_key(normalize_address("Will@Example.com")) == dedup_key(normalize_address("will@EXAMPLE.COM"))


ATEXT = st.sampled_from(list("abcXYZ09.!#$%&'*+/=?^_`{|}~-\"@ \\()<>[]:;,é\n\x00"))
DOMAINS = st.sampled_from(
    [
        "example.com",
        "EXAMPLE.org",
        "x",
        "a.b.c.d",
        "bücher.de",
        "-bad.com",
        "ok-.com",
        "localhost",
        "exa_mple.com",
        "1.2.3.4",
        "[127.0.0.1]",
        "co.uk",
        "x." + "y" * 70 + ".com",
        "test",
        "",
    ]
)


@settings(max_examples=3000, deadline=None)
@given(local=st.text(ATEXT, max_size=70), domain=DOMAINS)
@example(local="a" * 64, domain="example.com")
@example(local="a" * 65, domain="example.com")
@example(local="a" * 64, domain="b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com")
def test_fast_path_agrees_with_email_validator(local: str, domain: str):
    address = f"{local}@{domain}"
    assert _ours(address) == _reference(address)


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=80))
def test_agrees_with_email_validator_on_any_text(text: str):
    assert _ours(text) == _reference(text)
