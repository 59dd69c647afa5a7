"""The in-process limiter, for deployments without Redis (its Redis twin: tests/integration/test_limiter.py)."""

from __future__ import annotations

import math
from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


@pytest.mark.parametrize(
    ("limit", "reserve", "bulk"),
    [(10, 0.1, 9), (100, 0.3, 70), (3, 0.1, 2), (1000, 1e-12, 999), (1, 0.1, 0), (10, 1, 0), (10, 0, 10)],
)
def test_a_reserve_keeps_its_share_and_at_least_one_message_from_bulk_mail(limit: int, reserve: float, bulk: int):
    window = Window("w", limit, 3600, reserve)
    assert (window.ceiling(use_reserve=False), window.ceiling(use_reserve=True)) == (bulk, limit)


@given(
    limit=st.integers(1, 200),
    reserve=st.floats(0, 1) | st.floats(0, 0.01),  # small ones too: the reserve is then one message
    acquisitions=st.lists(st.tuples(st.integers(1, 20), st.booleans()), max_size=60),
)
def test_bulk_never_fills_a_reserve_and_transactional_mail_never_passes_the_limit(
    limit: int, reserve: float, acquisitions: list[tuple[int, bool]]
):
    limiter, window, used = LocalLimiter(), Window("w", limit, 86400, reserve), 0
    bulk_share = limit if reserve == 0 else min(math.floor(limit * (1 - reserve) + 1e-9), limit - 1)
    with patch("email_service.limiter.time.time", return_value=6000.0):  # one window throughout
        for amount, transactional in acquisitions:
            taken = limiter.acquire([window], amount, use_reserve=transactional).taken
            assert taken == (used + amount <= (limit if transactional else bulk_share)), "refused only when full"
            used += amount if taken else 0
            assert used <= limit
            if taken and not transactional:
                assert used <= limit * (1 - reserve) + 1e-6
                assert reserve == 0 or used < limit
