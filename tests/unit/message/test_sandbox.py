"""Templates are data from callers: the sandbox bounds what they can make a process spend."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from email_service.api.guards import MAX_JSON_DEPTH
from email_service.app import create_api
from email_service.config import Settings
from email_service.errors import TemplateError
from email_service.message.rendering import TemplateRenderer, TemplateSource
from email_service.services import build_services
from email_service.storage.migrate import upgrade

CONTEXT = {"to": "a@example.com", "from": "s@example.org", "name": "", "subject": "s", "content": "c", "date": "d"}


def _render(html: str) -> str | None:
    return TemplateRenderer().render(TemplateSource(name="t", origin="draft", html=html), CONTEXT).html


@pytest.mark.parametrize(
    ("html", "reason"),
    [
        ("{{ 'a' * 10**8 }}", "100000000 characters is over"),
        ("{{ [1] * 10**8 }}", "100000000 items is over"),
        ("{{ 7 ** (10 ** 6) }}", "bits is over"),
        ("{% for i in range(10**7) %}{% endfor %}", "range"),
        ("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", "loop steps"),
        ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "over 1000000 characters"),
        ("{{ lipsum(10000) }}", "undefined"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe|does not render"),
    ],
)
def test_a_template_cannot_make_the_process_spend_without_bound(html: str, reason: str):
    started = time.monotonic()
    with pytest.raises(TemplateError, match=reason):
        _render(html)
    assert time.monotonic() - started < 5


def test_ordinary_templates_render_as_before():
    html = "{% for i in range(3) %}<li>{{ i * 2 }} {{ 'ab' * 2 }} {{ 2 ** 10 }}</li>{% endfor %}"
    assert _render(html) == "<li>0 abab 1024</li><li>2 abab 1024</li><li>4 abab 1024</li>"


def test_content_that_looks_like_a_template_is_data():
    source = TemplateSource(name="t", origin="draft", text="{{ content }}")
    payload = "{{ ''.__class__.__mro__ }}{% for i in range(10**9) %}x{% endfor %}"
    assert TemplateRenderer().render(source, {**CONTEXT, "content": payload}).text == payload


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    settings = Settings(data_dir=tmp_path, auth_disabled=True)
    upgrade(settings.database_url)
    return create_api(build_services(settings)).test_client()


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_deeply_nested_json_is_a_400(client: FlaskClient, depth: int):
    body = '{"recipients": ["a@example.com"], "subject": "s", "variables": {"v": ' + "[" * depth + "]" * depth + "}}"
    answer = client.post("/api/email/", data=body, content_type="application/json")
    assert answer.status_code == 400 and "nested" in answer.get_json()["message"]


def test_a_template_bomb_in_a_preview_is_a_422(client: FlaskClient):
    answer = client.post("/api/templates/preview", json={"template": {"html": "{{ 'a' * 10**9 }}"}})
    assert answer.status_code == 422 and answer.get_json()["details"][0]["field"] == "template.html"
