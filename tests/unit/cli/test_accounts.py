"""`email-service accounts` and `keys` of an account: the operator's commands, on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from email_service.cli import main


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"DATA_DIR": str(tmp_path), "DB_WAIT_SECONDS": "1"}


def _run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def test_an_account_is_made_given_keys_configured_rotated_and_disabled(env: dict[str, str]):
    created = _run(env, "accounts", "create", "shop", "--sender", "Shop <Orders@Shop.example>")
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("whsec_") and "shown this once" in created.stderr
    assert _run(env, "accounts", "create", "shop").exit_code != 0, "names are unique"
    first = _run(env, "keys", "create", "shop-1", "--account", "shop")
    admin = _run(env, "keys", "create", "ops", "--account", "shop", "--admin")
    assert first.exit_code == admin.exit_code == 0, first.output + admin.output
    assert "whsec_" not in first.stderr, "the account existed: no new secret"
    keys = _run(env, "keys", "list").stdout
    assert "shop-1  account shop  account" in keys and "ops  account shop  admin" in keys
    unknown = _run(env, "keys", "create", "x", "--account", "nobody")
    assert unknown.exit_code != 0 and "no account with id or name 'nobody'" in unknown.output
    private = _run(env, "accounts", "configure", "shop", "--callback-url", "http://10.0.0.1/hooks")
    assert private.exit_code != 0 and "10.0.0.1 is a private address" in private.output, "refused before storing"
    assert _run(env, "accounts", "configure", "shop", "--callback-url", "https://hooks.shop.example/in").exit_code == 0
    listed = _run(env, "accounts", "list").stdout
    assert "shop  active  2 key(s)  own webhook secret  senders orders@shop.example" in listed
    assert "callback https://hooks.shop.example/in" in listed
    rotated = _run(env, "accounts", "rotate-secret", "shop", "--grace", "2h")
    assert rotated.exit_code == 0 and rotated.stdout.strip() not in ("", secret)
    assert "previous one until" in _run(env, "accounts", "list").stdout
    assert _run(env, "accounts", "configure", "shop", "--no-senders").exit_code == 0
    assert "senders" not in _run(env, "accounts", "list").stdout
    assert _run(env, "accounts", "disable", "shop").exit_code == 0
    assert "shop  disabled" in _run(env, "accounts", "list").stdout
    assert _run(env, "accounts", "enable", "shop").exit_code == 0
    assert "shop  active" in _run(env, "accounts", "list").stdout


def test_an_account_s_default_lane_is_set_changed_and_left_to_each_job_s_size(env: dict[str, str]):
    assert _run(env, "accounts", "create", "shop", "--lane", "transactional").exit_code == 0
    assert "lane transactional" in _run(env, "accounts", "list").stdout
    assert _run(env, "accounts", "configure", "shop", "--lane", "bulk").exit_code == 0
    assert "lane bulk" in _run(env, "accounts", "list").stdout
    assert _run(env, "accounts", "configure", "shop", "--callback-url", "https://hooks.shop.example/in").exit_code == 0
    assert "lane bulk" in _run(env, "accounts", "list").stdout, "left as it was"
    assert _run(env, "accounts", "configure", "shop", "--lane", "size").exit_code == 0
    assert "lane by size" in _run(env, "accounts", "list").stdout
    refused = _run(env, "accounts", "configure", "shop", "--lane", "urgent")
    assert refused.exit_code != 0 and "'urgent' is not one of" in refused.output


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("accounts", "create", " shop"), "no space at either end"),
        (("accounts", "create", "x" * 65), "1 to 64 printable characters"),
        (("accounts", "create", "shop\r\nX-Injected: yes"), "1 to 64 printable characters"),
        (("keys", "create", "k\x00", "--account", "shop"), "1 to 64 printable characters"),
        (("accounts", "create", "shop", "--sender", "a@b.example, c@d.example"), "is not an address"),
        (("accounts", "rotate-secret", "nobody"), "no account"),
        (("accounts", "rotate-secret", "shop", "--grace", "soon"), "is not an age"),
        (("keys", "create", "k", "--account", "shop", "--sender", "a@b.example"), "senders belong to the account"),
    ],
)
def test_bad_input_is_a_clear_error_that_changes_nothing(env: dict[str, str], args: tuple[str, ...], reason: str):
    assert _run(env, "accounts", "create", "shop").exit_code == 0
    before = _run(env, "accounts", "list").stdout
    refused = _run(env, *args)
    assert refused.exit_code != 0 and reason in refused.output, refused.output
    assert _run(env, "accounts", "list").stdout == before


def test_a_key_name_of_several_accounts_is_revoked_only_with_its_account(env: dict[str, str]):
    for account in ("shop", "blog"):
        assert _run(env, "keys", "create", "api", "--account", account).exit_code == 1  # no such account yet
        assert _run(env, "accounts", "create", account).exit_code == 0
        assert _run(env, "keys", "create", "api", "--account", account).exit_code == 0
    ambiguous = _run(env, "keys", "revoke", "api")
    assert ambiguous.exit_code != 0 and "keys of several accounts have this name" in ambiguous.output
    assert "revoked" not in _run(env, "keys", "list").stdout
    assert _run(env, "keys", "revoke", "api", "--account", "blog").exit_code == 0
    listed = {line.split("  ")[2]: line for line in _run(env, "keys", "list").stdout.splitlines()}
    assert "revoked" in listed["account blog"] and "active" in listed["account shop"]
