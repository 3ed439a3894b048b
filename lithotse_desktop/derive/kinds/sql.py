"""``sql``: one read-only SELECT over the named inputs, on a locked-down connection."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

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
    check_sql(spec["sql"])


def query(spec: dict, schemas: dict[str, pa.Schema], *, timezone: str, threshold: int,
          periods: list[Any] | None = None, person_key: list[str] | None = None) -> Query:
    return Query(f"SELECT * FROM ({check_sql(spec['sql'])})", [], "sql")
