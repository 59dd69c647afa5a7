"""`email-service templates`: the operator lists, puts and deletes the shared templates, on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from email_service.cli import main
from email_service.config import Settings
from email_service.services import auth, build_services, templates
from email_service.services.templates import TemplateFields


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"DATA_DIR": str(tmp_path), "DB_WAIT_SECONDS": "1"}


def _run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, ["templates", *args], env=env)


def _lines(result: Result) -> dict[str, list[str]]:
    """The listed templates: name → kind, version, creation time, subject."""
    assert result.exit_code == 0, result.output
    return {line.split("  ")[0]: line.split("  ")[1:] for line in result.stdout.splitlines()}


def test_put_list_and_delete_a_shared_template(env: dict[str, str], tmp_path: Path):
    text, html = tmp_path / "news.txt", tmp_path / "news.html"
    text.write_text("Hello {{ name }}\n")
    html.write_text("<p>Hello {{ name }}</p>")
    created = _run(env, "put", "news", "--subject", "News for {{ name }}", "--text", str(text), "--html", str(html))
    assert created.exit_code == 0, created.output
    assert "shared template news created: version 1" in created.stderr
    eml = tmp_path / "news.eml"
    eml.write_text("Subject: v2\n\nSecond {{ content }}\n")
    assert "changed: version 2" in _run(env, "put", "news", "--eml", str(eml)).stderr

    listed = _lines(_run(env, "list"))
    assert listed["news"][:2] == ["shared", "2"] and listed["default"][:2] == ["file", "-"]

    assert "shared template news deleted" in _run(env, "delete", "news").stderr
    assert "news" not in _lines(_run(env, "list"))
    gone = _run(env, "delete", "news")
    assert gone.exit_code == 1 and "no stored template named 'news'" in gone.output


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["default", "--text", "{text}"], "is a file in the templates folder"),
        (["news", "--eml", "{eml}", "--text", "{text}"], "give eml alone"),
        (["news", "--subject", "only"], "give text, html (or both), or eml"),
        (["news", "--text", "{broken}"], "syntax error"),
        (["Bad Name", "--text", "{text}"], "must match"),
    ],
)
def test_put_checks_a_template_as_the_api_does_and_stores_nothing_refused(
    env: dict[str, str], tmp_path: Path, args: list[str], reason: str
):
    files = {"text": "Hello\n", "eml": "Subject: x\n\nbody\n", "broken": "{% if %}"}
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    refused = _run(env, "put", *(arg.format(**{n: tmp_path / n for n in files}) for arg in args))
    assert refused.exit_code == 1 and reason in refused.output, refused.output
    assert set(_lines(_run(env, "list"))) == {"default"}


def test_list_with_an_account_shows_what_it_uses(env: dict[str, str], tmp_path: Path):
    (tmp_path / "shared.txt").write_text("shared\n")
    for name in ("news", "promo"):
        assert _run(env, "put", name, "--text", str(tmp_path / "shared.txt")).exit_code == 0
    services = build_services(Settings(data_dir=Path(env["DATA_DIR"])))
    info, _, _ = auth.create_key(services.sessions, services.settings, "alpha")
    templates.create(services, "news", TemplateFields(text="alpha's"), scope=info.account_id)
    templates.create(services, "letter", TemplateFields(text="alpha's"), scope=info.account_id)

    assert {name: kind[0] for name, kind in _lines(_run(env, "list", "--account", "alpha")).items()} == {
        "letter": "own",
        "news": "own",
        "promo": "shared",
        "default": "file",
    }
    assert set(_lines(_run(env, "list"))) == {"news", "promo", "default"}, "an account's templates are its own"
    unknown = _run(env, "list", "--account", "nobody")
    assert unknown.exit_code == 1 and "no account with id or name 'nobody'" in unknown.output
