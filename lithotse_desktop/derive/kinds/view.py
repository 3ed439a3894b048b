"""``view``: a SQL-on-FHIR ViewDefinition over a FHIR stream's resources."""

from __future__ import annotations

import inspect
from typing import Any

import pyarrow as pa

from ..compile import DUCKDB, Dialect
from ..sof import compile_view, validate_view
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


def _has_type_column(schema: pa.Schema) -> bool:
    index = schema.get_field_index("resourceType")
    return index >= 0 and pa.types.is_string(schema.field(index).type)


def query(spec: dict, schemas: dict[str, pa.Schema], *, timezone: str, threshold: int,
          periods: list[Any] | None = None, person_key: list[str] | None = None,
          dialect: Dialect = DUCKDB) -> Query:
    if "resource" not in schemas["input"].names:
        raise SpecError("input", "a view needs a FHIR stream (a 'resource' column)")
    if dialect.name != "duckdb":
        return _other_dialect(spec, schemas, dialect)
    try:
        if _has_type_column(schemas["input"]):
            sql, params = compile_view(spec["view"], TYPED_RESOURCES, type_column="resourceType")
        else:
            sql, params = compile_view(spec["view"], RESOURCES)
    except Exception as exc:
        raise SpecError("view", str(exc)) from None
    return Query(sql, params, "view")


def _other_dialect(spec: dict, schemas: dict[str, pa.Schema], dialect: Dialect) -> Query:
    """The view in another engine's SQL, where the SQL-on-FHIR compiler has that dialect."""
    if "dialect" not in inspect.signature(compile_view).parameters:
        raise SpecError("view", f"the SQL-on-FHIR compiler has no {dialect.name} dialect in this version; "
                                f"build views with --engine duckdb")
    relation = f"(SELECT resource FROM {dialect.quote('input')})"
    compile_in: Any = compile_view
    try:
        sql, params = compile_in(spec["view"], relation, dialect=dialect.name)
    except Exception as exc:
        raise SpecError("view", str(exc)) from None
    return Query(sql, params, "view")
