"""sql cells (a ``sql`` derivative with a ``count_column``) count what they declare, and are
decided alone: beside another published table of cells of the same rows, a hidden cell of one
is the difference of the other's published ones.

The encounters: in January 2020 the Cardiology department has 20 ambulatory patients and one
inpatient; a monthly aggregate by department publishes 21, one by department and class hides
the inpatient (1); sql cells of the ambulatory visits would publish 20, and 21 - 20 = 1.
"""

from __future__ import annotations

import json
import re

import pytest

from lithotse_desktop.derive import build as build_module
from lithotse_desktop.derive.build import DecidedAlone, build, build_all
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.kinds.sql import COUNT_RULE, PEOPLE_RULE, check_counts
from lithotse_desktop.derive.service import add_spec, lineage
from lithotse_desktop.derive.spec import SpecError
from lithotse_desktop.raw import run_import

ALONE = "rule: a sql cells table is decided alone"
ENCOUNTERS = {"source": "ehr", "stream": "encounters"}
BY_DEPARTMENT = {"name": "by_department", "kind": "aggregate", "input": ENCOUNTERS, "date_field": "admit_date",
                 "grain": "month", "group_by": ["department"], "measures": [{"fn": "count", "as": "visits"}]}
BY_CLASS = {"name": "by_class", "kind": "aggregate", "input": ENCOUNTERS, "date_field": "admit_date",
            "grain": "month", "group_by": ["department", "class"], "measures": [{"fn": "count", "as": "visits"}]}
AMBULATORY = {"name": "ambulatory", "kind": "sql", "inputs": {"enc": ENCOUNTERS},
              "sql": "SELECT department, count(*) n, count(DISTINCT patient_id) p FROM enc "
                     "WHERE admit_date < DATE '2020-02-01' AND class = 'AMB' GROUP BY ALL",
              "count_column": "n", "people_column": "p"}
INFLATED = {"name": "inflated", "kind": "sql", "inputs": {"enc": ENCOUNTERS},
            "sql": "SELECT department, admit_date, count(DISTINCT patient_id) AS people, count(*) + 100 AS n "
                   "FROM enc GROUP BY ALL", "count_column": "n", "people_column": "people"}


@pytest.fixture
def encounters(workspace, tmp_path):
    folder = tmp_path / "ehr"
    folder.mkdir()
    rows = ["patient_id,admit_date,department,class"]
    rows += [f"p{i:02d},2020-01-{1 + i:02d},Cardiology,AMB" for i in range(20)]
    rows += ["p99,2020-01-15,Cardiology,IMP"]
    rows += [f"q{i:02d},2020-01-{1 + i:02d},Oncology,AMB" for i in range(3)]
    rows += [f"r{i:02d},2020-01-{1 + i:02d},Neurology,AMB" for i in range(15)]
    (folder / "encounters.csv").write_text("\n".join(rows) + "\n")
    (folder / "wards.csv").write_text("ward,admit_date,beds\n" + "".join(
        f"{'north' if i % 4 else 'south'},2020-01-{1 + i:02d},{i}\n" for i in range(24)))
    workspace.add_source("ehr", "csv", {"path": str(folder), "date_column": "admit_date"}, {})
    run_import(workspace, "ehr")
    return workspace


def test_sql_cells_beside_aggregates_of_the_same_rows_are_refused(encounters):
    ws = encounters
    for spec in (BY_DEPARTMENT, BY_CLASS):
        add_spec(ws, spec)
        build(ws, spec["name"])
    add_spec(ws, AMBULATORY)
    with pytest.raises(DecidedAlone, match=f"sql cells 'ambulatory' and the published aggregate 'by_class' both "
                                           f"count rows of ehr/encounters.*{ALONE}"):
        build(ws, "ambulatory")
    assert Catalog(ws).current("ambulatory") is None


def test_an_aggregate_beside_published_sql_cells_of_the_same_rows_is_refused_unless_neither_hides(encounters):
    ws = encounters
    add_spec(ws, AMBULATORY)
    build(ws, "ambulatory")
    add_spec(ws, BY_CLASS)
    with pytest.raises(DecidedAlone, match=f"aggregate 'by_class' and the published sql cells 'ambulatory'.*{ALONE}"):
        build(ws, "by_class")
    assert Catalog(ws).current("by_class") is None
    add_spec(ws, {**AMBULATORY, "suppress_below": 0}, replace=True)
    build(ws, "ambulatory")
    add_spec(ws, {**BY_CLASS, "suppress_below": 0}, replace=True)
    assert build(ws, "by_class").status == "built", "no hidden cell to recover"


def _refused_when_added_and_when_built(ws, spec: dict, when_added: str, when_built: str) -> None:
    """Refused by ``derive add``; saved unchecked (as before its inputs could be checked, or as a
    sync brings it), refused by its build too, and nothing published."""
    with pytest.raises(SpecError, match=when_added):
        add_spec(ws, spec)
    Catalog(ws).save_spec(spec)
    with pytest.raises(SpecError, match=when_built):
        build(ws, spec["name"])
    assert Catalog(ws).current(spec["name"]) is None


def test_a_count_column_that_is_not_a_count_is_refused(encounters):
    _refused_when_added_and_when_built(
        encounters, INFLATED, r"count_column: derivative 'inflated': output column 'n' is "
                              r"count\(\*\) \+ 100, not a plain count; rule: a sql cell's count_column",
        "not a plain count")


def test_sql_cells_of_an_input_with_a_person_key_count_people(encounters):
    honest = {**{k: v for k, v in INFLATED.items() if k != "people_column"},
              "sql": "SELECT department, admit_date, count(*) AS n FROM enc GROUP BY ALL"}
    _refused_when_added_and_when_built(
        encounters, honest, f"people_column: derivative 'inflated': its input has the person key "
                            f"enc.patient_id.*count\\(DISTINCT patient_id\\).*rule: {PEOPLE_RULE}", PEOPLE_RULE)


def test_sql_cells_alone_on_their_input_build_and_suppress_by_people(encounters):
    ws = encounters
    add_spec(ws, AMBULATORY)
    build(ws, "ambulatory")
    rows = {r["department"]: r for r in Catalog(ws).read(Catalog(ws).current("ambulatory")).to_pylist()}
    assert rows["Cardiology"]["n"] == 20 and not rows["Cardiology"]["suppressed"]
    assert "Oncology" not in rows, "3 people: left out, not shown with its key"
    assert "Neurology" not in rows, "the complement that hides Oncology from a total"
    assert not any(r["suppressed"] for r in rows.values())
    assert Catalog(ws).current("ambulatory").privacy["hidden"] == "left out"
    found = lineage(ws, "ambulatory")
    assert found["counts"] == "people" and found["person_key"] == ["enc.patient_id"]


def test_sql_cells_of_an_input_without_people_count_records_and_say_so(encounters):
    spec = {"name": "beds", "kind": "sql", "inputs": {"w": {"source": "ehr", "stream": "wards"}},
            "sql": "SELECT ward, count(*) AS n FROM w GROUP BY ward", "count_column": "n"}
    add_spec(encounters, spec)
    build(encounters, "beds")
    found = lineage(encounters, "beds")
    assert found["counts"] == "records" and found["person_key"] is None


def test_privacy_audit_lists_sql_cells_beside_an_aggregate_of_the_same_rows(encounters, cli, monkeypatch):
    ws = encounters
    add_spec(ws, BY_CLASS)
    build(ws, "by_class")
    add_spec(ws, AMBULATORY)
    with monkeypatch.context() as patched:  # published before builds refused the pair
        patched.setattr(build_module, "_check_decided_alone", lambda *_args: None)
        build(ws, "ambulatory")
    report = json.loads(cli("privacy", "audit", "--json", expect=1).output)
    assert not report["ok"]
    assert report["refusals"] == [{"derivatives": ["ambulatory", "by_class"], "kinds": ["sql cells", "aggregate"],
                                   "inputs": ["ehr/encounters", "ehr/encounters"], "streams": ["ehr/encounters"],
                                   "rule": "a sql cells table is decided alone: publish it from an input no other "
                                           "table publishes, or as an aggregate"}]
    assert "REFUSED sql cells ambulatory and aggregate by_class" in cli("privacy", "audit", expect=1).output


# --- what the declared counts are, read from DuckDB's syntax tree ------------------------------------------
ROLES = {"enc": {"patient_id": "person_key", "department": "code", "class": "code", "admit_date": "date"}}


@pytest.mark.parametrize("count", ["count(*)", "count(class)", "COUNT(enc.class)"])
@pytest.mark.parametrize(("people", "source"), [
    ("count(DISTINCT patient_id)", "FROM enc"),
    ("count(DISTINCT e.patient_id)", "FROM enc e"),
    ("count(DISTINCT pid)", "FROM (SELECT patient_id AS pid, department, class FROM enc WHERE class = 'AMB')"),
    ("count(DISTINCT c.pid)", "FROM c") ,
    ("count(DISTINCT patient_id)", "FROM (SELECT * FROM enc)"),
])
def test_plain_counts_of_records_and_of_people_are_taken(count, people, source):
    with_cte = "WITH c AS (SELECT patient_id AS pid, department, class FROM enc) " if source == "FROM c" else ""
    sql = f"{with_cte}SELECT department, {count} AS n, {people} AS p {source} GROUP BY department"
    found = check_counts({"name": "x", "sql": sql, "count_column": "n", "people_column": "p"}, ROLES)
    assert (found.counts, found.counted_by) == ("people", "enc.patient_id")


@pytest.mark.parametrize(("n", "p", "field", "what"), [
    ("count(*) + 1", "count(DISTINCT patient_id)", "count_column", r"'n' is count\(\*\) \+ 1, not a plain count"),
    ("sum(1)", "count(DISTINCT patient_id)", "count_column", r"'n' is sum\(1\), not a plain count"),
    ("count(*) OVER ()", "count(DISTINCT patient_id)", "count_column", "OVER"),
    ("count(*) FILTER (WHERE class = 'AMB')", "count(DISTINCT patient_id)", "count_column", "FILTER"),
    ("count(*)", "count(DISTINCT department)", "people_column", "counts enc.department, which is not a person's key"),
    ("count(*)", "count(patient_id)", "people_column", r"not a plain count\(DISTINCT"),
    ("count(*)", "count(DISTINCT patient_id || 'x')", "people_column", r"not a plain count\(DISTINCT"),
    ("count(*)", "count(DISTINCT patient_id) OVER ()", "people_column", r"not a plain count\(DISTINCT"),
])
def test_counts_that_are_not_plain_are_refused(n, p, field, what):
    spec = {"name": "x", "sql": f"SELECT department, {n} AS n, {p} AS p FROM enc GROUP BY ALL",
            "count_column": "n", "people_column": "p"}
    with pytest.raises(SpecError, match=f"{field}: derivative 'x': .*{what}.*rule: "):
        check_counts(spec, ROLES)


@pytest.mark.parametrize("sql", [
    "SELECT department, count(*) n, count(DISTINCT patient_id) p "
    "FROM (SELECT patient_id || 'x' AS patient_id, department FROM enc) GROUP BY ALL",
    "SELECT department, count(*) n, count(DISTINCT patient_id) p "
    "FROM (SELECT * FROM enc UNION ALL SELECT * FROM enc) GROUP BY ALL",
    "SELECT department, count(*) n, count(DISTINCT patient_id) p "
    "FROM (SELECT * REPLACE (patient_id || 'x' AS patient_id) FROM enc) GROUP BY ALL",
    "SELECT department, count(*) n, count(DISTINCT patient_id) p "
    "FROM enc, (SELECT 'x' || range AS patient_id FROM range(100)) GROUP BY ALL",
])
def test_a_person_key_that_cannot_be_followed_to_an_input_is_refused(sql):
    with pytest.raises(SpecError, match=f"people_column: .*cannot be followed to a column of an input.*"
                                        f"{re.escape(COUNT_RULE)}"):
        check_counts({"name": "x", "sql": sql, "count_column": "n", "people_column": "p"}, ROLES)


def test_counts_outside_the_outermost_select_or_beside_their_totals_are_refused():
    inner = ("SELECT * FROM (SELECT department, count(*) n, count(DISTINCT patient_id) p FROM enc GROUP BY ALL)")
    with pytest.raises(SpecError, match="the query over enc, inside it, computes over groups of rows; rule: sql "
                                        "cells aggregate once"):
        check_counts({"name": "x", "sql": inner, "count_column": "n", "people_column": "p"}, ROLES)
    rollup = "SELECT department, count(*) n, count(DISTINCT patient_id) p FROM enc GROUP BY ROLLUP (department)"
    with pytest.raises(SpecError, match="ROLLUP"):
        check_counts({"name": "x", "sql": rollup, "count_column": "n", "people_column": "p"}, ROLES)


def test_a_small_sql_cell_keeps_no_key_in_any_door(encounters, tmp_path):
    """A suppressed sql cell is left out, keys and all: its keys are whatever the query made them,
    so they can be the secret (here the one inpatient's class and department)."""
    from lithotse_desktop.cache import lookup
    from lithotse_desktop.excel.ops import export_derivative

    ws = encounters
    spec = {"name": "by_class_sql", "kind": "sql", "inputs": {"enc": ENCOUNTERS},
            "sql": "SELECT department, class, count(*) n, count(DISTINCT patient_id) p FROM enc GROUP BY ALL",
            "count_column": "n", "people_column": "p"}
    add_spec(ws, spec)
    build(ws, "by_class_sql")
    lines = (tmp_path / "ehr" / "encounters.csv").read_text().splitlines()[1:]
    people: dict[tuple[str, str], set[str]] = {}
    for line in lines:
        patient, _day, department, klass = line.split(",")
        people.setdefault((department, klass), set()).add(patient)
    assert len(people["Cardiology", "IMP"]) == 1
    published = Catalog(ws).read(Catalog(ws).current("by_class_sql")).to_pylist()
    assert published, "the large cells are published"
    assert all(len(people[r["department"], r["class"]]) >= 11 for r in published), published
    path, _rows = export_derivative(ws, "by_class_sql", "csv", tmp_path / "cells.csv")
    assert "IMP" not in path.read_text() and "Oncology" not in path.read_text()
    cell = lookup(ws, "by_class_sql", "p", department="Cardiology", **{"class": "IMP"})
    assert cell.suppressed and cell.value is None


def test_privacy_audit_lists_sql_cells_with_the_cells_they_left_out(encounters, cli):
    """A workspace whose only table of cells is sql cells: the audit says it covered it and how
    many cells its build left out (Oncology, 3 people, and Neurology, its complement), not
    "no published aggregates"."""
    add_spec(encounters, AMBULATORY)
    build(encounters, "ambulatory")
    report = json.loads(cli("privacy", "audit", "--json").output)
    assert report["ok"] and report["refusals"] == []
    assert report["groups"] == [{"kind": "sql cells", "input": {"enc": ENCOUNTERS}, "derivatives": ["ambulatory"],
                                 "relations": [], "partitions": [], "hidden_cells": 2, "atoms": 0, "findings": 0}]
    text = cli("privacy", "audit").output
    assert "sql cells ambulatory: 2 cell(s) left out with their keys" in text
    assert "no published" not in text


def test_sql_cells_revised_by_fewer_than_k_are_held(encounters, tmp_path):
    """Pass 39: Cardiology's ambulatory people, shown (20), then 23 after three late visits, gave
    the three away. The revised cell is held (left out, as a small cell is) while its people
    moved by fewer than k from the 20 shown; eleven more late visits (34) show it again. The
    audit finds no revision at any step."""
    from lithotse_desktop.derive.privacy import audit_published

    ws = encounters
    add_spec(ws, AMBULATORY)
    build(ws, "ambulatory")
    catalog = Catalog(ws)

    def shown() -> dict:
        return {r["department"]: r["p"] for r in catalog.read(catalog.current("ambulatory")).to_pylist()}

    assert shown() == {"Cardiology": 20}, "Oncology (3) left out with its complement"
    folder = tmp_path / "ehr"
    for late, expected in ((3, {}), (11, {"Cardiology": 34})):
        with (folder / "encounters.csv").open("a") as out:
            out.writelines(f"late{late}_{i},2020-01-2{i % 9},Cardiology,AMB\n" for i in range(late))
        run_import(ws, "ehr")
        [result] = build_all(ws, ["ambulatory"])
        assert result.revised == 0
        assert shown() == expected
        assert audit_published(ws)["revisions"] == []
