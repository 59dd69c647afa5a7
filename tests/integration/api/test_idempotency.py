"""Idempotency-Key on POST /api/email/ through the HTTP API on PostgreSQL: a retried request gets the
first answer and the same job, never a second job."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from email_service.services import auth, idempotency
from tests.support.servers import FeatureStack


def _body(subject: str, count: int = 3) -> dict[str, Any]:
    return {"recipients": [f"r{i}@idem.example.com" for i in range(count)], "subject": subject, "content": "c"}


def _post(stack: FeatureStack, key: str, body: dict[str, Any]) -> httpx.Response:
    return stack.api.client.post("/api/email/", json=body, headers={"Idempotency-Key": key})


def _jobs_with_subject(stack: FeatureStack, subject: str) -> int:
    with psycopg.connect(stack.postgres_url.replace("+psycopg", "")) as connection:
        return int(connection.execute("SELECT count(*) FROM jobs WHERE subject = %s", (subject,)).fetchone()[0])


def test_the_same_key_and_body_answer_the_first_answer_and_the_same_job(feature_stack: FeatureStack):
    key, subject = str(uuid.uuid4()), f"idem {uuid.uuid4()}"
    first = _post(feature_stack, key, _body(subject))
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    # The same JSON with other spacing and key order is the same request.
    again = feature_stack.api.client.post(
        "/api/email/",
        content=json.dumps({"content": "c", "recipients": _body(subject)["recipients"], "subject": subject}, indent=3),
        headers={"Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert again.status_code == 202 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert _jobs_with_subject(feature_stack, subject) == 1


def test_the_same_key_with_another_body_is_refused(feature_stack: FeatureStack):
    key, subject = str(uuid.uuid4()), f"idem {uuid.uuid4()}"
    assert _post(feature_stack, key, _body(subject)).status_code == 202
    other = _post(feature_stack, key, _body(subject, count=4))
    assert other.status_code == 422 and other.json()["details"][0]["field"] == "Idempotency-Key"
    assert _jobs_with_subject(feature_stack, subject) == 1


def test_fifty_concurrent_identical_posts_create_exactly_one_job(feature_stack: FeatureStack):
    key, subject = str(uuid.uuid4()), f"idem {uuid.uuid4()}"
    body = _body(subject, count=2000)  # long enough to store that duplicates arrive while it runs

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=feature_stack.api.url, timeout=60, headers=feature_stack.api.headers) as client:
            return client.post("/api/email/", json=body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(post, range(50)))
    statuses = sorted({a.status_code for a in answers})
    assert set(statuses) <= {202, 409}, [a.text for a in answers if a.status_code not in (202, 409)]
    assert len({a.json()["id"] for a in answers if a.status_code == 202}) == 1
    assert _jobs_with_subject(feature_stack, subject) == 1
    replay = _post(feature_stack, key, body)
    assert replay.status_code == 202 and replay.headers["Idempotent-Replayed"] == "true"


def test_a_request_still_running_with_the_key_makes_a_duplicate_409(feature_stack: FeatureStack):
    key, subject = str(uuid.uuid4()), f"idem {uuid.uuid4()}"
    body = _body(subject)
    first = _post(feature_stack, key, body)
    # As if the first request were still being handled: its key holds no job yet.
    _set_key(feature_stack, key, job_id=None, age=timedelta(seconds=1))
    duplicate = _post(feature_stack, key, body)
    assert duplicate.status_code == 409 and duplicate.json()["error"] == "conflict"
    # A first request that died long ago holding the key: the next one takes over.
    _set_key(feature_stack, key, job_id=None, age=timedelta(minutes=10))
    takeover = _post(feature_stack, key, body)
    assert takeover.status_code == 202 and takeover.json()["id"] != first.json()["id"]
    assert _jobs_with_subject(feature_stack, subject) == 2


def test_a_key_older_than_a_day_is_forgotten(feature_stack: FeatureStack):
    key, subject = str(uuid.uuid4()), f"idem {uuid.uuid4()}"
    first = _post(feature_stack, key, _body(subject))
    _set_key(feature_stack, key, job_id=first.json()["id"], age=timedelta(hours=25))
    later = _post(feature_stack, key, _body(subject))
    assert later.status_code == 202 and later.json()["id"] != first.json()["id"]
    assert "Idempotent-Replayed" not in later.headers


def test_a_refused_request_does_not_use_up_its_key(feature_stack: FeatureStack):
    key, subject = str(uuid.uuid4()), f"idem {uuid.uuid4()}"
    bad = _post(feature_stack, key, {**_body(subject), "recipients": ["not an address"]})
    assert bad.status_code == 422
    assert _post(feature_stack, key, _body(subject)).status_code == 202


def test_an_unusable_key_is_refused(feature_stack: FeatureStack):
    for key in (b"x" * 256, "clé".encode()):
        answer = feature_stack.api.client.post("/api/email/", json=_body("s"), headers={"Idempotency-Key": key})
        assert answer.status_code == 422 and answer.json()["details"][0]["field"] == "Idempotency-Key"


def _set_key(stack: FeatureStack, key: str, *, job_id: str | None, age: timedelta) -> None:
    assert stack.api.api_key is not None
    owner = auth.authenticate(stack.api.app.extensions["email_service"], stack.api.api_key)
    key = idempotency.stored_key(owner, key)
    with psycopg.connect(stack.postgres_url.replace("+psycopg", "")) as connection:
        connection.execute(
            "UPDATE idempotency_keys SET job_id = %s, created_at = %s,"
            " response = CASE WHEN %s::text IS NULL THEN NULL ELSE response END WHERE key = %s",
            (job_id, datetime.now(UTC) - age, job_id, key),
        )
