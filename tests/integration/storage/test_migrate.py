"""Processes started together with their database: serve migrates once it answers, worker and
scheduler wait for the schema, concurrent migrations do not collide, a newer schema is left alone."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine, text

from email_service.storage.migrate import SchemaState, schema_state, upgrade, upgrade_when_reachable, wait_for_schema
from tests.support.servers import POSTGRES_ADMIN
from tests.support.smtp_sink import free_port
from tests.support.stack import SchedulerProcess, ServiceProcess, wait_for
from tests.support.tcp_proxy import TcpProxy

PASSWORD = "pw-s3cret-9f2"


@contextlib.contextmanager
def database_name() -> Iterator[str]:
    """A database name of our own on the machine's PostgreSQL, dropped at the end if it was created."""
    name = f"email_service_test_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')


def test_serve_migrates_a_database_that_answers_only_after_a_while(tmp_path: Path):
    db_port, http_port = free_port(), free_port()
    with database_name() as name:
        # The password is ignored by the trust authentication, but must never reach a log.
        url = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{db_port}/{name}"
        env = {"DATABASE_URL": url, "DB_WAIT_SECONDS": "30", "AUTH_DISABLED": "true", "CELERY_BROKER_URL": "memory://"}
        serve = ServiceProcess(
            ["serve", "--host", "127.0.0.1", "--port", str(http_port), "--workers", "1"], env, tmp_path / "serve.log"
        )
        proxy = None
        try:
            # Nothing listens on the database's port yet, then the server answers without the database.
            wait_for(lambda: "Connection refused" in serve.log(), timeout=30)
            proxy = TcpProxy(db_port, ("127.0.0.1", 5432)).start()
            wait_for(lambda: f'database "{name}" does not exist' in serve.log(), timeout=30)
            create_database(name)
            wait_for(lambda: _healthy(http_port), timeout=60)
            assert schema_state(url) is SchemaState.CURRENT
        finally:
            serve.stop()
            if proxy:
                proxy.stop()
        log = serve.log()
        assert f"database 127.0.0.1:{db_port}/{name} not ready (attempt 2)" in log
        assert PASSWORD not in log


def test_a_database_that_never_answers_is_a_clear_error_without_the_password(tmp_path: Path):
    url = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{free_port()}/nowhere"
    result = subprocess.run(
        [sys.executable, "-m", "email_service", "db", "upgrade"],
        env={**os.environ, "DATABASE_URL": url, "DB_WAIT_SECONDS": "1", "DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Error: database 127.0.0.1:" in result.stderr and "not ready after 1 s" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


def test_the_scheduler_waits_for_the_schema_and_never_migrates_it(tmp_path: Path):
    with database_name() as name:
        create_database(name)
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        env = {"DATABASE_URL": url, "DB_WAIT_SECONDS": "30", "CELERY_BROKER_URL": "memory://"}
        scheduler = SchedulerProcess(env, tmp_path / "scheduler.log")
        try:
            wait_for(lambda: "schema is missing" in scheduler.log(), timeout=30)
            assert schema_state(url) is SchemaState.MISSING
            assert scheduler.process.poll() is None and "scheduler sweeping" not in scheduler.log()
            upgrade(url)
            scheduler.wait_ready(timeout=30)
        finally:
            scheduler.stop()


def test_two_processes_migrating_at_once_both_succeed(tmp_path: Path):
    with database_name() as name:
        create_database(name)
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        env = {**os.environ, "DATABASE_URL": url, "DATA_DIR": str(tmp_path)}
        command = [sys.executable, "-m", "email_service", "db", "upgrade"]
        processes = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) for _ in range(3)]
        results = [(process.wait(timeout=60), process.communicate()[1]) for process in processes]
        assert results == [(0, "")] * 3
        assert schema_state(url) is SchemaState.CURRENT


def test_a_schema_migrated_by_a_later_version_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(logging.getLogger("email_service"), "propagate", True)  # let caplog see it
    url = f"sqlite:///{tmp_path / 'later.db'}"
    upgrade(url)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    assert schema_state(url) is SchemaState.NEWER
    upgrade_when_reachable(url, wait_seconds=0)  # an older API container restarting mid-upgrade
    wait_for_schema(url, wait_seconds=0)  # an older worker too
    assert "newer than this version" in caplog.text


def test_a_schema_behind_is_not_ready_for_the_workers(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")
    assert schema_state(url) is SchemaState.BEHIND
    with pytest.raises(Exception, match="schema is behind"):
        wait_for_schema(url, wait_seconds=0)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
