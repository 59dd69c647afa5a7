"""A setting naming an unusable file stops the process commands at once, saying which setting and why."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from email_service.cli import main


@pytest.mark.parametrize("command", [["serve"], ["worker", "--processes", "1"]])
def test_an_unusable_dkim_key_stops_the_command_naming_the_setting(tmp_path: Path, command: list[str]):
    key = tmp_path / "dkim.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nMIIcanaryKEYcanaryKEYcanaryKEYAA\n-----END PRIVATE KEY-----\n")
    env = {
        "DATA_DIR": str(tmp_path),
        "AUTH_DISABLED": "true",
        "DKIM_DOMAIN": "example.org",
        "DKIM_SELECTOR": "s1",
        "DKIM_PRIVATE_KEY_FILE": str(key),
    }
    result = CliRunner().invoke(main, command, env=env)
    assert result.exit_code == 1
    assert f"DKIM_PRIVATE_KEY_FILE {key}: is not an RSA" in result.output
    assert "canary" not in result.output
