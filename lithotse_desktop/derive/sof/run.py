"""Run a compiled view on an engine (DuckDB connection or Spark session), turning engine errors into ViewError."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from ...errors import without_values
from .compile import compile_view
from .errors import ViewError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def _view_name(view: dict) -> object:
    return view.get("name") or view.get("id") or view.get("resource")


def run_view(con: duckdb.DuckDBPyConnection, view: dict, source_relation: str) -> pa.Table:
    """Compile and execute `view` over `source_relation`; any failure is raised as ViewError."""
    sql, params = compile_view(view, source_relation)
    try:
        return con.sql(sql, params=params).to_arrow_table()
    except duckdb.Error as exc:
        raise ViewError(f"view {_view_name(view)!r} failed in DuckDB: {without_values(exc)}") from None


def run_view_spark(session: SparkSession, view: dict, source: str | DataFrame, *,
                   type_column: str | None = None) -> pa.Table:
    """Compile `view` to Spark SQL and run it on `session` (Spark Connect or classic) over `source`.

    `source` is a table or temp view name, or a DataFrame, with a string column `resource` holding each
    resource's JSON text. The flattened rows come back as one Arrow table; compile and engine errors
    (including the view's own runtime checks) are raised as ViewError naming the view.
    """
    from pyspark.errors import PySparkException

    temp = None
    if isinstance(source, str):
        relation = source
    else:
        relation = temp = f"__sof_source_{uuid.uuid4().hex}"
        source.createOrReplaceTempView(temp)
    try:
        sql, params = compile_view(view, relation, type_column=type_column, dialect="spark")
        try:
            return session.sql(sql, args=params).toArrow()
        except PySparkException as exc:
            raise ViewError(f"view {_view_name(view)!r} failed in Spark: {_spark_reason(exc)}") from exc
    finally:
        if temp is not None:
            session.catalog.dropTempView(temp)


def _spark_reason(exc: Exception) -> str:
    """Spark's message without the JVM stack trace and the plan it appends, on one line."""
    text = str(exc).split("JVM stacktrace:")[0]
    lines = []
    for line in text.strip().splitlines():
        if line.startswith(("'", "+-", ":-", "   ")):
            break
        lines.append(line.strip())
    reason = " ".join(x for x in lines if x)
    return (reason[:600] + " ...") if len(reason) > 600 else reason or type(exc).__name__
