"""PostgreSQL out of reach, then back: the API answers 503 meanwhile, stores nothing, and recovers by itself."""

from __future__ import annotations

import time
from pathlib import Path

from .conftest import own_database
from .smtp_sink import free_port
from .stack import ApiServer, settings_from
from .tcp_proxy import TcpProxy

JOB = {"recipients": ["will@example.com"], "subject": "Hello", "content": "Hi"}


def test_the_api_answers_503_while_the_database_is_away_and_recovers_without_a_restart(tmp_path: Path):
    port = free_port()
    with own_database() as url:
        proxy = TcpProxy(port, ("127.0.0.1", 5432)).start()
        through_proxy = url.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
        api = ApiServer(settings_from({"DATABASE_URL": through_proxy, "DATA_DIR": str(tmp_path)})).start()
        try:
            assert api.client.get("/api/email/").status_code == 200  # the pool now holds a live connection
            proxy.stop()  # every connection cut, new ones refused: as when PostgreSQL restarts
            for answer in (api.client.get("/api/email/"), api.post_job(JOB)):
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"] == "database_unavailable"
                assert answer.headers["Retry-After"] == "1"
                assert "password" not in answer.text and through_proxy not in answer.text
            proxy = TcpProxy(port, ("127.0.0.1", 5432)).start()
            time.sleep(1.2)  # past the window in which a pooled connection is lent without a ping
            assert api.client.get("/api/email/").json()["items"] == [], "the POST during the outage stored nothing"
            accepted = api.post_job(JOB)
            assert accepted.status_code == 202, accepted.text
        finally:
            api.stop()
            proxy.stop()
