"""Date ranges and the time-zone rule.

A range is a pair of calendar dates, inclusive on both ends; either end may be open.
A record's date is the calendar date of its date field in the workspace time zone
(``timezone`` in the workspace config, UTC by default): timestamps that carry an offset
are converted to that zone first, timestamps without one are taken as already in it,
and plain dates are used as they are.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa

from .deferred import pyarrow_compute as pc
from .errors import ConfigError


def parse_date(text: str | dt.date | None, what: str = "date") -> dt.date | None:
    if text is None or text == "":
        return None
    if isinstance(text, dt.datetime):
        return text.date()
    if isinstance(text, dt.date):
        return text
    try:
        return dt.date.fromisoformat(str(text).strip())
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not an ISO date (YYYY-MM-DD)") from None


@dataclass(frozen=True)
class DateRange:
    start: dt.date | None = None
    end: dt.date | None = None

    def __post_init__(self) -> None:
        if self.start and self.end and self.start > self.end:
            raise ConfigError(f"date range: from {self.start} is after to {self.end}")

    @classmethod
    def parse(cls, start: str | dt.date | None, end: str | dt.date | None) -> DateRange:
        return cls(parse_date(start, "--from"), parse_date(end, "--to"))

    @property
    def bounded(self) -> bool:
        return self.start is not None or self.end is not None

    def contains(self, day: dt.date) -> bool:
        return (self.start is None or day >= self.start) and (self.end is None or day <= self.end)

    def covers(self, other: DateRange) -> bool:
        """True when every day of ``other`` lies inside this range."""
        lo_ok = self.start is None or (other.start is not None and other.start >= self.start)
        hi_ok = self.end is None or (other.end is not None and other.end <= self.end)
        return lo_ok and hi_ok

    def intersect(self, other: DateRange | None) -> DateRange | None:
        """The days in both ranges, or None when they share none."""
        if other is None:
            return self
        starts = [d for d in (self.start, other.start) if d]
        ends = [d for d in (self.end, other.end) if d]
        start, end = (max(starts) if starts else None), (min(ends) if ends else None)
        if start and end and start > end:
            return None
        return DateRange(start, end)

    def to_json(self) -> dict:
        """The one serialised form of a range, wherever one is stored: ``{"from", "to"}``,
        ISO dates or None for an open end."""
        return {"from": self.start.isoformat() if self.start else None,
                "to": self.end.isoformat() if self.end else None}

    @classmethod
    def from_json(cls, data: dict | None) -> DateRange:
        data = data or {}
        if not isinstance(data, dict):
            raise ConfigError(f"date range: {data!r} is not an object with from and to")
        return cls.parse(data.get("from"), data.get("to"))

    def __str__(self) -> str:
        return f"{self.start or '…'} to {self.end or '…'}"


def to_local_dates(column: pa.ChunkedArray | pa.Array, timezone: str = "UTC") -> pa.Array | pa.ChunkedArray:
    """Calendar dates of a date or timestamp column, following the module's time-zone rule."""
    typ = column.type
    if pa.types.is_date32(typ):
        return column
    if pa.types.is_date64(typ):
        return pc.cast(column, pa.date32())
    if pa.types.is_timestamp(typ):
        if typ.tz is not None:
            column = pc.local_timestamp(pc.cast(column, pa.timestamp(typ.unit, tz=timezone)))
        return pc.cast(column, pa.date32())
    if pa.types.is_null(typ):
        return pa.nulls(len(column), pa.date32())
    raise TypeError(f"date field has type {typ}, expected a date or timestamp")


def range_mask(dates: pa.Array | pa.ChunkedArray, rng: DateRange) -> pa.Array | pa.ChunkedArray:
    """Boolean mask of rows inside the range; rows without a date count as outside a bounded range."""
    if not rng.bounded:
        return pa.repeat(pa.scalar(True), len(dates))
    mask = None
    if rng.start is not None:
        mask = pc.greater_equal(dates, pa.scalar(rng.start, pa.date32()))
    if rng.end is not None:
        upper = pc.less_equal(dates, pa.scalar(rng.end, pa.date32()))
        mask = upper if mask is None else pc.and_(mask, upper)
    return pc.fill_null(mask, False)
