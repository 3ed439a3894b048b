"""CSV exports as they come: any header text kept as the column's name (made unique), and the
total and blank rows under the data left out and counted; both used through a derivative."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections import defaultdict
from pathlib import Path

import pytest

from lithotse_csv import CsvConnector
from lithotse_csv.parse import Layout, typed_batches
from lithotse_desktop.connectors import FetchRequest, RawObject
from lithotse_desktop.dates import DateRange
from lithotse_desktop.derive.build import build
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.errors import InputError
from lithotse_desktop.plugins import reset_plugin_manager
from lithotse_desktop.raw import run_import
from lithotse_desktop.testing import read_rows


def csv_text(rows: list[list]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def fetch_one(path: Path, **settings) -> tuple[list, Layout, list[dict]]:
    conn = CsvConnector({"path": str(path), **settings})
    infos = conn.streams()
    [payload] = list(conn.fetch(FetchRequest("t", [i.name for i in infos], DateRange(), {})))
    layout = Layout.from_meta(payload.meta)
    assert layout is not None
    obj = RawObject(payload.path, payload.stream, payload.name, payload.media_type, payload.meta)
    return infos, layout, [row for batch in conn.read(obj) for row in batch.to_pylist()]


@pytest.fixture
def csv_plugin():
    reset_plugin_manager()
    yield
    reset_plugin_manager()


def test_header_text_is_kept_and_made_unique_by_the_documented_rule(tmp_path):
    header = ["Admit Date", "LOS (days)", "Cost ($)", "% Readmit", "Ward/Bed", "Patient #", "Diagnóstico",
              "Name", "Name", "name", "Name_2", "", "   ", "LOS\n(days)", "_row", 'say "hi"; DROP TABLE x']
    path = tmp_path / "adm.csv"
    path.write_text(csv_text([header, ["2024-01-02", 3, 100.5, 0.1, "W1/3", "P1", "I10", *"abcdefghi"]]),
                    encoding="utf-8")
    _, layout, rows = fetch_one(path)
    assert layout.names == ["Admit Date", "LOS (days)", "Cost ($)", "% Readmit", "Ward/Bed", "Patient #",
                            "Diagnóstico", "Name", "Name_3", "name_4", "Name_2", "column_12", "column_13",
                            "LOS (days)_2", "_row_2", 'say "hi"; DROP TABLE x']
    assert rows[0]["LOS (days)"] == 3 and rows[0]["Ward/Bed"] == "W1/3" and rows[0]["_row_2"] == "h"


def admissions_csv(tmp_path: Path, tail: list[list]) -> tuple[Path, list[list]]:
    rng = random.Random(5)
    header = ["Admit Date", "Admission ID", "LOS (days)", "Cost ($)", "% Readmit", "Ward/Bed"]
    data = [[(dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(90))).isoformat(), 1000 + i,
             rng.randint(1, 20), round(rng.uniform(100, 9000), 2), round(rng.uniform(0, 0.5), 3),
             rng.choice(["W1/3", "W2/1", "ICU/2"])] for i in range(30)]
    path = tmp_path / "adm.csv"
    path.write_text(csv_text([header, *data, *tail]), encoding="utf-8")
    return path, data


TOTALS = [["", "", "", "", "", ""],
          ["Total", "", 321, 123456.78, "", ""],
          ["Grand total (all wards)", "", 321, 123456.78, 0.2, ""],
          ["", "", "", "", "", ""]]


def test_total_and_blank_rows_under_the_data_are_left_out_and_counted(tmp_path):
    path, data = admissions_csv(tmp_path, TOTALS)
    infos, layout, rows = fetch_one(path, key="admission id")
    assert infos[0].date_field == "Admit Date" and infos[0].key == ("Admission ID",)
    assert (layout.data_records, layout.left_out) == (30, {"total": 2, "blank": 2})
    assert dict(zip(layout.names, layout.kinds, strict=True)) == {
        "Admit Date": "date32", "Admission ID": "int64", "LOS (days)": "int64", "Cost ($)": "float64",
        "% Readmit": "float64", "Ward/Bed": "string"}
    assert [[r["Admit Date"].isoformat(), r["Admission ID"], r["LOS (days)"], r["Cost ($)"], r["% Readmit"],
             r["Ward/Bed"]] for r in rows] == data
    streamed = typed_batches(None, "adm.csv", layout, trusted=True, opener=lambda: open(path, "rb"))
    assert sum(b.num_rows for b in streamed) == 30, "a landing streamed from S3 leaves them out too"


def test_only_rows_under_the_data_are_left_out(tmp_path):
    path, data = admissions_csv(tmp_path, [])
    text = path.read_text().splitlines()
    text.insert(5, "2024-02-01,1,1,1.0,0.1,Subtotal")  # "Subtotal" as a value, with a date: data
    text.insert(9, ",,,,,")  # a blank record inside the data stays a (null) record
    path.write_text("\n".join(text) + "\nSum,,5,5.0,,\n")
    _, layout, rows = fetch_one(path)
    assert (layout.data_records, layout.left_out) == (32, {"total": 1, "blank": 0})
    assert len(rows) == 32 and rows[8]["Admission ID"] is None
    path.write_text("Admit Date,Ward\n2024-01-01,a\nTotal,b\n2024-01-02,c\n")
    with pytest.raises(InputError, match=r"^adm.csv, line 3: date column 'Admit Date': 'Total' is not an ISO date"):
        fetch_one(path)


def test_a_text_first_column_keeps_a_total_row_inside_the_data(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("Test,Value\nTotal cholesterol,5.2\nHDL,1.3\nTotal,6.5\nTotal protein,70\n")
    _, layout, rows = fetch_one(path)
    assert [r["Test"] for r in rows] == ["Total cholesterol", "HDL", "Total", "Total protein"]
    assert layout.left_out == {"total": 0, "blank": 0}


def test_an_import_says_how_many_rows_it_left_out_and_an_aggregate_uses_the_header_text(
        csv_plugin, workspace, tmp_path):
    path, data = admissions_csv(tmp_path, TOTALS)
    workspace.add_source("adm", "csv", {"path": str(path), "key": "Admission ID"}, {})
    result = run_import(workspace, "adm")
    [landing] = result.landings
    assert "30 records (30 in range, 0 outside), 4 rows left out (2 total, 2 blank)" in landing.summary()
    assert landing.manifest.meta["left_out"] == {"total": 2, "blank": 2}
    assert len(read_rows(workspace, "adm", "adm")) == 30
    spec = {"name": "by_ward", "kind": "aggregate", "input": {"source": "adm", "stream": "adm"},
            "date_field": "Admit Date", "grain": "month",
            "filters": [{"column": "% Readmit", "op": ">=", "value": 0.1}], "group_by": ["Ward/Bed"],
            "measures": [{"fn": "mean", "column": "LOS (days)", "as": "mean_los"},
                         {"fn": "sum", "column": "Cost ($)", "as": "cost"}], "suppress_below": 0}
    add_spec(workspace, spec)
    build(workspace, "by_ward")
    table = Catalog(workspace).read(Catalog(workspace).current("by_ward"))
    got = {(r["period"].isoformat()[:7], r["Ward/Bed"]): (r["mean_los"], r["cost"]) for r in table.to_pylist()}
    groups = defaultdict(list)
    for day, _id, los, cost, readmit, ward in data:
        if readmit >= 0.1:
            groups[(day[:7], ward)].append((los, cost))
    expected = {k: (sum(v[0] for v in g) / len(g), sum(v[1] for v in g)) for k, g in groups.items()}
    assert got.keys() == expected.keys()
    for k, (los, cost) in expected.items():
        assert got[k] == pytest.approx((los, cost), rel=1e-12)


HOSTILE = ['a"b', "back\\slash", 'x"; DROP TABLE "input"; --', "select", "from", "' OR 1=1 --",
           "L" * 300, "", "   ", "period", "suppressed", "__n", "_landing_id", "Ward/Bed", "% Readmit"]


def test_hostile_header_text_imports_and_aggregates_without_breaking_anything(csv_plugin, workspace, tmp_path):
    rng = random.Random(9)
    data = [[rng.choice("abc"), rng.randint(0, 50)] + [rng.choice(["x", "y"]) for _ in HOSTILE[2:]]
            for _ in range(60)]
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "hostile.csv"
    path.write_text(csv_text([HOSTILE, *data]), encoding="utf-8")
    workspace.add_source("h", "csv", {"path": str(path)}, {})
    run_import(workspace, "h")
    names = list(read_rows(workspace, "h", "hostile")[0])
    assert names == ['a"b', "back\\slash", 'x"; DROP TABLE "input"; --', "select", "from", "' OR 1=1 --",
                     "L" * 300, "column_8", "column_9", "period", "suppressed", "__n", "_landing_id_2",
                     "Ward/Bed", "% Readmit"]
    spec = {"name": "hostile_agg", "kind": "aggregate", "input": {"source": "h", "stream": "hostile"},
            "filters": [{"column": 'x"; DROP TABLE "input"; --', "op": "=", "value": "x"},
                        {"column": "' OR 1=1 --", "op": "in", "value": ["x", "y"]}],
            "group_by": ['a"b', {"as": "p", "column": "period"}, "select"],
            "measures": [{"fn": "sum", "column": "back\\slash", "as": "total"},
                         {"fn": "count_distinct", "column": "L" * 300, "as": "distinct_long"},
                         {"fn": "count", "column": "_landing_id_2", "as": "n"}],
            "pseudonymize": ["select"], "suppress_below": 0}
    add_spec(workspace, spec)
    build(workspace, "hostile_agg")
    table = Catalog(workspace).read(Catalog(workspace).current("hostile_agg"))
    assert table.column_names == ['a"b', "p", "select", "total", "distinct_long", "n", "suppressed"]
    cells: dict[tuple, list] = defaultdict(list)
    for row in data:
        if row[2] == "x":
            cells[(row[0], row[9], row[3])].append(row)
    expected = sorted((a, p, sum(r[1] for r in rows), len({r[6] for r in rows}), len(rows))
                      for (a, p, _select), rows in cells.items())
    got = sorted((r['a"b'], r["p"], r["total"], r["distinct_long"], r["n"]) for r in table.to_pylist())
    assert got == expected
    assert all(len(r["select"]) == 64 for r in table.to_pylist()), "pseudonymized, named by its header text"
