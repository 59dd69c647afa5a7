"""Scheduling through the HTTP API on real servers: send_at started by the scheduler from the database,
expires_at, cancel before the start, pause and resume while sending."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.servers import FeatureStack
from tests.support.stack import wait_for


def _domain() -> str:
    return f"s-{uuid.uuid4().hex[:10]}.example.com"


def _job(stack: FeatureStack, job_id: str) -> dict[str, Any]:
    return stack.api.client.get(f"/api/email/{job_id}").json()


@pytest.mark.parametrize("when", ["PT2S", "in two seconds"])
def test_a_scheduled_job_waits_in_the_database_then_the_scheduler_starts_it(feature_stack: FeatureStack, when: str):
    domain = _domain()
    send_at = (
        "PT2S" if when == "PT2S" else (datetime.now(UTC) + timedelta(seconds=2)).astimezone().isoformat()
    )  # a time with the local offset
    accepted_at = time.monotonic()
    answer = feature_stack.api.post_job(
        {"recipients": [f"r{i}@{domain}" for i in range(15)], "subject": "later", "send_at": send_at}
    )
    assert answer.status_code == 202 and answer.json()["status"] == "scheduled", answer.text
    job_id = answer.json()["id"]
    job = _job(feature_stack, job_id)
    assert job["status"] == "scheduled" and job["send_at"]
    time.sleep(1.0)
    assert feature_stack.messages_to(domain) == [] and _job(feature_stack, job_id)["status"] == "scheduled"
    job = feature_stack.api.wait_until_completed(job_id)
    assert time.monotonic() - accepted_at >= 1.9
    assert datetime.fromisoformat(job["started_at"]) >= datetime.fromisoformat(job["send_at"])
    assert len(feature_stack.messages_to(domain)) == 15


@pytest.mark.parametrize(
    ("send_at", "expires_at", "field"),
    [
        ("2030-12-01T09:00:00", None, "send_at"),
        ("tomorrow", None, "send_at"),
        ("PT1X", None, "send_at"),
        ("P400D", None, "send_at"),
        ("P999999999D", None, "send_at"),
        ("99999-01-01T00:00:00Z", None, "send_at"),
        (None, "2001-01-01T00:00:00Z", "expires_at"),
        ("PT1H", "PT30M", "expires_at"),
    ],
)
def test_bad_times_are_refused(feature_stack: FeatureStack, send_at: str | None, expires_at: str | None, field: str):
    body: dict[str, Any] = {"recipients": ["a@example.com"], "subject": "s"}
    body |= {k: v for k, v in {"send_at": send_at, "expires_at": expires_at}.items() if v is not None}
    answer = feature_stack.api.post_job(body)
    assert answer.status_code == 422, answer.text
    assert [d["field"] for d in answer.json()["details"]] == [field]


def test_a_scheduled_job_cancelled_before_its_start_sends_nothing(feature_stack: FeatureStack):
    domain = _domain()
    answer = feature_stack.api.post_job({"recipients": [f"r{i}@{domain}" for i in range(5)], "subject": "s",
                                         "send_at": "PT1S"})  # fmt: skip
    job_id = answer.json()["id"]
    cancelled = feature_stack.api.client.post(f"/api/email/{job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    wait_for(lambda: _job(feature_stack, job_id)["finished_at"])
    time.sleep(1.5)
    job = _job(feature_stack, job_id)
    assert (job["status"], job["counts"]["cancelled"]) == ("cancelled", 5)
    assert feature_stack.messages_to(domain) == []


def test_recipients_not_sent_before_expires_at_end_expired(feature_stack: FeatureStack):
    domain = _domain()
    late = f"late@{domain}"
    feature_stack.sink.handler.defer_rcpt.add(late)  # 451 at every attempt
    answer = feature_stack.api.post_job({"recipients": [f"ok@{domain}", late], "subject": "s", "expires_at": "PT3S"})
    job_id = answer.json()["id"]
    job = feature_stack.api.wait_until_completed(job_id)
    assert (job["counts"]["sent"], job["counts"]["expired"]) == (1, 1)
    expired = feature_stack.api.recipients(job_id, status="expired")[0]
    assert expired["email"] == late and expired["attempts"] >= 2 and "expired at" in expired["error"]
    assert datetime.fromisoformat(job["finished_at"]) >= datetime.fromisoformat(job["expires_at"])


def test_an_expired_job_cannot_be_retried(feature_stack: FeatureStack):
    domain = _domain()
    feature_stack.sink.handler.reject_rcpt.add(f"gone@{domain}")
    answer = feature_stack.api.post_job({"recipients": [f"gone@{domain}"], "subject": "s", "expires_at": "PT1S"})
    job_id = answer.json()["id"]
    assert feature_stack.api.wait_until_completed(job_id)["counts"]["failed"] == 1
    wait_for(lambda: datetime.fromisoformat(_job(feature_stack, job_id)["expires_at"]) < datetime.now(UTC))
    retried = feature_stack.api.client.post(f"/api/email/{job_id}/retry")
    assert retried.status_code == 409 and "expired" in retried.json()["message"]
    assert _job(feature_stack, job_id)["counts"]["failed"] == 1


def test_pause_stops_sending_and_resume_goes_on_with_every_recipient_once(feature_stack: FeatureStack):
    domain = _domain()
    count = 600  # 60 batches of 10 at 0.1 s a message: 3 s of sending for the 20 threads
    feature_stack.sink.handler.delay = 0.1
    try:
        answer = feature_stack.api.post_job({"recipients": [f"r{i}@{domain}" for i in range(count)], "subject": "s"})
        job_id = answer.json()["id"]
        wait_for(lambda: len(feature_stack.messages_to(domain)) >= 10)
        paused = feature_stack.api.client.post(f"/api/email/{job_id}/pause")
        assert paused.status_code == 200 and paused.json()["status"] == "paused"
        time.sleep(1.5)  # batches see the pause within a second; messages in flight end
        sent_while_paused = len(feature_stack.messages_to(domain))
        time.sleep(1.5)
        assert len(feature_stack.messages_to(domain)) == sent_while_paused < count
        job = _job(feature_stack, job_id)
        assert job["status"] == "paused" and job["counts"]["sending"] == 0
        assert feature_stack.api.client.post(f"/api/email/{job_id}/pause").status_code == 409

        resumed = feature_stack.api.client.post(f"/api/email/{job_id}/resume")
        assert resumed.status_code == 200 and resumed.json()["status"] == "sending"
        job = feature_stack.api.wait_until_completed(job_id)
    finally:
        feature_stack.sink.handler.delay = 0
    assert job["counts"]["sent"] == count
    received = Counter(m.message["Message-ID"] for m in feature_stack.messages_to(domain))
    assert len(received) == count and set(received.values()) == {1}, "every recipient once, none twice"
    assert feature_stack.api.client.post(f"/api/email/{job_id}/resume").status_code == 409


def test_a_scheduled_job_paused_and_resumed_waits_for_its_time_again(feature_stack: FeatureStack):
    domain = _domain()
    answer = feature_stack.api.post_job({"recipients": [f"a@{domain}"], "subject": "s", "send_at": "PT2S"})
    job_id = answer.json()["id"]
    assert feature_stack.api.client.post(f"/api/email/{job_id}/pause").json()["status"] == "paused"
    time.sleep(2.5)  # its send_at passes while paused: nothing starts
    assert _job(feature_stack, job_id)["status"] == "paused" and feature_stack.messages_to(domain) == []
    assert feature_stack.api.client.post(f"/api/email/{job_id}/resume").json()["status"] == "queued"
    feature_stack.api.wait_until_completed(job_id)
    assert len(feature_stack.messages_to(domain)) == 1


def test_a_finished_job_cannot_be_paused_and_an_unknown_one_is_404(feature_stack: FeatureStack):
    answer = feature_stack.api.post_job({"recipients": [f"a@{_domain()}"], "subject": "s"})
    job_id = answer.json()["id"]
    feature_stack.api.wait_until_completed(job_id)
    assert feature_stack.api.client.post(f"/api/email/{job_id}/pause").status_code == 409
    assert feature_stack.api.client.post(f"/api/email/{uuid.uuid4()}/resume").status_code == 404
