from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smoke.api.ui.chart import RegionChart, region_charts
from smoke.domain.services.dashboard import Overview, ProvisionTime

NOW = datetime(2026, 1, 8, 12, 0, tzinfo=UTC)


def overview(**times: list[ProvisionTime]) -> Overview:
    since = NOW - timedelta(days=7)
    return Overview(NOW, since, 0, 10, 0, [], times, [])


def test_one_chart_per_region_with_a_point_per_instance_inside_the_plot() -> None:
    times = [ProvisionTime(NOW - timedelta(days=n), seconds) for n, seconds in [(6, 12.0), (3, 42.0), (0, 30.0)]]

    [chart] = region_charts(overview(fsn1=times))

    assert chart.region == "fsn1"
    assert len(chart.points) == 3
    for point in chart.points:
        assert RegionChart.LEFT <= point.x <= RegionChart.WIDTH - RegionChart.RIGHT
        assert RegionChart.TOP <= point.y <= RegionChart.HEIGHT - RegionChart.BOTTOM
    assert chart.points[-1].x == RegionChart.WIDTH - RegionChart.RIGHT  # requested now: at the right edge
    assert (chart.median, chart.slowest) == (30.0, 42.0)


def test_the_scale_is_a_round_number_above_the_slowest() -> None:
    [chart] = region_charts(overview(hel1=[ProvisionTime(NOW, 42.0)]))

    assert [line.label for line in chart.gridlines] == ["0 s", "25 s", "50 s"]
    assert chart.points[0].y < chart.gridlines[1].y  # 42 s is above the 25 s line (SVG y grows downwards)


def test_each_midnight_of_the_window_is_a_tick() -> None:
    [chart] = region_charts(overview(fsn1=[ProvisionTime(NOW, 1.0)]))

    assert [tick.day.day for tick in chart.days] == [2, 3, 4, 5, 6, 7, 8]
