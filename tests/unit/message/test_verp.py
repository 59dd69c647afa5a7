"""Per-recipient envelope senders: the token names one recipient and cannot be made without the secret."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from email_service.message.verp import TOKEN_LENGTH, BounceTracking, Reference, read_token, token_for, token_in

SECRET = "a-bounce-secret-of-32-characters"
JOB = "8b56a168-ea95-4ea4-ab88-8b5ada5991c9"


@given(st.uuids(), st.integers(0, 2**31 - 1))
def test_a_token_names_its_job_and_position_back(job: uuid.UUID, position: int):
    token = token_for(str(job), position, SECRET)
    assert len(token) == TOKEN_LENGTH and token == token.lower()
    assert read_token(token, SECRET) == Reference(str(job), position)
    assert read_token(token.upper(), SECRET) == Reference(str(job), position), "MTAs may change the case"


def test_a_token_signed_with_another_secret_or_altered_is_refused():
    token = token_for(JOB, 3, SECRET)
    assert read_token(token, "another-secret-of-32-characters!") is None
    altered = token[:10] + ("a" if token[10] != "a" else "b") + token[11:]
    assert read_token(altered, SECRET) is None
    assert read_token(token[:-1], SECRET) is None
    assert read_token("0" * TOKEN_LENGTH, SECRET) is None, "not base32"


def test_the_envelope_sender_fits_in_a_local_part_and_its_token_is_found_again():
    tracking = BounceTracking(SECRET, "bounces-longest", "bounces.example.org")
    envelope = tracking.envelope_for(JOB, 2**31 - 1)
    assert envelope is not None
    local = envelope.partition("@")[0]
    assert len(local) <= 64, "RFC 5321 §4.5.3.1.1"
    token = token_in(f"<{envelope.upper()}>", "bounces-longest", "Bounces.Example.org")
    assert token is not None and read_token(token, SECRET) == Reference(JOB, 2**31 - 1)
    assert token_in(envelope, "bounces", "bounces.example.org") is None, "another local part"
    assert token_in(envelope.replace("example.org", "example.net"), "bounces-longest", "bounces.example.org") is None
    assert BounceTracking(SECRET, "bounces", "").envelope_for(JOB, 1) is None, "no BOUNCE_DOMAIN: no VERP"
