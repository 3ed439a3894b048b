"""``view``: a SQL-on-FHIR ViewDefinition over a FHIR stream's resources."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ..compile import DUCKDB, Dialect
from ..sof import compile_view, validate_view
from ..sof.compile import HoistedView, compile_view_hoisted
from ..spec import SpecError
from .common import Query

RESOURCES = "(SELECT CAST(resource AS JSON) AS resource FROM \"input\")"
# a FHIR stream's resourceType column is read from each resource when it is imported
TYPED_RESOURCES = "(SELECT CAST(resource AS JSON) AS resource, \"resourceType\" FROM \"input\")"


def check(spec: dict) -> None:
    try:
        validate_view(spec["view"])
    except Exception as exc:
        raise SpecError("view", str(exc)) from None


def has_type_column(schema: pa.Schema) -> bool:
    index = schema.get_field_index("resourceType")
    return index >= 0 and pa.types.is_string(schema.field(index).type)


def rows_query(spec: dict, schema: pa.Schema, relation: str, row_id: str) -> tuple[str, list[Any]]:
    """The view over ``relation`` (landed records, each with its ``row_id``), every row keeping the
    ``row_id`` of the record it came from: a build runs it over each batch as the stream is read
    and keeps the rows of the newest versions afterwards (see :mod:`..rowstream`)."""
    typed = has_type_column(schema)
    kept = ["resource", *(['"resourceType"'] if typed else []), f'"{row_id}"']
    columns = ", ".join(kept)
    try:
        return compile_view(spec["view"], f"(SELECT {columns} FROM {relation})",
                            type_column="resourceType" if typed else None, carry=(row_id,))
    except Exception as exc:
        raise SpecError("view", str(exc)) from None


def hoisted_rows(spec: dict, row_id: str) -> HoistedView | None:
    """The view over values read from each resource beforehand, in the parse that reads its key and
    version, every row keeping the ``row_id`` of its record; None when it needs whole resources
    (it is then run over their text with :func:`rows_query`)."""
    try:
        return compile_view_hoisted(spec["view"], type_column="resourceType", carry=(row_id,))
    except Exception as exc:
        raise SpecError("view", str(exc)) from None


def query(spec: dict, schemas: dict[str, pa.Schema], *, timezone: str, threshold: int,
          periods: list[Any] | None = None, person_key: list[str] | None = None,
          dialect: Dialect = DUCKDB) -> Query:
    if "resource" not in schemas["input"].names:
        raise SpecError("input", "a view needs a FHIR stream (a 'resource' column)")
    if dialect.name != "duckdb":
        return _other_dialect(spec, schemas, dialect)
    try:
        if has_type_column(schemas["input"]):
            sql, params = compile_view(spec["view"], TYPED_RESOURCES, type_column="resourceType")
        else:
            sql, params = compile_view(spec["view"], RESOURCES)
    except Exception as exc:
        raise SpecError("view", str(exc)) from None
    return Query(sql, params, "view")


def _other_dialect(spec: dict, schemas: dict[str, pa.Schema], dialect: Dialect) -> Query:
    """The view in another engine's SQL (the SQL-on-FHIR compiler's Spark dialect), its named
    parameters ``:p1..:pn`` handed over in order, as the engines bind them."""
    if dialect.name != "spark":
        raise SpecError("view", f"the SQL-on-FHIR compiler has no {dialect.name} dialect; "
                                f"build views with --engine duckdb or spark")
    typed = has_type_column(schemas["input"])
    columns = "resource, `resourceType`" if typed else "resource"
    relation = f"(SELECT {columns} FROM {dialect.quote('input')})"
    try:
        sql, named = compile_view(spec["view"], relation, dialect="spark",
                                  type_column="resourceType" if typed else None)
    except Exception as exc:
        raise SpecError("view", str(exc)) from None
    params = [named[f"p{i}"] for i in range(1, len(named) + 1)]
    return Query(sql, params, "view")
