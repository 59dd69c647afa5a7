"""API keys through the HTTP API on PostgreSQL, and the `keys` and `serve` commands."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from email_service.services import accounts, auth
from tests.support.servers import own_database
from tests.support.stack import ApiServer, settings_from

BODY = {"recipients": ["a@example.com"], "subject": "s"}


@pytest.fixture(scope="module")
def api(postgres_url: str) -> Iterator[ApiServer]:
    server = ApiServer(settings_from({"DATABASE_URL": postgres_url, "CELERY_BROKER_URL": "memory://"})).start()
    yield server
    server.stop()


def _call(
    api: ApiServer,
    method: str,
    path: str,
    key: str | None = None,
    header: str = "bearer",
    headers: dict[str, str] | None = None,
    **kwargs,
) -> httpx.Response:
    sent = dict(headers or {})
    if key is not None:
        sent |= {"Authorization": f"Bearer {key}"} if header == "bearer" else {"X-API-Key": key}
    with httpx.Client(base_url=api.url, timeout=10) as client:
        return client.request(method, path, headers=sent, **kwargs)


SOME_JOB_ID = "5d0c7a52-3c4e-4f4e-9d55-2f9e6c1b7a10"  # fixed: every test process collects the same tests


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/email/"),
        ("GET", "/api/email/"),
        ("GET", f"/api/email/{SOME_JOB_ID}"),
        ("GET", f"/api/email/{SOME_JOB_ID}/recipients"),
        ("POST", f"/api/email/{SOME_JOB_ID}/cancel"),
        ("POST", f"/api/email/{SOME_JOB_ID}/pause"),
        ("GET", "/api/templates"),
        ("POST", "/api/templates/preview"),
        ("DELETE", "/api/templates/default"),
    ],
)
def test_every_operation_needs_a_key(api: ApiServer, method: str, path: str):
    for key, headers in (
        (None, None),
        ("es_not-a-key", None),
        (api.api_key + "x", None),
        (None, {"Authorization": f"Basic {api.api_key}"}),
    ):
        answer = _call(api, method, path, key, headers=headers, json=BODY)
        assert answer.status_code == 401, (key, answer.text)
        assert answer.json()["error"] == "unauthorized"
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_refused_request_stores_nothing(api: ApiServer):
    subject = f"no key {uuid.uuid4()}"
    assert _call(api, "POST", "/api/email/", None, json={**BODY, "subject": subject}).status_code == 401
    jobs = api.client.get("/api/email/", params={"limit": 200}).json()["items"]
    assert subject not in {job["subject"] for job in jobs}


def test_health_and_documentation_are_public(api: ApiServer):
    for path in ("/healthz", "/metrics", "/api/openapi.json", "/api/swagger"):
        assert _call(api, "GET", path).status_code == 200, path
    assert "checks" in _call(api, "GET", "/readyz").json()  # 200 or 503 as the relay answers, never 401
    spec = _call(api, "GET", "/api/openapi.json").json()
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert spec["paths"]["/api/email/"]["post"]["security"] == [{"bearer": []}, {"apiKey": []}]


@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
def test_a_key_sees_its_own_jobs_only(api: ApiServer, header: str):
    mine, theirs = api.new_key(f"mine-{header}"), api.new_key(f"theirs-{header}")
    job_id = _call(api, "POST", "/api/email/", mine, header, json=BODY).json()["id"]
    assert _call(api, "GET", f"/api/email/{job_id}", mine, header).status_code == 200
    for method, path in (
        ("GET", f"/api/email/{job_id}"),
        ("GET", f"/api/email/{job_id}/recipients"),
        ("POST", f"/api/email/{job_id}/cancel"),
        ("POST", f"/api/email/{job_id}/pause"),
    ):
        answer = _call(api, method, path, theirs, header)
        assert answer.status_code == 404 and answer.json()["error"] == "not_found", path
    listed = _call(api, "GET", "/api/email/", theirs, header).json()["items"]
    assert job_id not in {job["id"] for job in listed}
    assert job_id in {job["id"] for job in _call(api, "GET", "/api/email/", mine, header).json()["items"]}


def test_idempotency_keys_of_two_callers_never_meet(api: ApiServer):
    first, second = api.new_key("first"), api.new_key("second")
    headers = {"Idempotency-Key": "same-key"}
    one = _call(api, "POST", "/api/email/", first, json=BODY, headers=headers)
    other = _call(api, "POST", "/api/email/", second, json={**BODY, "subject": "another body"}, headers=headers)
    assert one.status_code == other.status_code == 202 and one.json()["id"] != other.json()["id"]


def test_keys_are_random_shown_once_stored_hashed_and_revocable(api: ApiServer):
    services = api.app.extensions["email_service"]
    info, key, _ = auth.create_key(services.sessions, services.settings, "billing")
    assert key.startswith("es_") and len(key) >= 3 + 43  # 32 random bytes, base64url
    assert key != auth.create_key(services.sessions, services.settings, "billing-2", account="billing")[1]
    listed = {k.id: k for k in auth.list_keys(services.sessions)}
    assert listed[info.id].prefix == key[:10] and key not in repr(listed[info.id])
    with services.readers() as session:
        stored = session.execute(text("SELECT key_hash FROM api_keys WHERE id = :id"), {"id": info.id}).scalar_one()
    assert stored == auth.hash_key(key) and key not in stored
    assert _call(api, "GET", "/api/email/", key).status_code == 200
    auth.revoke_key(services.sessions, info.id)
    assert _call(api, "GET", "/api/email/", key).status_code == 401


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "email_service", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keys_commands_and_serve_refusing_to_start_without_keys(tmp_path: Path):
    with own_database() as url:
        env = {"DATABASE_URL": url, "CELERY_BROKER_URL": "memory://", "DATA_DIR": str(tmp_path)}
        refused = _cli("serve", "--port", "1", env=env)
        assert refused.returncode != 0 and "no API key exists" in refused.stderr
        created = _cli("keys", "create", "ops", env=env)
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip()
        assert key.startswith("es_") and "cannot be shown again" in created.stderr
        assert "account ops created with it" in created.stderr and "whsec_" in created.stderr
        listed = _cli("keys", "list", env=env)
        assert "ops" in listed.stdout and key[:10] in listed.stdout and key not in listed.stdout
        assert _cli("keys", "revoke", "ops", env=env).returncode == 0
        assert "revoked" in _cli("keys", "list", env=env).stdout
        assert _cli("keys", "revoke", "ops", env=env).returncode != 0, "nothing left to revoke"
        assert "no API key exists" in _cli("serve", "--port", "1", env=env).stderr


def test_a_key_is_rotated_within_its_account_and_a_disabled_account_stops_at_once(api: ApiServer):
    services = api.app.extensions["email_service"]
    name = f"rotating-{uuid.uuid4().hex[:8]}"
    old = api.new_key(name)
    job_id = _call(api, "POST", "/api/email/", old, json=BODY).json()["id"]
    new = api.new_key(f"{name}-next", account=name)
    assert _call(api, "GET", f"/api/email/{job_id}", new).status_code == 200
    auth.revoke_key(services.sessions, name)
    assert _call(api, "GET", "/api/email/", old).status_code == 401
    assert job_id in {job["id"] for job in _call(api, "GET", "/api/email/", new).json()["items"]}
    accounts.set_disabled(services.sessions, name, True)
    answer = _call(api, "GET", f"/api/email/{job_id}", new)
    assert answer.status_code == 401 and "disabled" in answer.json()["message"]
    accounts.set_disabled(services.sessions, name, False)
    assert _call(api, "GET", f"/api/email/{job_id}", new).status_code == 200


def test_a_key_sends_as_the_default_sender_or_its_own_senders_only(api: ApiServer):
    news = api.new_key("news", senders=("News <News@Example.org>",))
    plain = api.new_key("plain")
    for key, sender, status in (
        (news, "News Desk <news@example.org>", 202),
        (news, "news@EXAMPLE.org", 202),
        (news, "Boss <ceo@example.org>", 422),
        (news, "News <news@example.org>\r\nBcc: x@example.org", 422),
        (plain, "news@example.org", 422),
        (plain, "email-service@localhost", 202),  # MAIL_DEFAULT_SENDER: any key
    ):
        answer = _call(api, "POST", "/api/email/", key, json={**BODY, "sender": sender})
        assert answer.status_code == status, (sender, answer.text)
        if status == 422:
            assert [(d["field"], d["address"]) for d in answer.json()["details"]] == [("sender", sender)]


def test_staging_sends_only_to_allowed_recipient_domains(postgres_url: str):
    env = {"DATABASE_URL": postgres_url, "CELERY_BROKER_URL": "memory://", "RECIPIENT_DOMAINS": "example.com, test.org"}
    staging = ApiServer(settings_from(env)).start()
    try:
        body = {"recipients": ["a@example.com", "b@Test.org", "c@gmail.com"], "subject": "s"}
        answer = staging.client.post("/api/email/", json=body)
        assert answer.status_code == 422
        details = answer.json()["details"]
        assert [(d["field"], d["index"], d["address"]) for d in details] == [("recipients[2]", 2, "c@gmail.com")]
        allowed = {**body, "recipients": body["recipients"][:2]}
        assert staging.client.post("/api/email/", json=allowed).status_code == 202
    finally:
        staging.stop()
