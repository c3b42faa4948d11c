"""The provision-time charts as geometry for an inline SVG: the server draws them, so the page needs no chart library.

Each region gets a small chart of its own (a phone shows them one under the other): the window's days across,
seconds from the request to ``running`` up, one point per instance.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from smoke.domain.services.dashboard import Overview, ProvisionTime

__all__ = ("ChartPoint", "DayTick", "Gridline", "RegionChart", "region_charts")


@dataclass(frozen=True, slots=True)
class ChartPoint:
    x: float
    y: float
    accepted_at: datetime
    seconds: float


@dataclass(frozen=True, slots=True)
class Gridline:
    y: float
    seconds: float

    @property
    def label(self) -> str:
        return f"{self.seconds:g} s"


@dataclass(frozen=True, slots=True)
class DayTick:
    """A midnight (UTC) in the window: the chart reads as days."""

    x: float
    day: datetime


@dataclass(frozen=True, slots=True)
class RegionChart:
    """One region's chart, in the coordinates of its SVG ``viewBox`` (``WIDTH`` by ``HEIGHT``)."""

    region: str
    points: list[ChartPoint]
    """Oldest first."""
    gridlines: list[Gridline]
    """Bottom to top: 0, half the scale, the scale."""
    days: list[DayTick]
    median: float
    slowest: float

    WIDTH: ClassVar[int] = 320
    HEIGHT: ClassVar[int] = 128
    LEFT: ClassVar[int] = 36
    """Room for the seconds labels."""
    RIGHT: ClassVar[int] = 8
    TOP: ClassVar[int] = 8
    BOTTOM: ClassVar[int] = 20
    """Room for the dates."""

    @property
    def line(self) -> str:
        """The points joined, oldest first, as an SVG ``points`` attribute."""
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


def region_charts(overview: Overview) -> list[RegionChart]:
    return [_chart(region, times, overview) for region, times in overview.provision_times.items()]


def _chart(region: str, times: list[ProvisionTime], overview: Overview) -> RegionChart:
    seconds = [t.seconds for t in times]
    scale = _nice_ceiling(max(seconds))
    span = (overview.now - overview.since).total_seconds() or 1.0
    width = RegionChart.WIDTH - RegionChart.LEFT - RegionChart.RIGHT
    height = RegionChart.HEIGHT - RegionChart.TOP - RegionChart.BOTTOM

    def x(at: datetime) -> float:
        return RegionChart.LEFT + width * min(max((at - overview.since).total_seconds() / span, 0.0), 1.0)

    def y(value: float) -> float:
        return RegionChart.TOP + height * (1 - value / scale)

    points = [ChartPoint(x(t.accepted_at), y(t.seconds), t.accepted_at, t.seconds) for t in times]
    gridlines = [Gridline(y(value), value) for value in (0.0, scale / 2, scale)]
    days = [DayTick(x(midnight), midnight) for midnight in _midnights(overview.since, overview.now)]
    return RegionChart(region, points, gridlines, days, statistics.median(seconds), max(seconds))


def _midnights(start: datetime, end: datetime) -> list[datetime]:
    first = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return [first + timedelta(days=n) for n in range((end - first) // timedelta(days=1) + 1)]


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that is at least ``value``: a scale that reads well."""
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1, 2, 5, 10) if step * magnitude >= value)
