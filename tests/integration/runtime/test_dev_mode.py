"""``email-service dev``: the embedded default end to end (SQLite, filesystem broker, Maildir catcher)."""

from __future__ import annotations

import email
import mailbox
import os
import signal
import subprocess
import sys
import time
from email import policy
from pathlib import Path

import httpx

from tests.support.smtp_sink import free_port
from tests.support.stack import child_pids, is_alive, metric_values

TUTORIAL_BODY = {
    "recipients": ["will@example.com", "eleven@example.com", "dustin@example.com"],
    "subject": "Demogorgon",
    "content": "Run for your life",
    "template": "default",
}


def test_dev_sends_the_tutorial_request_into_the_maildir_and_stops_cleanly(tmp_path: Path):
    port, smtp_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_", "MAIL_"))}
    log = open(tmp_path / "dev.log", "wb")  # noqa: SIM115
    dev = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "email_service",
            "dev",
            "--port",
            str(port),
            "--smtp-port",
            str(smtp_port),
            "--data-dir",
            str(tmp_path / "var"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:  # wait until the API answers, then post once (a retried POST is a second job)
                try:
                    client.get("/healthz")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, (tmp_path / "dev.log").read_text()
                    time.sleep(0.3)
            answer = client.post("/api/email/", json=TUTORIAL_BODY)
            assert answer.status_code == 202
            job_url = answer.headers["Location"]
            while (job := client.get(job_url).json())["status"] != "completed":
                assert time.monotonic() < deadline, job
                time.sleep(0.2)
            assert job["counts"]["sent"] == 3
            # One metrics directory for every process of dev: the API's /metrics counts the worker's sends.
            figures = metric_values(client.get("/metrics").text)
            assert figures["email_service_jobs_accepted_total"] == 1
            assert figures['email_service_recipients_final_total{status="sent"}'] == 3
            assert figures["email_service_send_seconds_count"] == 3
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert client.get("/api/").status_code == 302
            assert client.get("/api/swagger").status_code == 200
        maildir = mailbox.Maildir(tmp_path / "var" / "mail", create=False)
        messages = [email.message_from_bytes(m.as_bytes(), policy=policy.default) for m in maildir]
        assert sorted(str(m["To"]) for m in messages) == sorted(TUTORIAL_BODY["recipients"])
        assert all(m.get_content().startswith("Run for your life") for m in messages)
        output = (tmp_path / "dev.log").read_text()
        assert f"{base}/api/" in output and str(tmp_path / "var" / "mail") in output
        children = child_pids(dev.pid)
        assert len(children) == 4  # catcher, worker, scheduler, api
    finally:
        dev.send_signal(signal.SIGINT)  # what Ctrl-C delivers
        code = dev.wait(timeout=30)
        log.close()
    assert code == 0
    assert not [pid for pid in children if is_alive(pid)]
    assert list((tmp_path / "var" / "metrics").iterdir()) == []  # the metrics directory went with them
