"""Where a time chart's ticks and labels go: on period boundaries, with four-digit years.

Pure Python (no Qt), so the rules are tested on their own. A derivative's ``period`` is the
first day of a day, ISO week, month, quarter or year, and a value is drawn at that first day:
a 2018 value sits exactly on the tick labelled "2018", whatever the grain. Ticks sit on period
boundaries (1 January, the first of a month or quarter, a Monday, a day) at a step coarse
enough for neighbouring labels not to touch (measured with the widget's font), so monthly data
over five years is labelled by quarter or year, never "Nov 28, Sep 47". The range is trimmed
to the data: half a period before the first value and after the last, so bars and markers at
the ends are drawn whole.

Positions are days since 1970-01-01 as floats (:func:`position`), the x unit of the chart.
:func:`value_range` rounds the y axis the same way for every chart.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

EPOCH = dt.date(1970, 1, 1)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
LABEL_PADDING = 12.0  # pixels kept free between neighbouring labels

# (unit, count) steps from fine to coarse, per grain; each lands on boundaries of the grain's periods.
STEPS: dict[str, tuple[tuple[str, int], ...]] = {
    "day": (("day", 1), ("day", 2), ("week", 1), ("week", 2), ("month", 1), ("month", 3), ("month", 6),
            ("year", 1), ("year", 2), ("year", 5), ("year", 10), ("year", 25)),
    "week": (("week", 1), ("week", 2), ("week", 4), ("week", 13), ("week", 26), ("week", 52), ("week", 104),
             ("week", 260), ("week", 520)),
    "month": (("month", 1), ("month", 2), ("month", 3), ("month", 6), ("year", 1), ("year", 2), ("year", 5),
              ("year", 10), ("year", 25)),
    "quarter": (("month", 3), ("month", 6), ("year", 1), ("year", 2), ("year", 5), ("year", 10), ("year", 25)),
    "year": (("year", 1), ("year", 2), ("year", 5), ("year", 10), ("year", 20), ("year", 50), ("year", 100)),
}


def position(day: dt.date) -> float:
    """A day as the chart's x value: days since 1970-01-01."""
    return float((day - EPOCH).days)


def day_at(x: float) -> dt.date:
    return EPOCH + dt.timedelta(days=int(x // 1))


def add_months(day: dt.date, months: int) -> dt.date:
    total = day.year * 12 + day.month - 1 + months
    return dt.date(total // 12, total % 12 + 1, 1)


def period_end(start: dt.date, grain: str) -> dt.date:
    """The first day after the period that starts on ``start``."""
    if grain == "week":
        return start + dt.timedelta(days=7)
    if grain in ("month", "quarter", "year"):
        return add_months(start, {"month": 1, "quarter": 3, "year": 12}[grain])
    return start + dt.timedelta(days=1)


def period_label(start: dt.date, grain: str) -> str:
    """How one period reads in a tooltip or table: "3 Aug 2015", "week of 3 Aug 2015", "Aug 2015",
    "Q3 2015", "2015"."""
    if grain == "year":
        return str(start.year)
    if grain == "quarter":
        return f"Q{(start.month - 1) // 3 + 1} {start.year}"
    if grain == "month":
        return f"{MONTHS[start.month - 1]} {start.year}"
    if grain == "week":
        return f"week of {start.day} {MONTHS[start.month - 1]} {start.year}"
    return f"{start.day} {MONTHS[start.month - 1]} {start.year}"


@dataclass(frozen=True)
class Tick:
    """A tick on a period boundary, with the label drawn at it."""

    day: dt.date
    text: str

    @property
    def x(self) -> float:
        return position(self.day)


@dataclass(frozen=True)
class TimeAxis:
    """The x axis of a time chart: its range (trimmed to the data), ticks and the step between them."""

    grain: str
    first: dt.date
    last: dt.date
    low: float
    high: float
    ticks: tuple[Tick, ...]
    step: tuple[str, int]

    @property
    def labels(self) -> list[str]:
        return [tick.text for tick in self.ticks]


def _aligned(day: dt.date, unit: str, count: int, origin: dt.date) -> bool:
    if unit == "year":
        return day.month == 1 and day.day == 1 and day.year % count == 0
    if unit == "month":
        return day.day == 1 and (day.month - 1) % count == 0
    if unit == "week":
        return day.weekday() == 0 and ((day - origin).days // 7) % count == 0
    return (day - origin).days % count == 0


def _next(day: dt.date, unit: str) -> dt.date:
    """The next candidate boundary after ``day`` for a unit (every day, Monday, first of month, 1 Jan)."""
    if unit == "year":
        return dt.date(day.year + 1, 1, 1)
    if unit == "month":
        return add_months(day.replace(day=1), 1)
    if unit == "week":
        return day + dt.timedelta(days=7 - day.weekday())
    return day + dt.timedelta(days=1)


def boundaries(start: dt.date, end: dt.date, unit: str, count: int) -> list[dt.date]:
    """Every aligned boundary in [start, end], for a step of ``count`` units."""
    origin = start - dt.timedelta(days=start.weekday()) if unit == "week" else start
    found = []
    day = start
    if not _aligned(day, unit, count, origin):
        day = _next(day, unit)
    while day <= end:
        if _aligned(day, unit, count, origin):
            found.append(day)
        day = _next(day, unit)
    return found


def tick_texts(days: list[dt.date], unit: str, count: int, grain: str) -> list[str]:
    """Labels of ticks: "2018"; "Jan 2018", "Apr", …; "Q1 2018", "Q2", …; "3 Aug 2015", "10 Aug", ….

    Below a year the year is written out (four digits) on the first label and wherever it changes.
    """
    texts = []
    year_shown = None
    for day in days:
        if unit == "year":
            texts.append(str(day.year))
            continue
        if unit == "month" and grain == "quarter":
            head = f"Q{(day.month - 1) // 3 + 1}"
        elif unit == "month":
            head = MONTHS[day.month - 1]
        else:
            head = f"{day.day} {MONTHS[day.month - 1]}"
        texts.append(head if year_shown == day.year else f"{head} {day.year}")
        year_shown = day.year
    return texts


def time_axis(periods: Iterable[dt.date], grain: str, width: float,
              measure: Callable[[str], float] = lambda text: 7.0 * len(text)) -> TimeAxis:
    """The axis for ``periods`` (first days of periods of ``grain``) drawn ``width`` pixels wide.

    ``measure`` gives a text's width in pixels (the widget passes its font metrics). The finest
    step wins whose neighbouring labels keep :data:`LABEL_PADDING` pixels apart and whose widest
    label fits an even share of the width (Qt Charts shortens a label longer than that with "…").
    """
    days = sorted(set(periods))
    if not days:
        raise ValueError("a time axis needs at least one period")
    if grain not in STEPS:
        grain = "day"
    first, last = days[0], days[-1]
    low = position(first) - (position(period_end(first, grain)) - position(first)) / 2
    high = position(last) + (position(period_end(last, grain)) - position(last)) / 2
    per_day = max(width, 1.0) / max(high - low, 1.0)
    steps = STEPS[grain]
    for index, (unit, count) in enumerate(steps):
        marks = boundaries(first, last, unit, count)
        texts = tick_texts(marks, unit, count, grain)
        widths = [measure(text) for text in texts]
        room = max(width, 1.0) / (len(marks) + 1)  # a chart library's share per label, Qt Charts' rule
        fits = max(widths, default=0.0) + LABEL_PADDING <= room and all(
            (position(b) - position(a)) * per_day >= (wa + wb) / 2 + LABEL_PADDING
            for a, b, wa, wb in zip(marks, marks[1:], widths, widths[1:], strict=False))
        if fits and marks or index == len(steps) - 1:
            ticks = tuple(Tick(day, text) for day, text in zip(marks, texts, strict=True))
            return TimeAxis(grain, first, last, low, high, ticks, (unit, count))
    raise AssertionError("unreachable: the last step is always returned")


def value_range(low: float, high: float, ticks: int = 6) -> tuple[float, float, float]:
    """A y range that includes zero and ends on a round step (1, 2, 2.5 or 5 times a power of ten)
    with at most ``ticks`` intervals: (low, high, step)."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        high = low + 1.0
    raw = (high - low) / max(ticks, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return math.floor(low / step) * step, math.ceil(high / step) * step, step
