"""Templates as a resource, through the HTTP API on real servers: versions, previews, layouts, and
jobs rendering the version they were accepted with into multipart messages."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import FeatureStack
from tests.support.stack import ApiClient


def _name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


WELCOME: dict[str, Any] = {
    "subject": "Welcome to {{ town }}, {{ name }}",
    "text": "Hello {{ name }}, your code is {{ code }}.\n",
    "html": '{% extends "base.html" %}{% block content %}<p>Hello {{ name }}, code <b>{{ code }}</b></p>{% endblock %}',
}


def test_create_read_update_list_and_delete_keep_every_version(feature_stack: FeatureStack):
    client = feature_stack.api.client
    name = _name()
    created = client.post("/api/templates", json={"name": name, **WELCOME})
    assert created.status_code == 201, created.text
    assert created.json() | {"created_at": None} == {
        "name": name,
        "version": 1,
        "source": "stored",
        "shared": False,
        **WELCOME,
        "eml": None,
        "created_at": None,
    }
    assert client.post("/api/templates", json={"name": name, "text": "x"}).status_code == 409

    changed = client.put(f"/api/templates/{name}", json={"subject": "Hi {{ name }}", "text": "v2 {{ content }}"})
    assert changed.status_code == 200 and changed.json()["version"] == 2
    assert client.get(f"/api/templates/{name}").json()["text"] == "v2 {{ content }}"
    assert client.get(f"/api/templates/{name}", params={"version": 1}).json()["html"] == WELCOME["html"]
    assert [v["version"] for v in client.get(f"/api/templates/{name}/versions").json()["items"]] == [2, 1]

    listed = {t["name"]: t for t in client.get("/api/templates").json()["items"]}
    assert listed[name]["version"] == 2
    assert listed["default"]["source"] == "file" and listed["default"]["version"] is None

    assert client.delete(f"/api/templates/{name}").status_code == 204
    assert client.get(f"/api/templates/{name}").status_code == 404
    assert client.delete(f"/api/templates/{name}").status_code == 404
    recreated = client.put(f"/api/templates/{name}", json={"text": "again"})
    assert recreated.status_code == 201 and recreated.json()["version"] == 3, "a version number is never reused"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "Bad Name", "text": "x"}, 422, "name"),
        ({"name": "default", "text": "x"}, 409, None),
        ({"name": "{n}", "subject": "only"}, 422, "text"),
        ({"name": "{n}", "eml": "Subject: x\n\nbody", "text": "x"}, 422, "eml"),
        ({"name": "{n}", "text": "ok", "html": "<p>\n{% for %}</p>"}, 422, "html"),
        ({"name": "{n}", "subject": "{{ x", "text": "ok"}, 422, "subject"),
        ({"name": "{n}", "eml": "no blank line"}, 422, "eml"),
        ({"name": "{n}", "text": "x", "css": "y"}, 422, "css"),
    ],
)
def test_invalid_templates_are_refused_and_nothing_is_stored(
    feature_stack: FeatureStack, body: dict[str, Any], status: int, field: str | None
):
    client = feature_stack.api.client
    name = _name()
    body = {**body, "name": body["name"].replace("{n}", name)}
    answer = client.post("/api/templates", json=body)
    assert answer.status_code == status, answer.text
    if field is not None:
        assert [d["field"] for d in answer.json()["details"]] == [field]
    assert client.get(f"/api/templates/{name}").status_code == 404


def test_a_syntax_error_names_its_line(feature_stack: FeatureStack):
    answer = feature_stack.api.client.post(
        "/api/templates", json={"name": _name(), "text": "ok", "html": "<p>\n\n{% if %}</p>"}
    )
    assert answer.json()["details"][0]["line"] == 3


def test_preview_renders_subject_text_and_escaped_html(feature_stack: FeatureStack):
    client = feature_stack.api.client
    name = _name()
    client.post("/api/templates", json={"name": name, **WELCOME})
    preview = client.post(
        f"/api/templates/{name}/preview",
        json={"variables": {"town": "Hawkins", "code": "<011>"}, "name": "Eleven"},
    )
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["subject"] == "Welcome to Hawkins, Eleven"
    assert body["text"] == "Hello Eleven, your code is <011>.\n"
    assert "<p>Hello Eleven, code <b>&lt;011&gt;</b></p>" in body["html"] and "<!DOCTYPE html>" in body["html"]


BONJOUR: dict[str, Any] = {
    "subject": "Bonjour {{ name }}",
    "text": "Bonjour {{ name }}, code {{ code }}\n",
    "html": "<p>Bonjour <b>{{ name }}</b>, code {{ code }}</p>",
}


def test_preview_renders_the_variables_it_is_given_even_one_called_name(feature_stack: FeatureStack):
    client = feature_stack.api.client
    name = _name()
    client.post("/api/templates", json={"name": name, **BONJOUR})
    preview = client.post(f"/api/templates/{name}/preview", json={"variables": {"name": "<Zoé>", "code": "42"}})
    assert preview.status_code == 200, preview.text
    assert preview.json() == {
        "subject": "Bonjour <Zoé>",
        "text": "Bonjour <Zoé>, code 42\n",
        "html": "<p>Bonjour <b>&lt;Zoé&gt;</b>, code 42</p>",
    }
    # As in a job: the recipient's name is `name` unless the variables have their own.
    both = client.post(
        f"/api/templates/{name}/preview", json={"variables": {"name": "Zoé", "code": "1"}, "name": "Zoé Martin"}
    )
    assert both.json()["text"] == "Bonjour Zoé, code 1\n"
    recipient_only = client.post(f"/api/templates/{name}/preview", json={"variables": {"code": "1"}, "name": "Zoé"})
    assert recipient_only.json()["text"] == "Bonjour Zoé, code 1\n"


def test_a_job_renders_a_variable_called_name_as_its_preview_does(feature_stack: FeatureStack):
    client = feature_stack.api.client
    name = _name()
    domain = f"{name}.example.com"
    client.post("/api/templates", json={"name": name, **BONJOUR})
    recipients = [
        {"email": f"zoe@{domain}", "name": "Zoé Martin", "variables": {"name": "<Zoé>"}},
        {"email": f"ann@{domain}", "name": "Ann"},
    ]
    answer = feature_stack.api.post_job({"recipients": recipients, "subject": "s", "template": name,
                                         "variables": {"code": "42"}})  # fmt: skip
    assert answer.status_code == 202, answer.text
    feature_stack.api.wait_until_completed(answer.json()["id"])
    messages = {m.recipients[0]: m.message for m in feature_stack.messages_to(domain)}
    zoe, ann = messages[f"zoe@{domain}"], messages[f"ann@{domain}"]
    assert zoe.get_body(("plain",)).get_content() == "Bonjour <Zoé>, code 42\r\n"
    assert "<b>&lt;Zoé&gt;</b>" in zoe.get_body(("html",)).get_content()
    assert zoe["To"] == f"Zoé Martin <zoe@{domain}>", "the To header keeps the recipient's name"
    assert ann.get_body(("plain",)).get_content() == "Bonjour Ann, code 42\r\n"


def test_preview_errors_name_the_part_line_and_variable(feature_stack: FeatureStack):
    client = feature_stack.api.client
    name = _name()
    client.post("/api/templates", json={"name": name, **WELCOME})
    answer = client.post(f"/api/templates/{name}/preview", json={"variables": {"town": "Hawkins"}})
    assert answer.status_code == 422
    detail = answer.json()["details"][0]
    assert (detail["field"], detail["line"], detail["variable"]) == ("template.text", 1, "code")


def test_a_draft_is_previewed_without_being_stored(feature_stack: FeatureStack):
    client = feature_stack.api.client
    answer = client.post(
        "/api/templates/preview",
        json={"template": {"subject": "Hi {{ name }}", "html": "<h1>{{ content }}</h1>"}, "name": "Will"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"subject": "Hi Will", "text": "", "html": "<h1></h1>"}, "content is empty here"
    broken = client.post("/api/templates/preview", json={"template": {"html": "{{ 1 / 0 }}"}})
    assert broken.status_code == 422 and broken.json()["details"][0]["field"] == "template.html"


def test_a_job_renders_the_version_it_was_accepted_with_as_multipart(feature_stack: FeatureStack):
    client = feature_stack.api.client
    name = _name()
    domain = f"{name}.example.com"
    client.post("/api/templates", json={"name": name, **WELCOME})
    answer = feature_stack.api.post_job(
        {
            "recipients": [
                {"email": f"eleven@{domain}", "name": "Eleven", "variables": {"code": "<011>"}},
                {"email": f"will@{domain}", "variables": {"code": "W1", "town": "Indiana"}},
            ],
            "subject": "ignored: the template has a subject",
            "template": name,
            "variables": {"town": "Hawkins"},
            "send_at": "PT1S",
        }
    )
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    # Changed and deleted before the job starts: the job still sends version 1.
    client.put(f"/api/templates/{name}", json={"subject": "v2", "text": "v2"})
    client.delete(f"/api/templates/{name}")
    job = feature_stack.api.wait_until_completed(job_id)
    assert (job["template"], job["template_version"], job["counts"]["sent"]) == (name, 1, 2)

    messages = {m.recipients[0]: m.message for m in feature_stack.messages_to(domain)}
    eleven = messages[f"eleven@{domain}"]
    assert eleven["Subject"] == "Welcome to Hawkins, Eleven"
    assert eleven.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in eleven.iter_parts()] == ["text/plain", "text/html"]
    assert eleven.get_body(("plain",)).get_content() == "Hello Eleven, your code is <011>.\r\n"
    assert "code <b>&lt;011&gt;</b>" in eleven.get_body(("html",)).get_content()
    assert messages[f"will@{domain}"]["Subject"] == "Welcome to Indiana,", "a recipient's variables win"


def test_an_html_only_template_gets_a_text_part_derived_from_it(feature_stack: FeatureStack):
    client = feature_stack.api.client
    name = _name()
    domain = f"{name}.example.com"
    html = "<h1>News</h1><p>Read <a href='https://example.org/n'>the story</a>, {{ name }}.</p>"
    client.post("/api/templates", json={"name": name, "html": html})
    answer = feature_stack.api.post_job({"recipients": [{"email": f"a@{domain}", "name": "Ann"}], "subject": "N",
                                         "template": name})  # fmt: skip
    feature_stack.api.wait_until_completed(answer.json()["id"])
    message = feature_stack.messages_to(domain)[0].message
    assert message["Subject"] == "N"
    text = message.get_body(("plain",)).get_content()
    assert "News" in text and "the story (https://example.org/n), Ann." in text and "<" not in text
    assert "<h1>News</h1>" in message.get_body(("html",)).get_content()


def test_a_job_naming_an_unknown_or_deleted_template_or_version_is_refused(feature_stack: FeatureStack):
    name, deleted = _name(), _name()
    feature_stack.api.client.post("/api/templates", json={"name": name, "text": "x"})
    feature_stack.api.client.post("/api/templates", json={"name": deleted, "text": "x"})
    feature_stack.api.client.delete(f"/api/templates/{deleted}")
    for body in (
        {"template": _name()},
        {"template": name, "template_version": 7},
        {"template": deleted},
        {"template": deleted, "template_version": 1},
    ):
        answer = feature_stack.api.post_job({"recipients": ["a@example.com"], "subject": "s", **body})
        assert answer.status_code == 422 and answer.json()["details"][0]["field"] == "template"


def test_two_accounts_each_send_their_own_template_of_one_name_and_a_job_keeps_the_version_it_pinned(
    feature_stack: FeatureStack,
):
    api, tag = feature_stack.api, uuid.uuid4().hex[:8]
    alpha, beta = (
        ApiClient(api.url, {"Authorization": f"Bearer {api.new_key(f'{who}-{tag}')}"}) for who in ("alpha", "beta")
    )
    alphas, betas = f"alpha-{tag}.example.com", f"beta-{tag}.example.com"

    def job(caller: ApiClient, to: str, **options: str) -> str:
        body = {"recipients": [to], "subject": "s", "template": "news", **options}
        answer = caller.post_job(body)
        assert answer.status_code == 202, answer.text
        return answer.json()["id"]

    for caller, text in ((alpha, "Alpha news v1\n"), (beta, "Beta news\n")):
        assert caller.client.post("/api/templates", json={"name": "news", "text": text}).status_code == 201
    assert beta.client.put("/api/templates/letter", json={"text": "Beta's letter\n"}).status_code == 201
    pinned = job(alpha, f"early@{alphas}", send_at="PT1S")  # accepted now, sent after the change below
    sent = [job(beta, f"first@{betas}")]

    assert alpha.client.put("/api/templates/news", json={"text": "Alpha news v2\n"}).json()["version"] == 2
    # Alpha cannot reach beta's templates: not by name (its own scope), nor as shared ones.
    assert alpha.client.put("/api/templates/news?shared=true", json={"text": "x"}).status_code == 403
    assert alpha.client.delete("/api/templates/letter").status_code == 404
    assert alpha.client.get("/api/templates/letter").status_code == 404
    latest = job(alpha, f"late@{alphas}")
    sent.append(job(beta, f"second@{betas}"))

    assert alpha.wait_until_completed(pinned)["template_version"] == 1
    assert alpha.wait_until_completed(latest)["template_version"] == 2
    for job_id in sent:
        assert beta.wait_until_completed(job_id)["template_version"] == 1
    by_address = {m.recipients[0]: m.message.get_content() for m in feature_stack.messages_to(alphas)}
    assert by_address == {f"early@{alphas}": "Alpha news v1\r\n", f"late@{alphas}": "Alpha news v2\r\n"}
    assert sorted(m.message.get_content() for m in feature_stack.messages_to(betas)) == ["Beta news\r\n"] * 2
    assert beta.client.get("/api/templates/letter").json()["text"] == "Beta's letter\n"
    alpha.close()
    beta.close()


def test_operators_put_list_and_delete_shared_templates_with_the_command(feature_stack: FeatureStack, tmp_path: Path):
    name = _name()
    body = tmp_path / "body.txt"
    body.write_text("Shared {{ content }}\n")
    env = {**os.environ, "DATABASE_URL": feature_stack.postgres_url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "email_service", "templates", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    put = cli("put", name, "--subject", "Shared {{ subject }}", "--text", str(body))
    assert put.returncode == 0 and f"shared template {name} created: version 1" in put.stderr, put.stderr
    seen = feature_stack.api.client.get(f"/api/templates/{name}").json()
    assert (seen["shared"], seen["subject"]) == (True, "Shared {{ subject }}")
    assert f"{name}  shared  1" in cli("list").stdout
    refused = cli("put", name, "--eml", str(body), "--text", str(body))
    assert refused.returncode == 1 and "give eml alone" in refused.stderr
    assert cli("delete", name).returncode == 0
    assert feature_stack.api.client.get(f"/api/templates/{name}").status_code == 404
