"""The in-process limiter, for deployments without Redis (its Redis twin: tests/integration/test_limiter.py)."""

from __future__ import annotations

import pytest

from email_service.limiter import LocalLimiter, Window
from tests.support.limits import LimiterBehaviour


class TestLocalLimiter(LimiterBehaviour):
    @pytest.fixture
    def limiter(self) -> LocalLimiter:
        return LocalLimiter()


def test_a_past_window_is_forgotten(monkeypatch: pytest.MonkeyPatch):
    limiter, minute, now = LocalLimiter(), Window("w", 2, 60), 6000.0
    monkeypatch.setattr("email_service.limiter.time.time", lambda: now)
    assert limiter.acquire([minute], 2).taken
    assert limiter.acquire([minute]).wait == 60
    now += 60
    assert limiter.acquire([minute], 2).taken
