"""Metrics across processes: the API's /metrics under gunicorn with several workers, the endpoint of
`email-service worker` serving what its Celery worker processes counted, and the scheduler's; what a
send observes."""

from __future__ import annotations

import os
import signal
import threading
from datetime import timedelta
from pathlib import Path

import httpx
from prometheus_client import REGISTRY
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import update

from email_service import metrics
from email_service.app import create_app
from email_service.config import Settings
from email_service.errors import PermanentDeliveryError, RecipientRefused, RelayUnavailable, TemporaryDeliveryError
from email_service.services import intake
from email_service.storage.migrate import upgrade
from email_service.storage.models import Job, Lane, utcnow
from tests.support.inline import InlineQueue, inline_services
from tests.support.queues import RecordingQueue
from tests.support.servers import REDIS_URL, own_database
from tests.support.smtp_sink import SinkHandler, SMTPSink, free_port
from tests.support.stack import GunicornApi, SchedulerProcess, api_and_worker, metric_values, relay_env, wait_for

JOB = {"subject": "Counted", "content": "One of many"}
ACCEPTED = "email_service_jobs_accepted_total"


def accepted_per_process(folder: Path) -> dict[int, float]:
    """Jobs accepted by each process, from its own file of the metrics directory."""
    counts = {}
    for path in folder.glob("counter_*.db"):
        for family in MultiProcessCollector.merge([str(path)], accumulate=False):
            for sample in family.samples:
                if sample.name == ACCEPTED:
                    counts[int(path.stem.rpartition("_")[2])] = sample.value
    return counts


def scrape(url: str) -> dict[str, float]:
    answer = httpx.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    return metric_values(answer.text)


def test_api_metrics_add_up_over_gunicorn_workers_and_survive_a_killed_one(redis_prefix: str, tmp_path: Path):
    with own_database() as database_url:  # of its own: the queued-jobs gauge counts every job in it
        env = relay_env(
            database_url, REDIS_URL, redis_prefix, free_port(), AUTH_DISABLED="true", DATA_DIR=str(tmp_path)
        )
        api = GunicornApi(env, tmp_path / "api.log", workers=2).wait_ready()
        try:
            folder = tmp_path / "metrics" / f"api-{api.pid}"
            answers: list[int] = []

            def post(count: int) -> None:
                for index in range(count):  # a connection each: the workers take turns accepting them
                    job = {**JOB, "recipients": [f"r{index}@example.com"]}
                    answers.append(httpx.post(f"{api.url}/api/email/", json=job, timeout=60).status_code)

            while len([n for n in accepted_per_process(folder).values() if n]) < 2:  # until both took some
                assert len(answers) < 60, f"one worker took every request: {accepted_per_process(folder)}"
                threads = [threading.Thread(target=post, args=(3,)) for _ in range(4)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
            assert set(answers) == {202}
            posted = len(answers)
            workers = api.workers()
            assert set(accepted_per_process(folder)) >= workers and len(workers) == 2
            for _ in range(4):  # whichever worker answers, it answers for both
                assert scrape(api.url)[ACCEPTED] == posted

            killed = next(iter(workers))
            assert (folder / f"gauge_livesum_{killed}.db").exists()
            os.kill(killed, signal.SIGKILL)
            wait_for(lambda: killed not in api.workers() and len(api.workers()) == 2)
            # gunicorn's child_exit hook dropped the dead worker's live gauge; its counts stay.
            wait_for(lambda: not (folder / f"gauge_livesum_{killed}.db").exists())
            assert (folder / f"counter_{killed}.db").exists()
            post(2)
            assert set(answers) == {202}
            posted = len(answers)
            for _ in range(4):
                figures = scrape(api.url)
                assert figures[ACCEPTED] == posted
                assert figures["email_service_recipients_accepted_total"] == posted
                assert figures['email_service_jobs_unfinished{status="queued"}'] == posted  # no worker runs
        finally:
            api.kill_all()  # not a graceful stop: the new worker may still be loading the app
            api.stop()


def test_worker_endpoint_serves_what_its_processes_sent_and_failed(
    postgres_url: str, redis_prefix: str, tmp_path: Path
):
    refused = "nobody@example.com"
    sink = SMTPSink(SinkHandler(reject_rcpt={refused})).start()
    port = free_port()
    env = relay_env(
        postgres_url,
        REDIS_URL,
        redis_prefix,
        sink.port,
        DATA_DIR=str(tmp_path),
        WORKER_METRICS_PORT=str(port),
        BATCH_SIZE="2",
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        with api_and_worker(env, tmp_path) as api:
            recipients = ["will@example.com", refused, "eleven@example.com", "dustin@example.org"]
            answer = api.post_job({**JOB, "recipients": recipients})
            assert answer.status_code == 202, answer.text
            api.wait_until_completed(answer.json()["id"])
            figures = scrape(endpoint)
            folders = list((tmp_path / "metrics").iterdir())
            assert [f.name.partition("-")[0] for f in folders] == ["worker"]
    finally:
        sink.stop()
    assert figures['email_service_recipients_final_total{status="sent"}'] == 3
    assert figures['email_service_recipients_final_total{status="failed"}'] == 1
    assert figures['email_service_smtp_errors_total{class="5xx"}'] == 1
    assert figures['email_service_smtp_errors_total{class="4xx"}'] == 0
    assert figures["email_service_send_seconds_count"] == 3
    assert figures["email_service_send_seconds_sum"] > 0
    assert figures['email_service_accept_to_relay_seconds_count{lane="transactional"}'] == 3  # 4 recipients
    assert figures['email_service_accept_to_relay_seconds_sum{lane="transactional"}'] > 0
    assert figures['email_service_accept_to_relay_seconds_count{lane="bulk"}'] == 0
    assert figures["email_service_sends_in_progress"] == 0
    assert ACCEPTED in figures and figures[ACCEPTED] == 0  # the API process counts those, not the workers
    assert not folders[0].exists()  # the supervisor removed its directory when it stopped


def test_scheduler_endpoint_counts_the_recipients_it_expired(tmp_path: Path):
    """The embedded default (SQLite, filesystem broker) with no worker: the job waits until the scheduler
    ends it expired, and counts that."""
    settings = Settings(data_dir=tmp_path, auth_disabled=True)
    upgrade(settings.database_url)
    job = {**JOB, "recipients": ["a@example.com", "b@example.com", "c@example.com"], "expires_at": "PT1S"}
    assert create_app(settings).test_client().post("/api/email/", json=job).status_code == 202
    port = free_port()
    env = {"DATA_DIR": str(tmp_path), "SCHEDULER_INTERVAL": "0.2", "SCHEDULER_METRICS_PORT": str(port)}
    scheduler = SchedulerProcess(env, tmp_path / "scheduler.log").wait_ready()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: scrape(endpoint)['email_service_recipients_final_total{status="expired"}'] == 3)
        figures = scrape(endpoint)
    finally:
        scheduler.stop()
    assert figures['email_service_recipients_final_total{status="sent"}'] == 0
    assert figures["process_cpu_seconds_total"] > 0  # a process on its own: its own figures, Python's included


def test_smtp_errors_are_classed_by_reply_connection_or_tls():
    assert metrics.smtp_error_class(TemporaryDeliveryError(451, "4.7.1 Try again later")) == "4xx"
    assert metrics.smtp_error_class(RecipientRefused(550, "5.1.1 No such user")) == "5xx"
    assert metrics.smtp_error_class(PermanentDeliveryError(554, "5.7.1 Rejected")) == "5xx"
    assert metrics.smtp_error_class(RelayUnavailable(0, "cannot open a session: timed out")) == "connection"
    assert metrics.smtp_error_class(RelayUnavailable(0, "TLS: certificate verify failed")) == "tls"
    assert metrics.smtp_error_class(RelayUnavailable(454, "TLS: the relay refused STARTTLS: busy")) == "tls"


def test_accept_to_relay_time_counts_from_when_the_job_could_be_sent(tmp_path: Path, sink: SMTPSink):
    """A scheduled job's messages are timed from its send_at, not its creation, to the relay's 250."""
    services = inline_services(tmp_path, mail_port=sink.port)
    services.queue = RecordingQueue()  # the job waits until the test wakes a worker
    request = intake.JobRequest(recipients=["will@example.com"], subject="Late", lane=Lane.BULK)
    job_id = intake.accept_job(services, request, account=None).id
    now = utcnow()
    with services.sessions.begin() as session:  # accepted 8000 s ago, to be sent from 4000 s ago
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(created_at=now - timedelta(seconds=8000), send_at=now - timedelta(seconds=4000))
        )

    def observed(upper_bound: str) -> float:
        labels = {"lane": "bulk", "le": upper_bound}
        return REGISTRY.get_sample_value("email_service_accept_to_relay_seconds_bucket", labels) or 0.0

    before = {bound: observed(bound) for bound in ("3600.0", "7200.0")}
    services.queue = InlineQueue(services)
    services.queue.wake()
    assert [m.recipients for m in sink.handler.messages()] == [["will@example.com"]]
    assert observed("3600.0") == before["3600.0"]
    assert observed("7200.0") == before["7200.0"] + 1
