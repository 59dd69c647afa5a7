"""Bad requests through real HTTP: each answered 4xx in the JSON envelope, nothing stored, queued or sent."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from email_service.storage.models import Job, Recipient
from tests.support.servers import REDIS_URL
from tests.support.smtp_sink import SMTPSink
from tests.support.stack import ApiServer, settings_from, wait_for

VALID = {"recipients": ["will@example.com"], "subject": "Demogorgon", "content": "Run", "template": "default"}


@pytest.fixture(scope="module")
def intake(postgres_url: str, redis_prefix: str, tmp_path_factory) -> Iterator[tuple[ApiServer, SMTPSink, str]]:
    """The API on PostgreSQL and Redis with no worker: whatever is queued stays visible in Redis."""
    sink = SMTPSink().start()
    templates = Path(tmp_path_factory.mktemp("templates"))
    (templates / "broken.eml").write_text("Subject: {{ subject }}\n\n{{ missing_variable }}\n")
    (templates / "syntax.eml").write_text("Subject: {{ subject }}\n\n{% if %}\n")
    (templates / "ref.eml").write_text("Subject: {{ subject }}\nX-Ref: {{ ref }}\n\nBody\n")
    queue = f"email-service-test-{uuid.uuid4().hex[:12]}"
    env = {
        "DATABASE_URL": postgres_url,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_BROKER_KEY_PREFIX": redis_prefix,
        "CELERY_QUEUE": queue,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(sink.port),
        "MAX_RECIPIENTS": "50",
        "MAX_REQUEST_BYTES": "20000",
        "TEMPLATES_DIR": str(templates),
    }
    api = ApiServer(settings_from(env)).start()
    yield api, sink, f"{redis_prefix}{queue}"
    api.stop()
    sink.stop()


def _state(api: ApiServer, queue_key: str) -> tuple[int, int, int]:
    services = api.app.extensions["email_service"]
    with services.sessions() as session:
        jobs = session.scalar(select(func.count()).select_from(Job))
        recipients = session.scalar(select(func.count()).select_from(Recipient))
    queued = redis.Redis.from_url(REDIS_URL).llen(queue_key)
    return jobs, recipients, queued


BAD_REQUESTS = {
    "invalid addresses among valid ones": (
        {**VALID, "recipients": ["ok@example.com", "not-an-address", "a..b@example.com", "ok2@example.com", "x@y\n"]},
        422,
        [("recipients[1]", 1), ("recipients[2]", 2), ("recipients[4]", 4)],
    ),
    "CRLF header injection in the subject": ({**VALID, "subject": "Hi\r\nBcc: x@y.z"}, 422, [("subject", None)]),
    "trailing newline in the subject": ({**VALID, "subject": "Hi\n"}, 422, [("subject", None)]),
    "newline in a recipient name": (
        {**VALID, "recipients": [{"email": "a@example.com", "name": "A\nBcc: x@y.z"}]},
        422,
        [("recipients[0].name", 0)],
    ),
    "template path traversal": ({**VALID, "template": "../../etc/passwd"}, 422, [("template", None)]),
    "unknown template": ({**VALID, "template": "nope"}, 422, [("template", None)]),
    "template that does not render": ({**VALID, "template": "broken"}, 422, [("template.eml", None)]),
    "template with a syntax error": ({**VALID, "template": "syntax"}, 422, [("template.eml", None)]),
    "a variable adding a header": (
        {**VALID, "template": "ref", "recipients": [{"email": "a@example.com", "variables": {"ref": "1\nBcc: x@y.z"}}]},
        422,
        [("template.eml", None)],
    ),
    "empty recipients": ({**VALID, "recipients": []}, 422, [("recipients", None)]),
    "wrong types": (
        {**VALID, "recipients": "will@example.com", "subject": 12},
        422,
        [("recipients", None), ("subject", None)],
    ),
    "recipients of the wrong type": (
        {**VALID, "recipients": ["a@example.com", 123, {"email": 5}, {"email": "b@example.com", "cc": "x"}]},
        422,
        [("recipients[1]", 1), ("recipients[2].email", 2), ("recipients[3].cc", 3)],
    ),
    "missing field": ({k: v for k, v in VALID.items() if k != "subject"}, 422, [("subject", None)]),
    "unknown field": ({**VALID, "bcc": ["x@example.com"]}, 422, [("bcc", None)]),
    "too many recipients": (
        {**VALID, "recipients": [f"r{i}@example.com" for i in range(51)]},
        422,
        [("recipients", None)],
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_request_is_refused_and_changes_nothing(intake, case: str):
    api, sink, queue_key = intake
    body, status, fields = BAD_REQUESTS[case]
    before = _state(api, queue_key)
    answer = api.post_job(body)
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    error = answer.json()
    assert error["error"] == "validation_error" and error["message"]
    assert [(d["field"], d.get("index")) for d in error["details"]] == fields
    assert all(d["reason"] for d in error["details"])
    assert _state(api, queue_key) == before
    assert sink.handler.messages() == []


def test_each_refused_address_is_quoted_in_its_detail_truncated_and_escaped(intake):
    api, sink, queue_key = intake
    before = _state(api, queue_key)
    long_invalid = "a" * 150 + "@@example.com"  # refused by intake
    over_the_limit = "b" * 400 + "@example.com"  # refused by the schema (320 characters at most)
    body = {
        **VALID,
        "recipients": ["ok@example.com", "not-an-address", "x@y\n\x1b", long_invalid, {"email": over_the_limit}],
        "reply_to": "reply..to@example.com",
    }
    answer = api.post_job({**body, "recipients": body["recipients"][:4]})
    assert answer.status_code == 422, answer.text
    details = answer.json()["details"]
    assert [(d["field"], d.get("index"), d["address"]) for d in details] == [
        ("reply_to", None, "reply..to@example.com"),
        ("recipients[1]", 1, "not-an-address"),
        ("recipients[2]", 2, "x@y\n\x1b"),
        ("recipients[3]", 3, "a" * 100 + "…"),
    ]
    # The control characters travel JSON-escaped: the body itself has none.
    assert "\\n\\u001b" in answer.text and not any(c < " " for c in answer.text.strip())

    schema_error = api.post_job(body)
    assert schema_error.status_code == 422
    assert [(d["field"], d["index"], d["address"]) for d in schema_error.json()["details"]] == [
        ("recipients[4].email", 4, "b" * 100 + "…")
    ]
    assert _state(api, queue_key) == before
    assert sink.handler.messages() == []


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b'{"recipients": ["a@example.com"], "subject": ', "application/json", 400, "malformed_json"),
        (b"recipients=a@example.com", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'{"recipients": ["' + b"a" * 30000 + b'@example.com"]}', "application/json", 413, "request_entity_too_large"),
    ],
    ids=["malformed JSON", "not JSON", "body over the size cap"],
)
def test_unreadable_body_is_refused_and_changes_nothing(
    intake, content: bytes, content_type: str, status: int, code: str
):
    api, sink, queue_key = intake
    before = _state(api, queue_key)
    answer = api.client.post("/api/email/", content=content, headers={"Content-Type": content_type})
    assert answer.status_code == status
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json()["error"] == code
    assert _state(api, queue_key) == before
    assert sink.handler.messages() == []


def test_valid_request_is_stored_and_queued_once(intake):
    """The counterpart of the tests above: the same checks do see a job that is accepted."""
    api, _, queue_key = intake
    jobs, recipients, queued = _state(api, queue_key)
    answer = api.post_job({**VALID, "recipients": ["a@example.com", "A@EXAMPLE.com", "b@example.com"]})
    assert answer.status_code == 202
    assert answer.json()["total"] == 2
    expected = (jobs + 1, recipients + 2, queued + 1)
    wait_for(lambda: _state(api, queue_key) == expected, timeout=5)  # the wake-up: published just after the 202


def test_unknown_job_is_a_json_404(intake):
    api, _, _ = intake
    for path in (f"/api/email/{uuid.uuid4()}", f"/api/email/{uuid.uuid4()}/recipients"):
        answer = api.client.get(path)
        assert answer.status_code == 404
        assert answer.json()["error"] == "not_found"


def test_unknown_route_and_method_answer_json(intake):
    api, _, _ = intake
    assert api.client.get("/api/nothing-here").json()["error"] == "not_found"
    answer = api.client.delete("/api/email/")
    assert answer.status_code == 405 and answer.json()["error"] == "method_not_allowed"


@pytest.mark.parametrize("literal", ["NaN", "-Infinity", "1e999"])
def test_a_non_finite_number_is_refused_on_postgresql_as_on_sqlite(intake, literal: str):
    api, _sink, queue_key = intake
    before = _state(api, queue_key)
    body = '{"recipients": [{"email": "a@example.com", "variables": {"n": NUMBER}}], "subject": "s"}'
    body = body.replace("NUMBER", literal)
    answer = api.client.post("/api/email/", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["details"][0]["field"] == "recipients[0].variables.n"
    assert _state(api, queue_key) == before
