"""What the ViewDefinition compiler and its FHIRPath function table share: compiled values and types.

Representation of a compiled FHIRPath value (class `V`):
  "json"  one JSON item or NULL (empty); never a JSON array
  "multi" JSON where an array means "collection of its items" (what a member access yields, since
          FHIR JSON never nests arrays directly); NULL means empty
  "list"  a list of JSON items holding a collection (DuckDB JSON[], Spark ARRAY<VARIANT>; never NULL)
  "prim"  a typed SQL scalar (VARCHAR, BOOLEAN, BIGINT, DOUBLE); NULL means empty
  "plist" a list of typed SQL scalars
Types are written with DuckDB's names (VARCHAR, BIGINT[]); the dialect translates them for its engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MEMBER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESOURCE = re.compile(r"^[A-Z][A-Za-z0-9]*$")

NUMERIC = {"integer", "decimal", "positiveInt", "unsignedInt", "integer64"}
INTEGER = {"integer", "positiveInt", "unsignedInt", "integer64"}
SQL_TYPE = {
    "boolean": "BOOLEAN",
    "integer": "BIGINT",
    "positiveInt": "BIGINT",
    "unsignedInt": "BIGINT",
    "integer64": "BIGINT",
    "decimal": "DOUBLE",
}


def sql_type_of(fhir_type: str | None) -> str:
    return SQL_TYPE.get(fhir_type or "", "VARCHAR")


def category(fhir_type: str | None) -> str | None:
    """How a FHIR type compares: as a number, a boolean, a string, or (complex types) not at all."""
    if fhir_type is None:
        return None
    if fhir_type in NUMERIC:
        return "number"
    if fhir_type == "boolean":
        return "boolean"
    if fhir_type[:1].islower():
        return "string"
    return None


@dataclass(frozen=True)
class V:
    """A compiled FHIRPath value: SQL text, its runtime shape (see module doc) and a FHIR type hint."""

    sql: str
    kind: str
    ftype: str | None = None
    chain: tuple[str, tuple[str, ...]] | None = None
    # Cheap singleton shortcut (guard, value, exact): when the JSON `guard` is not an array, the single
    # item is `value`; `exact` means a NULL guard really is empty (else NULL may hide an array on the way).
    one: tuple[str, str, bool] | None = None
    # FHIR type of the items when the cardinality table knows it (a resource, datatype or backbone name).
    fhir: str | None = None
    # For a "json" value reached only through known 0..1 elements: (base SQL, member names) such that the
    # value is json_extract(base, '$.a.b'), so deeper steps and string reads go straight to the base.
    src: tuple[str, tuple[str, ...]] | None = None


@dataclass(frozen=True)
class Env:
    """Evaluation context: $this, the resource root, %rowIndex and whether $index is bound."""

    this: V
    root: V
    row_index: str
    index: str | None = None
