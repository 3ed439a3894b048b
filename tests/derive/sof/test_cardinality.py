"""Known FHIR cardinalities and the per-resource hoisted extraction: faster SQL, same rows as fhirpathpy."""

from __future__ import annotations

import json
from collections import Counter

import duckdb
import pytest

from lithotse_desktop.derive.sof import compile_view, run_view
from lithotse_desktop.derive.sof.cardinality import element

from sof_reference import evaluate_view

ENCOUNTERS = [
    {"resourceType": "Encounter", "id": "e1", "status": "finished",
     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
     "type": [{"coding": [{"system": "s1", "code": "c1"}, {"system": "s2", "code": "c2"}]},
              {"coding": [{"code": "c3"}]}],
     "subject": {"reference": "Patient/p1"},
     "participant": [{"individual": {"reference": "Practitioner/d1"}}, {"period": {"start": "2020"}},
                     {"individual": {"reference": "http://x.org/fhir/Practitioner/d2/_history/3"}}],
     "period": {"start": "2020-01-01T10:00:00Z", "end": "2020-01-01T11:00:00Z"},
     "serviceProvider": {"reference": "Organization/o1"},
     "location": [{"location": {"reference": "Location/l1"}}]},
    {"resourceType": "Encounter", "id": "e2", "status": "planned",
     "subject": {"reference": "Group/g1"}, "period": {"start": "2021"},
     "episodeOfCare": [{"reference": "EpisodeOfCare/c1"}]},
    {"resourceType": "Encounter", "id": "e3", "subject": {"display": "no reference"},
     "location": [{"location": {"display": "no reference"}}]},
    {"resourceType": "Patient", "id": "p1", "status": "not an encounter"},
]

VIEW = {"resource": "Encounter", "select": [
    {"column": [{"name": "id", "path": "getResourceKey()"}, {"name": "status", "path": "status"},
                {"name": "class_code", "path": "class.code"},
                {"name": "patient_id", "path": "subject.getReferenceKey(Patient)"},
                {"name": "subject_key", "path": "subject.getReferenceKey()"},
                {"name": "org_id", "path": "serviceProvider.getReferenceKey(Organization)"},
                {"name": "start", "path": "period.start"}, {"name": "end", "path": "period.end"},
                {"name": "episode", "path": "episodeOfCare.getReferenceKey(EpisodeOfCare)"}]},
    {"forEachOrNull": "type.coding", "column": [{"name": "sys", "path": "system"}, {"name": "code", "path": "code"}]},
    {"forEachOrNull": "participant", "column": [
        {"name": "practitioner", "path": "individual.getReferenceKey(Practitioner)"},
        {"name": "part_start", "path": "period.start"}]},
    {"forEachOrNull": "location", "column": [{"name": "location", "path": "location.getReferenceKey(Location)"}]},
]}


@pytest.fixture()
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE res (resource JSON)")
    con.executemany("INSERT INTO res VALUES (?)", [[json.dumps(r)] for r in ENCOUNTERS])
    yield con
    con.close()


def _rows(rows: list[dict]) -> Counter:
    return Counter(tuple(sorted(r.items())) for r in rows)


def test_table_knows_common_elements_and_nothing_else() -> None:
    assert element("Encounter", "subject") == (False, "Reference")
    assert element("Encounter", "participant") == (True, "Encounter.participant")
    assert element("Encounter.participant", "individual") == (False, "Reference")
    assert element("CodeableConcept", "coding") == (True, "Coding")
    assert element("HumanName", "given") == (True, "string")
    assert element("Reference", "reference") == (False, "string")
    assert element("Encounter", "frobnicate") is None
    assert element(None, "subject") is None
    assert element("Frobnicator", "id") is None


def test_root_is_parsed_once_and_known_singletons_need_no_shape_checks() -> None:
    sql, _ = compile_view(VIEW, "res")
    assert sql.count("json_extract(__r, [") == 1
    assert "json_extract(__r, '" not in sql
    # subject and period are 0..1, so their members are read by one path from the root.
    assert "'$.subject.reference'" in sql and "'$.period.start'" in sql
    assert "'$.subject'" not in sql
    assert "\x01" not in sql


def test_rows_match_fhirpathpy(con: duckdb.DuckDBPyConnection) -> None:
    got = run_view(con, VIEW, "res").to_pylist()
    assert _rows(got) == _rows(evaluate_view(VIEW, ENCOUNTERS))
    assert {r["practitioner"] for r in got} == {"d1", "d2", None}
    assert {r["location"] for r in got} == {"l1", None}
    assert {(r["id"], r["patient_id"], r["subject_key"]) for r in got} == {
        ("e1", "p1", "p1"), ("e2", None, "g1"), ("e3", None, None)}


def test_unknown_elements_keep_the_generic_shape_checks(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("INSERT INTO res VALUES (?)", [json.dumps(
        {"resourceType": "Encounter", "id": "e4", "extra": [{"v": "a"}, {"v": "b"}], "other": {"v": "c"}})])
    view = {"resource": "Encounter", "where": [{"path": "id = 'e4'"}], "select": [
        {"column": [{"name": "other", "path": "other.v"}]},
        {"forEach": "extra", "column": [{"name": "extra", "path": "v"}]}]}
    got = run_view(con, view, "res").to_pylist()
    assert sorted(r["extra"] for r in got) == ["a", "b"]
    assert {r["other"] for r in got} == {"c"}


def test_a_single_object_where_an_array_belongs_is_still_one_item(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("INSERT INTO res VALUES (?)", [json.dumps(
        {"resourceType": "Encounter", "id": "e5", "participant": {"individual": {"reference": "Practitioner/d9"}}})])
    view = {"resource": "Encounter", "where": [{"path": "id = 'e5'"}], "select": [
        {"forEach": "participant", "column": [{"name": "p", "path": "individual.getReferenceKey(Practitioner)"}]}]}
    assert run_view(con, view, "res").to_pylist() == [{"p": "d9"}]


def test_where_and_root_constants_use_the_hoisted_values(con: duckdb.DuckDBPyConnection) -> None:
    view = {"resource": "Encounter", "where": [{"path": "status = 'finished'"}], "select": [
        {"forEach": "participant", "column": [{"name": "enc", "path": "%resource.id"},
                                              {"name": "org", "path": "%resource.serviceProvider.reference"}]}]}
    got = run_view(con, view, "res").to_pylist()
    assert got == [{"enc": "e1", "org": "Organization/o1"}] * 3
