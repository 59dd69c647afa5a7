"""An account's webhook secrets and default callback URL, as intake and the webhook sender use them (SQLite)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from email_service.errors import Conflict, ValidationFailed
from email_service.services import Services, accounts, auth, intake
from email_service.storage.models import Account, Job, utcnow
from tests.support.inline import inline_services

SHARED_SECRET = "the-service-wide-webhook-secret"


@pytest.fixture
def services(tmp_path: Path) -> Services:
    # No relay is needed: the jobs here are only accepted, never started.
    found = inline_services(tmp_path, webhook_secret=SHARED_SECRET, webhook_url="https://hooks.example.org/all")
    found.queue = None
    return found


def _secrets(services: Services, account: str | None) -> list[str]:
    with services.readers() as session:
        return accounts.signing_secrets(session, account, SHARED_SECRET, utcnow())


def _callback_of_a_job(services: Services, account: str | None, given: str | None = None) -> str | None:
    request = intake.JobRequest(recipients=["will@example.com"], subject="s", callback_url=given)
    accepted = intake.accept_job(services, request, account=account)
    with services.readers() as session:
        job = session.get(Job, accepted.id)
        assert job is not None
        return job.callback_url


def test_a_rotation_signs_with_both_secrets_until_its_grace_period_ends(services: Services):
    info, first = accounts.create(services.sessions, services.settings, "shop")
    assert _secrets(services, info.id) == [first]
    second = accounts.rotate_webhook_secret(services.sessions, services.settings, "shop", timedelta(hours=1))
    assert _secrets(services, info.id) == [second, first]
    with services.sessions.begin() as session:  # the grace period is over
        session.execute(update(Account).values(previous_secret_until=utcnow() - timedelta(seconds=1)))
    assert _secrets(services, info.id) == [second]
    third = accounts.rotate_webhook_secret(services.sessions, services.settings, "shop", timedelta(0))
    assert _secrets(services, info.id) == [third]
    assert len({first, second, third}) == 3 and all(s.startswith("whsec_") and len(s) > 40 for s in (first, third))


def test_an_account_from_before_accounts_signs_with_the_shared_secret_until_rotated(services: Services):
    info, _ = accounts.create(services.sessions, services.settings, "legacy")
    with services.sessions.begin() as session:  # as the upgrade leaves it
        session.execute(update(Account).where(Account.id == info.id).values(webhook_secret=None))
    assert _secrets(services, info.id) == [SHARED_SECRET]
    assert _secrets(services, None) == [SHARED_SECRET]  # a job of no account (authentication off)
    assert _callback_of_a_job(services, info.id) == "https://hooks.example.org/all"
    new = accounts.rotate_webhook_secret(services.sessions, services.settings, "legacy", timedelta(hours=1))
    assert _secrets(services, info.id) == [new, SHARED_SECRET], "the receiver has the grace period to switch"
    assert _callback_of_a_job(services, info.id) == "https://hooks.example.org/all", "its receiver stays"
    with services.sessions.begin() as session:
        session.execute(update(Account).values(previous_secret_until=utcnow() - timedelta(seconds=1)))
    assert _secrets(services, info.id) == [new], "then the shared secret signs nothing of it"


def test_a_job_naming_no_callback_uses_its_accounts_default_and_never_the_services(services: Services):
    shop, _ = accounts.create(services.sessions, services.settings, "shop", callback_url="https://hooks.shop.example/")
    plain, _ = accounts.create(services.sessions, services.settings, "plain")
    assert _callback_of_a_job(services, shop.id) == "https://hooks.shop.example/"
    assert _callback_of_a_job(services, shop.id, "https://other.shop.example/") == "https://other.shop.example/"
    assert _callback_of_a_job(services, plain.id) is None, "WEBHOOK_URL could not verify its events"
    assert _callback_of_a_job(services, None) == "https://hooks.example.org/all"
    with pytest.raises(ValidationFailed) as refused:
        accounts.configure(services.sessions, services.settings, "plain", callback_url="http://169.254.169.254/")
    assert refused.value.details[0]["field"] == "callback_url"
    assert accounts.get(services.sessions, "plain").callback_url is None


def test_a_key_made_with_its_account_is_made_with_it_or_not_at_all(services: Services, monkeypatch):
    monkeypatch.setattr(auth.secrets, "token_urlsafe", lambda _: "the-same-random-bytes-every-time")
    auth.create_key(services.sessions, services.settings, "first")
    with pytest.raises(IntegrityError):  # the second key's hash is the first's: its insert fails...
        auth.create_key(services.sessions, services.settings, "second")
    assert [info.name for info in accounts.list_all(services.sessions)] == ["first"]  # ...and its account with it
    with pytest.raises(Conflict):
        auth.create_key(services.sessions, services.settings, "first")  # an account of that name exists
