"""The SQL-on-FHIR v2 conformance suite (the copy in tests/data) must pass completely, experimental tests included."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from lithotse_desktop.derive.sof.conformance import run_suite
from tests.conftest import TEST_DATA

SUITE = TEST_DATA / "sql-on-fhir-v2"


def test_full_suite_passes_and_report_is_valid(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    passed, failed = run_suite(SUITE, report_path)
    report = json.loads(report_path.read_text(encoding="utf-8"))
    failures = [(f, t["name"], t["result"].get("error")) for f, s in report.items() for t in s["tests"]
                if not t["result"]["passed"]]
    assert failures == []
    assert (passed, failed) == (134, 0)
    schema = json.loads((SUITE / "test-report.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(report, schema)
