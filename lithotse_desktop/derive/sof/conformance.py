"""Run the SQL-on-FHIR v2 conformance suite against the compiler on DuckDB or Spark and write the standard report.

Rows are compared as the reference implementation does: as a multiset (order-insensitive), each row an
object keyed by column name; numbers compare by value so 5 and 5.0 match.

On Spark every statement costs a round trip of about a second, so the views of one test file run as
one statement: a UNION ALL of the views, each row tagged with its test and carried as JSON text. Only
when that statement fails (a view raising its own error, say) do the file's views run one by one, so
each test still gets its own result.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from ...progress import Progress
from .compile import compile_view_columns
from .dialect import SparkDialect
from .errors import ViewError
from .run import run_view, run_view_spark

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_TABLE = "__sof_conformance_resources"

Result = tuple[bool, str | None]


def _canonical(value: object) -> object:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return ("number", round(float(value), 9))
    if isinstance(value, (list, tuple)):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _canonical(v)) for k, v in value.items()))
    return str(value)


def _row_key(row: dict) -> tuple:
    return tuple(sorted((k, _canonical(v)) for k, v in row.items()))


def _texts(resources: list[dict]) -> pa.Table:
    return pa.table({"resource": pa.array([json.dumps(r) for r in resources], pa.string())})


def _load(con: duckdb.DuckDBPyConnection, resources: list[dict]) -> None:
    con.register("__sof_arrow", _texts(resources))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_TABLE} AS SELECT CAST(resource AS JSON) AS resource FROM __sof_arrow")
    con.unregister("__sof_arrow")


def _check(test: dict, columns: list[str], rows: list[dict]) -> Result:
    """Compare a view's output with the test's expectation."""
    if test.get("expectError"):
        return False, "expected an error, but the view ran"
    if "expectColumns" in test and columns != test["expectColumns"]:
        return False, f"expected columns {test['expectColumns']}, got {columns}"
    if "expectCount" in test:
        if len(rows) != test["expectCount"]:
            return False, f"expected {test['expectCount']} rows, got {len(rows)}"
        return True, None
    want = Counter(_row_key(r) for r in test.get("expect", []))
    got = Counter(_row_key(r) for r in rows)
    if want != got:
        missing = list((want - got).elements())[:3]
        extra = list((got - want).elements())[:3]
        return False, f"rows differ: missing {missing}, unexpected {extra}"
    return True, None


def _failed(test: dict, exc: ViewError) -> Result:
    return (True, None) if test.get("expectError") else (False, str(exc))


def run_test(con: duckdb.DuckDBPyConnection, test: dict) -> Result:
    """Run one test case against the loaded resources; returns (passed, reason when it failed)."""
    try:
        table = run_view(con, test["view"], _TABLE)
    except ViewError as exc:
        return _failed(test, exc)
    return _check(test, table.column_names, table.to_pylist())


def run_tests_spark(session: SparkSession, resources: list[dict], tests: list[dict]) -> list[Result]:
    """Run one test file's cases on Spark: load its resources as a temp view of JSON text, run all views
    in one statement (one by one only if that fails), and compare as run_test does."""
    from pyspark.errors import PySparkException

    session.createDataFrame(_texts(resources)).createOrReplaceTempView(_TABLE)
    results: list[Result | None] = [None] * len(tests)
    compiled: dict[int, tuple[str, list[object] | dict[str, object], list[str]]] = {}
    for k, test in enumerate(tests):
        try:
            sql, params, names = compile_view_columns(test["view"], _TABLE, dialect="spark", param_prefix=f"t{k}_")
        except ViewError as exc:
            results[k] = _failed(test, exc)
            continue
        compiled[k] = (sql, params, names)
    if compiled:
        spark = SparkDialect()
        selects: list[str] = []
        args: dict[str, object] = {}
        for k, (sql, params, names) in compiled.items():
            row = spark.struct([(n, spark.ident(n)) for n in names])
            selects.append(f"SELECT {k} AS test, to_json({row}) AS row FROM ({sql}) AS __view{k}")
            args.update(params if isinstance(params, dict) else {})
        try:
            table = session.sql(" UNION ALL ".join(selects), args=args).toArrow()
        except PySparkException:
            table = None
        if table is not None:
            rows: dict[int, list[dict]] = {k: [] for k in compiled}
            for test_number, text in zip(table.column("test").to_pylist(), table.column("row").to_pylist(),
                                         strict=True):
                values = json.loads(text)
                # to_json leaves out NULL fields; the view's columns say which ones there are.
                rows[test_number].append({n: values.get(n) for n in compiled[test_number][2]})
            for k, (_, _, names) in compiled.items():
                results[k] = _check(tests[k], names, rows[k])
        else:
            for k in compiled:
                try:
                    out = run_view_spark(session, tests[k]["view"], _TABLE)
                except ViewError as exc:
                    results[k] = _failed(tests[k], exc)
                    continue
                results[k] = _check(tests[k], out.column_names, out.to_pylist())
    return [r for r in results if r is not None]


def run_suite(suite_dir: Path, report_path: Path, progress: Progress | None = None, *, engine: str = "duckdb",
              session: SparkSession | None = None) -> tuple[int, int]:
    """Run every *.json test file in `suite_dir` (schema files excluded), write the report, return (passed, failed).

    `engine` "spark" runs the views on `session` (a SparkSession, e.g. Spark Connect) over a temp view of
    each file's resources as JSON text; the report then holds Spark's own results.
    """
    if engine not in ("duckdb", "spark"):
        raise ValueError(f"unknown engine {engine!r} (duckdb or spark)")
    if engine == "spark" and session is None:
        raise ValueError("engine 'spark' needs a SparkSession")
    files = sorted(p for p in Path(suite_dir).glob("*.json") if not p.name.endswith(".schema.json"))
    suites = [(p, json.loads(p.read_text(encoding="utf-8"))) for p in files]
    total = sum(len(s.get("tests", [])) for _, s in suites)
    report: dict[str, dict] = {}
    passed = failed = done = 0
    con = duckdb.connect() if engine == "duckdb" else None
    try:
        for path, suite in suites:
            tests = suite.get("tests", [])
            if con is not None:
                _load(con, suite.get("resources", []))
                outcomes = [run_test(con, test) for test in tests]
            elif session is not None:
                outcomes = run_tests_spark(session, suite.get("resources", []), tests)
            results = []
            for test, (ok, reason) in zip(tests, outcomes, strict=True):
                result: dict[str, object] = {"passed": ok}
                if reason:
                    result["error"] = reason
                results.append({"name": test.get("title", ""), "result": result})
                passed += ok
                failed += not ok
                done += 1
                if progress is not None:
                    progress.update(f"{path.name}: {test.get('title', '')}", done=done, total=total)
            report[path.name] = {"tests": results}
    finally:
        if con is not None:
            con.close()
        elif session is not None:
            session.catalog.dropTempView(_TABLE)
    report_path = Path(report_path)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return passed, failed
