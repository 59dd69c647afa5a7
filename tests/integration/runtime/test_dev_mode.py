"""``email-service dev``: the embedded default end to end (SQLite, filesystem broker, Maildir catcher)."""

from __future__ import annotations

import email
import mailbox
import time
from email import policy
from pathlib import Path

import httpx

from email_service.runtime.catcher import REFUSED_DOMAIN
from tests.support.dev_server import DevServer
from tests.support.stack import child_pids, is_alive, metric_values

TUTORIAL_BODY = {
    "recipients": ["will@example.com", "eleven@example.com", "dustin@example.com"],
    "subject": "Demogorgon",
    "content": "Run for your life",
    "template": "default",
}


REFUSED = f"nobody@{REFUSED_DOMAIN}"


def test_dev_sends_the_tutorial_request_into_the_maildir_and_stops_cleanly(tmp_path: Path):
    dev = DevServer(tmp_path).start()
    base = dev.base
    assert dev.process is not None
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 60
            body = {**TUTORIAL_BODY, "recipients": [*TUTORIAL_BODY["recipients"], REFUSED]}
            answer = client.post("/api/email/", json=body)
            assert answer.status_code == 202
            job_url = answer.headers["Location"]
            while (job := client.get(job_url).json())["status"] != "completed":
                assert time.monotonic() < deadline, job
                time.sleep(0.2)
            assert job["counts"]["sent"] == 3
            # The catcher refuses its reserved domain, so that failures can be tried on a laptop.
            [refused] = client.get(f"{job_url}/recipients", params={"status": "failed"}).json()["items"]
            assert (refused["email"], refused["error_code"]) == (REFUSED, 550)
            # One metrics directory for every process of dev: the API's /metrics counts the worker's sends.
            figures = metric_values(client.get("/metrics").text)
            assert figures["email_service_jobs_accepted_total"] == 1
            assert figures['email_service_recipients_final_total{status="sent"}'] == 3
            assert figures['email_service_recipients_final_total{status="failed"}'] == 1
            assert figures["email_service_send_seconds_count"] == 3
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert client.get("/api/").status_code == 302
            assert client.get("/api/swagger").status_code == 200
            # On 127.0.0.1 the dashboard opens without a key, as the API does.
            dashboard = client.get("/dashboard/jobs")
            assert dashboard.status_code == 200 and "No API key needed on this machine" in dashboard.text
            assert "Demogorgon" in dashboard.text
        maildir = mailbox.Maildir(tmp_path / "var" / "mail", create=False)
        messages = [email.message_from_bytes(m.as_bytes(), policy=policy.default) for m in maildir]
        assert sorted(str(m["To"]) for m in messages) == sorted(TUTORIAL_BODY["recipients"])
        assert all(m.get_content().startswith("Run for your life") for m in messages)
        output = dev.log()
        assert f"{base}/api/" in output and f"{base}/dashboard/" in output and str(tmp_path / "var" / "mail") in output
        children = child_pids(dev.process.pid)
        assert len(children) == 4  # catcher, worker, scheduler, api
    finally:
        code = dev.stop()
    assert code == 0
    assert not [pid for pid in children if is_alive(pid)]
    assert list((tmp_path / "var" / "metrics").iterdir()) == []  # the metrics directory went with them
