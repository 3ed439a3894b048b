"""A source's own keys, and columns named for whose value they hold, are identifiers.

The twenty-first review grouped aggregates of a CSV by its declared key (``encounter_id``), by
``chart_no`` and by ``patient_last_name``: none was known for what it is, and every visit number,
MRN and surname was published as the key of a suppressed cell.
"""

from __future__ import annotations

import json

import pytest

from lithotse_desktop.derive.build import build
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.errors import LithotseError
from lithotse_desktop.raw import run_import

VISITS = {"source": "t", "stream": "visits"}


@pytest.fixture
def visits(workspace, tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    header = "encounter_id,patient_id,patient_last_name,chart_no,admit_date,department,note,ref\n"
    (folder / "visits.csv").write_text(header + "".join(
        f"E{i:04d},p{i % 40:03d},Name{i % 40},MRN{i % 40:05d},2020-01-{1 + i % 28:02d},{'AB'[i % 2]},"
        f"{f'case{i % 3}' if i % 40 < 3 else ''},{193206915 + 7 * (i % 40)}\n" for i in range(200)))
    workspace.add_source("t", "csv", {"path": str(folder), "date_column": "admit_date", "key": "encounter_id",
                                      "person_column": "patient_id"}, {})
    run_import(workspace, "t")
    return workspace


@pytest.mark.parametrize(("column", "what"), [("encounter_id", "a record's key"),
                                              ("chart_no", "a medical record number"), ("patient_last_name", "a name")])
def test_an_aggregate_by_an_identifier_is_refused_naming_it(visits, column, what):
    spec = {"name": "by_it", "kind": "aggregate", "input": VISITS, "group_by": ["department", column],
            "measures": [{"fn": "count", "as": "visits"}]}
    with pytest.raises(LithotseError, match=f"{column}.*{what}"):
        add_spec(visits, spec)
    Catalog(visits).save_spec(spec)  # as a sync brings it, unchecked: the build refuses it too
    with pytest.raises(LithotseError, match=f"{column}.*{what}"):
        build(visits, "by_it")
    assert Catalog(visits).current("by_it") is None


def test_a_key_of_several_columns_names_no_one(workspace, tmp_path):
    """A daily count keyed by (day, ward) is no one's identifier: its columns stay dimensions."""
    folder = tmp_path / "beds"
    folder.mkdir()
    (folder / "beds.csv").write_text("day,ward,beds\n" + "".join(
        f"2020-01-{1 + i:02d},{w},{10 + i}\n" for i in range(20) for w in ("north", "south")))
    workspace.add_source("beds", "csv", {"path": str(folder), "date_column": "day", "key": "day,ward"}, {})
    run_import(workspace, "beds")
    add_spec(workspace, {"name": "by_ward", "kind": "aggregate", "input": {"source": "beds", "stream": "beds"},
                         "group_by": ["ward"], "suppress_below": 0, "measures": [{"fn": "count", "as": "days"}]})
    build(workspace, "by_ward")
    rows = Catalog(workspace).read(Catalog(workspace).current("by_ward")).to_pylist()
    assert {r["ward"]: r["days"] for r in rows} == {"north": 20, "south": 20}


def test_visits_of_patients_the_key_cannot_name_count_as_people(workspace, tmp_path):
    """The twenty-second review: Encounters whose subject is a patient's identifier only (or a
    conditional reference) have no patient key, so their cells counted 0 people and were
    published (home health: 3 visits of 2 patients). A row without a key now counts as a person
    of its own: such cells are small, and suppressed."""
    folder = tmp_path / "fhir"
    folder.mkdir()
    rows = []

    def visit(subject: dict, code: str, day: int) -> None:
        rows.append({"resourceType": "Encounter", "id": f"e{len(rows)}", "status": "finished",
                     "class": {"code": code}, "subject": subject, "period": {"start": f"2024-01-{day:02d}"}})
    for i, mrn in enumerate(["MRN-77", "MRN-77", "MRN-88"]):
        visit({"identifier": {"system": "urn:mrn", "value": mrn}, "display": "Jane Roe"}, "HH", i + 1)
    for i in range(2):
        visit({"reference": "Patient?identifier=urn:mrn|MRN-99"}, "VR", i + 1)
    for p in range(40):
        visit({"reference": f"Patient/p{p}"}, "AMB", p % 28 + 1)
    for p in range(30):
        visit({"reference": f"Patient/q{p}"}, "EMER", p % 28 + 1)
    (folder / "Encounter.ndjson").write_text("".join(json.dumps(r) + "\n" for r in rows))
    workspace.add_source("fh", "fhir-files", {"path": str(folder)}, {})
    run_import(workspace, "fh")
    add_spec(workspace, {"name": "encv", "kind": "view", "input": {"source": "fh", "stream": "Encounter"},
                         "view": {"resourceType": "ViewDefinition", "resource": "Encounter", "select": [{"column": [
                             {"name": "id", "path": "getResourceKey()"},
                             {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                             {"name": "cls", "path": "class.code"},
                             {"name": "start", "path": "period.start", "type": "date"}]}]}})
    build(workspace, "encv")
    add_spec(workspace, {"name": "by_class", "kind": "aggregate", "input": {"derivative": "encv"},
                         "group_by": ["cls"], "measures": [{"fn": "count", "as": "n"}]})
    build(workspace, "by_class")
    rows_out = {r["cls"]: r for r in Catalog(workspace).read(Catalog(workspace).current("by_class")).to_pylist()}
    assert rows_out["HH"]["suppressed"] and rows_out["VR"]["suppressed"]
    assert rows_out["HH"]["n"] is None and rows_out["VR"]["n"] is None
    assert rows_out["AMB"]["n"] == 40 and rows_out["EMER"]["suppressed"], "EMER: the complement of 3 + 2"


def test_count_distinct_of_an_unclassified_column_passes_the_threshold(visits):
    """The twenty-second review: count_distinct of a column filled in for 3 patients (a case
    number) was published as 3 beside its cell's visits. An unclassified column's distinct count
    is held to the threshold as a part of the cell; declared a code, it is a value."""
    spec = {"name": "cases", "kind": "aggregate", "input": VISITS, "group_by": ["department"],
            "measures": [{"fn": "count", "as": "visits"}, {"fn": "count_distinct", "column": "note", "as": "cases"}]}
    add_spec(visits, spec)
    build(visits, "cases")
    rows = Catalog(visits).read(Catalog(visits).current("cases")).to_pylist()
    assert all(r["suppressed"] and r["cases"] is None for r in rows)
    add_spec(visits, {**spec, "columns": {"note": "code"}}, replace=True)
    build(visits, "cases")
    rows = Catalog(visits).read(Catalog(visits).current("cases")).to_pylist()
    in_file: dict[str, set] = {}
    for i in range(200):
        if i % 40 < 3:
            in_file.setdefault("AB"[i % 2], set()).add(f"case{i % 3}")
    assert {r["department"]: r["cases"] for r in rows} == {d: len(v) for d, v in in_file.items()} == {"A": 3, "B": 3}
    assert not any(r["suppressed"] for r in rows)


def test_a_dimension_whose_values_are_each_one_persons_is_refused(visits):
    """The twenty-third review grouped by ``ref`` (an SSN-like number, one per patient, a name
    nothing knows): all 40 values were published as the keys of suppressed rows. Such a column
    is refused, counted on the input; a code most people share is not; declared a code, it is
    the spec's word."""
    spec = {"name": "by_ref", "kind": "aggregate", "input": VISITS, "group_by": ["department", "ref"],
            "measures": [{"fn": "count", "as": "visits"}]}
    add_spec(visits, spec)  # counted on the input: the build refuses it
    with pytest.raises(LithotseError, match=r"'ref' holds a value no one else has for 40 of its 40 people.*"
                                            r"rule: a cell's keys name no one"):
        build(visits, "by_ref")
    assert Catalog(visits).current("by_ref") is None
    add_spec(visits, {**spec, "name": "by_department", "group_by": ["department"]})
    build(visits, "by_department")
    add_spec(visits, {**spec, "columns": {"ref": "code"}}, replace=True)
    build(visits, "by_ref")
    assert all(r["suppressed"] for r in Catalog(visits).read(Catalog(visits).current("by_ref")).to_pylist())
