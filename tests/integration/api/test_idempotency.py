"""Idempotency-Key on POST /api/email/ through the HTTP API on PostgreSQL: a retried request gets the
first answer and the same job, never a second job."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from email_service.services import auth, idempotency
from tests.support.servers import FeatureStack
from tests.support.stack import GunicornApi


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
    # A duplicate waits for the request that holds the key and answers its answer.
    assert {a.status_code for a in answers} == {202}, [a.text for a in answers if a.status_code != 202]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 49
    assert _jobs_with_subject(feature_stack, subject) == 1
    replay = _post(feature_stack, key, body)
    assert replay.status_code == 202 and replay.headers["Idempotent-Replayed"] == "true"


def test_a_retry_after_the_api_process_died_mid_request_is_served_at_once(feature_stack: FeatureStack, tmp_path: Path):
    key, subject = str(uuid.uuid4()), f"idem {uuid.uuid4()}"
    # About a second to check and store; scheduled a day ahead, so that the shared worker sends none of it.
    body = {**_body(subject, count=50_000), "send_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}
    api = GunicornApi(feature_stack.env, tmp_path / "api.log", workers=1).wait_ready()
    api_key = feature_stack.api.new_key("crash")
    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": key}
    try:
        with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=api.url, timeout=60, headers=headers) as client:
            first = pool.submit(client.post, "/api/email/", json=body)
            _wait_until_the_key_is_being_written(feature_stack, _stored_key(feature_stack, api_key, key))
            for pid in api.workers():  # killed while it stores the job: gunicorn starts another
                os.kill(pid, signal.SIGKILL)
            with pytest.raises(httpx.TransportError):
                first.result()
        assert _jobs_with_subject(feature_stack, subject) == 0
        with httpx.Client(base_url=api.url, timeout=60, headers=headers) as client:
            retry = _answer_once_restarted(client, body)
        assert retry.status_code == 202, retry.text
        assert "Idempotent-Replayed" not in retry.headers
        assert _jobs_with_subject(feature_stack, subject) == 1
    finally:
        api.stop()


def _wait_until_the_key_is_being_written(stack: FeatureStack, stored: str) -> None:
    """Until the key is stored, or a transaction holding a write lock on the keys' table is open."""
    with psycopg.connect(stack.postgres_url.replace("+psycopg", ""), autocommit=True) as connection:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = connection.execute(
                "SELECT EXISTS (SELECT 1 FROM idempotency_keys WHERE key = %s) OR EXISTS ("
                " SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " WHERE c.relname = 'idempotency_keys' AND l.mode = 'RowExclusiveLock' AND l.pid <> pg_backend_pid()"
                " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
                (stored,),
            ).fetchone()
            if row is not None and row[0]:
                return
            time.sleep(0.002)
    raise AssertionError("the request never started writing its key")


def _answer_once_restarted(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    """The API's answer to ``body``, sent again while gunicorn restarts its worker."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return client.post("/api/email/", json=body)
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the API did not come back"
            time.sleep(0.1)


def test_a_key_older_than_a_day_is_forgotten(feature_stack: FeatureStack):
    key, subject = str(uuid.uuid4()), f"idem {uuid.uuid4()}"
    first = _post(feature_stack, key, _body(subject))
    _age_key(feature_stack, key, timedelta(hours=25))
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


def _age_key(stack: FeatureStack, key: str, age: timedelta) -> None:
    with psycopg.connect(stack.postgres_url.replace("+psycopg", "")) as connection:
        connection.execute(
            "UPDATE idempotency_keys SET created_at = %s WHERE key = %s",
            (datetime.now(UTC) - age, _stored_key(stack, stack.api.api_key, key)),
        )


def _stored_key(stack: FeatureStack, api_key: str | None, key: str) -> str:
    assert api_key is not None
    caller = auth.authenticate(stack.api.app.extensions["email_service"], api_key)
    assert caller is not None
    return idempotency.stored_key(caller.account, key)
