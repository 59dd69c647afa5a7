"""The chart of a job's sends over time, as SVG geometry computed here so the page needs no script."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from email_service.storage.jobs import Timeline

WIDTH, HEIGHT = 600, 160  # the SVG's viewBox; it scales to the page's width


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    label: str  # what a screen reader and a hover say: "12:00:05 – 12:00:10: 340 sent"


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    peak: int  # the tallest bar's count, the y axis' top
    first: str  # time of the first interval's start
    last: str  # time of the last interval's end
    interval: str  # "5 s", "1 min"
    summary: str  # the whole chart in one sentence, for assistive technology


def sends_chart(timeline: Timeline) -> Chart:
    """Bars of equal width, one per interval, as tall as their share of the busiest interval."""
    counts = timeline.counts
    peak = max(counts) or 1
    slot = WIDTH / len(counts)
    gap = min(2.0, slot / 5)
    width = timedelta(seconds=timeline.width_seconds)
    bars = []
    for index, count in enumerate(counts):
        start = timeline.start + index * width
        height = HEIGHT * count / peak
        bars.append(
            Bar(
                x=round(index * slot + gap / 2, 2),
                y=round(HEIGHT - height, 2),
                width=round(slot - gap, 2),
                height=round(height, 2),
                count=count,
                label=f"{start:%H:%M:%S} – {start + width:%H:%M:%S}: {count} sent",
            )
        )
    end = timeline.start + len(counts) * width
    interval = describe_seconds(timeline.width_seconds)
    summary = (
        f"{sum(counts)} messages sent from {timeline.start:%H:%M:%S} to {end:%H:%M:%S} UTC, "
        f"at most {max(counts)} in {interval}"
    )
    return Chart(bars, peak, f"{timeline.start:%H:%M:%S}", f"{end:%H:%M:%S}", interval, summary)


def describe_seconds(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"
