"""/api/templates with API keys, on SQLite through Flask's test client: each account's own templates, the
shared ones operators change, and the template a job pins. The rest of the resource (versions, previews,
layouts, jobs rendering them) runs on real servers in tests/integration/api/test_templates.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from email_service.app import create_api
from email_service.config import Settings
from email_service.services import Services, auth, build_services, templates
from email_service.storage.migrate import upgrade
from email_service.storage.models import Job, StoredTemplate
from tests.support.queues import RecordingQueue


@dataclass
class Caller:
    """A key of an account, calling through the test client."""

    client: FlaskClient
    key: str
    account: str

    def call(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        return self.client.open(path, method=method, headers={"Authorization": f"Bearer {self.key}"}, **kwargs)

    def put(self, name: str, text: str, **query: str) -> TestResponse:
        return self.call("PUT", f"/api/templates/{name}", json={"text": text}, query_string=query)

    def text(self, name: str) -> str | None:
        answer = self.call("GET", f"/api/templates/{name}")
        return answer.get_json()["text"] if answer.status_code == 200 else None

    def post_job(self, template: str, **options: Any) -> TestResponse:
        body = {"recipients": ["will@example.com"], "subject": "s", "template": template, **options}
        return self.call("POST", "/api/email", json=body)


def _services(tmp_path: Path, **overrides: Any) -> Services:
    settings = Settings(data_dir=tmp_path, **overrides)
    upgrade(settings.database_url)
    services = build_services(settings)
    services.queue = RecordingQueue()  # type: ignore[assignment]
    return services


@pytest.fixture
def services(tmp_path: Path) -> Services:
    return _services(tmp_path)


@pytest.fixture
def client(services: Services) -> FlaskClient:
    return create_api(services).test_client()


def _caller(services: Services, client: FlaskClient, name: str, **options: Any) -> Caller:
    info, key, _ = auth.create_key(services.sessions, services.settings, name, **options)
    return Caller(client, key, info.account_id)


@pytest.fixture
def alpha(services: Services, client: FlaskClient) -> Caller:
    return _caller(services, client, "alpha")


@pytest.fixture
def beta(services: Services, client: FlaskClient) -> Caller:
    return _caller(services, client, "beta")


@pytest.fixture
def operator(services: Services, client: FlaskClient) -> Caller:
    """An admin key of an account of its own."""
    return _caller(services, client, "ops", role="admin")


def _refusal(answer: TestResponse) -> tuple[int, str]:
    return answer.status_code, answer.get_json()["message"]


def test_another_accounts_template_is_not_found_as_a_name_nobody_uses(alpha: Caller, beta: Caller):
    assert alpha.call("POST", "/api/templates", json={"name": "news", "text": "alpha's news"}).status_code == 201
    for method, path, body in (
        ("GET", "/api/templates/{}", None),
        ("GET", "/api/templates/{}?version=1", None),
        ("GET", "/api/templates/{}/versions", None),
        ("POST", "/api/templates/{}/preview", {}),
        ("DELETE", "/api/templates/{}", None),
    ):
        hidden = beta.call(method, path.format("news"), json=body)
        unknown = beta.call(method, path.format("nothing"), json=body)
        assert hidden.status_code == unknown.status_code == 404, (method, path)
        assert hidden.get_json()["message"] == unknown.get_json()["message"].replace("nothing", "news")
    assert "news" not in {t["name"] for t in beta.call("GET", "/api/templates").get_json()["items"]}
    refused = beta.post_job("news")
    assert refused.status_code == 422 and refused.get_json()["details"][0]["field"] == "template"
    assert beta.post_job("news", template_version=1).status_code == 422

    # Names are the account's: beta's own "news" changes nothing of alpha's.
    assert beta.call("POST", "/api/templates", json={"name": "news", "text": "beta's news"}).status_code == 201
    assert beta.put("news", "beta's news, again").get_json()["version"] == 2
    assert alpha.text("news") == "alpha's news" and beta.text("news") == "beta's news, again"
    assert beta.call("DELETE", "/api/templates/news").status_code == 204
    assert alpha.text("news") == "alpha's news"


def test_a_shared_template_is_every_accounts_and_an_accounts_own_replaces_it_for_that_account_alone(
    alpha: Caller, beta: Caller, operator: Caller
):
    made = operator.put("promo", "shared promo", shared="true")
    assert made.status_code == 201 and made.get_json()["shared"] is True
    seen = alpha.call("GET", "/api/templates/promo").get_json()
    assert (seen["text"], seen["shared"], seen["version"]) == ("shared promo", True, 1)

    own = alpha.put("promo", "alpha's promo")
    assert own.status_code == 201, "a PUT of a shared name makes the account's own"
    assert (own.get_json()["shared"], own.get_json()["version"]) == (False, 1)
    assert alpha.text("promo") == "alpha's promo" and beta.text("promo") == "shared promo"
    assert [v["text"] for v in alpha.call("GET", "/api/templates/promo/versions").get_json()["items"]] == [
        "alpha's promo"
    ]
    assert alpha.call("POST", "/api/templates", json={"name": "promo", "text": "x"}).status_code == 409

    assert alpha.call("DELETE", "/api/templates/promo").status_code == 204, "its own"
    assert alpha.text("promo") == "shared promo", "the shared one is its again"
    status, message = _refusal(alpha.call("DELETE", "/api/templates/promo"))
    assert status == 403 and "shared templates are changed by operators" in message
    assert beta.text("promo") == "shared promo"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/templates", {"name": "promo", "text": "mine"}),
        ("PUT", "/api/templates/promo", {"text": "mine"}),
        ("DELETE", "/api/templates/promo", None),
    ],
)
def test_only_an_admin_key_changes_the_shared_templates(
    alpha: Caller, operator: Caller, method: str, path: str, body: dict[str, Any] | None
):
    operator.put("other", "shared other", shared="true")
    status, message = _refusal(alpha.call(method, path, json=body, query_string={"shared": "true"}))
    assert status == 403 and "admin role" in message
    assert alpha.call("GET", "/api/templates/promo").status_code == 404, "nothing was stored"
    assert alpha.text("other") == "shared other"


def test_an_admin_key_changes_the_shared_templates_with_shared_and_its_own_without(alpha: Caller, operator: Caller):
    created = operator.call("POST", "/api/templates?shared=true", json={"name": "promo", "text": "v1"})
    assert created.status_code == 201 and created.get_json()["shared"] is True
    assert operator.put("promo", "v2", shared="true").get_json()["version"] == 2
    assert operator.call("POST", "/api/templates?shared=1", json={"name": "promo", "text": "x"}).status_code == 409
    assert alpha.text("promo") == "v2"
    mine = operator.put("promo", "the operator account's own")
    assert mine.get_json()["shared"] is False and alpha.text("promo") == "v2"
    assert operator.call("DELETE", "/api/templates/promo?shared=true").status_code == 204
    assert alpha.call("GET", "/api/templates/promo").status_code == 404
    assert operator.text("promo") == "the operator account's own"
    assert operator.call("DELETE", "/api/templates/promo?shared=true").status_code == 404
    status, _ = _refusal(operator.call("DELETE", "/api/templates/default?shared=true"))
    assert status == 409, "a file is removed from the folder"
    bad = operator.call("PUT", "/api/templates/promo?shared=maybe", json={"text": "x"})
    assert bad.status_code == 422 and bad.get_json()["details"][0]["field"] == "shared"


def test_the_list_has_the_accounts_own_then_the_shared_ones_it_does_not_replace_then_the_files(
    alpha: Caller, beta: Caller, operator: Caller
):
    operator.put("promo", "shared promo", shared="true")
    operator.put("welcome", "shared welcome", shared="true")
    alpha.put("welcome", "alpha's welcome")
    alpha.put("zebra", "alpha's zebra")
    beta.put("letter", "beta's letter")
    listed = [(t["name"], t["source"], t["shared"]) for t in alpha.call("GET", "/api/templates").get_json()["items"]]
    assert listed[:3] == [("welcome", "stored", False), ("zebra", "stored", False), ("promo", "stored", True)]
    assert ("default", "file", True) in listed[3:] and {n for n, _, _ in listed[3:]} & {"letter", "welcome"} == set()


def test_with_authentication_off_every_template_is_shared(tmp_path: Path):
    services = _services(tmp_path, auth_disabled=True)
    client = create_api(services).test_client()
    created = client.post("/api/templates", json={"name": "news", "text": "v1"})
    assert created.status_code == 201 and created.get_json()["shared"] is True
    assert client.put("/api/templates/news?shared=true", json={"text": "v2"}).get_json()["version"] == 2
    with services.readers() as session:
        assert {row.account_id for row in session.query(StoredTemplate)} == {None}
    assert client.delete("/api/templates/news").status_code == 204


def test_a_job_pins_the_row_of_the_template_it_was_accepted_with(
    services: Services, alpha: Caller, beta: Caller, operator: Caller
):
    operator.put("news", "shared news", shared="true")
    alpha.put("news", "alpha v1")
    alphas = alpha.post_job("news").get_json()["id"]
    betas = beta.post_job("news").get_json()["id"]
    # Later: alpha changes its template, beta gets one of its own, the shared one changes.
    alpha.put("news", "alpha v2")
    beta.put("news", "beta v1")
    operator.put("news", "shared v2", shared="true")
    with services.readers() as session:
        pinned = {job_id: session.get(Job, job_id) for job_id in (alphas, betas)}
        texts = {job_id: templates.job_content(services, job, ()).template.text for job_id, job in pinned.items()}
    assert texts == {alphas: "alpha v1", betas: "shared news"}
    assert {(job.template_version, job.template_id is not None) for job in pinned.values()} == {(1, True)}


# Any sequence of changes by two accounts and the operator: each account reads its own template, else the
# shared one, else nothing, and a job of it renders what it reads.

NAMES = st.sampled_from(["news", "promo"])
WHO = st.sampled_from(["alpha", "beta", "shared"])
CHANGES = st.lists(st.tuples(st.sampled_from(["put", "delete"]), WHO, NAMES), max_size=10)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=CHANGES)
def test_an_account_reads_its_own_template_else_the_shared_one_whatever_the_changes(
    services: Services, alpha: Caller, beta: Caller, operator: Caller, changes: list[tuple[str, str, str]]
):
    prefix = f"p{uuid.uuid4().hex[:8]}-"  # the examples share one database
    callers = {"alpha": alpha, "beta": beta}
    model: dict[tuple[str, str], str] = {}  # (scope, name) → text
    for step, (change, who, name) in enumerate(changes):
        caller, query = (operator, {"shared": "true"}) if who == "shared" else (callers[who], {})
        if change == "put":
            text = f"{who} {step}"
            assert caller.put(prefix + name, text, **query).status_code in (200, 201)
            model[who, name] = text
        else:
            answer = caller.call("DELETE", f"/api/templates/{prefix + name}", query_string=query)
            expected = 204 if (who, name) in model else 403 if ("shared", name) in model else 404
            assert answer.status_code == expected, (who, name, answer.get_json())
            model.pop((who, name), None)
    for who, caller in callers.items():
        for name in ("news", "promo"):
            expected = model.get((who, name), model.get(("shared", name)))
            assert caller.text(prefix + name) == expected
            job = caller.post_job(prefix + name)
            if expected is None:
                assert job.status_code == 422
                continue
            with services.readers() as session:
                record = session.get(Job, job.get_json()["id"])
                assert record is not None
                assert templates.job_content(services, record, ()).template.text == expected
