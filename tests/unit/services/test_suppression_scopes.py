"""Which list each cause of a suppression writes, and which lists a job skips, on SQLite with a real SMTP server:
what the recipient asked of a sender (an unsubscribe, a complaint), and soft bounces (a full mailbox, a message
refused as spam), are for the account whose job sent the message; what the mailbox proves of itself (a hard
bounce answered to RCPT, or reported with our signed token) is shared.
The API's own entries and the unsubscribe links: tests/unit/api/test_suppressions.py."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from email_service.message.mime import envelope_sender, message_id_for
from email_service.services import Services, accounts, intake, suppressions
from email_service.services.bounces import Outcome, record_mail
from email_service.storage import jobs
from email_service.storage.models import Suppression
from tests.support.bounce_mail import abuse_report, dsn
from tests.support.inline import Recipient, counts, inline_services, run
from tests.support.smtp_sink import REFUSED, SMTPSink

SECRET = "bounce-secret-for-the-tests-0123"
SENDER = "Hawkins Lab <news@example.org>"
ADDRESS = "will@example.com"


@pytest.fixture
def services(tmp_path: Path, refusing_sink: SMTPSink) -> Services:
    return inline_services(
        tmp_path,
        mail_port=refusing_sink.port,
        mail_default_sender=SENDER,
        bounce_domain="bounces.example.org",
        bounce_secret=SECRET,
        soft_bounce_limit=2,
    )


@pytest.fixture
def alpha(services: Services) -> str:
    return accounts.create(services.sessions, services.settings, "alpha")[0].id


@pytest.fixture
def beta(services: Services) -> str:
    return accounts.create(services.sessions, services.settings, "beta")[0].id


def _entries(services: Services) -> dict[tuple[str | None, str], str]:
    """Every suppression: (account, address) → reason."""
    with services.readers() as session:
        return {(s.account_id, s.address): s.reason for s in session.scalars(select(Suppression))}


def _sent(services: Services, account: str | None, email: str = ADDRESS) -> str:
    job_id = run(services, [Recipient(email)], account=account)
    assert counts(services, job_id) == {"sent": 1}
    return job_id


def _skipped(services: Services, account: str | None, email: str = ADDRESS) -> str | None:
    """Send a job of ``account`` to ``email``, which must be suppressed: its recipient's last_error."""
    job_id = run(services, [Recipient(email)], account=account)
    assert counts(services, job_id) == {"suppressed": 1}
    with services.readers() as session:
        return jobs.list_recipients(session, job_id, status=None, after=None, limit=1)[0].last_error


def _report(sink: SMTPSink, job_id: str, kind: str, **dsn_fields: str) -> tuple[bytes, list[str]]:
    """A report about the latest message to ADDRESS of ``job_id`` (position 0): a DSN, or an abuse report."""
    to = [m.sender for m in sink.handler.messages() if m.recipients == [ADDRESS]][-1]
    message_id = message_id_for(job_id, 0, envelope_sender(SENDER), SECRET)
    if kind == "complaint":
        return abuse_report(to="fbl@example.org", original_recipient=ADDRESS, message_id=message_id), [to]
    fields = {"status": "5.1.1", "diagnostic": "550 5.1.1 User unknown", **dsn_fields}
    return dsn(to=to, final_recipient=ADDRESS, message_id=message_id, **fields), [to]


def test_a_complaint_suppresses_for_the_account_of_the_job(
    services: Services, refusing_sink: SMTPSink, alpha: str, beta: str
):
    job_id = _sent(services, alpha)
    assert record_mail(services, *_report(refusing_sink, job_id, "complaint")) == [Outcome.RECORDED]
    assert _entries(services) == {(alpha, ADDRESS): "complained"}
    assert _skipped(services, alpha) == "suppressed: on this account's suppression list (complained)"
    _sent(services, beta)


def test_a_complaint_about_a_job_of_no_account_is_shared(services: Services, refusing_sink: SMTPSink, beta: str):
    job_id = _sent(services, None)
    assert record_mail(services, *_report(refusing_sink, job_id, "complaint")) == [Outcome.RECORDED]
    assert _entries(services) == {(None, ADDRESS): "complained"}
    assert _skipped(services, beta) == "suppressed: on the shared suppression list (complained)"


def test_a_hard_bounce_report_suppresses_for_everyone(
    services: Services, refusing_sink: SMTPSink, alpha: str, beta: str
):
    job_id = _sent(services, alpha)
    assert record_mail(services, *_report(refusing_sink, job_id, "hard")) == [Outcome.RECORDED]
    assert _entries(services) == {(None, ADDRESS): "bounced"}
    for account in (alpha, beta, None):
        assert _skipped(services, account) == "suppressed: on the shared suppression list (bounced)"


def test_the_soft_bounce_limit_counts_and_suppresses_per_account(
    services: Services, refusing_sink: SMTPSink, alpha: str, beta: str
):
    def soft_bounce(account: str) -> None:
        job_id = _sent(services, account)
        report = _report(refusing_sink, job_id, "soft", status="5.7.1", diagnostic="554 5.7.1 Message refused as spam")
        assert record_mail(services, *report) == [Outcome.RECORDED]

    soft_bounce(alpha)
    soft_bounce(beta)
    assert _entries(services) == {}, "one account's messages never add to another's count"
    soft_bounce(alpha)
    assert _entries(services) == {(alpha, ADDRESS): "soft_bounced"}
    assert _skipped(services, alpha) == "suppressed: on this account's suppression list (soft_bounced)"
    _sent(services, beta)


def test_a_hard_bounce_report_matched_only_by_message_id_suppresses_for_its_account_alone(
    services: Services, refusing_sink: SMTPSink, alpha: str, beta: str
):
    # The job's owner sees the Message-ID of each recipient through the API, and may mail a report quoting it to
    # the bounce address: without our envelope token, it proves nothing about the mailbox to other accounts.
    job_id = _sent(services, alpha)
    message_id = message_id_for(job_id, 0, envelope_sender(SENDER), SECRET)
    raw = dsn(to="postmaster@bounces.example.org", final_recipient=ADDRESS, status="5.1.1",
              diagnostic="550 5.1.1 User unknown", message_id=message_id)  # fmt: skip
    assert record_mail(services, raw, ["postmaster@bounces.example.org"]) == [Outcome.RECORDED]
    assert _entries(services) == {(alpha, ADDRESS): "bounced"}
    _sent(services, beta)


def test_a_5xx_to_rcpt_suppresses_for_everyone(services: Services, alpha: str, beta: str):
    job_id = run(services, [Recipient(REFUSED)], account=alpha)
    assert counts(services, job_id) == {"failed": 1}
    assert _entries(services) == {(None, REFUSED): "bounced"}
    for account in (alpha, beta):
        assert _skipped(services, account, REFUSED) == "suppressed: on the shared suppression list (bounced)"


def test_before_a_batch_the_worker_skips_what_was_suppressed_since_acceptance(
    services: Services, alpha: str, beta: str
):
    # Accepted (queued), then started once the address is suppressed.
    accepted = {
        account: intake.accept_job(services, intake.JobRequest([ADDRESS], "s"), account=account).id
        for account in (alpha, beta)
    }
    suppressions.add(services, ADDRESS, account=alpha)
    assert services.queue is not None
    services.queue.wake()
    assert counts(services, accepted[alpha]) == {"suppressed": 1}
    assert counts(services, accepted[beta]) == {"sent": 1}
    with services.readers() as session:
        [skipped] = jobs.list_recipients(session, accepted[alpha], status=None, after=None, limit=1)
    assert skipped.last_error == "suppressed: on this account's suppression list (manual)"


def test_an_address_on_both_lists_is_skipped_for_the_shared_entry(services: Services, alpha: str):
    suppressions.add(services, ADDRESS, account=alpha)
    suppressions.add(services, ADDRESS, account=None, reason="bounced")
    assert _skipped(services, alpha) == "suppressed: on the shared suppression list (bounced)", "alpha cannot lift it"


# The same mailbox written many ways: the case of either part, Unicode composed or decomposed, the domain in IDNA.
_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789éüñ"
_label = st.text(_LETTERS, min_size=1, max_size=8)
_mailboxes = st.tuples(
    st.lists(_label, min_size=1, max_size=3).map(".".join),
    st.lists(_label, min_size=1, max_size=2).map(".".join),
    st.sampled_from(["com", "org", "example"]),
)


@st.composite
def _written(draw: st.DrawFn, mailbox: tuple[str, str, str]) -> str:
    local, domain, top = mailbox

    def recased(text: str) -> str:
        return "".join(c.upper() if draw(st.booleans()) else c for c in text)

    local, domain = recased(local), f"{recased(domain)}.{top}"
    if draw(st.booleans()):
        domain = domain.encode("idna").decode("ascii")
    form = draw(st.sampled_from(["NFC", "NFD"]))
    return unicodedata.normalize(form, f"{local}@{domain}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), mailbox=_mailboxes)
def test_an_accounts_entry_never_suppresses_another_accounts_recipient_a_shared_one_suppresses_all(
    services: Services, alpha: str, beta: str, data: st.DataObject, mailbox: tuple[str, str, str]
):
    listed, sent = data.draw(_written(mailbox)), data.draw(_written(mailbox))

    def suppressed_for(account: str | None) -> bool:
        request = intake.JobRequest([sent], "s", send_at="PT1H")  # stored, never sent: the intake's check alone
        job_id = intake.accept_job(services, request, account=account).id
        return counts(services, job_id) == {"suppressed": 1}

    try:
        suppressions.add(services, listed, account=alpha)
        assert (suppressed_for(alpha), suppressed_for(beta), suppressed_for(None)) == (True, False, False)
        suppressions.add(services, listed, account=None)
        assert (suppressed_for(alpha), suppressed_for(beta), suppressed_for(None)) == (True, True, True)
    finally:
        with services.sessions.begin() as session:
            session.execute(delete(Suppression))
