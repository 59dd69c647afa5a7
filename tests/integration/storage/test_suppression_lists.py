"""The suppression lists' queries on SQLite and PostgreSQL alike: an account's list, the shared one, what a job
of an account skips, and on PostgreSQL that the check reads the unique index of (list, address)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session, sessionmaker

from email_service.storage import suppressions
from email_service.storage.models import utcnow
from email_service.storage.suppressions import Entry


def test_each_list_is_read_and_changed_alone(sessions: sessionmaker[Session]):
    marker = uuid.uuid4().hex[:8]
    alpha, beta = f"alpha-{marker}", f"beta-{marker}"
    own, both, theirs, nowhere = (f"{name}.{marker}@example.com" for name in ("own", "both", "theirs", "nowhere"))
    with sessions.begin() as session:
        assert suppressions.add(session, own, "manual", None, utcnow(), account=alpha)
        assert suppressions.add(session, both, "unsubscribed", None, utcnow(), account=alpha)
        assert suppressions.add(session, both, "bounced", None, utcnow(), account=None)
        assert suppressions.add(session, theirs, "complained", None, utcnow(), account=beta)
        assert not suppressions.add(session, own, "unsubscribed", None, utcnow(), account=alpha), "already there"
    addresses = [own, both, theirs, nowhere]
    with sessions() as session:
        assert suppressions.suppressed(session, addresses, alpha) == {
            own: Entry(shared=False, reason="manual"),
            both: Entry(shared=True, reason="bounced"),  # the entry alpha cannot lift
        }
        assert suppressions.suppressed(session, addresses, None) == {both: Entry(shared=True, reason="bounced")}

        def listed(account: str | None) -> list[tuple[str, str]]:
            rows = suppressions.page(session, account=account, after=None, limit=10, address_part=marker)
            return [(r.address, r.reason) for r in rows]

        assert listed(alpha) == [(both, "unsubscribed"), (own, "manual")]
        assert listed(beta) == [(theirs, "complained")]
        assert listed(None) == [(both, "bounced")]
    with sessions.begin() as session:
        assert not suppressions.remove(session, theirs, account=alpha), "beta's entry is not on alpha's list"
        assert suppressions.remove(session, both, account=alpha)
        assert suppressions.suppressed(session, [both], alpha) == {both: Entry(shared=True, reason="bounced")}
        assert suppressions.remove(session, both, account=None)
        assert suppressions.suppressed(session, addresses, beta) == {theirs: Entry(shared=False, reason="complained")}


def test_on_postgresql_the_check_reads_the_unique_index(sessions: sessionmaker[Session]):
    with sessions() as session:
        if session.get_bind().dialect.name != "postgresql":
            return
        connection = session.connection()
        statements: list[tuple[str, Any]] = []

        @event.listens_for(connection, "before_cursor_execute")
        def _seen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
            statements.append((statement, parameters))

        suppressions.suppressed(session, ["will@example.com", "dustin@example.com"], "an-account")
        event.remove(connection, "before_cursor_execute", _seen)
        [(statement, parameters)] = statements
        connection.execute(text("SET LOCAL enable_seqscan = off"))  # a few rows: only an unusable index would be left
        plan = "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {statement}", parameters))
        assert "ix_suppressions_scope_address" in plan, plan
        assert "Index Cond" in plan and "coalesce" in plan.lower(), plan
