"""Run the SQL-on-FHIR v2 conformance suite against the DuckDB compiler and write the standard report.

Rows are compared as the reference implementation does: as a multiset (order-insensitive), each row an
object keyed by column name; numbers compare by value so 5 and 5.0 match.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow as pa

from ...progress import Progress
from .errors import ViewError
from .run import run_view

_TABLE = "__sof_conformance_resources"


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


def _load(con: duckdb.DuckDBPyConnection, resources: list[dict]) -> None:
    texts = pa.table({"resource": pa.array([json.dumps(r) for r in resources], pa.string())})
    con.register("__sof_arrow", texts)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_TABLE} AS SELECT CAST(resource AS JSON) AS resource FROM __sof_arrow")
    con.unregister("__sof_arrow")


def run_test(con: duckdb.DuckDBPyConnection, test: dict) -> tuple[bool, str | None]:
    """Run one test case against the loaded resources; returns (passed, reason when it failed)."""
    try:
        table = run_view(con, test["view"], _TABLE)
    except ViewError as exc:
        if test.get("expectError"):
            return True, None
        return False, str(exc)
    if test.get("expectError"):
        return False, "expected an error, but the view ran"
    columns = table.column_names
    rows = table.to_pylist()
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


def run_suite(suite_dir: Path, report_path: Path, progress: Progress | None = None) -> tuple[int, int]:
    """Run every *.json test file in `suite_dir` (schema files excluded), write the report, return (passed, failed)."""
    files = sorted(p for p in Path(suite_dir).glob("*.json") if not p.name.endswith(".schema.json"))
    suites = [(p, json.loads(p.read_text(encoding="utf-8"))) for p in files]
    total = sum(len(s.get("tests", [])) for _, s in suites)
    report: dict[str, dict] = {}
    passed = failed = done = 0
    con = duckdb.connect()
    try:
        for path, suite in suites:
            _load(con, suite.get("resources", []))
            results = []
            for test in suite.get("tests", []):
                ok, reason = run_test(con, test)
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
        con.close()
    report_path = Path(report_path)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return passed, failed
