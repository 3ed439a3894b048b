"""Cell values as calamine returns them, sorted into column types and turned into Arrow.

Spreadsheets store every number as a double, so a column whose numbers are all whole
(and exactly representable) becomes int64, otherwise float64. Date cells arrive as
``date`` or ``datetime``; ISO date text typed into a date column counts as a date too,
since people often type dates as text. Anything else that mixes kinds becomes text,
written the way the spreadsheet shows it (``5`` rather than ``5.0``).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

ARROW_TYPES: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "date32": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "string": pa.string(),
}
DATE_KINDS = ("date32", "timestamp")
DATE_CLASSES = frozenset({"date", "datetime", "isodate", "isodatetime"})
_EXACT = 2 ** 53
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$")
# A previous landing's type, as the cell classes that produce it: seeding a new inference
# with them keeps a stream's column types from narrowing between landings.
SEED_CLASSES = {"bool": {"bool"}, "int64": {"int"}, "float64": {"real"}, "date32": {"date"},
                "timestamp": {"datetime"}, "string": {"text"}}
DATE_NAME_HINT = re.compile(
    r"date|time|start|stop|end|begin|birth|death|admit|discharge|onset|effective|issued|"
    r"recorded|period|when|drawn|collected|(^|[ _])(at|on|dt|day)$|^dob$", re.IGNORECASE)


def cell_class(value: Any) -> str | None:
    """What a cell holds: None when empty, else bool/int/real/date/datetime/isodate/isodatetime/text."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return "real"
        return "int" if float(value).is_integer() and abs(value) < _EXACT else "real"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, str):
        text = value.strip()
        try:
            if _ISO_DAY.match(text):
                dt.date.fromisoformat(text)
                return "isodate"
            if _ISO_TIME.match(text):
                dt.datetime.fromisoformat(text)
                return "isodatetime"
        except ValueError:
            return "text"
        return "text"
    return "text"


def kind_of(classes: set[str], is_date_column: bool) -> str:
    """The column type for the set of cell classes seen in it."""
    if not classes:
        return "date32" if is_date_column else "string"
    if classes <= {"bool"}:
        return "bool"
    if classes <= {"int"}:
        return "int64"
    if classes <= {"int", "real"}:
        return "float64"
    if classes <= {"date", "isodate"}:
        return "date32"
    if classes <= DATE_CLASSES:
        return "timestamp"
    return "string"


def starts_with_date(values: Iterable[Any]) -> bool:
    first = next((cell_class(v) for v in values if cell_class(v) is not None), None)
    return first in DATE_CLASSES


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT:
        return str(int(value))
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def not_a_date(value: Any) -> str:
    """Why a cell of the date column is refused, quoting it the way the sheet shows it."""
    if isinstance(value, str):
        return f"{value!r} is not a date"
    if cell_class(value) in ("int", "real"):
        return f"the number {_text(value)} is not a date; format these cells as dates"
    return f"{_text(value)} is not a date"


def convert_cell(kind: str, value: Any) -> Any:
    """A cell as a Python value of the column type; ValueError when it does not fit."""
    cls = cell_class(value)
    if cls is None:
        return None
    if kind == "string":
        return value if isinstance(value, str) else _text(value)
    if kind == "bool" and cls == "bool":
        return value
    if kind == "int64" and cls == "int":
        return int(value)
    if kind == "float64" and cls in ("int", "real"):
        return float(value)
    if kind == "date32":
        if cls == "date":
            return value
        if cls == "isodate":
            return dt.date.fromisoformat(value.strip())
    if kind == "timestamp":
        if cls == "datetime":
            return value.replace(tzinfo=None)
        if cls == "date":
            return dt.datetime(value.year, value.month, value.day)
        if cls in ("isodate", "isodatetime"):
            return dt.datetime.fromisoformat(value.strip())
    raise ValueError(f"{value!r} is not {describe(kind)}")


def describe(kind: str) -> str:
    return {"bool": "TRUE/FALSE", "int64": "a whole number", "float64": "a number",
            "date32": "a date", "timestamp": "a date or date-time", "string": "text"}[kind]


def to_array(kind: str, values: list[Any]) -> pa.Array:
    return pa.array(values, ARROW_TYPES[kind])
