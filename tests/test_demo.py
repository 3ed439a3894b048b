"""The README's first command: the bundled demo imports, builds and renders without ../shared."""

from __future__ import annotations

import json

from tests.conftest import run_lithotse


def test_demo_imports_builds_and_renders(tmp_path):
    target = tmp_path / "demo"
    first = run_lithotse("demo", "--headless", "--workspace", str(target),
                         env={"QT_QPA_PLATFORM": "offscreen"}, timeout=600)
    assert first.returncode == 0, first.stderr
    for source in ("ehr", "fhir", "hl7"):
        assert f"imported {source}:" in first.stdout
    derivatives = json.loads(run_lithotse("derive", "list", "--json", "--workspace", str(target)).stdout)
    assert {d["name"]: d["rows"] > 0 for d in derivatives} == {
        "conditions_by_year": True, "encounters": True, "encounters_by_class_year": True,
        "hl7_results_by_test": True}
    shots = sorted(p.name for p in (target / "screenshots").glob("*.png"))
    assert {"sources.png", "raw.png", "derivatives.png", "spreadsheets.png"} <= set(shots)
    landings = json.loads(run_lithotse("raw", "ls", "--json", "--workspace", str(target)).stdout)
    assert {m["source"] for m in landings} == {"ehr", "fhir", "hl7"}
    assert all("/shared/" not in m["original_name"] for m in landings)
    again = run_lithotse("demo", "--headless", "--workspace", str(target),
                         env={"QT_QPA_PLATFORM": "offscreen"}, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "imported ehr: nothing new" in again.stdout
