"""The chart's time axis, computed without Qt: ticks on period boundaries, four-digit years,
labels that fit, the range trimmed to the data; for day, week, month, quarter and year grains."""

from __future__ import annotations

import datetime as dt

import pytest

from lithotse_desktop.gui.timeaxis import add_months, position, time_axis, value_range


def months(first: dt.date, count: int, step: int = 1) -> list[dt.date]:
    return [add_months(first, i * step) for i in range(count)]


def ticks(axis) -> list[tuple[str, dt.date]]:
    return [(t.text, t.day) for t in axis.ticks]


def test_month_grain_over_five_years_is_labelled_by_year_then_finer_as_room_allows():
    data = months(dt.date(2020, 1, 1), 60)
    narrow = time_axis(data, "month", 500)
    assert ticks(narrow) == [(str(y), dt.date(y, 1, 1)) for y in range(2020, 2025)]
    assert (narrow.low, narrow.high) == (position(dt.date(2020, 1, 1)) - 15.5, position(dt.date(2024, 12, 1)) + 15.5)
    wide = time_axis(data, "month", 1800)
    assert wide.step == ("month", 3)
    assert wide.labels[:6] == ["Jan 2020", "Apr", "Jul", "Oct", "Jan 2021", "Apr"]
    assert all(t.day.day == 1 and t.day.month in (1, 4, 7, 10) for t in wide.ticks), "on quarter boundaries"
    assert time_axis(data, "month", 6000).step == ("month", 1)


def test_the_issue_s_axis_reads_with_four_digit_years_and_the_value_on_its_own_tick():
    """The issue's monthly chart read "Nov 28, Sep 47, Jul 66": 95 years of months. Each label is
    a whole year and each tick is the 1 January its value is drawn at."""
    data = months(dt.date(1928, 11, 1), 95 * 12)
    axis = time_axis(data, "month", 900)
    assert axis.step[0] == "year" and all(len(text) == 4 and text.isdigit() for text in axis.labels)
    assert all(t.day == dt.date(int(t.text), 1, 1) for t in axis.ticks)
    assert axis.ticks[0].day == dt.date(1930, 1, 1)
    points = {dt.date(2018, 1, 1): 5}
    yearly = time_axis(list(points), "year", 600)
    assert ticks(yearly) == [("2018", dt.date(2018, 1, 1))], "a 2018 point sits on the 2018 tick"
    assert yearly.low < position(dt.date(2018, 1, 1)) < yearly.high


def test_quarter_grain_names_quarters():
    data = months(dt.date(2020, 1, 1), 20, step=3)
    axis = time_axis(data, "quarter", 1400)
    assert axis.step == ("month", 3)
    assert axis.labels[:5] == ["Q1 2020", "Q2", "Q3", "Q4", "Q1 2021"]
    assert [t.day for t in axis.ticks[:5]] == months(dt.date(2020, 1, 1), 5, step=3)
    assert time_axis(data, "quarter", 300).labels == ["2020", "2021", "2022", "2023", "2024"]


def test_day_grain_steps_through_days_weeks_and_months():
    start = dt.date(2024, 7, 1)
    data = [start + dt.timedelta(days=i) for i in range(45)]
    fine = time_axis(data, "day", 4000)
    assert fine.step == ("day", 1) and fine.labels[:3] == ["1 Jul 2024", "2 Jul", "3 Jul"]
    assert fine.labels[31] == "1 Aug"
    weekly = time_axis(data, "day", 700)
    assert weekly.step == ("week", 1)
    assert all(t.day.weekday() == 0 for t in weekly.ticks), "Mondays"
    assert ticks(weekly)[:2] == [("1 Jul 2024", dt.date(2024, 7, 1)), ("8 Jul", dt.date(2024, 7, 8))]
    across = [dt.date(2024, 12, 30) + dt.timedelta(days=i) for i in range(4)]
    assert time_axis(across, "day", 2000).labels == ["30 Dec 2024", "31 Dec", "1 Jan 2025", "2 Jan"]


def test_year_grain_over_a_century_uses_round_years():
    data = [dt.date(1930 + i, 1, 1) for i in range(95)]
    axis = time_axis(data, "year", 800)
    assert axis.step == ("year", 5)
    assert axis.labels[:3] == ["1930", "1935", "1940"] and axis.labels[-1] == "2020"


def test_week_grain_ticks_on_mondays():
    first = dt.date(2024, 1, 1)  # a Monday
    data = [first + dt.timedelta(weeks=i) for i in range(52)]
    axis = time_axis(data, "week", 900)
    assert all(t.day.weekday() == 0 for t in axis.ticks)
    assert axis.labels[0] == "1 Jan 2024"


@pytest.mark.parametrize("grain,data", [
    ("month", months(dt.date(2020, 1, 1), 60)),
    ("quarter", months(dt.date(2015, 7, 1), 30, step=3)),
    ("day", [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(400)]),
    ("year", [dt.date(1950 + i, 1, 1) for i in range(70)]),
])
@pytest.mark.parametrize("width", [250, 600, 1200, 3000])
def test_labels_never_touch_and_each_fits_its_share(grain, data, width):
    def measure(text: str) -> float:
        return 7.0 * len(text)

    axis = time_axis(data, grain, width, measure)
    assert axis.ticks, "something is labelled"
    per_day = width / (axis.high - axis.low)
    for a, b in zip(axis.ticks, axis.ticks[1:], strict=False):
        assert (b.x - a.x) * per_day >= (measure(a.text) + measure(b.text)) / 2
    assert all(axis.low <= t.x <= axis.high for t in axis.ticks)
    assert axis.first == min(data) and axis.last == max(data)


def test_value_range_is_round_and_includes_zero():
    assert value_range(0, 103) == (0.0, 120.0, 20.0)
    assert value_range(3, 7.4) == (0.0, 8.0, 2.0)
    assert value_range(-3, 55) == (-10.0, 60.0, 10.0)
    assert value_range(0, 0) == (0.0, 1.0, 0.2)
