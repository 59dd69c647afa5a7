"""NaN, Infinity, -Infinity and numbers beyond a float (1e999) are not JSON: every JSON body holding one is
refused with 400 naming the field, before anything is stored, the same on every database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st

from email_service.api.json_body import loads
from email_service.app import create_api
from email_service.config import Settings
from email_service.errors import MalformedJSON
from email_service.services import build_services
from email_service.storage.migrate import upgrade
from tests.support.queues import RecordingQueue

LITERALS = ["NaN", "Infinity", "-Infinity", "1e999", "-1E400", "123456789e999"]
MARK = "__non_finite__"


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    settings = Settings(data_dir=tmp_path, auth_disabled=True)
    upgrade(settings.database_url)
    services = build_services(settings)
    services.queue = RecordingQueue()
    return create_api(services).test_client()


def _body(shape: dict[str, Any], literal: str) -> str:
    """``shape`` as JSON text, with ``literal`` written where the shape holds MARK."""
    return json.dumps(shape).replace(json.dumps(MARK), literal)


JOB = {"recipients": ["a@example.com"], "subject": "s", "content": "c"}
SHAPES = [
    ("POST", "/api/email", {**JOB, "variables": {"n": MARK}}, "variables.n"),
    (
        "POST",
        "/api/email",
        {**JOB, "recipients": ["b@example.com", {"email": "a@example.com", "variables": {"deep": [1, {"x": MARK}]}}]},
        "recipients[1].variables.deep[1].x",
    ),
    ("POST", "/api/email", {**JOB, "metadata": {"batch": MARK}}, "metadata.batch"),
    ("POST", "/api/email", {**JOB, "priority": MARK}, "priority"),
    ("POST", "/api/email", MARK, "body"),
    ("POST", "/api/templates/preview", {"html": "{{ n }}", "variables": {"n": MARK}}, "variables.n"),
    ("POST", "/api/templates/default/preview", {"variables": {"n": [MARK]}}, "variables.n[0]"),
    ("POST", "/api/templates/", {"name": "t1", "html": "x", "subject": MARK}, "subject"),
    ("PUT", "/api/templates/default", {"html": "x", "n": MARK}, "n"),
    ("POST", "/api/suppressions", {"email": "a@example.com", "reason": MARK}, "reason"),
    ("POST", "/bounces/mailgun", {"signature": {"timestamp": MARK}}, "signature.timestamp"),
]


@pytest.mark.parametrize("literal", LITERALS)
@pytest.mark.parametrize(("method", "path", "shape", "field"), SHAPES, ids=[f"{s[1]} {s[3]}" for s in SHAPES])
def test_a_non_finite_number_is_refused_naming_its_field(
    client: FlaskClient, literal: str, method: str, path: str, shape: Any, field: str
):
    answer = client.open(path, method=method, data=_body(shape, literal), content_type="application/json")
    assert answer.status_code == 400, answer.text
    error = answer.get_json()
    assert error["error"] == "malformed_json"
    assert error["details"][0]["field"] == field
    assert literal in error["details"][0]["reason"]
    assert client.get("/api/email/").get_json()["items"] == []
    assert client.get("/api/suppressions").get_json()["items"] == []


def test_finite_numbers_still_pass(client: FlaskClient):
    body = {**JOB, "variables": {"n": 1.5e308, "m": -0.0, "k": 10**30}}
    assert client.post("/api/email", json=body).status_code == 202


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@st.composite
def _with_one_non_finite(draw: st.DrawFn) -> tuple[Any, str]:
    """A JSON value with MARK put at one place, and that place's name as the API writes it."""
    value = draw(_json)
    path = ""
    container = {"root": value}
    key: Any = "root"
    while isinstance(container[key], dict | list) and container[key] and draw(st.booleans()):
        container = container[key]
        key = draw(st.sampled_from(list(container.keys()) if isinstance(container, dict) else range(len(container))))
        path += f"[{key}]" if isinstance(key, int) else (f".{key}" if path else key)
    container[key] = MARK
    return (container["root"] if key == "root" else value), path or "body"


@settings(max_examples=150, deadline=None)
@given(_with_one_non_finite(), st.sampled_from(LITERALS), st.sampled_from(["", " ", "\n\t"]))
def test_any_place_is_named(case: tuple[Any, str], literal: str, space: str):
    value, field = case
    text = json.dumps(value, indent=2 if space else None).replace(json.dumps(MARK), f"{space}{literal}{space}")
    with pytest.raises(MalformedJSON) as refused:
        loads(text)
    assert refused.value.details[0]["field"] == field


@pytest.mark.parametrize("literal", LITERALS)
def test_the_dashboard_preview_refuses_a_non_finite_variable(tmp_path: Path, literal: str):
    settings = Settings(data_dir=tmp_path, auth_disabled=True, dashboard_secret="s" * 32)
    upgrade(settings.database_url)
    client = create_api(build_services(settings)).test_client()
    page = client.get("/dashboard/templates/default").text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    form = {"csrf_token": token, "version": "", "subject": "s", "content": "", "email": "p@example.com", "name": ""}
    answer = client.post("/dashboard/templates/default", data={**form, "variables": f'{{"n": [1, {literal}]}}'})
    assert answer.status_code == 422
    assert "variables.n[1]" in answer.text and "is not a JSON number" in answer.text
