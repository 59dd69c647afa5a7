"""PostgreSQL out of reach, then back: the API answers 503 meanwhile, stores nothing, and recovers by itself."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from tests.support.servers import own_database
from tests.support.smtp_sink import free_port
from tests.support.stack import ApiServer, settings_from
from tests.support.tcp_proxy import TcpProxy

JOB = {"recipients": ["will@example.com"], "subject": "Hello", "content": "Hi"}
PASSWORD = "canary-db-password-5f1c"  # the server trusts the machine: any password connects


def test_the_api_answers_503_while_the_database_is_away_and_recovers_without_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    port = free_port()
    with own_database() as url:
        proxy = TcpProxy(port, ("127.0.0.1", 5432)).start()
        through_proxy = url.replace("postgres@127.0.0.1:5432", f"postgres:{PASSWORD}@127.0.0.1:{port}")
        api = ApiServer(settings_from({"DATABASE_URL": through_proxy, "DATA_DIR": str(tmp_path)})).start()
        # After create_app, which sets the service's logging up: let caplog see the warnings.
        monkeypatch.setattr(logging.getLogger("email_service"), "propagate", True)
        try:
            assert api.client.get("/api/email/").status_code == 200  # the pool now holds a live connection
            proxy.stop()  # every connection cut, new ones refused: as when PostgreSQL restarts
            for answer in (api.client.get("/api/email/"), api.post_job(JOB)):
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"] == "database_unavailable"
                assert answer.headers["Retry-After"] == "1"
                assert PASSWORD not in answer.text
            warnings = [r.getMessage() for r in caplog.records if "database unavailable" in r.getMessage()]
            assert len(warnings) == 2 and "/api/email/" in warnings[0], warnings
            assert PASSWORD not in caplog.text
            proxy = TcpProxy(port, ("127.0.0.1", 5432)).start()
            time.sleep(1.2)  # past the window in which a pooled connection is lent without a ping
            assert api.client.get("/api/email/").json()["items"] == [], "the POST during the outage stored nothing"
            accepted = api.post_job(JOB)
            assert accepted.status_code == 202, accepted.text
        finally:
            api.stop()
            proxy.stop()
