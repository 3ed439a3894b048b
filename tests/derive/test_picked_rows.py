"""Rows picked out by an identifier one step before the cells feed no cells.

An aggregate may not filter on a patient id, but a row-level ``sql`` or view may (an analyst may
look at one patient). Before, an aggregate over ``SELECT * FROM e WHERE patient_id = 'P000646'``
was published: every cell suppressed, yet a suppressed row keeps its day, department and class,
so the published rows were that patient's visit history. Such inputs are now refused for cells,
down any chain of derivatives, naming the derivative whose condition picks, and the rule.
"""

from __future__ import annotations

import json
import re

import pytest

from lithotse_desktop.derive import build as build_module
from lithotse_desktop.derive import disclosure
from lithotse_desktop.derive.build import build, build_all
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.disclosure import IdentifierRefused, Restricted
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.raw import run_import

RULE = "rule: a filter may not single out people by an identifier"
VISITS = {"source": "ehr", "stream": "visits"}
HER_DAYS = ["2024-01-03", "2024-02-14", "2024-03-09", "2024-05-21"]
ONE = {"name": "one_patient", "kind": "sql", "inputs": {"e": VISITS},
       "sql": "SELECT * FROM e WHERE patient_id = 'P000646'"}
FLAGGED = {"name": "flagged", "kind": "sql", "inputs": {"e": VISITS},
           "sql": "SELECT *, CASE WHEN patient_id = 'P000646' THEN 1 END AS flag FROM e"}


def history(derivative: str, **extra) -> dict:
    """An aggregate with no filter of its own, whose rows (suppressed or not) are days."""
    return {"name": f"history_{derivative}", "kind": "aggregate", "input": {"derivative": derivative},
            "date_field": "admit_date", "grain": "day", "group_by": ["department", "class"],
            "measures": [{"fn": "count", "as": "visits"}], **extra}


@pytest.fixture
def ehr(workspace, tmp_path):
    """P000646's four visits among 30 other patients' visits on other days."""
    folder = tmp_path / "ehr"
    folder.mkdir()
    rows = ["patient_id,admit_date,department,class"]
    rows += [f"P000646,{day},{dept},IMP" for day, dept in zip(HER_DAYS, ["cardio", "onco", "cardio", "neuro"],
                                                                strict=True)]
    rows += [f"P{i:06d},2024-0{1 + i % 6}-{1 + i % 2:02d},{'cardio' if i % 3 else 'onco'},AMB" for i in range(30)]
    (folder / "visits.csv").write_text("\n".join(rows) + "\n")
    workspace.add_source("ehr", "csv", {"path": str(folder), "date_column": "admit_date"}, {})
    run_import(workspace, "ehr")
    return workspace


def _refused(ws, spec: dict, cli, tmp_path, picked_by: str, condition: str) -> None:
    """Refused by ``derive add`` (as a user adds it) and, saved unchecked (as a sync brings it), by
    its build; nothing published."""
    path = tmp_path / f"{spec['name']}.json"
    path.write_text(json.dumps(spec))
    result = cli("derive", "add", "--file", str(path), expect=1)
    message = result.output + getattr(result, "stderr", "")
    assert f"reads derivative '{picked_by}'" in message and condition in message and RULE in message, message
    Catalog(ws).save_spec(spec)
    with pytest.raises(IdentifierRefused, match=f"'{picked_by}'.*{re.escape(condition)}.*{RULE}"):
        build_all(ws, [spec["name"]])
    assert Catalog(ws).current(spec["name"]) is None


def test_rows_picked_by_a_patient_id_stay_row_level_and_feed_no_cells(ehr, cli, tmp_path):
    add_spec(ehr, ONE)
    build(ehr, "one_patient")
    version = Catalog(ehr).current("one_patient")
    assert version.privacy["class"] == "row-level", "the analyst may still look at one patient"
    assert version.privacy["picks"] == [{"derivative": "one_patient", "condition": "patient_id = 'P000646'"}]
    _refused(ehr, history("one_patient"), cli, tmp_path, "one_patient", "patient_id = 'P000646'")


def test_a_flag_computed_from_a_patient_id_feeds_no_cells(ehr, cli, tmp_path):
    add_spec(ehr, FLAGGED)
    build(ehr, "flagged")
    spec = history("flagged", filters=[{"column": "flag", "op": "is not null"}])
    _refused(ehr, spec, cli, tmp_path, "flagged", "patient_id = 'P000646'")


def test_a_presence_test_of_an_identifier_the_input_computed_is_refused(ehr):
    # a lookup is null for everyone but one patient, yet it compares nothing the way a condition does
    lookup = {"name": "looked_up", "kind": "sql", "inputs": {"e": VISITS},
              "sql": "SELECT *, MAP {'P000646': patient_id}[patient_id] AS hit FROM e"}
    add_spec(ehr, lookup)
    build(ehr, "looked_up")
    assert Catalog(ehr).current("looked_up").privacy["computed"] == ["hit"]
    spec = history("looked_up", filters=[{"column": "hit", "op": "is not null"}])
    with pytest.raises(IdentifierRefused, match=f"filters\\[0\\]: column 'hit' is a person's key.*computed by the "
                                                f"input derivative.*{RULE}"):
        add_spec(ehr, spec)
    chained = {"name": "her_rows", "kind": "sql", "inputs": {"l": {"derivative": "looked_up"}},
               "sql": "SELECT * FROM l WHERE hit IS NOT NULL"}
    add_spec(ehr, chained)
    build(ehr, "her_rows")
    with pytest.raises(IdentifierRefused, match=f"reads derivative 'her_rows'.*hit IS NOT NULL.*{RULE}"):
        add_spec(ehr, history("her_rows"))


def test_a_sql_over_picked_rows_inherits_the_pick(ehr, cli, tmp_path):
    days = {"name": "days", "kind": "sql", "inputs": {"s": {"derivative": "one_patient"}},
            "sql": "SELECT admit_date, department, class FROM s"}
    for spec in (ONE, days):
        add_spec(ehr, spec)
    build_all(ehr)
    assert Catalog(ehr).current("days").privacy["picks"] == [
        {"derivative": "one_patient", "condition": "patient_id = 'P000646'"}]
    _refused(ehr, history("days"), cli, tmp_path, "one_patient", "patient_id = 'P000646'")
    cells = {"name": "her_cells", "kind": "sql", "inputs": {"d": {"derivative": "days"}},
             "sql": "SELECT department, count(*) AS n FROM d GROUP BY ALL", "count_column": "n"}
    _refused(ehr, cells, cli, tmp_path, "one_patient", "patient_id = 'P000646'")


@pytest.mark.parametrize("sql", [
    "SELECT e.* FROM e JOIN p ON e.patient_id = p.id",
    "SELECT * FROM e WHERE patient_id IS NOT NULL",
    "SELECT * FROM e WHERE department = 'cardio' AND admit_date >= DATE '2024-02-01'",
])
def test_joins_on_keys_presence_tests_and_filters_on_codes_and_dates_still_feed_cells(ehr, tmp_path, sql):
    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / "people.csv").write_text("id,sex\n" + "".join(f"P{i:06d},f\n" for i in range(30)) + "P000646,m\n")
    ehr.add_source("registry", "csv", {"path": str(registry)}, {})
    run_import(ehr, "registry")
    # the registry's id is a person's key as the spec declares it (its name alone does not say so)
    rows = {"name": "rows", "kind": "sql", "sql": sql, "columns": {"id": "person_key"},
            "inputs": {"e": VISITS, "p": {"source": "registry", "stream": "people"}}}
    add_spec(ehr, rows)
    spec = history("rows", filters=[{"column": "patient_id", "op": "is not null"}])
    add_spec(ehr, spec)
    build_all(ehr)
    assert Catalog(ehr).current("rows").privacy["picks"] == []
    assert Catalog(ehr).current("history_rows") is not None


# --- SQL-on-FHIR views -------------------------------------------------------------------------------
@pytest.fixture
def fhir(workspace, tmp_path):
    folder = tmp_path / "fhir"
    folder.mkdir()
    people = [{"resourceType": "Patient", "id": f"P{i:06d}", "gender": "female" if i % 2 else "male",
               "name": [{"family": "Smith" if i == 646 else f"Fam{i}"}],
               "identifier": [{"value": f"MRN{i:06d}"}]} for i in [*range(30), 646]]
    visits = [{"resourceType": "Encounter", "id": f"e{n}", "status": "finished", "class": {"code": "IMP"},
               "subject": {"reference": "Patient/P000646"}, "period": {"start": day}}
              for n, day in enumerate(HER_DAYS)]
    visits += [{"resourceType": "Encounter", "id": f"o{i}", "status": "finished", "class": {"code": "AMB"},
                "subject": {"reference": f"Patient/P{i:06d}"}, "period": {"start": "2024-01-02"}} for i in range(30)]
    (folder / "Patient.ndjson").write_text("".join(json.dumps(p) + "\n" for p in people))
    (folder / "Encounter.ndjson").write_text("".join(json.dumps(e) + "\n" for e in visits))
    workspace.add_source("fhir", "fhir-files", {"path": str(folder)}, {})
    run_import(workspace, "fhir")
    return workspace


def _view(resource: str, where: str | None, columns: dict[str, str]) -> dict:
    view = {"resource": resource, "select": [{"column": [{"name": n, "path": p} for n, p in columns.items()]}]}
    return {"name": "picked", "kind": "view", "input": {"source": "fhir", "stream": resource},
            "view": {**view, **({"where": [{"path": where}]} if where else {})}}


ENCOUNTER_COLUMNS = {"cls": "class.code", "start": "period.start"}
PATIENT_COLUMNS = {"sex": "gender"}
BY_CLASS = {"name": "by_class", "kind": "aggregate", "input": {"derivative": "picked"}, "date_field": "start",
            "grain": "day", "group_by": ["cls"], "measures": [{"fn": "count", "as": "visits"}]}
BY_SEX = {"name": "by_sex", "kind": "aggregate", "input": {"derivative": "picked"}, "group_by": ["sex"],
          "measures": [{"fn": "count", "as": "people"}]}


@pytest.mark.parametrize(("resource", "where", "columns", "cells"), [
    ("Encounter", "subject.reference = 'Patient/P000646'", ENCOUNTER_COLUMNS, BY_CLASS),
    ("Patient", "name.family = 'Smith'", PATIENT_COLUMNS, BY_SEX),
    ("Patient", "identifier.value = 'MRN000646'", PATIENT_COLUMNS, BY_SEX),
    ("Patient", "identifier.where(value.startsWith('MRN00064')).exists()", PATIENT_COLUMNS, BY_SEX),
])
def test_a_view_whose_where_tests_an_identifier_feeds_no_cells(fhir, cli, tmp_path, resource, where, columns,
                                                               cells):
    add_spec(fhir, _view(resource, where, columns))
    build(fhir, "picked")
    assert Catalog(fhir).current("picked").privacy["picks"] == [
        {"derivative": "picked", "condition": f"where {where}"}]
    _refused(fhir, cells, cli, tmp_path, "picked", f"where {where}")


@pytest.mark.parametrize(("resource", "where", "columns", "cells"), [
    ("Encounter", "class.code = 'IMP' and period.start >= @2024-02-01", ENCOUNTER_COLUMNS, BY_CLASS),
    ("Patient", "name.exists() and identifier.exists()", PATIENT_COLUMNS, BY_SEX),
])
def test_a_view_whose_where_tests_codes_dates_or_presence_still_feeds_cells(fhir, resource, where, columns, cells):
    add_spec(fhir, _view(resource, where, columns))
    add_spec(fhir, cells)
    build_all(fhir)
    assert Catalog(fhir).current("picked").privacy["picks"] == []
    assert Catalog(fhir).current(cells["name"]) is not None


def test_a_view_version_recorded_before_picks_were_read_is_rebuilt_first(fhir, monkeypatch):
    spec = _view("Encounter", None, ENCOUNTER_COLUMNS)
    with monkeypatch.context() as old:
        old.setattr(disclosure, "ROLES_VERSION", 2)
        old.setattr(build_module, "ROLES_VERSION", 2)
        add_spec(fhir, spec)
        build(fhir, "picked")
    assert Catalog(fhir).current("picked").privacy["roles"] == 2
    with pytest.raises(Restricted, match="'picked' was published before .*run: lithotse derive build picked"):
        add_spec(fhir, BY_CLASS)
    assert build(fhir, "picked").status != "up to date", "the older version is rebuilt"
    assert Catalog(fhir).current("picked").privacy["picks"] == []
    add_spec(fhir, BY_CLASS)
    build(fhir, "by_class")
