"""Quotas per account (all its keys together) through the HTTP API, counted in Redis: 429 with Retry-After,
nothing stored."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import REDIS_URL
from tests.support.stack import ApiServer, settings_from


def _api(postgres_url: str, redis_prefix: str, **quotas: str) -> ApiServer:
    env = {
        "DATABASE_URL": postgres_url,
        "CELERY_BROKER_URL": "memory://",
        "RATE_LIMIT_REDIS_URL": REDIS_URL,
        "CELERY_BROKER_KEY_PREFIX": f"{redis_prefix}quotas-{time.monotonic_ns()}:",
        **quotas,
    }
    return ApiServer(settings_from(env)).start()


@pytest.fixture
def limited(postgres_url: str, redis_prefix: str) -> Iterator[ApiServer]:
    api = _api(postgres_url, redis_prefix, KEY_REQUESTS_PER_MINUTE="5", KEY_RECIPIENTS_PER_MINUTE="10")
    _away_from_the_minute_boundary()
    yield api
    api.stop()


def _away_from_the_minute_boundary() -> None:
    """Fixed one-minute windows: start where the next 10 s stay in one window."""
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)


def _as(api: ApiServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=api.url, timeout=10, headers={"Authorization": f"Bearer {key}"})


def test_requests_over_the_quota_get_429_with_retry_after(limited: ApiServer):
    busy_key, calm_key = limited.new_key("busy"), limited.new_key("calm")
    with _as(limited, busy_key) as busy, _as(limited, limited.new_key("busy-2", account="busy")) as busy_too:
        assert [busy.get("/api/email/").status_code for _ in range(3)] == [200] * 3
        assert [busy_too.get("/api/email/").status_code for _ in range(2)] == [200] * 2
        for client in (busy, busy_too):  # the account's quota, whichever of its keys asks
            refused = client.get("/api/email/")
            assert refused.status_code == 429 and refused.json()["error"] == "too_many_requests"
            assert "for this account" in refused.json()["message"]
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
    with _as(limited, calm_key) as calm:
        assert calm.get("/api/email/").status_code == 200, "each account has its own quota"


def test_recipients_over_the_quota_are_refused_and_nothing_is_stored(limited: ApiServer):
    def job(client: httpx.Client, count: int, subject: str) -> httpx.Response:
        recipients = [f"r{i}@quota.example.com" for i in range(count)]
        return client.post("/api/email/", json={"recipients": recipients, "subject": subject})

    with _as(limited, limited.new_key("sender")) as sender:
        assert job(sender, 6, "six").status_code == 202
        assert job(sender, 0, "invalid").status_code == 422, "a refused request counts nothing"
        over = job(sender, 5, "five")
        assert over.status_code == 429 and "recipients per minute" in over.json()["message"]
        assert over.headers["Retry-After"]
        assert job(sender, 4, "four").status_code == 202, "the refused five were not counted"
        subjects = {j["subject"] for j in sender.get("/api/email/").json()["items"]}
    assert subjects == {"six", "four"}


def test_without_quotas_nothing_is_counted(postgres_url: str, redis_prefix: str):
    api = _api(postgres_url, redis_prefix)
    try:
        with _as(api, api.new_key("free")) as free:
            assert {free.get("/api/email/").status_code for _ in range(20)} == {200}
    finally:
        api.stop()
