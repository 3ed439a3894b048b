"""The README's first command: the bundled demo imports, builds and renders without ../shared,
prints figures the newcomer check (scripts/newcomer_check.py) accepts, and the next steps."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from tests.conftest import REPO, run_lithotse


def load_newcomer_check():
    """scripts/newcomer_check.py, which is a script rather than a package module."""
    if "newcomer_check" in sys.modules:
        return sys.modules["newcomer_check"]
    spec = importlib.util.spec_from_file_location("newcomer_check", REPO / "scripts" / "newcomer_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["newcomer_check"] = module
    spec.loader.exec_module(module)
    return module


def test_demo_imports_builds_and_renders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "demo-workspace"
    first = run_lithotse("demo", "--headless", "--workspace", "demo-workspace",
                         env={"QT_QPA_PLATFORM": "offscreen"}, timeout=600, cwd=tmp_path)
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
    again = run_lithotse("demo", "--headless", "--workspace", "demo-workspace",
                         env={"QT_QPA_PLATFORM": "offscreen"}, timeout=600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "imported ehr: nothing new" in again.stdout
    check_printed_figures_and_next_steps(first.stdout + first.stderr, target)


def check_printed_figures_and_next_steps(output: str, target: Path) -> None:
    """What CI's newcomer check asserts on a fresh clone, here on the test's own run."""
    from lithotse_desktop.cache.lookup import lookup
    from lithotse_desktop.workspace import Workspace

    check = load_newcomer_check()
    specs = check.demo_specs(REPO)
    tables = {name: json.loads(run_lithotse("derive", "show", name, "--json", "--workspace", str(target)).stdout)
              for name in specs}
    report = check.check_figures(specs, check.parse_demo_output(output), tables)
    assert [line.split(":")[0] for line in report] == sorted(specs)
    assert "  open the desktop app:" in output and "serve --workspace demo-workspace\n" in output
    # run from this checkout's .venv, the demo names its commands by full path; a clone's demo.sh
    # run names them .venv/bin/…, which is what the newcomer check looks for
    name, query = check.example_query(output.replace(str(Path(sys.executable).parent), ".venv/bin"))
    want, suppressed = check.expected_value(specs[name], tables[name], query)
    assert not suppressed and isinstance(want, int) and want > 0
    dims = {k: v for k, v in query.items() if k not in ("measure", "from", "to")}
    cell = lookup(Workspace.open(target), name, query["measure"], query.get("from"), query.get("to"), **dims)
    assert (cell.value, cell.suppressed) == (want, False)
    token = run_lithotse("token", "--workspace", str(target)).stdout.strip()
    assert token and token not in output
