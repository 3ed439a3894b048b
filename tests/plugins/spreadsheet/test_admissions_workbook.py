"""A hospital's admissions workbook, as it comes, through every place a column is named: a whole
import (the Notes sheet skipped, the totals left out), an aggregate over ``LOS (days)``,
``Cost ($)``, ``Ward/Bed`` and ``% Readmit``, the local API, the add-in's formulas, exports and
workbook bindings. Expected figures come from the rows the test wrote, in plain Python."""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path

import openpyxl
import pytest

from lithotse_desktop.excel.formula import build_value_formula, dims_from_args, parse_formula
from lithotse_desktop.excel.xlwings_addin import udf_table, udf_value
from lithotse_desktop.jobs import import_and_build
from lithotse_desktop.plugins import reset_plugin_manager
from lithotse_desktop.raw.landing import SkippedStream
from lithotse_desktop.serve.token import workspace_token
from lithotse_desktop.testing import read_rows
from lithotse_desktop.workspace import Workspace
from tests.cache.helpers import _close_caches  # noqa: F401  (fixture)
from tests.conftest import REPO
from tests.support.admissions import HEADER_ROW, NAMES, WARDS, Admissions, write_admissions
from tests.support.serving import served  # noqa: F401  (fixture)

RECALC = REPO / "scripts" / "libreoffice-recalc.sh"
NOTES_REASON = "admissions.xlsx, sheet 'Notes': has no row 3 to take column names from"
SPEC = {"name": "adm_by_ward", "kind": "aggregate", "input": {"source": "adm", "stream": "Admissions"},
        "filters": [{"column": "% Readmit", "op": "<", "value": 0.25}],
        "group_by": ["Ward/Bed"],
        "measures": [{"fn": "mean", "column": "LOS (days)", "as": "mean_los"},
                     {"fn": "sum", "column": "Cost ($)", "as": "cost"},
                     {"fn": "count", "as": "n"}],
        "suppress_below": 0}


@pytest.fixture(autouse=True)
def installed_plugins():
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture(params=["saved by openpyxl", "recalculated by LibreOffice"])
def admissions(request, tmp_path) -> Admissions:
    """The workbook as openpyxl writes it (formulas without values) and as an office program
    stores it (the Total row's SUMs computed)."""
    (tmp_path / "made").mkdir()
    made = write_admissions(tmp_path / "made" / "admissions.xlsx")
    if request.param == "saved by openpyxl":
        return made
    assert shutil.which("soffice"), "LibreOffice is missing: bash scripts/system-deps.sh installs it"
    proc = subprocess.run([str(RECALC), str(made.path), str(tmp_path / "office")], capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])
    total = openpyxl.load_workbook(path, data_only=True)["Admissions"][made.last_row + 2]
    assert total[0].value == "Total"
    assert total[3].value == sum(r["LOS (days)"] for r in made.rows), "the office program stored the SUM"
    return Admissions(path, made.rows)


def expected_by_ward(rows: list[dict]) -> dict[str, dict]:
    kept = defaultdict(list)
    for row in rows:
        if row["% Readmit"] < 0.25:
            kept[row["Ward/Bed"]].append(row)
    return {ward: {"mean_los": sum(r["LOS (days)"] for r in group) / len(group),
                   "cost": sum(r["Cost ($)"] for r in group), "n": len(group)}
            for ward, group in kept.items()}


def as_day(value):
    return value.date() if isinstance(value, dt.datetime) else value


def add_source(cli, path: Path) -> None:
    cli("source", "add", "adm", "--connector", "spreadsheet", "--set", f"path={path}",
        "--set", f"header_row={HEADER_ROW}", "--set", "key=Admission ID")


def test_the_whole_workbook_imports_notes_skipped_totals_left_out(cli, workspace, admissions):
    add_source(cli, admissions.path)
    out = cli("import", "adm", "--quiet").output.splitlines()
    assert out[0].startswith(f"adm/Admissions admissions.xlsx: {len(admissions.rows)} records "
                             f"({len(admissions.rows)} in range, 0 outside), 2 rows left out (1 total, 1 blank), ")
    assert out[1] == f"adm/Notes: skipped: {NOTES_REASON}"

    rows = read_rows(Workspace.open(workspace.root), "adm", "Admissions")
    assert [list(r) for r in rows] == [NAMES] * len(admissions.rows)
    assert [{**r, "Admit Date": as_day(r["Admit Date"])} for r in rows] == admissions.rows

    again = json.loads(cli("import", "adm", "--full", "--json").output)
    assert again["skipped"] == [{"stream": "Notes", "reason": NOTES_REASON}]
    [landing] = again["landings"]
    assert landing["meta"]["left_out"] == {"total": 1, "blank": 1}
    assert landing["meta"]["last_row"] == admissions.last_row
    assert landing["records"] == len(admissions.rows)

    named = cli("import", "adm", "--stream", "Notes", expect=1)
    assert f"source adm: nothing to import: {NOTES_REASON}" in named.output


def test_the_result_object_the_desktop_app_shows(workspace, admissions):
    workspace.add_source("adm", "spreadsheet", {"path": str(admissions.path), "header_row": HEADER_ROW}, {})
    outcome = import_and_build(workspace, "adm")
    imported = outcome.imported
    assert imported.skipped == [SkippedStream("Notes", NOTES_REASON)]
    assert imported.skipped_lines() == [f"adm/Notes: skipped: {NOTES_REASON}"]
    [landing] = imported.landings
    assert "2 rows left out (1 total, 1 blank)" in landing.summary()
    assert outcome.to_json()["skipped"] == [{"stream": "Notes", "reason": NOTES_REASON}]


def test_an_aggregate_over_header_text_matches_plain_python(cli, workspace, admissions, tmp_path, served):  # noqa: F811
    add_source(cli, admissions.path)
    cli("import", "adm", "--quiet")
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(SPEC, ensure_ascii=False))
    cli("derive", "add", "--file", str(spec_file), "--build")
    shown = json.loads(cli("derive", "show", "adm_by_ward", "--json").output)
    assert shown["columns"] == ["Ward/Bed", "mean_los", "cost", "n", "suppressed"]
    expected = expected_by_ward(admissions.rows)
    assert set(expected) == set(WARDS)
    got = {r["Ward/Bed"]: {k: r[k] for k in ("mean_los", "cost", "n")} for r in shown["rows"]}
    assert got.keys() == expected.keys()
    for ward, want in expected.items():
        assert got[ward]["n"] == want["n"]
        assert math.isclose(got[ward]["mean_los"], want["mean_los"], rel_tol=1e-12)
        assert math.isclose(got[ward]["cost"], want["cost"], rel_tol=1e-12)

    # the local API, a dimension named by header text in the query string and in a batch
    client = served()
    ward = WARDS[0]
    query = urllib.parse.urlencode({"measure": "mean_los", "Ward/Bed": ward})
    assert "Ward%2FBed=W1%2F3" in query
    request = urllib.request.Request(f"{client.base}/derivatives/adm_by_ward/value?{query}",
                                     headers={"Authorization": f"Bearer {workspace_token(workspace)}"})
    with urllib.request.urlopen(request) as answer:
        assert math.isclose(json.loads(answer.read())["value"], expected[ward]["mean_los"], rel_tol=1e-12)
    assert client.value("adm_by_ward", "cost", dims={"Ward/Bed": ward})["value"] == \
        pytest.approx(expected[ward]["cost"], rel=1e-12)
    results = client.values([{"derivative": "adm_by_ward", "measure": "n", "dims": {"Ward/Bed": w}}
                             for w in WARDS])
    assert [r["value"] for r in results] == [expected[w]["n"] for w in WARDS]

    # the add-in: the formula the desktop app copies, read back the way Excel calls the UDF
    formula = build_value_formula("adm_by_ward", "mean_los", "", "", {"Ward/Bed": ward})
    assert formula == '=LITHOTSE_VALUE("adm_by_ward","mean_los","","","Ward/Bed","W1/3")'
    args = parse_formula(formula).args
    assert dims_from_args(args[4:]) == {"Ward/Bed": ward}
    assert udf_value(*args, client=client) == pytest.approx(expected[ward]["mean_los"], rel=1e-12)
    spilled = udf_table("adm_by_ward", None, None, "Ward/Bed, cost", client=client)
    assert spilled[0] == ["Ward/Bed", "cost"]
    assert {r[0]: r[1] for r in spilled[1:]} == pytest.approx({w: e["cost"] for w, e in expected.items()})


def test_exports_and_bindings_carry_the_header_text(cli, workspace, admissions, tmp_path):
    add_source(cli, admissions.path)
    cli("import", "adm", "--quiet")
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(SPEC, ensure_ascii=False))
    cli("derive", "add", "--file", str(spec_file), "--build")
    exported = tmp_path / "adm.xlsx"
    cli("derive", "export", "adm_by_ward", "--format", "xlsx", "-o", str(exported))
    sheet = openpyxl.load_workbook(exported).worksheets[0]
    assert [c.value for c in sheet[1]] == ["Ward/Bed", "mean_los", "cost", "n", "suppressed"]
    [table] = sheet.tables.values()
    assert [c.name for c in table.tableColumns] == ["Ward/Bed", "mean_los", "cost", "n", "suppressed"]

    report = tmp_path / "report.xlsx"
    cli("excel", "bind", str(report), "adm_by_ward", "--columns", "Ward/Bed, cost")
    bound = openpyxl.load_workbook(report)["Lithotse"]
    [table] = bound.tables.values()
    assert [c.name for c in table.tableColumns] == ["Ward/Bed", "cost"]
    expected = expected_by_ward(admissions.rows)
    assert {r[0]: r[1] for r in bound.iter_rows(min_row=2, values_only=True)} == \
        pytest.approx({w: e["cost"] for w, e in expected.items()})
