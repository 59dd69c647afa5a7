"""Control characters in header values are found, whatever they are."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from email_service.message.header_values import describe_control_character, find_control_character

FORBIDDEN = [chr(c) for c in range(0x20)] + [chr(0x7F)] + [chr(c) for c in range(0x80, 0xA0)] + ["\u2028", "\u2029"]


@pytest.mark.parametrize("char", FORBIDDEN, ids=[f"U+{ord(c):04X}" for c in FORBIDDEN])
def test_every_control_character_is_refused(char: str):
    assert find_control_character(f"Hello{char}World") == 5
    assert f"U+{ord(char):04X}" in (describe_control_character(f"Hello{char}") or "")


@given(st.text(alphabet=st.characters(exclude_characters=FORBIDDEN)))
def test_printable_text_is_accepted(text: str):
    assert find_control_character(text) is None
