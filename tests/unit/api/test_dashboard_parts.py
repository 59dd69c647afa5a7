"""The dashboard's pure parts: every status has its tone, and the chart's geometry."""

from __future__ import annotations

from datetime import UTC, datetime

from email_service.api.dashboard.chart import HEIGHT, WIDTH, describe_seconds, sends_chart
from email_service.api.dashboard.statuses import RECIPIENT_STATUS_ORDER, STATUS_TONES
from email_service.storage.jobs import Timeline
from email_service.storage.models import JobStatus, RecipientStatus


def test_every_status_has_a_tone_and_every_recipient_status_a_place_in_the_counts():
    assert {*JobStatus, *RecipientStatus} == set(STATUS_TONES)
    assert sorted(RECIPIENT_STATUS_ORDER) == sorted(RecipientStatus)
    assert STATUS_TONES[RecipientStatus.BOUNCED] == STATUS_TONES[RecipientStatus.FAILED] == "bad"


def test_bars_share_the_width_and_the_busiest_interval_is_full_height():
    timeline = Timeline(start=datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC), width_seconds=5, counts=[10, 0, 5, 20])
    chart = sends_chart(timeline)
    assert [bar.count for bar in chart.bars] == [10, 0, 5, 20]
    assert chart.peak == 20 and chart.bars[3].height == HEIGHT and chart.bars[3].y == 0
    assert chart.bars[0].height == HEIGHT / 2 and chart.bars[1].height == 0
    assert chart.bars[-1].x + chart.bars[-1].width <= WIDTH
    assert chart.bars[2].label == "12:00:10 – 12:00:15: 5 sent"
    assert (chart.first, chart.last, chart.interval) == ("12:00:00", "12:00:20", "5 s")
    assert chart.summary == "35 messages sent from 12:00:00 to 12:00:20 UTC, at most 20 in 5 s"


def test_intervals_are_named_in_their_unit():
    assert [describe_seconds(s) for s in (1, 30, 60, 900, 3600, 86400)] == [
        "1 s",
        "30 s",
        "1 min",
        "15 min",
        "1 h",
        "24 h",
    ]
