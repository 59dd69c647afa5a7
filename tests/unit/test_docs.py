"""The README stays true to the code it documents."""

from __future__ import annotations

from email_service.config import Settings
from tests.support import REPOSITORY

README = REPOSITORY / "README.md"


def test_every_setting_is_in_the_readme_table():
    text = README.read_text()
    missing = [name.upper() for name in Settings.model_fields if f"| `{name.upper()}` |" not in text]
    assert missing == []


def test_readme_starts_with_the_two_commands():
    first_block = README.read_text().split("```sh", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in first_block.strip().splitlines()] == ["make run", "make test"]
