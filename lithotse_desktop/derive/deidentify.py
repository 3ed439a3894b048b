"""De-identification profiles: how a row-level derivative becomes fit to publish.

``"deidentify": "safe-harbor"`` applies HIPAA's Safe Harbor method (45 CFR 164.514(b)(2)) to
each column by its role (:mod:`.identifiers`): names, street addresses, cities, counties,
geocodes, telephone and fax numbers, email addresses, URLs, IP addresses and every kind of
identifying number are removed; dates keep their year only (a value that does not read as a date,
such as digits computed in another order, is removed); birth years that show an age over
89 are grouped into one (the earliest year shown stands for itself and every year before); ages
over 89 become 90 ("90 or older"); ZIP codes keep their first three digits, or ``000`` where
those three digits cover 20,000 people or fewer (:data:`RESTRICTED_ZIP3`); people's and
records' keys stay as HMAC pseudonyms, as everywhere else. Free text and unclassified columns
are refused until the spec says what they hold.

``"deidentify": "limited"`` makes a limited data set (45 CFR 164.514(e)), for use under a data
use agreement: dates, cities, states, five-digit ZIP codes and ages are kept; the direct
identifiers are removed; keys are pseudonyms.

The rules are data: each role's action per profile is in :data:`.identifiers.ROLES`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from decimal import Decimal

import pyarrow as pa

from ..deferred import pyarrow_compute as pc
from .identifiers import ROLES, Role
from .spec import SpecError

PROFILES = ("safe-harbor", "limited")

RESTRICTED_ZIP3 = frozenset({"036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830",
                             "831", "878", "879", "884", "890", "893"})
"""Three-digit ZIP areas of 20,000 people or fewer (2000 Census), as HHS lists them (67 FR 53182,
53233-53234; HHS OCR de-identification guidance, 2012): Safe Harbor publishes them as ``000``."""

OLDEST_SHOWN_AGE = 90
"""Safe Harbor groups every age over 89 into one category, shown as 90 (meaning 90 or older)."""


COMPUTED_RULE = "de-identification generalises an identifier as it is held, not a value computed from it"
SHAPED = frozenset({"year", "birth_year", "age90", "zip3"})
"""Actions that cut a value down by its form (a date to its year, a ZIP code to three digits): a
value computed from the identifier can take any form (``2000 + birth month`` reads as a year,
``0 - age`` is no age over 89, the last three digits of a ZIP code read as its first three)."""


def actions(profile: str, roles: dict[str, str | None], types: dict[str, pa.DataType],
            where: str = "columns", computed: Mapping[str, Collection[str]] | None = None) -> dict[str, str]:
    """Each output column's action under ``profile``; refuses unclassified and free-text columns,
    and ``computed`` columns (values computed from their inputs, not an input's own; with the
    roles they read) that read anything the profile cuts down by its form (:data:`SHAPED`),
    whatever role wins (``age + 0 * window_count`` is a count, and still an age)."""
    computed = computed or {}
    unclassified = [c for c, r in roles.items() if r is None]
    if unclassified:
        listed = ", ".join(repr(c) for c in unclassified)
        example = ", ".join(f'"{c}": "<role>"' for c in unclassified[:3])
        raise SpecError(where, f"unclassified column(s) {listed}: the {profile} profile publishes a column only "
                               f"once it knows what it holds; say so with \"columns\": {{{example}}} "
                               f"(roles: {', '.join(ROLES)}); rule: de-identification needs every column "
                               "classified")
    out: dict[str, str] = {}
    for column, name in roles.items():
        assert name is not None
        role = ROLES[name]
        action = _action(role, profile)
        if action == "refuse":
            raise SpecError(where, f"column {column!r} is {role.label}; the {profile} profile does not publish "
                                   "free text (it may hold names or numbers): leave it out, or, once checked, "
                                   f"declare it with \"columns\": {{\"{column}\": \"none\"}}")
        shaped = [ROLES[r] for r in (name, *sorted(computed.get(column, ()))) if _action(ROLES[r], profile) in SHAPED]
        if column in computed and shaped and action != "remove":
            read = shaped[0]
            raise SpecError(where, f"column {column!r} is computed from {read.label}; the {profile} profile cuts "
                                   f"{read.label} down only as the input holds it ({_action(read, profile)}): "
                                   "publish the input column or element itself and let the profile cut it; "
                                   f"rule: {COMPUTED_RULE}")
        typ = types.get(column)
        if typ is not None and pa.types.is_list(typ) and action not in ("keep", "remove", "pseudonymize"):
            raise SpecError(where, f"column {column!r} holds a list of {role.label}s, which the {profile} profile "
                                   "cannot generalise item by item; pick one item (first()) or leave it out")
        if typ is not None and action in _GENERALISABLE and not _GENERALISABLE[action](typ):
            raise SpecError(where, f"column {column!r} is {role.label}, held as {typ}, which the {profile} profile "
                                   f"cannot cut down ({action}); rule: de-identification publishes only what it "
                                   "can generalise — leave it out, or give it as a date or text")
        out[column] = action
    return out


def _action(role: Role, profile: str) -> str:
    return role.safe_harbor if profile == "safe-harbor" else role.limited


def apply(table: pa.Table, plan: dict[str, str], *, reference_year: int,
          pseudonymize: Callable[[pa.Table, list[str]], pa.Table]) -> tuple[pa.Table, dict]:
    """The table with every column treated by its action, and what was done (for the version)."""
    report: dict[str, list[str]] = {"removed": [], "generalised": [], "pseudonymized": []}
    keys = [c for c, a in plan.items() if a == "pseudonymize" and c in table.column_names]
    if keys:
        table = pseudonymize(table, keys)
        report["pseudonymized"] = keys
    for column, action in plan.items():
        if column not in table.column_names or action in ("keep", "pseudonymize"):
            continue
        if action == "remove":
            table = table.drop_columns([column])
            report["removed"].append(column)
            continue
        idx = table.schema.get_field_index(column)
        table = table.set_column(idx, column, _GENERALISE[action](table.column(idx), reference_year))
        report["generalised"].append(f"{column}: {action}")
    return table, report


def _textual(typ: pa.DataType) -> bool:
    return pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_integer(typ)


_GENERALISABLE: dict[str, Callable[[pa.DataType], bool]] = {
    "year": lambda t: pa.types.is_date(t) or pa.types.is_timestamp(t) or _textual(t),
    "birth_year": lambda t: pa.types.is_date(t) or pa.types.is_timestamp(t) or _textual(t),
    "zip3": _textual, "zip5": _textual,
    "age90": lambda t: _textual(t) or pa.types.is_floating(t) or pa.types.is_decimal(t),
}
"""The types each generalising action can cut down; a column of another type is refused."""

DATE_TEXT = (r"^(?P<y>1[89][0-9]{2}|2[01][0-9]{2})(?:[-/.]?(?:0[1-9]|1[0-2])(?:[-/.]?(?:0[1-9]|[12][0-9]|3[01])"
             r"(?:[T ]?[0-9].*)?)?)?$")
"""A date written as text or digits (``1965``, ``1965-08``, ``1965-08-01``, ``19650801``, an HL7
time stamp): its year is kept. Anything else (``08011965``, an epoch) is removed, as its first
four digits are not a year."""


def _years(column: pa.ChunkedArray) -> pa.Array:
    typ = column.type
    if pa.types.is_date(typ) or pa.types.is_timestamp(typ):
        return pc.cast(pc.year(column), pa.int32())
    text = pc.utf8_trim_whitespace(pc.cast(column, pa.string()))
    found = pc.extract_regex(text, DATE_TEXT)
    return pc.cast(pc.struct_field(found, [0]), pa.int32())


def _year(column: pa.ChunkedArray, reference_year: int) -> pa.Array:
    return _years(column)


def _birth_year(column: pa.ChunkedArray, reference_year: int) -> pa.Array:
    """Years of birth; those of people who may be over 89 are grouped into the earliest year shown.
    Other dates are cut the same way: a date column nothing names (``born``, ``PAT_BIRTH_DATE``) may
    be a birth date (pass 36: 39 birth years of people over 89), and no date of care lies that far
    back."""
    years = _years(column)
    floor = reference_year - OLDEST_SHOWN_AGE
    return pc.if_else(pc.less(years, floor), pa.scalar(floor, pa.int32()), years)


def _age90(column: pa.ChunkedArray, reference_year: int) -> pa.Array:
    typ = column.type
    if not (pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ)):
        column = pc.cast(pc.struct_field(pc.extract_regex(pc.cast(column, pa.string()), r"^\s*(?P<a>[0-9]+)"),
                                         [0]), pa.int32())
    # a decimal's own precision may be too small for an int64 cast (decimal(4, 1) holds 90.0 fine)
    cap = (pa.scalar(Decimal(OLDEST_SHOWN_AGE)) if pa.types.is_decimal(column.type)
           else pa.scalar(OLDEST_SHOWN_AGE)).cast(column.type)
    return pc.if_else(pc.greater(column, cap), cap, column)


def _zip_digits(column: pa.ChunkedArray) -> list[str | None]:
    typ = column.type
    values = column.to_pylist()
    if pa.types.is_integer(typ):
        return [None if v is None else f"{v:05d}" for v in values]
    out: list[str | None] = []
    for value in values:
        digits = re.sub(r"[\s-]", "", str(value)) if value is not None else ""
        out.append(digits if re.fullmatch(r"[0-9]{5}([0-9]{4})?", digits) else None)
    return out


def _zip3(column: pa.ChunkedArray, reference_year: int) -> pa.Array:
    """The first three digits of a US ZIP code, ``000`` for the sparsely populated areas; a value
    that is not a five- or nine-digit ZIP code is removed."""
    out: list[str | None] = []
    for digits in _zip_digits(column):
        if digits is None:
            out.append(None)
        else:
            out.append("000" if digits[:3] in RESTRICTED_ZIP3 else digits[:3])
    return pa.array(out, pa.string())


def _zip5(column: pa.ChunkedArray, reference_year: int) -> pa.Array:
    return pa.array([None if d is None else d[:5] for d in _zip_digits(column)], pa.string())


_GENERALISE: dict[str, Callable[[pa.ChunkedArray, int], pa.Array]] = {
    "year": _year, "birth_year": _birth_year, "age90": _age90, "zip3": _zip3, "zip5": _zip5}
