"""Intake, dispatch and deliver in one process on SQLite and a real SMTP server; the task
queue runs each task inline (the Celery path is covered by test_end_to_end)."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from email_service.config import Settings
from email_service.logs import configure_logging
from email_service.services import dispatch, intake
from email_service.services.job_statuses import JobStatuses
from email_service.storage import jobs, scheduling
from email_service.storage.models import utcnow
from tests.support.inline import Recipient
from tests.support.inline import counts as _counts
from tests.support.inline import inline_services as _services
from tests.support.inline import run as _run
from tests.support.smtp_sink import SMTPSink


def test_a_job_is_sent_in_claims_of_at_most_a_batch_and_completes(tmp_path: Path, sink: SMTPSink):
    services = _services(tmp_path, mail_port=sink.port, batch_size=4)
    job_id = _run(services, [Recipient(f"r{i}@example.com") for i in range(10)])
    assert services.claim_sizer.size() <= 4
    assert _counts(services, job_id) == {"sent": 10}
    assert len(sink.handler.messages()) == 10
    with services.sessions() as session:
        assert jobs.get_job(session, job_id).status == "completed"


def test_threads_serving_one_job_at_once_send_each_message_once(tmp_path: Path, sink: SMTPSink):
    """Wake-ups taken by several threads at once (or redelivered): the claims give each recipient to one."""
    services = _services(tmp_path, mail_port=sink.port, batch_size=20)
    accepted = intake.accept_job(
        services, intake.JobRequest(recipients=[Recipient(f"r{i}@example.com") for i in range(60)], subject="s")
    )
    sink.handler.delay = 0.01  # the threads are sending at the same time
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: services.queue.wake(), range(3)))
    assert sorted(m.recipients[0] for m in sink.handler.messages()) == sorted(f"r{i}@example.com" for i in range(60))
    assert _counts(services, accepted.id) == {"sent": 60}
    assert dispatch.serve(services) == 0  # a redelivered wake-up: nothing is due
    assert len(sink.handler.messages()) == 60


def test_a_claim_slower_than_its_lease_keeps_it_by_renewing_it(tmp_path: Path, sink: SMTPSink):
    """The lease is 2 s, a claim takes about 2 s or more: its rows never look abandoned."""
    services = _services(tmp_path, mail_port=sink.port, batch_size=20, lease_seconds=2)
    accepted = intake.accept_job(
        services, intake.JobRequest(recipients=[Recipient(f"r{i}@example.com") for i in range(20)], subject="s")
    )
    now = utcnow()
    sink.handler.delay = 0.2
    with ThreadPoolExecutor(1) as pool:
        batch = pool.submit(services.queue.wake)
        latest_lease = now
        while not batch.done():
            checked_at = utcnow()
            with services.sessions() as session:
                sending = jobs.list_recipients(session, accepted.id, status="sending", after=None, limit=20)
            assert all(r.lease_until > checked_at for r in sending), "a running claim's lease expired"
            latest_lease = max([latest_lease, *(r.lease_until for r in sending)])
            time.sleep(0.1)
        batch.result()
    assert latest_lease > now + timedelta(seconds=3)  # renewed beyond the first 2 s
    assert _counts(services, accepted.id) == {"sent": 20}
    assert len(sink.handler.messages()) == 20


def test_the_batches_of_a_process_share_one_read_of_their_job_s_status(tmp_path: Path):
    clock = [1000.0]  # stands still unless the test moves it: a busy machine changes nothing
    services = _services(tmp_path)
    accepted = intake.accept_job(services, intake.JobRequest(recipients=[Recipient("r@example.com")], subject="s"))
    with services.sessions.begin() as session:
        scheduling.start(session, accepted.id, utcnow())
    statuses = JobStatuses(services.readers, max_age=0.3, clock=lambda: clock[0])
    reads: list[str] = []
    event.listen(services.engine, "before_cursor_execute", lambda *args: reads.append(args[2]))

    def status_reads() -> int:
        return sum(statement.startswith("SELECT jobs.status") for statement in reads)

    with ThreadPoolExecutor(20) as pool:
        seen = list(pool.map(lambda _: statuses.current(accepted.id), range(200)))
    assert seen == ["sending"] * 200
    assert status_reads() == 1
    with services.sessions.begin() as session:
        assert jobs.pause_job(session, accepted.id)
    assert statuses.current(accepted.id) == "sending"  # read less than max_age ago
    clock[0] += 0.5  # past max_age
    assert statuses.current(accepted.id) == "paused"
    assert statuses.current("no-such-job") is None
    assert status_reads() == 3


def test_suppress_send_logs_instead_of_sending(
    tmp_path: Path, sink: SMTPSink, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    services = _services(tmp_path, mail_port=sink.port, mail_suppress_send=True)
    monkeypatch.setattr(logging.getLogger("email_service"), "propagate", True)  # let caplog see it
    with caplog.at_level(logging.INFO, logger="email_service"):
        job_id = _run(services, [Recipient("a@example.com"), Recipient("b@example.com")])
    assert _counts(services, job_id) == {"sent": 2}
    assert sink.handler.messages() == []
    assert sum("send suppressed" in r.getMessage() for r in caplog.records) == 2


def test_a_recipient_whose_variables_break_the_template_fails_alone(tmp_path: Path, sink: SMTPSink):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "greet.eml").write_text("Subject: {{ subject }}\n\nHello {{ first_name }}\n")
    services = _services(tmp_path, mail_port=sink.port, templates_dir=templates)
    accepted = intake.accept_job(
        services,
        intake.JobRequest(
            recipients=[Recipient("a@example.com", variables={"first_name": "Will"}), Recipient("b@example.com")],
            subject="Hi",
            template="greet",
        ),
    )
    services.queue.wake()
    assert _counts(services, accepted.id) == {"sent": 1, "failed": 1}
    with services.sessions() as session:
        failed = jobs.list_recipients(session, accepted.id, status="failed", after=None, limit=10)
    assert failed[0].address == "b@example.com" and "first_name" in failed[0].last_error
    assert sink.handler.messages()[0].message.get_content().startswith("Hello Will")


def test_logs_name_jobs_and_failures_but_never_bodies_or_passwords(tmp_path: Path, sink: SMTPSink):
    log_path = tmp_path / "logs" / "service.log"
    sink.handler.reject_rcpt.add("gone@example.com")
    services = _services(tmp_path, mail_port=sink.port, log_path=log_path, mail_password="canary-password-42")
    configure_logging(services.settings)
    job_id = _run(services, [Recipient("a@example.com"), Recipient("gone@example.com")], content="canary-body-17")
    text = log_path.read_text()
    assert f"job {job_id} accepted: 2 recipients" in text
    assert f"job {job_id} completed" in text
    assert f"job {job_id} recipient" in text and "550" in text
    assert "canary-body-17" not in text and "canary-password-42" not in text


def test_log_file_rotates_at_log_size(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, log_path=tmp_path / "r.log", log_size=2000, log_count=2)
    configure_logging(settings)
    logger = logging.getLogger("email_service.test")
    for i in range(200):
        logger.info("line %d of the rotation test", i)
    files = sorted(p.name for p in tmp_path.glob("r.log*"))
    assert files == ["r.log", "r.log.1", "r.log.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.glob("r.log*"))
