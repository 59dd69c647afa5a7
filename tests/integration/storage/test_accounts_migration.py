"""The upgrade to accounts keeps everything reachable: a database made with the migrations before it and
filled with rows of every table is migrated, then used through the services as a caller would."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, insert, select, text

from email_service.config import Settings
from email_service.services import Services, accounts, auth, build_services, idempotency, reports
from email_service.services.idempotency import Replay
from email_service.storage.migrate import upgrade
from tests.support.servers import own_database

BEFORE_ACCOUNTS = "0008"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BILLING_KEY, NEWS_KEY = "es_billing-key-of-the-upgrade-test", "es_news-key-of-the-upgrade-test"
K_BILLING, K_BILLING_OLD, K_NEWS = (f"{n}0000000-0000-4000-8000-000000000000" for n in "123")
J_BILLING, J_NEWS, J_OPEN = (f"{n}aaaaaaa-0000-4000-8000-000000000000" for n in "456")
WEBHOOK_SECRET = "the-shared-webhook-secret-of-before"
DASHBOARD_SESSION = "the-random-id-a-dashboard-cookie-carried"


@contextlib.contextmanager
def database_before_accounts(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'before.db'}"
        upgrade(url, BEFORE_ACCOUNTS)
        yield url
    else:
        with own_database(BEFORE_ACCOUNTS) as url:
            yield url


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _fill(url: str) -> None:
    """One or more rows in every table of the schema before accounts."""
    engine = create_engine(url)
    tables = MetaData()
    tables.reflect(engine)
    rows: dict[str, list[dict[str, object]]] = {
        "api_keys": [
            {
                "id": K_BILLING,
                "name": "billing",
                "key_hash": _digest(BILLING_KEY),
                "prefix": BILLING_KEY[:10],
                "senders": ["billing@example.org"],
                "created_at": NOW,
                "revoked_at": None,
            },
            # The same name again (key names were not unique), revoked: its jobs stay someone's.
            {
                "id": K_BILLING_OLD,
                "name": "billing",
                "key_hash": _digest("es_old"),
                "prefix": "es_old",
                "senders": None,
                "created_at": NOW + timedelta(seconds=1),
                "revoked_at": NOW,
            },
            {
                "id": K_NEWS,
                "name": "news",
                "key_hash": _digest(NEWS_KEY),
                "prefix": NEWS_KEY[:10],
                "senders": None,
                "created_at": NOW + timedelta(seconds=2),
                "revoked_at": None,
            },
        ],
        "templates": [
            {
                "name": "welcome",
                "version": v,
                "subject": f"Welcome v{v}",
                "text": f"text v{v}",
                "html": None,
                "eml": None,
                "created_at": NOW,
                "deleted_at": None,
            }
            for v in (1, 2)
        ],
        "jobs": [
            {
                "id": job_id,
                "owner": owner,
                "status": "completed",
                "subject": "s",
                "content": "c",
                "template": template,
                "template_version": version,
                "sender": "billing@example.org",
                "total": 1,
                "created_at": NOW,
                "callback_url": None,
                "unsubscribe_key": "u" * 32,
            }
            for job_id, owner, template, version in (
                (J_BILLING, K_BILLING, "welcome", 2),
                (J_NEWS, K_NEWS, "default", None),
                (J_OPEN, None, "default", None),
            )
        ],
        "recipients": [
            {
                "job_id": job_id,
                "position": 0,
                "address": "will@example.com",
                "status": "sent",
                "attempts": 1,
                "failure_unreported": False,
            }
            for job_id in (J_BILLING, J_NEWS, J_OPEN)
        ],
        "attachments": [
            {"job_id": J_BILLING, "position": 0, "filename": "a.txt", "content_type": "text/plain", "data": b"a"}
        ],
        "idempotency_keys": [
            {
                "key": idempotency.stored_key(K_BILLING, "order-42"),
                "request_hash": "h" * 64,
                "job_id": J_BILLING,
                "response": {"id": J_BILLING, "status": "queued", "total": 1},
                "created_at": datetime.now(UTC),
            }
        ],
        "webhook_events": [
            {
                "job_id": J_BILLING,
                "type": "job.completed",
                "url": "https://hooks.example.org/",
                "payload": {},
                "status": "delivered",
                "attempts": 1,
                "created_at": NOW,
            }
        ],
        "suppressions": [
            {"address": address, "reason": reason, "job_id": job_id, "created_at": NOW}
            for address, reason, job_id in (
                ("unsub@example.com", "unsubscribed", J_BILLING),
                ("spam@example.com", "complained", J_NEWS),
                ("gone@example.com", "bounced", J_BILLING),
                ("soft@example.com", "soft_bounced", J_NEWS),
                ("hand@example.com", "manual", None),
                ("lost@example.com", "unsubscribed", "f0000000-0000-4000-8000-000000000000"),  # job deleted since
                ("open@example.com", "unsubscribed", J_OPEN),  # a job of no key (authentication off)
            )
        ],
        "bounces": [
            {
                "recipient_id": 1,
                "job_id": J_BILLING,
                "address": "gone@example.com",
                "kind": "hard",
                "source": "dsn",
                "status": "5.1.1",
                "smtp_code": 550,
                "diagnostic": "no such user",
                "reporter": None,
                "received_at": NOW,
            }
        ],
        "used_webhook_signatures": [{"key": "s" * 64, "expires_at": NOW}],
        "dashboard_sessions": [
            {
                "id_hash": _digest(DASHBOARD_SESSION),
                "key_id": K_BILLING,
                "created_at": NOW,
                "expires_at": NOW + timedelta(days=3650),
                "ended_at": None,
            }
        ],
    }
    assert set(rows) == set(tables.tables) - {"alembic_version"}, "a table of the schema has no rows here"
    with engine.begin() as connection:
        for name, values in rows.items():
            connection.execute(insert(tables.tables[name]), values)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    with database_before_accounts(request.param, tmp_path) as url:
        _fill(url)
        upgrade(url)
        services = build_services(
            Settings(data_dir=tmp_path, database_url=url, webhook_secret=WEBHOOK_SECRET, mail_server="127.0.0.1")
        )
        yield services
        services.engine.dispose()


def test_every_key_becomes_an_account_that_keeps_its_jobs_senders_and_idempotency_keys(migrated: Services):
    listed = {info.id: info for info in accounts.list_all(migrated.sessions)}
    assert {i: (a.name, a.senders, a.own_webhook_secret) for i, a in listed.items()} == {
        K_BILLING: ("billing", ["billing@example.org"], False),
        K_BILLING_OLD: (f"billing-{K_BILLING_OLD[:8]}", [], False),
        K_NEWS: ("news", [], False),
    }
    caller = auth.authenticate(migrated, BILLING_KEY)
    assert caller == auth.Caller(account=K_BILLING, admin=False, account_name="billing", key_name="billing")
    assert [report.job.id for report in reports.recent_jobs(migrated, K_BILLING, limit=10, before=None)] == [J_BILLING]
    assert [report.job.id for report in reports.recent_jobs(migrated, K_NEWS, limit=10, before=None)] == [J_NEWS]
    assert "billing@example.org" in auth.allowed_senders(migrated, K_BILLING)
    replay = idempotency.claim(migrated, "order-42", K_BILLING, "h" * 64)
    assert isinstance(replay, Replay) and replay.job_id == J_BILLING
    # A new key of the account sees the same jobs: the key is rotated, the account stays.
    _, new_key, _ = auth.create_key(migrated.sessions, migrated.settings, "billing-2026", account="billing")
    rotated = auth.authenticate(migrated, new_key)
    assert rotated is not None and rotated.account == K_BILLING
    # Until the operator rotates their secret, migrated accounts sign their events as their keys did.
    with migrated.readers() as session:
        assert accounts.signing_secrets(session, K_BILLING, WEBHOOK_SECRET, datetime.now(UTC)) == [WEBHOOK_SECRET]


def test_templates_become_shared_and_jobs_keep_the_version_they_pinned(migrated: Services):
    with migrated.readers() as session:
        templates = session.execute(text("SELECT id, name, version, account_id FROM templates ORDER BY version")).all()
        pinned = session.execute(text("SELECT id, template_id FROM jobs ORDER BY id")).all()
    assert [(name, version, account) for _, name, version, account in templates] == [
        ("welcome", 1, None),
        ("welcome", 2, None),
    ]
    assert dict(pinned) == {J_BILLING: templates[1][0], J_NEWS: None, J_OPEN: None}


def test_suppressions_are_shared_unless_a_job_of_an_account_caused_them(migrated: Services):
    with migrated.readers() as session:
        scoped = dict(session.execute(text("SELECT address, account_id FROM suppressions")).all())
    assert scoped == {
        "unsub@example.com": K_BILLING,
        "spam@example.com": K_NEWS,
        "gone@example.com": None,
        "soft@example.com": None,
        "hand@example.com": None,
        "lost@example.com": None,
        "open@example.com": None,
    }


def test_the_rest_is_left_as_it_was(migrated: Services):
    with migrated.readers() as session:
        counts = {
            table: session.scalar(select(text("count(*)")).select_from(text(table)))
            for table in ("recipients", "attachments", "webhook_events", "bounces", "used_webhook_signatures")
        }
        role = session.execute(text("SELECT DISTINCT role FROM api_keys")).scalars().all()
        session_key = session.scalar(text("SELECT key_id FROM dashboard_sessions"))
    assert counts == {
        "recipients": 3,
        "attachments": 1,
        "webhook_events": 1,
        "bounces": 1,
        "used_webhook_signatures": 1,
    }
    assert role == ["account"] and session_key == K_BILLING
    signed_in = auth.dashboard_session_key(migrated, DASHBOARD_SESSION)  # a browser signed in before the upgrade
    assert signed_in is not None and (signed_in.id, signed_in.account_id) == (K_BILLING, K_BILLING)
