"""Builds read landings, not sources: once a file has landed, its derivatives build, rebuild and
take new specs with the source folder gone (an export folder emptied after import, a drive
unplugged), and the stream's key and person column still come from the source's settings.

Counts are checked against the rows computed here with the standard library.
"""

from __future__ import annotations

import csv
import shutil
from collections import defaultdict

import openpyxl
import pytest

from lithotse_desktop.derive.build import build_all
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.service import add_spec, lineage
from lithotse_desktop.raw import run_import

HEADER = ["visit_id", "who", "START", "dept"]


def rows_of(version: int) -> list[list[str]]:
    """Visits; version 2 corrects visit v3's department and adds two visits."""
    rows = [[f"v{i}", f"p{i % 4}", f"2024-0{1 + i % 3}-1{i % 9}", "cardio" if i % 2 else "ortho"]
            for i in range(24)]
    if version == 2:
        rows[3][3] = "derm"
        rows += [["v24", "p9", "2024-03-02", "derm"], ["v25", "p9", "2024-03-03", "derm"]]
    return rows


def expected(landed: list[list[list[str]]]) -> dict[tuple, tuple[int, int]]:
    """Visits and distinct people per (month, dept), newest landing winning per visit_id."""
    newest: dict[str, list[str]] = {}
    for rows in landed:
        for row in rows:
            newest[row[0]] = row
    cells: dict[tuple, list[str]] = defaultdict(list)
    for _visit, who, start, dept in newest.values():
        cells[(start[:7], dept)].append(who)
    return {k: (len(v), len(set(v))) for k, v in cells.items()}


def published(workspace, name: str) -> dict[tuple, tuple[int, int]]:
    catalog = Catalog(workspace)
    table = catalog.read(catalog.current(name)).to_pylist()
    return {(r["period"].isoformat()[:7], r["dept"]): (r["visits"], r["people"]) for r in table}


def spec(name: str, stream: str) -> dict:
    return {"name": name, "kind": "aggregate", "input": {"source": "ehr", "stream": stream},
            "date_field": "START", "grain": "month", "group_by": ["dept"], "suppress_below": 0,
            "measures": [{"fn": "count", "as": "visits"}, {"fn": "count_distinct", "column": "who", "as": "people"}]}


def write_csv(folder, rows) -> None:
    folder.mkdir(exist_ok=True)
    with open(folder / "visits.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([HEADER, *rows])


def write_book(folder, rows) -> None:
    folder.mkdir(exist_ok=True)
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "visits"
    for row in [HEADER, *rows]:
        sheet.append(row)
    book.save(folder / "export.xlsx")


@pytest.mark.parametrize("connector, write, stream", [("csv", write_csv, "visits"),
                                                      ("spreadsheet", write_book, "export.visits")])
def test_derivatives_build_rebuild_and_are_added_with_the_source_gone(workspace, tmp_path, connector, write, stream):
    folder = tmp_path / "export"
    write(folder, rows_of(1))
    workspace.add_source("ehr", connector, {"path": str(folder), "date_column": "START", "key": "visit_id",
                                            "person_column": "who"}, {})
    run_import(workspace, "ehr")
    shutil.rmtree(folder)

    add_spec(workspace, spec("by_month", stream))
    build_all(workspace)
    assert published(workspace, "by_month") == expected([rows_of(1)])
    info = lineage(workspace, "by_month")
    assert (info["counts"], info["person_key"]) == ("people", ["who"]), "the person column setting still holds"

    write(folder, rows_of(2))
    run_import(workspace, "ehr")
    shutil.rmtree(folder)
    build_all(workspace)
    assert published(workspace, "by_month") == expected([rows_of(1), rows_of(2)]), \
        "the corrected visit replaces its first version through the key setting"

    add_spec(workspace, spec("again", stream))
    build_all(workspace)
    assert published(workspace, "again") == published(workspace, "by_month")
