"""Derivative specs: JSON documents that the desktop form, the CLI and a file all produce.

Three kinds share ``name``, ``kind`` and ``input`` (or ``inputs`` for ``sql``):

* ``aggregate`` – date field, range, filters, group-by dimensions (plain columns, age bands,
  codes picked from a CodeableConcept), time grain, measures, suppression, optional join;
* ``view`` – an SQL-on-FHIR v2 ViewDefinition flattening one resource type;
* ``sql`` – one read-only SELECT over named inputs (DuckDB's SQL, or Spark SQL with
  ``"engine": "spark"``).

Every kind may name the ``engine`` that builds it (``duckdb``, ``spark``, or a plugin's; see
:mod:`.engines`).

Every kind may carry the privacy keys of :mod:`.disclosure` (``deidentify``, ``columns``,
``count_column``, ``people_column``).

Validation here is structural (names, types, allowed values); checks that need the input's
schema happen in :mod:`lithotse_desktop.derive.compile`, still before any build starts.

Column names are whatever text the input's header holds (``LOS (days)``, ``% Readmit``,
``Ward/Bed``, quotes, SQL words): here a column name only has to be non-empty text, and the
compiler checks that it is one of the input's columns and always quotes it. Output names
(``as``) are chosen by the spec's author and stay plain identifiers.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from typing import Any

from ..dates import parse_date
from ..errors import ConfigError

KINDS = ("aggregate", "view", "sql")
GRAINS = ("day", "week", "month", "quarter", "year", "none")
MEASURES = ("count", "count_distinct", "sum", "mean", "min", "max", "median", "percentile")
FILTER_OPS = ("=", "!=", "<", "<=", ">", ">=", "in", "not in", "between", "is null",
              "is not null", "contains")
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
# Output columns an aggregate adds itself: the period, the suppression flag, the cell count.
RESERVED_OUTPUTS = ("period", "suppressed", "__n", "__people")
HIDDEN_LEFT_OUT = "left out"
"""A version's ``privacy.hidden`` when its suppressed cells are not rows of its table (sql cells:
:func:`.disclosure.suppress_cells`); absent, suppressed cells are rows with the ``suppressed`` flag
(:data:`HIDDEN_FLAGGED`)."""
HIDDEN_FLAGGED = "flagged"


class SpecError(ConfigError):
    """A spec that cannot be built; the message starts with the offending field's path."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(f"{path}: {reason}")


def _req(obj: dict, key: str, path: str) -> Any:
    if key not in obj:
        raise SpecError(f"{path}.{key}" if path else key, "is required")
    return obj[key]


def check_column(value: Any, path: str) -> str:
    """A column name: any non-empty text (whether the input has it is the compiler's check)."""
    if not isinstance(value, str):
        raise SpecError(path, f"{value!r} is not a column name (text)")
    if not value:
        raise SpecError(path, "is empty: name a column")
    return value


def check_alias(value: Any, path: str) -> str:
    if not isinstance(value, str) or not IDENT.match(value):
        raise SpecError(path, f"{value!r} is not a valid output name (letters, digits, _)")
    return value


def check_input(obj: Any, path: str) -> dict:
    if not isinstance(obj, dict):
        raise SpecError(path, "must be an object with source+stream or derivative")
    if "derivative" in obj:
        if set(obj) - {"derivative"}:
            raise SpecError(path, "a derivative input takes only 'derivative'")
        if not isinstance(obj["derivative"], str) or not NAME.match(obj["derivative"]):
            raise SpecError(f"{path}.derivative", f"{obj['derivative']!r} is not a derivative name")
        return obj
    for key in ("source", "stream"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise SpecError(f"{path}.{key}", "is required (text)")
    if set(obj) - {"source", "stream"}:
        raise SpecError(path, f"unknown keys {sorted(set(obj) - {'source', 'stream'})}")
    return obj


def _check_filter(f: Any, path: str) -> None:
    if not isinstance(f, dict):
        raise SpecError(path, "must be an object {column, op, value}")
    check_column(_req(f, "column", path), f"{path}.column")
    op = _req(f, "op", path)
    if op not in FILTER_OPS:
        raise SpecError(f"{path}.op", f"{op!r} is not one of {', '.join(FILTER_OPS)}")
    value = f.get("value")
    if op in ("is null", "is not null"):
        return
    if "value" not in f:
        raise SpecError(f"{path}.value", f"is required for {op!r}")
    if op in ("in", "not in"):
        if not isinstance(value, list) or not value:
            raise SpecError(f"{path}.value", f"{op!r} needs a non-empty list")
    elif op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise SpecError(f"{path}.value", "'between' needs a list of two values")
    elif op == "contains":
        if not isinstance(value, str):
            raise SpecError(f"{path}.value", "'contains' needs text")
    if isinstance(value, list):
        items = value
    else:
        items = [value]
    for item in items:
        if not isinstance(item, (str, int, float, bool)) or item is None:
            raise SpecError(f"{path}.value", f"{item!r} is not a plain value")


def _check_dimension(d: Any, path: str) -> None:
    if isinstance(d, str):
        check_column(d, path)
        return
    if not isinstance(d, dict):
        raise SpecError(path, "must be a column name or an object")
    check_alias(_req(d, "as", path), f"{path}.as")
    kinds = [k for k in ("column", "age_band", "code") if k in d]
    if len(kinds) != 1:
        raise SpecError(path, "needs exactly one of column, age_band, code")
    kind = kinds[0]
    if kind == "column":
        check_column(d["column"], f"{path}.column")
    elif kind == "age_band":
        band = d["age_band"]
        if not isinstance(band, dict):
            raise SpecError(f"{path}.age_band", "must be {birth_date, bands}")
        check_column(_req(band, "birth_date", f"{path}.age_band"), f"{path}.age_band.birth_date")
        bands = band.get("bands", [0, 18, 45, 65, 85])
        if (not isinstance(bands, list) or not bands or
                not all(isinstance(b, int) and b >= 0 for b in bands) or bands != sorted(set(bands))):
            raise SpecError(f"{path}.age_band.bands", "must be increasing whole numbers of years")
    else:
        code = d["code"]
        if not isinstance(code, dict):
            raise SpecError(f"{path}.code", "must be {column, system}")
        check_column(_req(code, "column", f"{path}.code"), f"{path}.code.column")
        if not isinstance(_req(code, "system", f"{path}.code"), str):
            raise SpecError(f"{path}.code.system", "must be text (a code system URI)")


def _check_measure(m: Any, path: str) -> None:
    if not isinstance(m, dict):
        raise SpecError(path, "must be an object {fn, column, as}")
    fn = _req(m, "fn", path)
    if fn not in MEASURES:
        raise SpecError(f"{path}.fn", f"{fn!r} is not one of {', '.join(MEASURES)}")
    check_alias(_req(m, "as", path), f"{path}.as")
    if fn != "count" or "column" in m:
        check_column(_req(m, "column", path), f"{path}.column")
    if fn == "percentile":
        p = _req(m, "p", path)
        if not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise SpecError(f"{path}.p", "must be a number between 0 and 1")


SPEC_FIELDS = frozenset({"name", "kind", "description", "engine", "suppress_below", "pseudonymize", "deidentify",
                         "columns", "count_column", "people_column", "inputs", "sql", "input", "view", "from", "to",
                         "grain", "date_field", "filters", "group_by", "measures", "join"})
"""The fields a spec's keys are checked against: a key that is not one but near one (``filter``)
is a misspelling, and a table built without the filter it meant would publish other cells."""


def _check_spelling(spec: dict) -> None:
    for key in spec:
        if key in SPEC_FIELDS or not isinstance(key, str):
            continue
        near = difflib.get_close_matches(key, SPEC_FIELDS, n=1, cutoff=0.8)
        if near:
            raise SpecError(key, f"is not a field of a spec; did you mean {near[0]!r}?")


def validate_spec(spec: Any) -> dict:
    """Structural checks; returns the spec unchanged or raises SpecError naming the field."""
    if not isinstance(spec, dict):
        raise SpecError("spec", "must be a JSON object")
    _check_spelling(spec)
    name = _req(spec, "name", "")
    if not isinstance(name, str) or not NAME.match(name):
        raise SpecError("name", f"{name!r}: use a letter, then letters, digits or _ (63 at most)")
    kind = _req(spec, "kind", "")
    if kind not in KINDS:
        raise SpecError("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    if "engine" in spec:
        engine = spec["engine"]
        if not isinstance(engine, str) or not NAME.match(engine):
            raise SpecError("engine", f"{engine!r}: name an engine, such as \"duckdb\" or \"spark\"")
    if "suppress_below" in spec and spec["suppress_below"] is not None:
        k = spec["suppress_below"]
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise SpecError("suppress_below", "must be a whole number ≥ 0")
    if "pseudonymize" in spec:
        cols = spec["pseudonymize"]
        if not isinstance(cols, list):
            raise SpecError("pseudonymize", "must be a list of output columns")
        for i, c in enumerate(cols):
            check_column(c, f"pseudonymize[{i}]")
    from .disclosure import validate_privacy_keys  # imported here: disclosure builds on this module

    validate_privacy_keys(spec)
    if kind == "sql":
        inputs = _req(spec, "inputs", "")
        if not isinstance(inputs, dict) or not inputs:
            raise SpecError("inputs", "must map names to inputs")
        for alias, item in inputs.items():
            check_alias(alias, f"inputs.{alias}")
            check_input(item, f"inputs.{alias}")
        if not isinstance(_req(spec, "sql", ""), str):
            raise SpecError("sql", "must be text")
        return spec
    check_input(_req(spec, "input", ""), "input")
    if kind == "view":
        if not isinstance(_req(spec, "view", ""), dict):
            raise SpecError("view", "must be a ViewDefinition object")
        return spec
    for key in ("from", "to"):
        if spec.get(key) is not None:
            try:
                parse_date(spec[key], key)
            except ConfigError as exc:
                raise SpecError(key, str(exc).split(": ", 1)[-1]) from None
    grain = spec.get("grain", "none")
    if grain not in GRAINS:
        raise SpecError("grain", f"{grain!r} is not one of {', '.join(GRAINS)}")
    if grain != "none" or spec.get("from") or spec.get("to"):
        check_column(_req(spec, "date_field", ""), "date_field")
    elif "date_field" in spec:
        check_column(spec["date_field"], "date_field")
    for i, f in enumerate(spec.get("filters", [])):
        _check_filter(f, f"filters[{i}]")
    for i, d in enumerate(spec.get("group_by", [])):
        _check_dimension(d, f"group_by[{i}]")
    measures = _req(spec, "measures", "")
    if not isinstance(measures, list) or not measures:
        raise SpecError("measures", "needs at least one measure")
    for i, m in enumerate(measures):
        _check_measure(m, f"measures[{i}]")
    outputs = [dimension_alias(d) for d in spec.get("group_by", [])] + [m["as"] for m in measures]
    folded = [o.casefold() for o in outputs]
    dupes = sorted({o for o in outputs if folded.count(o.casefold()) > 1})
    if dupes:
        raise SpecError("measures", f"output names used twice (case aside): {', '.join(dupes)}")
    reserved = f"is the name of a column aggregates add themselves ({', '.join(RESERVED_OUTPUTS)})"
    for i, d in enumerate(spec.get("group_by", [])):
        alias = dimension_alias(d)
        if alias.casefold() in RESERVED_OUTPUTS:
            column = json.dumps(alias if isinstance(d, str) else d.get("column", alias), ensure_ascii=False)
            raise SpecError(f"group_by[{i}]", f"{alias!r} {reserved}; give the dimension another name: "
                            f'{{"as": "…", "column": {column}}}')
    for i, m in enumerate(measures):
        if m["as"].casefold() in RESERVED_OUTPUTS:
            raise SpecError(f"measures[{i}].as", f"{m['as']!r} {reserved}; choose another name")
    if "join" in spec:
        join = spec["join"]
        if not isinstance(join, dict):
            raise SpecError("join", "must be {input, on, columns}")
        check_input(_req(join, "input", "join"), "join.input")
        on = _req(join, "on", "join")
        if not isinstance(on, dict):
            raise SpecError("join.on", "must be {left, right}")
        check_column(_req(on, "left", "join.on"), "join.on.left")
        check_column(_req(on, "right", "join.on"), "join.on.right")
        cols = _req(join, "columns", "join")
        if not isinstance(cols, list) or not cols:
            raise SpecError("join.columns", "must list the columns to bring in")
        for i, c in enumerate(cols):
            check_column(c, f"join.columns[{i}]")
    return spec


def dimension_alias(d: Any) -> str:
    if isinstance(d, str):
        return d
    return d["as"]


def spec_inputs(spec: dict) -> dict[str, dict]:
    """Every input a spec reads, by the alias it has in SQL."""
    if spec["kind"] == "sql":
        return dict(spec["inputs"])
    out = {"input": spec["input"]}
    if "join" in spec:
        out["joined"] = spec["join"]["input"]
    return out


def spec_hash(spec: dict) -> str:
    """The spec's identity in version ids. Its ``engine`` is left out (except for ``sql``, whose
    text is in that engine's dialect): every engine computes the same cells, so moving a
    derivative to another engine neither rebuilds it nor changes its versions."""
    if spec.get("kind") != "sql":
        spec = {k: v for k, v in spec.items() if k != "engine"}
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()

