"""Cell formulas of the Excel add-in: the one place that writes them and the one that reads them.

The desktop app puts a formula on the clipboard with :func:`build_value_formula`; the add-in's
worksheet functions receive the same arguments Excel parsed from it, and :func:`dims_from_args`
turns the trailing ones into a dimension filter. :func:`parse_formula` reads formula text the
way Excel does for the literals these formulas contain, so tests (and tools) can go from the
copied text to the arguments a function is called with.

The public argument format is pairs::

    =LITHOTSE_VALUE(derivative, measure, from, to, dim, value, dim, value, …)
    =LITHOTSE_TABLE(derivative, from, to[, columns])

Dimension names are column names, any header text (``"Ward/Bed"``, ``"% Readmit"``); inside
Excel text a ``"`` is doubled. Workbooks written before pairs hold ``"dim=value"`` in one
argument; that still reads, by this rule: an argument where a dimension *name* is expected
(the first after ``to``, or the first after a complete pair) that contains ``=`` is a whole
``name=value`` filter, unless it is exactly the name of one of the derivative's dimensions
(a column whose header holds ``=``; only then are the dimensions looked up). A value may
contain ``=``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

VALUE_FUNCTION = "LITHOTSE_VALUE"
TABLE_FUNCTION = "LITHOTSE_TABLE"
# The Office.js add-in registers the same functions in a LITHOTSE namespace.
ALIASES = {"LITHOTSE.VALUE": VALUE_FUNCTION, "LITHOTSE.TABLE": TABLE_FUNCTION}
# How each add-in spells the functions: "xlwings" (LITHOTSE_VALUE, Windows) and "officejs"
# (LITHOTSE.VALUE, every Excel); the arguments are the same. The Office.js task pane has its own
# copy of the builder (addin/src/lithotse.js), tested to write the same text.
SPELLINGS = {"xlwings": (VALUE_FUNCTION, TABLE_FUNCTION), "officejs": ("LITHOTSE.VALUE", "LITHOTSE.TABLE")}


def _spelling(addin: str) -> tuple[str, str]:
    try:
        return SPELLINGS[addin]
    except KeyError:
        raise FormulaError(f"add-in {addin!r}: use {' or '.join(SPELLINGS)}") from None

Literal = str | int | float | bool | None


class FormulaError(ConfigError):
    """Formula text or worksheet-function arguments that cannot be read."""


@dataclass(frozen=True)
class Formula:
    """A parsed call: the function's canonical name and its literal arguments (``None`` = empty)."""

    function: str
    args: tuple[Literal, ...]


def _quote(value: Any) -> str:
    return '"' + ("" if value is None else str(value)).replace('"', '""') + '"'


def build_value_formula(derivative: str, measure: str, start: str | None = "", end: str | None = "",
                        dims: dict[str, Any] | None = None, *, addin: str = "xlwings") -> str:
    """``=LITHOTSE_VALUE(...)`` (``addin="officejs"``: ``=LITHOTSE.VALUE(...)``) for one number;
    every argument is Excel text, dimensions as pairs."""
    function = _spelling(addin)[0]
    args = [derivative, measure, start or "", end or ""]
    for name, value in (dims or {}).items():
        args += [name, value]
    return f"={function}({','.join(_quote(a) for a in args)})"


def build_table_formula(derivative: str, start: str | None = "", end: str | None = "",
                        columns: Iterable[str] | None = None, *, addin: str = "xlwings") -> str:
    """``=LITHOTSE_TABLE(...)`` (``addin="officejs"``: ``=LITHOTSE.TABLE(...)``) for a spilled
    table; ``columns`` become one comma-separated text."""
    function = _spelling(addin)[1]
    args = [derivative, start or "", end or ""]
    picked = [c for c in (columns or []) if c]
    if picked:
        args.append(",".join(picked))
    return f"={function}({','.join(_quote(a) for a in args)})"


_NAME = re.compile(r"\s*=?\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\(")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_BOOL = re.compile(r"(?i)(TRUE|FALSE)\b")


def parse_formula(text: str) -> Formula:
    """Read ``=NAME(arg, …)`` whose arguments are text in double quotes (``""`` inside is one
    quote), numbers, TRUE/FALSE or nothing. Cell references and expressions are refused: this
    reads the formulas Lithotse writes, it is not an Excel evaluator."""
    match = _NAME.match(text)
    if not match:
        raise FormulaError(f"{text!r}: not a function call such as ={VALUE_FUNCTION}(…)")
    name = match.group(1).upper()
    function = ALIASES.get(name, name)
    if function not in (VALUE_FUNCTION, TABLE_FUNCTION):
        raise FormulaError(f"{text!r}: {name} is not a Lithotse function "
                           f"({VALUE_FUNCTION} or {TABLE_FUNCTION})")
    pos = match.end()
    args: list[Literal] = []
    expect_arg = True
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            raise FormulaError(f"{text!r}: missing ')'")
        char = text[pos]
        if char in ",)":
            if expect_arg:
                args.append(None)
            pos += 1
            if char == ")":
                break
            expect_arg = True
            continue
        if not expect_arg:
            raise FormulaError(f"{text!r}, position {pos + 1}: expected ',' or ')'")
        value: Literal
        if char == '"':
            value, pos = _read_text(text, pos)
        elif number := _NUMBER.match(text, pos):
            raw = number.group(0)
            value = int(raw) if re.fullmatch(r"[+-]?\d+", raw) else float(raw)
            pos = number.end()
        elif boolean := _BOOL.match(text, pos):
            value = boolean.group(1).upper() == "TRUE"
            pos = boolean.end()
        else:
            raise FormulaError(f"{text!r}, argument {len(args) + 1}: only text in double quotes, "
                               "numbers, TRUE/FALSE or an empty argument can be read here")
        args.append(value)
        expect_arg = False
    if text[pos:].strip():
        raise FormulaError(f"{text!r}: unexpected text after ')': {text[pos:].strip()!r}")
    if args == [None]:
        args = []
    return Formula(function, tuple(args))


def _read_text(text: str, pos: int) -> tuple[str, int]:
    out, pos = [], pos + 1
    while pos < len(text):
        if text[pos] == '"':
            if text[pos + 1:pos + 2] == '"':
                out.append('"')
                pos += 2
                continue
            return "".join(out), pos + 1
        out.append(text[pos])
        pos += 1
    raise FormulaError(f"{text!r}: text argument without its closing '\"'")


def _flatten(items: Iterable[Any]) -> list[Any]:
    """Arguments in order, with Excel ranges (lists of rows) read row by row."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, (list, tuple)):
            out += _flatten(item)
        else:
            out.append(item)
    return out


def _text(value: Any) -> str:
    """A dimension value as the API compares it: whole numbers without '.0', dates as ISO days."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return (value.date() if value.time() == dt.time() else value).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value).strip()


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def dims_from_args(args: Iterable[Any],
                   dimensions: Callable[[], Collection[str]] | Collection[str] = ()) -> dict[str, str]:
    """The dimension filter from the arguments after ``to``: ``name, value`` pairs, or the older
    single ``"name=value"`` argument (see the module docstring for the rule). ``dimensions``
    are the derivative's dimension names, or a function giving them, called only for a name
    argument that holds ``=``."""
    known: Collection[str] | None = None

    def is_dimension(text: str) -> bool:
        nonlocal known
        if known is None:
            known = dimensions() if callable(dimensions) else dimensions
        return text in known

    items = _flatten(args)
    while items and _empty(items[-1]):
        items.pop()
    dims: dict[str, str] = {}
    pos = 0
    while pos < len(items):
        name = items[pos]
        if _empty(name):
            raise FormulaError(f"dimension argument {pos + 1} is empty: give dimensions as pairs, "
                               'e.g. "grp","b"')
        name_text = _text(name)
        if "=" in name_text and not is_dimension(name_text):
            key, _, value = name_text.partition("=")
            if not key.strip():
                raise FormulaError(f"{name_text!r}: no dimension name before '='")
            dims[key.strip()] = value.strip()
            pos += 1
            continue
        if pos + 1 >= len(items) or _empty(items[pos + 1]):
            raise FormulaError(f"dimension {name_text!r} has no value: give dimensions as pairs, "
                               f'e.g. "{name_text}","b"')
        dims[name_text] = _text(items[pos + 1])
        pos += 2
    return dims
