"""Column types for text cells: which type a column gets, and turning its text into that type.

Every cell arrives as text. A column's type is the narrowest of integer, decimal, date,
date-time and date-time-with-offset that every non-empty cell of the whole file fits,
else text. Dates and date-times must be ISO 8601, since other spellings (01/02/2024) are
ambiguous. Integers with leading zeros (ZIP codes, some identifiers) and numbers too long
for exact arithmetic stay text so nothing is silently changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from lithotse_desktop.plugin import deferred_import

pc = deferred_import("pyarrow.compute")

ARROW_TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "date32": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", "UTC"),
    "string": pa.string(),
}
PREFERENCE = ("int64", "float64", "date32", "timestamp", "timestamptz", "string")
DATE_KINDS = ("date32", "timestamp", "timestamptz")
# What a column typed by an earlier landing may widen to, so a stream's types stay stable.
WIDENINGS = {
    "int64": {"int64", "float64", "string"},
    "float64": {"float64", "string"},
    "date32": {"date32", "timestamp", "string"},
    "timestamp": {"timestamp", "string"},
    "timestamptz": {"timestamptz", "string"},
    "string": {"string"},
}
_DAY = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_TIME = r"[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
PATTERNS = {
    "int64": r"^[+-]?(0|[1-9][0-9]{0,17})$",
    "float64": r"^[+-]?((0|[1-9][0-9]{0,14})(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?$",
    "date32": rf"^{_DAY}$",
    "timestamp": rf"^{_DAY}({_TIME})?$",
    "timestamptz": rf"^{_DAY}{_TIME}(Z|[+-][0-9]{{2}}(:?[0-9]{{2}})?)$",
}
DATE_NAME_HINT = re.compile(
    r"date|time|start|stop|end|begin|birth|death|admit|discharge|onset|effective|issued|"
    r"recorded|period|when|(^|_)(at|on|dt|day|ts)$|^dt(_|$)|^dob$", re.IGNORECASE)


def prepare(column: pa.Array) -> pa.Array:
    """Cells as the type tests see them: trimmed, with empty cells as nulls."""
    trimmed = pc.utf8_trim_whitespace(column)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _first_true(mask: pa.Array) -> int | None:
    index = pc.index(pc.fill_null(mask, False), True).as_py()
    return None if index < 0 else index


def bad_mask(kind: str, values: pa.Array) -> pa.Array:
    """True where a non-null prepared cell does not fit ``kind``."""
    fits = pc.fill_null(pc.match_substring_regex(values, PATTERNS[kind]), False)
    bad = pc.and_(pc.is_valid(values), pc.invert(fits))
    try:
        pc.cast(pc.filter(values, fits), ARROW_TYPES[kind])
        return bad
    except pa.ArrowInvalid:
        flags = bad.to_pylist()
        for i, (value, ok) in enumerate(zip(values.to_pylist(), fits.to_pylist(), strict=True)):
            if ok:
                try:
                    pc.cast(pa.array([value], pa.string()), ARROW_TYPES[kind])
                except pa.ArrowInvalid:
                    flags[i] = True
        return pa.array(flags, pa.bool_())


def fits(kind: str, values: pa.Array) -> bool:
    if kind == "string":
        return True
    if pc.all(pc.match_substring_regex(values, PATTERNS[kind])).as_py() is False:
        return False
    try:
        pc.cast(values, ARROW_TYPES[kind])
    except pa.ArrowInvalid:
        return False
    return True


def convert(kind: str, raw: pa.Array, trusted: bool = False) -> tuple[pa.Array | None, int | None]:
    """Cast a text column to ``kind``; returns (array, None) or (None, index of the first bad cell).

    ``trusted`` skips the per-cell checks for data already converted once without error.
    """
    if kind == "string":
        return raw, None
    values = prepare(raw)
    if trusted:
        return pc.cast(values, ARROW_TYPES[kind]), None
    mask = bad_mask(kind, values)
    first = _first_true(mask)
    if first is not None:
        return None, first
    return pc.cast(values, ARROW_TYPES[kind]), None


def _starts_with_date(values: pa.Array) -> bool:
    first = pc.drop_null(values)[:1]
    return len(first) == 1 and any(fits(kind, first) for kind in DATE_KINDS)


def detect_date_column(names: list[str], sample: list[pa.Array]) -> tuple[str | None, list[str]]:
    """Pick the date column from a file's first rows; also return every all-date column.

    The first column with a date-like name whose first value is a date wins, so a stray
    non-date further down is reported as an error instead of silently losing the column;
    failing that, the first column whose sampled values are all dates.
    """
    dated: list[str] = []
    hinted: list[str] = []
    for name, values in zip(names, sample, strict=False):
        if pc.count(values).as_py() == 0:
            continue
        all_dates = any(fits(kind, values) for kind in DATE_KINDS)
        if all_dates:
            dated.append(name)
        if DATE_NAME_HINT.search(name) and (all_dates or _starts_with_date(values)):
            hinted.append(name)
    chosen = hinted or dated
    return (chosen[0] if chosen else None), dated


@dataclass
class DateProblem:
    """A cell of the date column that fits no date type: where it is and why."""

    column: str
    row: int
    value: str
    reason: str

    @property
    def message(self) -> str:
        return f"date column {self.column!r}: {self.value!r} {self.reason}"


class Inference:
    """Narrows each column's candidate types batch by batch over a whole file."""

    def __init__(self, names: list[str], date_column: str | None, seed: dict[str, str]) -> None:
        self.names = names
        self.date_column = date_column
        self.candidates: list[set[str]] = []
        for name in names:
            allowed = set(PREFERENCE)
            if name in seed and seed[name] in WIDENINGS:
                allowed &= WIDENINGS[seed[name]]
            if name == date_column:
                allowed = (allowed & set(DATE_KINDS)) or set(DATE_KINDS)
            self.candidates.append(allowed)
        self.seen = [False] * len(names)

    def feed(self, columns: list[pa.Array]) -> DateProblem | None:
        """Take one batch of prepared columns; a date column cell that fits no date type is returned."""
        for i, values in enumerate(columns):
            if pc.count(values).as_py() == 0:
                continue
            self.seen[i] = True
            before = self.candidates[i]
            survivors = {kind for kind in before if fits(kind, values)}
            if survivors:
                self.candidates[i] = survivors
                continue
            return self._problem(i, before, values)
        return None

    def _problem(self, column: int, before: set[str], values: pa.Array) -> DateProblem:
        masks = [bad_mask(kind, values) for kind in sorted(before)]
        everywhere = masks[0]
        for mask in masks[1:]:
            everywhere = pc.and_(everywhere, mask)
        row = _first_true(everywhere)
        reason = "is not an ISO date or date-time (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS, optional offset)"
        if row is None:
            row = max(_first_true(mask) or 0 for mask in masks)
            reason = ("does not match the earlier values of the column: dates and date-times "
                      "with and without a time-zone offset are mixed")
        return DateProblem(self.names[column], row, values[row].as_py(), reason)

    def result(self) -> list[str]:
        """The narrowest surviving type per column; a column with no values at all is text
        unless an earlier landing or its role as the date column says otherwise."""
        kinds = []
        for allowed, seen in zip(self.candidates, self.seen, strict=True):
            if not seen and allowed == set(PREFERENCE):
                kinds.append("string")
            else:
                kinds.append(next(k for k in PREFERENCE if k in allowed))
        return kinds
