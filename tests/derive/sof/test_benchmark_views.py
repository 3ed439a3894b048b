"""The Pathling benchmark ViewDefinitions compile and run on the sample NDJSON, matching fhirpathpy row by row."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from lithotse_desktop.derive.sof import run_view
from tests.conftest import TEST_DATA

from sof_reference import evaluate_view

DATA = TEST_DATA / "fhir"
VIEWS = sorted((DATA / "viewdefinitions-pathling-benchmark").glob("*.json"))
NDJSON = sorted((DATA / "ndjson-pathling-synthea-r4").glob("*.ndjson")) + sorted(
    p for p in (DATA / "bulk-ndjson-smart-10-patients").glob("*.ndjson") if p.name != "log.ndjson")


@pytest.fixture(scope="module")
def loaded() -> tuple[duckdb.DuckDBPyConnection, list[dict]]:
    con = duckdb.connect()
    files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in NDJSON)
    con.execute(f"CREATE TABLE res AS SELECT json AS resource FROM read_ndjson_objects([{files}])")
    resources = [json.loads(r[0]) for r in con.execute("SELECT resource FROM res").fetchall()]
    yield con, resources
    con.close()


def _canonical(row: dict) -> tuple:
    def norm(v: object) -> object:
        if isinstance(v, bool) or v is None:
            return v
        if isinstance(v, (int, float)):
            return round(float(v), 9)
        return str(v)
    return tuple(sorted((k, norm(v)) for k, v in row.items()))


@pytest.mark.parametrize("view_path", VIEWS, ids=lambda p: p.stem)
def test_view_runs_and_matches_fhirpathpy(loaded: tuple, view_path: Path) -> None:
    con, resources = loaded
    view = json.loads(view_path.read_text(encoding="utf-8"))
    table = run_view(con, view, "res")
    assert table.column_names == [c for c in _column_names(view)]
    has_type = any(r.get("resourceType") == view["resource"] for r in resources)
    if has_type and view["resource"] != "Observation":
        assert table.num_rows > 0
    if "repeat" in json.dumps(view["select"]):
        return
    expected = evaluate_view(view, resources)
    assert Counter(_canonical(r) for r in table.to_pylist()) == Counter(_canonical(r) for r in expected)


def _column_names(view: dict) -> list[str]:
    def walk(sel: dict) -> list[str]:
        names = [c["name"] for c in sel.get("column", [])]
        for sub in sel.get("select", []):
            names += walk(sub)
        if sel.get("unionAll"):
            names += walk(sel["unionAll"][0])
        return names
    return walk({"select": view["select"]})
