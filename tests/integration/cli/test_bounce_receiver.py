"""``email-service bounces`` run as a process, configured by the environment as an operator would: it
takes mail only for the bounce domain, refuses oversized mail, records a DSN mailed to a message's
envelope sender, and ends cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from email_service.message.mime import envelope_sender, message_id_for
from email_service.services import Services
from tests.support.bounce_mail import dsn
from tests.support.inline import Recipient, counts, inline_services, run
from tests.support.smtp_sink import SMTPSink, free_port

DOMAIN = "bounces.example.org"
SECRET = "bounce-secret-for-the-tests-0123"
SENDER = "news@example.org"
MAX_BYTES = 50_000


@pytest.fixture
def services(tmp_path: Path, sink: SMTPSink) -> Services:
    return inline_services(
        tmp_path, mail_port=sink.port, mail_default_sender=SENDER, bounce_domain=DOMAIN, bounce_secret=SECRET
    )


@pytest.fixture
def receiver(services: Services) -> Iterator[int]:
    port = free_port()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_SERVICE_")}
    environment = {
        **inherited,
        "DATABASE_URL": services.settings.database_url,
        "DATA_DIR": str(services.settings.data_dir),
        "BOUNCE_DOMAIN": DOMAIN,
        "BOUNCE_SECRET": SECRET,
        "BOUNCE_MAX_BYTES": str(MAX_BYTES),
    }
    command = [sys.executable, "-m", "email_service", "bounces", "--port", str(port)]
    process = subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_port(port, process)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, process.stderr.read() if process.stderr else ""


def _wait_for_port(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail("the bounce receiver did not listen within 30 s")


def test_the_receiver_process_records_a_dsn_for_its_domain_only(services: Services, sink: SMTPSink, receiver: int):
    job_id = run(services, [Recipient("will@example.com")])
    [sent] = sink.handler.messages()
    assert sent.sender.startswith("bounces+") and sent.sender.endswith(f"@{DOMAIN}")
    report = dsn(
        to=sent.sender,
        final_recipient="will@example.com",
        status="5.1.1",
        diagnostic="550 5.1.1 <will@example.com>: Recipient address rejected: User unknown",
        message_id=message_id_for(job_id, 0, envelope_sender(SENDER), SECRET),
    )
    with smtplib.SMTP("127.0.0.1", receiver, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.docmd("MAIL FROM:<>")[0] == 250
        code, text = smtp.docmd("RCPT TO:<postmaster@elsewhere.example>")
        assert code == 550 and b"own domain" in text
        smtp.rset()
        too_big = report + b"x" * (MAX_BYTES + 1)
        with pytest.raises(smtplib.SMTPException):
            smtp.sendmail("", [sent.sender], too_big)
    assert counts(services, job_id) == {"sent": 1}, "refused mail changed nothing"
    with smtplib.SMTP("127.0.0.1", receiver, timeout=10) as smtp:
        assert smtp.sendmail("", [sent.sender], report) == {}
    assert counts(services, job_id) == {"bounced": 1}
