"""Tables of cells whose inputs differ but reach one raw stream are not decided together, so they
are not published side by side while either hides cells (issue 12, "no recovery across tables").

The encounters: every month Neurology sees 15 to 18 people and Cardiology 1 to 7. People per
month over the raw stream, beside people per month over a row-level ``sql`` that leaves Cardiology
out, both publish every month; their difference is Cardiology's people per month.
"""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from lithotse_desktop.derive import build as build_module
from lithotse_desktop.derive.build import BuildsFailed, DecidedAlone, build, build_all
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.raw import run_import

RULE = "rule: tables of cells of one raw stream are decided together only when they read the same input"
ENCOUNTERS = {"source": "ehr", "stream": "encounters"}
CARDIOLOGY_PEOPLE = {1: 3, 2: 5, 3: 1, 4: 7}
ALL_PEOPLE = {"name": "all_people", "kind": "aggregate", "input": ENCOUNTERS, "date_field": "admit_date",
              "grain": "month", "measures": [{"fn": "count_distinct", "column": "patient_id", "as": "people"}]}
NOT_CARDIOLOGY = {"name": "not_cardiology", "kind": "sql", "inputs": {"e": ENCOUNTERS},
                  "sql": "SELECT * FROM e WHERE department <> 'cardiology'"}
OTHER_PEOPLE = {**ALL_PEOPLE, "name": "other_people", "input": {"derivative": "not_cardiology"}}


@pytest.fixture
def encounters(workspace, tmp_path):
    folder = tmp_path / "ehr"
    folder.mkdir()
    rows = ["patient_id,admit_date,department"]
    for month, cardiology in CARDIOLOGY_PEOPLE.items():
        rows += [f"c{month}-{i},2020-{month:02d}-0{1 + i % 9},cardiology" for i in range(cardiology)]
        rows += [f"n{month}-{i},2020-{month:02d}-1{i % 9},neurology" for i in range(14 + month)]
    (folder / "encounters.csv").write_text("\n".join(rows) + "\n")
    workspace.add_source("ehr", "csv", {"path": str(folder), "date_column": "admit_date"}, {})
    run_import(workspace, "ehr")
    return workspace


def _people_by_month(ws, name: str) -> dict[int, int]:
    table = Catalog(ws).read(Catalog(ws).current(name))
    return {row["period"].month: row["people"] for row in table.to_pylist() if not row.get("suppressed")}


def _cardiology_people_from_csv(ws) -> dict[int, int]:
    """Cardiology's people per month, read from the CSV with the standard library."""
    people: dict[int, set[str]] = defaultdict(set)
    for line in (ws.root.parent / "ehr" / "encounters.csv").read_text().splitlines()[1:]:
        patient, day, department = line.split(",")
        if department == "cardiology":
            people[int(day[5:7])].add(patient)
    return {month: len(who) for month, who in people.items()}


def test_aggregates_of_a_row_level_sql_and_of_its_stream_are_refused(encounters, monkeypatch):
    ws = encounters
    for spec in (ALL_PEOPLE, NOT_CARDIOLOGY, OTHER_PEOPLE):
        add_spec(ws, spec)
    pair = "aggregate '(all|other)_people' and the published aggregate '(all|other)_people'"
    with pytest.raises(BuildsFailed, match=f"{pair} both count rows of ehr/encounters.*{RULE}") as refused:
        build_all(ws)
    assert "all_people" in str(refused.value) and "other_people" in str(refused.value)
    assert "publish both from the same input" in str(refused.value)
    published = [name for name in ("all_people", "other_people") if Catalog(ws).current(name) is not None]
    assert len(published) == 1, "the first built is published, the second refused"
    # what publishing both did before the rule: every month visible in both, and their difference
    # is Cardiology's people, 1 to 7 a month
    with monkeypatch.context() as patched:
        patched.setattr(build_module, "_check_decided_alone", lambda *_args: None)
        build_all(ws)
    everyone, others = _people_by_month(ws, "all_people"), _people_by_month(ws, "other_people")
    assert set(everyone) == set(others) == set(CARDIOLOGY_PEOPLE), "nothing hidden in either"
    recovered = {month: everyone[month] - others[month] for month in everyone}
    assert recovered == _cardiology_people_from_csv(ws) == CARDIOLOGY_PEOPLE


def test_the_remedy_publishes_both_from_one_input_and_they_are_decided_together(encounters):
    """The filtered subset read from the stream itself, as the refusal says: decided with the
    monthly total, no month of Cardiology is the difference of two published cells."""
    ws = encounters
    for spec in (ALL_PEOPLE, NOT_CARDIOLOGY, OTHER_PEOPLE):
        add_spec(ws, spec)
    with pytest.raises(BuildsFailed, match=RULE):
        build_all(ws)
    same_input = {**ALL_PEOPLE, "name": "other_people",
                  "filters": [{"column": "department", "op": "!=", "value": "cardiology"}]}
    add_spec(ws, same_input, replace=True)
    assert {r.name: r.status for r in build_all(ws)}["other_people"] == "built"
    everyone, others = _people_by_month(ws, "all_people"), _people_by_month(ws, "other_people")
    assert not set(everyone) & set(others), "each month hidden in one of the two"


# --- a FHIR stream, a view of it, and aggregates over each ---------------------------------------------------
ENCOUNTER_VIEW = {"name": "visits", "kind": "view", "input": {"source": "fhir", "stream": "Encounter"},
                  "view": {"resource": "Encounter", "select": [{"column": [
                      {"name": "eid", "path": "getResourceKey()"},
                      {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                      {"name": "cls", "path": "class.code"},
                      {"name": "start", "path": "period.start"}]}]}}
BY_CLASS = {"name": "by_class", "kind": "aggregate", "input": {"derivative": "visits"}, "group_by": ["cls"],
            "measures": [{"fn": "count_distinct", "column": "patient", "as": "people"}]}
PER_MONTH = {"name": "per_month", "kind": "aggregate", "input": {"source": "fhir", "stream": "Encounter"},
             "date_field": "date", "grain": "month",
             "measures": [{"fn": "count_distinct", "column": "patient_id", "as": "people"}]}


@pytest.fixture
def fhir(workspace, tmp_path):
    folder = tmp_path / "fhir"
    folder.mkdir()
    visits = [{"resourceType": "Encounter", "id": f"e{i}", "status": "finished",
               "class": {"code": "EMER" if i < 3 else "AMB"}, "subject": {"reference": f"Patient/p{i}"},
               "period": {"start": f"2024-0{1 + i % 3}-1{i % 9}"}} for i in range(60)]
    (folder / "Encounter.ndjson").write_text("".join(json.dumps(v) + "\n" for v in visits))
    workspace.add_source("fhir", "fhir-files", {"path": str(folder)}, {})
    run_import(workspace, "fhir")
    return workspace


def test_an_aggregate_of_a_view_beside_one_of_its_fhir_stream_is_refused(fhir):
    ws = fhir
    for spec in (ENCOUNTER_VIEW, BY_CLASS, PER_MONTH):
        add_spec(ws, spec)
    build(ws, "visits")
    assert build(ws, "by_class").status == "built"
    with pytest.raises(DecidedAlone, match=f"derivative 'per_month': aggregate 'per_month' and the published "
                                           f"aggregate 'by_class' both count rows of fhir/Encounter through "
                                           f"different inputs \\(fhir/Encounter; derivative 'visits'\\).*{RULE}"):
        build(ws, "per_month")
    assert Catalog(ws).current("per_month") is None


def test_the_same_aggregates_build_when_neither_hides_a_cell(fhir):
    ws = fhir
    for spec in (ENCOUNTER_VIEW, BY_CLASS, {**PER_MONTH, "suppress_below": 0}):
        add_spec(ws, spec)
    with pytest.raises(BuildsFailed, match=f"aggregate 'per_month' and the published aggregate 'by_class'.*{RULE}"):
        build_all(ws)
    add_spec(ws, {**BY_CLASS, "suppress_below": 0}, replace=True)
    assert {r.name: r.status for r in build_all(ws)} == {"visits": "up to date", "by_class": "built",
                                                        "per_month": "built"}


def test_privacy_audit_lists_aggregates_of_different_inputs_of_one_stream(fhir, cli, monkeypatch):
    ws = fhir
    for spec in (ENCOUNTER_VIEW, BY_CLASS, PER_MONTH):
        add_spec(ws, spec)
    with monkeypatch.context() as patched:  # published before builds refused the pair
        patched.setattr(build_module, "_check_decided_alone", lambda *_args: None)
        build_all(ws)
    report = json.loads(cli("privacy", "audit", "--json", expect=1).output)
    assert not report["ok"]
    assert [{k: r[k] for k in ("derivatives", "kinds", "inputs", "streams")} for r in report["refusals"]] == [
        {"derivatives": ["by_class", "per_month"], "kinds": ["aggregate", "aggregate"],
         "inputs": ["derivative 'visits'", "fhir/Encounter"], "streams": ["fhir/Encounter"]}]
    assert report["refusals"][0]["rule"].startswith(RULE.removeprefix("rule: "))
    assert "REFUSED aggregate by_class and aggregate per_month" in cli("privacy", "audit", expect=1).output
