"""Following jobs: listing, per-recipient pages and filters, and the API documentation."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from email_service.app import create_api
from email_service.config import Settings
from email_service.services import build_services
from email_service.storage.migrate import upgrade
from tests.support.queues import RecordingQueue


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    settings = Settings(data_dir=tmp_path, auth_disabled=True)  # API keys: tests/integration/api/test_auth.py
    upgrade(settings.database_url)
    services = build_services(settings)
    services.queue = RecordingQueue()
    return create_api(services).test_client()


def _post(client: FlaskClient, count: int, subject: str = "s") -> str:
    answer = client.post(
        "/api/email",
        json={"recipients": [f"r{i}@example.com" for i in range(count)], "subject": subject, "content": "c"},
    )
    assert answer.status_code == 202
    return answer.get_json()["id"]


def test_jobs_are_listed_newest_first_with_pages(client: FlaskClient):
    ids = [_post(client, 1, subject=f"job {i}") for i in range(5)]
    first = client.get("/api/email/?limit=2").get_json()
    assert [j["id"] for j in first["items"]] == ids[::-1][:2]
    second = client.get(f"/api/email/?limit=2&before={first['next_before']}").get_json()
    assert [j["id"] for j in second["items"]] == ids[::-1][2:4]
    last = client.get(f"/api/email/?limit=2&before={second['next_before']}").get_json()
    assert [j["id"] for j in last["items"]] == ids[:1] and last["next_before"] is None
    assert first["items"][0]["counts"]["pending"] == 1


def test_jobs_are_listed_by_status_and_tag(client: FlaskClient):
    tagged = client.post("/api/email", json={"recipients": ["a@example.com"], "subject": "s", "tags": ["winter"]})
    cancelled = _post(client, 1)
    client.post(f"/api/email/{cancelled}/cancel")
    listed = client.get("/api/email/?tag=winter").get_json()["items"]
    assert [j["id"] for j in listed] == [tagged.get_json()["id"]]
    assert [j["id"] for j in client.get("/api/email/?status=cancelled").get_json()["items"]] == [cancelled]
    assert client.get("/api/email/?status=cancelled&tag=winter").get_json()["items"] == []
    bad = client.get("/api/email/?status=gone")
    assert bad.status_code == 422 and bad.get_json()["details"][0]["field"] == "status"


def test_accepted_job_is_queued_once_and_reports_counts(client: FlaskClient):
    job_id = _post(client, 3)
    assert client.application.extensions["email_service"].queue.wake_ups == 1
    job = client.get(f"/api/email/{job_id}").get_json()
    assert (job["status"], job["total"], job["current"], job["progress"]) == ("queued", 3, 0, 0.0)
    assert sum(job["counts"].values()) == job["total"]


def test_recipients_are_paginated_and_filtered(client: FlaskClient):
    job_id = _post(client, 25)
    page = client.get(f"/api/email/{job_id}/recipients?limit=10").get_json()
    positions = [r["position"] for r in page["items"]]
    while page["next_after"] is not None:
        page = client.get(f"/api/email/{job_id}/recipients?limit=10&after={page['next_after']}").get_json()
        positions += [r["position"] for r in page["items"]]
    assert positions == list(range(25))
    assert client.get(f"/api/email/{job_id}/recipients?status=sent").get_json()["items"] == []
    found = client.get(f"/api/email/{job_id}/recipients?search=R1").get_json()["items"]
    assert [r["email"] for r in found] == ["r1@example.com"] + [f"r1{i}@example.com" for i in range(10)]
    bad = client.get(f"/api/email/{job_id}/recipients?status=delivered")
    assert bad.status_code == 422 and bad.get_json()["details"][0]["field"] == "status"


def test_openapi_document_describes_the_api_with_examples(client: FlaskClient):
    spec = client.get("/api/openapi.json").get_json()
    assert {"/api/email/", "/api/email/{id}", "/api/email/{id}/recipients"} <= set(spec["paths"])
    post = spec["paths"]["/api/email/"]["post"]
    assert post["description"] and set(post["responses"]) >= {"202", "422"}
    body = spec["components"]["schemas"]["SendEmailBody"]
    assert body["example"]["template"] == "default"
    assert all(field.get("description") for field in body["properties"].values())
    assert client.get("/api/").headers["Location"].endswith("/api/swagger")
    assert b"swagger" in client.get("/api/swagger").data.lower()


def test_a_queued_job_can_be_cancelled_once_and_ends_at_once(client: FlaskClient):
    job_id = _post(client, 4)
    answer = client.post(f"/api/email/{job_id}/cancel")
    job = answer.get_json()
    assert answer.status_code == 200
    assert (job["status"], job["counts"]["cancelled"], job["current"]) == ("cancelled", 4, 4)
    assert job["finished_at"] is not None
    again = client.post(f"/api/email/{job_id}/cancel")
    assert again.status_code == 409 and again.get_json()["error"] == "conflict"


def test_only_a_completed_job_with_failures_can_be_retried(client: FlaskClient):
    job_id = _post(client, 2)
    answer = client.post(f"/api/email/{job_id}/retry")
    assert answer.status_code == 409 and "queued" in answer.get_json()["message"]
    assert client.post("/api/email/nope/retry").status_code == 404
    assert client.post("/api/email/nope/cancel").status_code == 404
