"""``sql``: one read-only SELECT over the named inputs, on a locked-down connection.

The SQL is written in the dialect of the engine that builds it: DuckDB's (checked with DuckDB's
parser), or, for a spec with ``"engine": "spark"``, Spark SQL, which the Spark engine runs as a
subquery (so its parser refuses anything but one query).
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from ..compile import DUCKDB, Dialect
from ..spec import SpecError
from .common import Query


def check_sql(sql: str) -> str:
    """A single read-only SELECT, or a SpecError naming the ``sql`` field."""
    try:
        statements = duckdb.connect(":memory:").extract_statements(sql)
    except duckdb.Error as exc:
        raise SpecError("sql", f"does not parse: {exc}") from None
    if len(statements) != 1:
        raise SpecError("sql", f"must be exactly one statement, found {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise SpecError("sql", f"must be a SELECT, not {statements[0].type.name}")
    return sql.strip().rstrip(";")


def check(spec: dict) -> None:
    if spec.get("engine", "duckdb") == "duckdb":
        check_sql(spec["sql"])
    elif not spec["sql"].strip().rstrip(";").strip():
        raise SpecError("sql", "is empty")


def query(spec: dict, schemas: dict[str, pa.Schema], *, timezone: str, threshold: int,
          periods: list[Any] | None = None, person_key: list[str] | None = None,
          dialect: Dialect = DUCKDB) -> Query:
    if dialect.name == "duckdb":
        return Query(f"SELECT * FROM ({check_sql(spec['sql'])})", [], "sql")
    if spec.get("engine") != dialect.name:
        raise SpecError("sql", f"is written for {spec.get('engine', 'duckdb')}, so it cannot be run on "
                               f"{dialect.name}; set \"engine\": \"{dialect.name}\" with SQL in its dialect")
    return Query(f"SELECT * FROM ({spec['sql'].strip().rstrip(';')}) AS __q", [], "sql")
