"""HL7 v2 date/time values (DTM/TS): ``YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]``.

Missing trailing parts take their lowest value (``2012`` is 2012-01-01 00:00), so partial
precision is kept as the start of the period it names. A value is parsed into two readings:

* the wall-clock time exactly as written (a naive timestamp). HL7 says a value without an
  offset is in the sender's local time; Lithotse takes naive timestamps as workspace-local
  time, which is right whenever sender and workspace share a zone;
* the instant in UTC, only when the value carries its own offset.

Arrow columns hold one type, so a column cannot mix naive and UTC values; the connector
therefore emits both readings as sibling columns (``x`` and ``x_utc``).
"""

from __future__ import annotations

import datetime as dt
import re

FORMAT = "YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]"
_DTM = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,4}))?)?)?)?)?)?"
    r"(?:([+-])(\d{2})(\d{2}))?", re.ASCII)
_MAX_OFFSET_HOURS = 14


def parse_dtm(text: str) -> tuple[dt.datetime, dt.datetime | None]:
    """Return ``(wall clock, UTC instant or None)``; raise ValueError saying what is wrong."""
    match = _DTM.fullmatch(text)
    if match is None:
        raise ValueError(f"expected {FORMAT}")
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    micro = int(fraction.ljust(6, "0")) if fraction else 0
    wall = dt.datetime(int(year), int(month or 1), int(day or 1), int(hour or 0),
                       int(minute or 0), int(second or 0), micro)
    if sign is None:
        return wall, None
    hours, minutes = int(off_h), int(off_m)
    if hours > _MAX_OFFSET_HOURS or minutes > 59:
        raise ValueError(f"time-zone offset {sign}{off_h}{off_m} is out of range")
    offset = dt.timedelta(hours=hours, minutes=minutes) * (-1 if sign == "-" else 1)
    try:
        instant = (wall - offset).replace(tzinfo=dt.UTC)
    except OverflowError:
        raise ValueError("the instant falls outside the years 1-9999") from None
    return wall, instant
