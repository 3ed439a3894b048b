"""Run a compiled view on a DuckDB connection, turning engine errors into ViewError for callers."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from .compile import compile_view
from .errors import ViewError


def run_view(con: duckdb.DuckDBPyConnection, view: dict, source_relation: str) -> pa.Table:
    """Compile and execute `view` over `source_relation`; any failure is raised as ViewError."""
    sql, params = compile_view(view, source_relation)
    try:
        return con.sql(sql, params=params).to_arrow_table()
    except duckdb.Error as exc:
        name = view.get("name") or view.get("id") or view.get("resource")
        raise ViewError(f"view {name!r} failed in DuckDB: {exc}") from exc
