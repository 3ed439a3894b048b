"""A table of cells counts each record in one cell at most.

The tenth adversarial review built sql cells that put every ambulatory visit in two cells, a
total and its part (``unnest(['all', 'amb'])``, or a join to a table of splits): both cells are
large and shown, and Cardiology's 21 − 20 is the one inpatient. An aggregate over a row-level sql
or a view that repeats a record (unnest, UNION ALL, a join matching two rows, a forEach) did the
same. Such cells are now refused: by their shape when ``derive add`` reads them, by the data when
a joined table holds a key twice, naming the rule; lookups holding each key once still work.
"""

from __future__ import annotations

import json
import re

import duckdb
import pytest

from lithotse_desktop.derive import build as build_module
from lithotse_desktop.derive.build import BuildsFailed, build, build_all
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.disclosure import view_several
from lithotse_desktop.derive.kinds import sql as sql_kind
from lithotse_desktop.derive.kinds.sql import ONE_CELL_RULE, several_rows
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.derive.spec import SpecError
from lithotse_desktop.errors import LithotseError
from lithotse_desktop.raw import run_import

ENC = {"source": "ehr", "stream": "encounters"}
SPLITS = {"source": "ehr", "stream": "splits"}
REGIONS = {"source": "ehr", "stream": "regions"}
RULE = re.escape(ONE_CELL_RULE)
COUNTS = "count(*) AS n, count(DISTINCT e.patient_id) AS p"
TWICE = {
    "unnest": f"SELECT e.department, e.s, {COUNTS} FROM (SELECT *, unnest(CASE WHEN class = 'AMB' "
              "THEN ['all', 'amb'] ELSE ['all'] END) AS s FROM enc) AS e GROUP BY ALL",
    "joined unnest": f"SELECT e.department, v.s, {COUNTS} FROM enc AS e JOIN (SELECT unnest(['all', 'amb']) AS s) "
                     "AS v ON v.s = 'all' OR e.class = 'AMB' GROUP BY ALL",
    "join on or": f"SELECT e.department, w.s, {COUNTS} FROM enc AS e JOIN w ON w.s = 'all' OR e.class = 'AMB' "
                  "GROUP BY ALL",
}
SPLIT_BY_DATA = (f"SELECT e.department, w.s, {COUNTS} FROM enc AS e JOIN w ON w.department = e.department "
                 "WHERE w.s = 'all' OR e.class = 'AMB' GROUP BY ALL")


@pytest.fixture
def ehr(workspace, tmp_path):
    """January 2020: Cardiology 20 ambulatory patients and one inpatient, Neurology 30, Oncology 25;
    a table of splits with two rows per department ('all', 'amb'), and one of regions, one row each."""
    folder = tmp_path / "ehr"
    folder.mkdir()
    rows = ["encounter_id,patient_id,admit_date,department,class"]
    people = [("Cardiology", "AMB")] * 20 + [("Cardiology", "IMP")] + [("Neurology", "AMB")] * 30 + \
        [("Oncology", "AMB")] * 25
    rows[0] += ",dkey,tags"
    number = {"Cardiology": 1, "Neurology": 2, "Oncology": 3}
    rows += [f"E{i:05d},p{i:03d},2020-01-{1 + i % 28:02d},{dept},{cls},{number[dept]},"
             f"{'all|amb' if cls == 'AMB' else 'all'}" for i, (dept, cls) in enumerate(people)]
    (folder / "encounters.csv").write_text("\n".join(rows) + "\n")
    departments = ["Cardiology", "Neurology", "Oncology"]
    (folder / "splits.csv").write_text("s,department,admit_date\n" + "".join(
        f"{s},{d},2020-01-01\n" for d in departments for s in ("all", "amb")))
    (folder / "parts.csv").write_text("encounter_id,patient_id,part,admit_date\n" + "".join(
        f"E{i:05d},p{i:03d},all,2020-01-0{2 if i == 3 else 1}\n" for i in range(len(people))))
    (folder / "codes.csv").write_text("kid,s,admit_date\n" + "".join(
        f"{prefix}{n},{s},2020-01-01\n" for n in (1, 2, 3) for prefix, s in (("", "all"), ("0", "amb"))))
    (folder / "regions.csv").write_text("department,region,admit_date\n" + "".join(
        f"{d},{r},2020-01-01\n" for d, r in zip(departments, ["north", "south", "north"], strict=True)))
    workspace.add_source("ehr", "csv", {"path": str(folder), "date_column": "admit_date", "key": "encounter_id",
                                        "person_column": "patient_id"}, {})
    run_import(workspace, "ehr")
    workspace.csv = folder / "encounters.csv"
    return workspace


def inpatients_in_cardiology(csv, counted: str = "count(DISTINCT patient_id)") -> int:
    """The hidden count the two cells would give away, counted from the file itself (people, or
    with ``count(*)`` the visits of an input without a person key)."""
    return duckdb.sql(f"SELECT {counted} FROM read_csv('{csv}') "
                      "WHERE department = 'Cardiology' AND class <> 'AMB'").fetchall()[0][0]


def cells_spec(sql: str) -> dict:
    return {"name": "cells", "kind": "sql", "inputs": {"enc": ENC, "w": SPLITS}, "sql": sql,
            "count_column": "n", "people_column": "p"}


def published(ws, name: str) -> dict[tuple, int]:
    table = Catalog(ws).read(Catalog(ws).current(name)).to_pylist()
    return {(r["department"], r["s"]): r["p"] for r in table if not r["suppressed"]}


def assert_leaks_without(ws, monkeypatch, checks: tuple[str, ...], name: str) -> None:
    """Nothing of ``name`` was published; built without the build's ``checks``, its two shown
    Cardiology cells give the one inpatient away (the test sees a real leak, not a refusal alone)."""
    assert Catalog(ws).current(name) is None
    with monkeypatch.context() as unchecked:
        for check in checks:
            unchecked.setattr(build_module, check, lambda *_args: None)
        build(ws, name)
        shown = published(ws, name)
    assert shown[("Cardiology", "all")] - shown[("Cardiology", "amb")] == inpatients_in_cardiology(ws.csv) == 1


@pytest.mark.parametrize("spelling", sorted(TWICE))
def test_sql_cells_counting_a_record_in_two_cells_are_refused_by_their_shape(ehr, monkeypatch, spelling):
    spec = cells_spec(TWICE[spelling])
    with monkeypatch.context() as unchecked:
        unchecked.setattr(sql_kind, "_lookups", lambda *_args: ())
        unchecked.setattr(build_module, "_check_lookups", lambda *_args: None)
        unchecked.setattr(build_module, "_judge_counts", lambda *_args: None)
        add_spec(ehr, spec)
        build(ehr, "cells")
        shown = published(ehr, "cells")
    assert shown[("Cardiology", "all")] - shown[("Cardiology", "amb")] == inpatients_in_cardiology(ehr.csv) == 1, \
        "without the rule, the two shown cells give the one inpatient away"
    with pytest.raises(SpecError, match=f"derivative 'cells': .*counted in more than one cell.*{RULE}"):
        add_spec(ehr, spec, replace=True)


def test_a_table_joined_on_a_key_it_holds_twice_is_refused_at_the_build(ehr, monkeypatch):
    spec = cells_spec(SPLIT_BY_DATA)
    add_spec(ehr, spec, replace=True)  # its shape is that of a lookup: only the data says otherwise
    with pytest.raises(LithotseError, match=f"w holds a value of w.department in more than one row.*{RULE}"):
        build_all(ehr, ["cells"])
    assert_leaks_without(ehr, monkeypatch, ("_check_lookups", "_judge_counts"), "cells")


@pytest.mark.parametrize("sql", [
    f"SELECT r.region, {COUNTS} FROM enc AS e JOIN r ON r.department = e.department GROUP BY ALL",
    f"SELECT r.region, {COUNTS} FROM enc AS e LEFT JOIN r USING (department) GROUP BY ALL",
    f"SELECT w.s, {COUNTS} FROM enc AS e JOIN r ON r.department = e.department "
    "JOIN w ON w.department = e.department AND w.s = 'all' GROUP BY ALL",
])
def test_lookups_holding_each_key_once_still_feed_cells(ehr, sql):
    add_spec(ehr, {"name": "cells", "kind": "sql", "inputs": {"enc": ENC, "r": REGIONS, "w": SPLITS}, "sql": sql,
                   "count_column": "n", "people_column": "p"})
    build(ehr, "cells")
    table = Catalog(ehr).read(Catalog(ehr).current("cells")).to_pylist()
    assert sum(r["n"] for r in table if not r["suppressed"]) in (76, 55), table  # north 46 + south 30; all 76


CODES = {"source": "ehr", "stream": "codes"}
BY_DATA = {
    "a DISTINCT hiding the records": ("SELECT x.*, w.s FROM (SELECT DISTINCT encounter_id, patient_id, department, "
                                      "class FROM enc) AS x JOIN w ON w.department = x.department "
                                      "WHERE w.s = 'all' OR x.class = 'AMB'", "151 rows hold 6 of w's records"),
    "a key cast to match '1' and '01'": ("SELECT x.*, c.s FROM enc AS x JOIN c ON c.kid = x.dkey "
                                         "WHERE c.s = 'all' OR x.class = 'AMB'", "151 rows hold 75 of enc's records"),
    "a first table reading no input": ("SELECT x.*, w.s FROM (SELECT 1 AS one) AS d, enc AS x, w WHERE w.department "
                                       "= x.department AND (w.s = 'all' OR x.class = 'AMB')",
                                       "151 rows hold 75 of enc's records"),
    "a column named like the check's own": ("SELECT x.patient_id, x.department, c.s, x.encounter_id || c.s AS "
                                            "__lithotse_record1 FROM enc AS x JOIN c ON c.kid = x.dkey "
                                            "WHERE c.s = 'all' OR x.class = 'AMB'",
                                            "151 rows hold 75 of enc's records"),
    "a union lining its columns up otherwise than its marks": (
        "SELECT *, 0 AS s, 0 AS pad FROM enc UNION SELECT encounter_id, patient_id, admit_date, department, class, "
        "dkey, tags, 1 AS s, 0 AS pad FROM enc WHERE class = 'AMB'", "a set operation inside it reads rows again"),
    "a function making rows": ("SELECT *, generate_subscripts(string_split(tags, '|'), 1) AS s FROM enc",
                               "generate_subscripts makes several rows of one"),
}
OUTER_ROWS = ("SELECT CASE generate_subscripts([1, 2], 1) WHEN 1 THEN 'all' ELSE class END AS part, count(*) AS n, "
              "count(DISTINCT patient_id) AS p FROM enc WHERE department = 'Cardiology' GROUP BY part")


def test_rows_made_in_the_cells_own_keys_are_counted_too(ehr, monkeypatch):
    """The thirteenth review: ``generate_subscripts`` in the outermost SELECT put every visit in
    'all' and in its class, and the check, reading only the rows the cells are made of, saw each
    record once. The keys are now computed in the check as in the query."""
    spec = {"name": "cells", "kind": "sql", "inputs": {"enc": ENC}, "sql": OUTER_ROWS, "count_column": "n",
            "people_column": "p"}
    with pytest.raises(SpecError, match=f"generate_subscripts makes several rows of one.*{RULE}"):
        add_spec(ehr, spec)
    with monkeypatch.context() as shape_unchecked:  # the count on the data, alone, refuses it too
        shape_unchecked.setattr(sql_kind, "_lookups", lambda *_args: ())
        add_spec(ehr, spec)
        with pytest.raises(LithotseError, match=f"rows hold 21 of enc's records in more rows than their input.*{RULE}"):
            build_all(ehr, ["cells"])
    assert Catalog(ehr).current("cells") is None


@pytest.mark.parametrize("how", sorted(BY_DATA))
def test_rows_repeating_a_record_are_found_on_the_data(ehr, monkeypatch, how):
    """The eleventh review's four ways past the query's shape: each is found by counting the rows
    each record of an input lands in, as sql cells and as rows feeding an aggregate."""
    sql, found = BY_DATA[how]
    inputs = {"enc": ENC, "w": SPLITS, "c": CODES}
    add_spec(ehr, {"name": "rows", "kind": "sql", "inputs": inputs, "sql": sql})
    build(ehr, "rows")
    reasons = [entry["why"] for entry in Catalog(ehr).current("rows").privacy["several"]]
    assert any(found in why for why in reasons) and reasons[-1].startswith("counted on the data"), reasons
    aggregate = {"name": "agg", "kind": "aggregate", "input": {"derivative": "rows"}, "group_by": ["department", "s"],
                 "measures": [{"fn": "count_distinct", "column": "patient_id", "as": "p"}]}
    with pytest.raises(LithotseError, match=f"derivative 'agg': .*{found}.*{RULE}"):
        add_spec(ehr, aggregate)
    Catalog(ehr).save_spec(aggregate)
    with pytest.raises(LithotseError, match=f"derivative 'agg': .*{found}.*{RULE}"):
        build(ehr, "agg")
    cells = f"SELECT department, s, count(*) AS n, count(DISTINCT patient_id) AS p FROM ({sql}) AS e GROUP BY ALL"
    # by its shape, on the data, or (a union) as a count of people it cannot follow to its input
    with pytest.raises(LithotseError, match=f"derivative 'cells': .*(?:{RULE}|cannot be followed)"):
        add_spec(ehr, {"name": "cells", "kind": "sql", "inputs": inputs, "sql": cells, "count_column": "n",
                       "people_column": "p"})
        build_all(ehr, ["cells"])
    assert Catalog(ehr).current("cells") is None and Catalog(ehr).current("agg") is None


def test_a_query_reading_its_own_text_publishes_the_rows_it_was_counted_on(ehr):
    """``current_query()`` tells the counted run (its reads marked) from a plain one: it copied the
    ambulatory visits only where it was not counted. A sql is now counted in the run that writes
    its rows: the copies it makes there are counted, and here it makes none."""
    sql = ("SELECT x.*, w.s FROM enc AS x JOIN w ON w.department = x.department "
           "WHERE w.s = 'all' OR (x.class = 'AMB' AND current_query() NOT LIKE '%lithotse_record%')")
    add_spec(ehr, {"name": "rows", "kind": "sql", "inputs": {"enc": ENC, "w": SPLITS}, "sql": sql})
    build(ehr, "rows")
    version = Catalog(ehr).current("rows")
    records = duckdb.sql(f"SELECT count(*) FROM read_csv('{ehr.csv}')").fetchall()[0][0]
    assert version.privacy["several"] == [] and version.rows == records


@pytest.mark.parametrize("sql", [
    "SELECT x.*, r.region FROM r JOIN enc AS x ON x.department = r.department",
    "SELECT *, 'amb' AS kind FROM enc WHERE class = 'AMB' UNION ALL SELECT *, 'other' AS kind FROM enc "
    "WHERE class <> 'AMB'",
    "WITH a AS (SELECT * FROM enc WHERE class = 'AMB') SELECT a.*, r.region FROM a JOIN r USING (department)",
    "WITH a AS (SELECT * FROM enc) SELECT x.*, r.region FROM a AS x JOIN a AS y ON y.patient_id = x.patient_id "
    "AND y.encounter_id = x.encounter_id JOIN r ON r.department = x.department",
])
def test_rows_each_one_record_feed_aggregates_whatever_their_shape(ehr, sql):
    add_spec(ehr, {"name": "rows", "kind": "sql", "inputs": {"enc": ENC, "r": REGIONS}, "sql": sql})
    add_spec(ehr, {"name": "agg", "kind": "aggregate", "input": {"derivative": "rows"}, "group_by": ["department"],
                   "measures": [{"fn": "count", "as": "n"}]})
    build_all(ehr)
    assert Catalog(ehr).current("rows").privacy["several"] == []
    assert Catalog(ehr).current("agg") is not None


UPSTREAM = {
    "unnest": ("SELECT *, unnest(CASE WHEN class = 'AMB' THEN ['all', 'amb'] ELSE ['all'] END) AS s FROM enc",
               "unnest makes several rows of one"),
    "union": ("SELECT *, 'all' AS s FROM enc UNION ALL SELECT *, 'amb' AS s FROM enc WHERE class = 'AMB'",
              "a set operation inside it reads rows again"),
    "join": ("SELECT enc.*, w.s FROM enc JOIN w ON w.department = enc.department "
             "WHERE w.s = 'all' OR enc.class = 'AMB'",
             "counted on the data, its 151 rows hold 75 of enc's records, 6 of w's records in more rows than their "
             "input"),
}


@pytest.mark.parametrize("how", sorted(UPSTREAM))
def test_an_aggregate_over_rows_repeating_a_record_is_refused(ehr, cli, tmp_path, monkeypatch, how):
    sql, why = UPSTREAM[how]
    add_spec(ehr, {"name": "rows", "kind": "sql", "inputs": {"enc": ENC, "w": SPLITS}, "sql": sql})
    aggregate = {"name": "agg", "kind": "aggregate", "input": {"derivative": "rows"}, "group_by": ["department", "s"],
                 "measures": [{"fn": "count", "as": "n"}, {"fn": "count_distinct", "column": "patient_id", "as": "p"}]}
    build(ehr, "rows")
    assert why in [entry["why"] for entry in Catalog(ehr).current("rows").privacy["several"]]
    path = tmp_path / "agg.json"
    path.write_text(json.dumps(aggregate))
    result = cli("derive", "add", "--file", str(path), expect=1)
    assert "reads derivative 'rows', whose rows may be several for one record" in result.output + result.stderr
    Catalog(ehr).save_spec(aggregate)  # as a sync brings it, unchecked: the build refuses it too
    with pytest.raises(LithotseError, match=f"derivative 'agg': .*{re.escape(why)}.*{RULE}"):
        build_all(ehr, ["agg"])
    assert_leaks_without(ehr, monkeypatch, ("check_one_row_per_record",), "agg")


def test_rows_one_per_record_still_feed_aggregates(ehr):
    add_spec(ehr, {"name": "rows", "kind": "sql", "inputs": {"enc": ENC, "r": REGIONS},
                   "sql": "SELECT enc.*, r.region FROM enc JOIN r USING (department) WHERE enc.class = 'AMB'"})
    add_spec(ehr, {"name": "agg", "kind": "aggregate", "input": {"derivative": "rows"}, "group_by": ["region"],
                   "measures": [{"fn": "count_distinct", "column": "patient_id", "as": "p"}]})
    build_all(ehr)
    assert Catalog(ehr).current("rows").privacy["several"] == []
    table = Catalog(ehr).read(Catalog(ehr).current("agg")).to_pylist()
    assert {r["region"]: r["p"] for r in table} == {"north": 45, "south": 30}


def test_a_view_making_a_row_per_element_feeds_no_cells(workspace, tmp_path):
    folder = tmp_path / "fhir"
    folder.mkdir()
    patients = [{"resourceType": "Patient", "id": f"P{i}", "gender": "female",
                 "name": [{"use": "official", "family": f"F{i}"}, *([{"use": "old", "family": "X"}] if i % 2 else [])]}
                for i in range(30)]
    (folder / "Patient.ndjson").write_text("".join(json.dumps(p) + "\n" for p in patients))
    workspace.add_source("fhir", "fhir-files", {"path": str(folder)}, {})
    run_import(workspace, "fhir")
    names = {"name": "names", "kind": "view", "input": {"source": "fhir", "stream": "Patient"},
             "view": {"resource": "Patient", "select": [
                 {"column": [{"name": "pid", "path": "getResourceKey()"}, {"name": "sex", "path": "gender"}]},
                 {"forEach": "name", "column": [{"name": "use", "path": "use"}]}]}}
    add_spec(workspace, names)
    add_spec(workspace, {"name": "by_use", "kind": "aggregate", "input": {"derivative": "names"},
                         "group_by": ["use"], "measures": [{"fn": "count", "as": "n"}]})
    with pytest.raises(BuildsFailed, match=f"by_use: failed: .*its ViewDefinition's forEach name makes a row of "
                                           f"each element.*{RULE}"):
        build_all(workspace)
    assert Catalog(workspace).current("names") is not None and Catalog(workspace).current("by_use") is None


def test_the_shapes_that_repeat_a_record_are_named():
    roles = {"e": {"patient_id": "person_key", "department": None}, "r": {"department": None, "region": None}}
    assert several_rows("SELECT * FROM e", roles) == ([], ())
    assert several_rows("SELECT e.*, x FROM e, range(2) t(x)", roles)[0] == [
        "the table function t is joined to its rows on no equal columns"]
    assert several_rows("SELECT e.*, t.x FROM e JOIN range(2) t(x) ON t.x = e.department", roles)[0] == []
    assert several_rows("SELECT * FROM e CROSS JOIN r", roles)[0] == ["r is joined to its rows on no equal columns"]
    reasons, lookups = several_rows("SELECT e.*, r.region FROM e JOIN r ON r.department = e.department "
                                    "AND r.region <> 'x'", roles)
    assert reasons == [] and [(lookup.table, lookup.columns) for lookup in lookups] == [("r", (("r", "department"),))]
    reasons, lookups = several_rows("SELECT p.* FROM (SELECT DISTINCT department FROM e) AS d JOIN e AS p "
                                    "ON p.department = d.department", roles)
    assert reasons == [] and [lookup.table for lookup in lookups] == ["the subquery d"], "a DISTINCT is a lookup"
    assert view_several({"select": [{"column": []}]}) == []
    assert view_several({"select": [{"select": [{"forEachOrNull": "address", "column": []}]},
                                    {"unionAll": [{"column": []}, {"column": []}]}]}) == [
        "its ViewDefinition's forEachOrNull address makes a row of each element",
        "its ViewDefinition's unionAll makes a row of each branch"]


@pytest.mark.parametrize("join", ["JOIN", "LEFT JOIN"])
def test_sql_cells_joining_two_inputs_on_their_person_keys_match_the_same_people(ehr, join):
    """Each input's identifiers are tokens, the same person's key the same token in both: a join
    on them matches (a token per column made every such join empty, publishing no cell). A LEFT
    JOIN's condition compares the rows before the optional side is null-extended: a person key
    equal to a person key there chooses no one (it was refused as a pick)."""
    sql = (f"SELECT e.department, count(*) AS n, count(DISTINCT e.patient_id) AS p FROM enc AS e {join} x "
           "ON x.patient_id = e.patient_id AND x.encounter_id = e.encounter_id WHERE x.part = 'all' GROUP BY ALL")
    add_spec(ehr, {"name": "cells", "kind": "sql", "inputs": {"enc": ENC, "x": {"source": "ehr", "stream": "parts"}},
                   "sql": sql, "count_column": "n", "people_column": "p"})
    build(ehr, "cells")
    table = Catalog(ehr).read(Catalog(ehr).current("cells")).to_pylist()
    expected = dict(duckdb.sql(f"SELECT department, count(DISTINCT patient_id) FROM read_csv('{ehr.csv}') "
                               "GROUP BY ALL").fetchall())
    assert {r["department"]: r["p"] for r in table} == expected == {"Cardiology": 21, "Neurology": 30, "Oncology": 25}


def test_copies_made_through_a_second_read_of_the_input_are_counted(workspace, tmp_path):
    """The fifteenth review: joined on the person key to a copy of itself, each Cardiology visit
    became two rows (one per visit of its patient), the first read's marks covered every row, and
    an aggregate by both departments published 21 and 20 people: the one inpatient with no other
    visit. Each read of an input is now held to the input's own count."""
    folder = tmp_path / "ehr"
    folder.mkdir()
    rows = ["encounter_id,patient_id,admit_date,department,class"]
    rows += [f"C{i:03d},p{i:03d},2020-01-02,Cardiology,AMB" for i in range(20)]
    rows += [f"O{i:03d},p{i:03d},2020-01-03,Oncology,AMB" for i in range(20)]
    rows += ["C020,p020,2020-01-04,Cardiology,IMP"]
    (folder / "encounters.csv").write_text("\n".join(rows) + "\n")
    workspace.add_source("ehr", "csv", {"path": str(folder), "date_column": "admit_date", "key": "encounter_id",
                                        "person_column": "patient_id"}, {})
    run_import(workspace, "ehr")
    sql = ("SELECT b.encounter_id, b.department, b.class, b.patient_id, b.admit_date, a.department AS s FROM enc AS a "
           "JOIN (SELECT * FROM enc WHERE department = 'Cardiology') AS b ON b.patient_id = a.patient_id")
    add_spec(workspace, {"name": "rows", "kind": "sql", "inputs": {"enc": ENC}, "sql": sql})
    build(workspace, "rows")
    reasons = [entry["why"] for entry in Catalog(workspace).current("rows").privacy["several"]]
    assert reasons == ["counted on the data, its 41 rows hold 20 of enc's records in more rows than their input"]
    with pytest.raises(LithotseError, match=f"reads derivative 'rows', whose rows may be several.*{RULE}"):
        add_spec(workspace, {"name": "agg", "kind": "aggregate", "input": {"derivative": "rows"},
                             "group_by": ["department", "s"],
                             "measures": [{"fn": "count_distinct", "column": "patient_id", "as": "p"}]})


FULL_JOIN_OF_TWO_READS = ("FROM (SELECT *, 'all' AS s FROM enc) AS a FULL JOIN (SELECT *, 'amb' AS s FROM enc "
                          "WHERE class = 'AMB') AS b USING (encounter_id, s)")


@pytest.fixture
def records_only(workspace, tmp_path):
    """Encounters of an input with no person key (its cells count records) and no declared key (a
    one-column key is a record's identifier): Cardiology 20 ambulatory visits and one inpatient,
    Neurology 40, Oncology 45."""
    folder = tmp_path / "ehr"
    folder.mkdir()
    visits = [("Cardiology", "AMB")] * 20 + [("Cardiology", "IMP")] + [("Neurology", "AMB")] * 40 + \
        [("Oncology", "AMB")] * 45
    (folder / "encounters.csv").write_text("encounter_id,admit_date,department,class\n" + "".join(
        f"E{i:05d},2020-01-{1 + i % 28:02d},{dept},{cls}\n" for i, (dept, cls) in enumerate(visits)))
    workspace.add_source("ehr", "csv", {"path": str(folder), "date_column": "admit_date"}, {})
    run_import(workspace, "ehr")
    workspace.csv = folder / "encounters.csv"
    return workspace


def test_two_reads_of_an_input_each_holding_a_record_once_are_counted_together(records_only, monkeypatch):
    """The sixteenth review: a FULL JOIN of two reads of one input matching nothing gave every
    ambulatory visit one row with the first read's record and one with the second's; each read
    held each record once, so the count on the data passed, and cells of 'all' and 'amb' gave the
    one inpatient visit of Cardiology (an input without a person key counts records). A row now
    holds the records of all its input's reads together."""
    ws = records_only
    cells = {"name": "cells", "kind": "sql", "inputs": {"enc": ENC}, "count_column": "n",
             "sql": f"SELECT coalesce(a.department, b.department) AS department, s, count(*) AS n "
                    f"{FULL_JOIN_OF_TWO_READS} GROUP BY ALL"}
    add_spec(ws, cells)
    with pytest.raises(LithotseError, match=f"derivative 'cells': .*{RULE}"):
        build_all(ws, ["cells"])
    assert Catalog(ws).current("cells") is None
    with monkeypatch.context() as unchecked:
        unchecked.setattr(build_module, "_check_lookups", lambda *_args: None)
        unchecked.setattr(build_module, "_judge_counts", lambda *_args: None)
        build(ws, "cells")
        shown = {(r["department"], r["s"]): r["n"] for r in Catalog(ws).read(Catalog(ws).current("cells")).to_pylist()}
    visits = inpatients_in_cardiology(ws.csv, "count(*)")
    assert shown[("Cardiology", "all")] - shown[("Cardiology", "amb")] == visits == 1

    rows = {"name": "rows", "kind": "sql", "inputs": {"enc": ENC},
            "sql": "SELECT encounter_id, coalesce(a.admit_date, b.admit_date) AS admit_date, "
                   f"coalesce(a.department, b.department) AS department, s {FULL_JOIN_OF_TWO_READS}"}
    add_spec(ws, rows)
    build(ws, "rows")
    reasons = [entry["why"] for entry in Catalog(ws).current("rows").privacy["several"]]
    assert reasons == ["counted on the data, its 211 rows hold 105 of enc's records in more rows than their input"]
    with pytest.raises(LithotseError, match=f"reads derivative 'rows', whose rows may be several.*{RULE}"):
        add_spec(ws, {"name": "agg", "kind": "aggregate", "input": {"derivative": "rows"},
                      "group_by": ["department", "s"], "measures": [{"fn": "count", "as": "n"}]})


def test_a_table_joined_to_itself_on_its_record_key_still_feeds_cells(records_only):
    """Both reads put the same record in a row: it is held once, and the cells shown are the file's."""
    ws = records_only
    add_spec(ws, {"name": "cells", "kind": "sql", "inputs": {"enc": ENC}, "count_column": "n",
                  "sql": "SELECT a.department, b.class, count(*) AS n FROM enc AS a JOIN enc AS b "
                         "ON a.encounter_id = b.encounter_id GROUP BY ALL"})
    build(ws, "cells")
    shown = {(r["department"], r["class"]): r["n"] for r in Catalog(ws).read(Catalog(ws).current("cells")).to_pylist()}
    in_file = {(d, c): n for d, c, n in duckdb.sql(
        f"SELECT department, class, count(*) FROM read_csv('{ws.csv}') GROUP BY ALL").fetchall()}
    assert shown and shown == {key: in_file[key] for key in shown}  # Cardiology's 1 inpatient hides some


@pytest.mark.parametrize("distinct", ["", "DISTINCT "])
@pytest.mark.parametrize("looks", ["len(struct_keys(e)) = {k}", "len(to_json(e)) > {k} * 20"])
def test_a_query_looking_at_its_rows_shape_publishes_the_rows_it_was_counted_with(records_only, looks, distinct):
    """The seventeenth review: the count marks every read row with a column, so a condition on the
    row's shape (``len(struct_keys(e)) = 3``) held in the published run and not in the counted
    one: the check saw each record once, the published rows held the ambulatory ones twice, and an
    aggregate showed Cardiology all 21 and amb 20 (the twentieth: so did a DISTINCT query, whose
    published run was still the unmarked query). What is published is now computed by the
    counted query itself: whatever the shape test says, either the rows are found several, or every
    record is in one cell of the aggregate over them."""
    ws = records_only
    by_department = dict(duckdb.sql(f"SELECT department, count(*) FROM read_csv('{ws.csv}') GROUP BY ALL").fetchall())
    found_several = []
    for k in range(3, 9):
        if "agg" in Catalog(ws).names():
            Catalog(ws).remove("agg")
        add_spec(ws, {"name": "rows", "kind": "sql", "inputs": {"enc": ENC},
                      "sql": f"SELECT {distinct}e.encounter_id, e.admit_date, e.department, t.s FROM enc AS e JOIN "
                             f"(VALUES ('all'), ('amb')) AS t(s) ON t.s = 'all' OR (e.class = 'AMB' AND "
                             f"{looks.format(k=k)})"}, replace=True)
        build(ws, "rows")
        several = Catalog(ws).current("rows").privacy["several"]
        found_several.append(bool(several))
        if several:
            continue
        add_spec(ws, {"name": "agg", "kind": "aggregate", "input": {"derivative": "rows"}, "suppress_below": 0,
                      "group_by": ["department"], "measures": [{"fn": "count", "as": "n"}]})
        build(ws, "agg")
        shown = {r["department"]: r["n"] for r in Catalog(ws).read(Catalog(ws).current("agg")).to_pylist()}
        assert shown == by_department, f"k={k}: a record counted twice"
    assert any(found_several) and not all(found_several)


def test_grouping_sets_in_a_row_level_sql_count_a_record_once_per_set(ehr):
    """The eighteenth review: a row-level sql grouped by GROUPING SETS ((patient, department),
    (patient, department, class)) gave each visit a row of each set; counted without its groups,
    each record was in one row, and an aggregate over it showed Cardiology 21 and Cardiology/AMB
    20 people: the one inpatient. Each set now counts: the rows are several per record."""
    sql = ("SELECT patient_id, CASE WHEN class IS NULL THEN department ELSE department || '/' || class END AS d, "
           "min(admit_date) AS admit_date FROM enc GROUP BY GROUPING SETS ((patient_id, department), "
           "(patient_id, department, class))")
    add_spec(ehr, {"name": "rows", "kind": "sql", "inputs": {"enc": ENC}, "sql": sql})
    build(ehr, "rows")
    several = [entry["why"] for entry in Catalog(ehr).current("rows").privacy["several"]]
    assert several == ["counted on the data, its 152 rows hold 76 of enc's records in more rows than their input"]
    aggregate = {"name": "agg", "kind": "aggregate", "input": {"derivative": "rows"}, "group_by": ["d"],
                 "measures": [{"fn": "count_distinct", "column": "patient_id", "as": "p"}]}
    with pytest.raises(LithotseError, match=f"reads derivative 'rows', whose rows may be several.*{RULE}"):
        add_spec(ehr, aggregate)
    con = duckdb.connect()
    con.register("published", Catalog(ehr).read(Catalog(ehr).current("rows")))
    cardiology = dict(con.sql("SELECT d, count(DISTINCT patient_id) FROM published "
                              "WHERE d LIKE 'Cardiology%' GROUP BY d").fetchall())
    assert cardiology["Cardiology"] - cardiology["Cardiology/AMB"] == inpatients_in_cardiology(ehr.csv) == 1, \
        "cells of these rows would each be large, and their difference the one inpatient"


@pytest.mark.parametrize("sql", [
    "SELECT DISTINCT * EXCLUDE (encounter_id, admit_date, patient_id, dkey, tags) FROM enc",
    "SELECT DISTINCT COLUMNS(* EXCLUDE (encounter_id, admit_date, patient_id, dkey, tags)) FROM enc",
    "SELECT d.* FROM (SELECT DISTINCT department, class FROM enc) AS d",
])
def test_stars_give_the_querys_own_columns_and_rows(ehr, sql):
    """The eighteenth review: the count's marks stayed in stars of grouped queries, so now that
    the published run is the counted one, DISTINCT * gave a row per record and a hash column."""
    add_spec(ehr, {"name": "rows", "kind": "sql", "inputs": {"enc": ENC}, "sql": sql})
    build(ehr, "rows")
    table = Catalog(ehr).read(Catalog(ehr).current("rows"))
    assert table.column_names == ["department", "class"]
    expected = duckdb.sql(f"SELECT DISTINCT department, class FROM read_csv('{ehr.csv}')").fetchall()
    assert sorted(map(tuple, (r.values() for r in table.to_pylist()))) == sorted(expected)


def test_sql_cells_by_every_column_but_the_ids_and_with_an_anti_join_build(ehr):
    """Cells keyed by ``* EXCLUDE (…)`` with GROUP BY ALL (the mark made a group of each record),
    and cells leaving out what an ANTI JOIN finds (the count selected the joined table's mark,
    which an anti join does not give)."""
    add_spec(ehr, {"name": "cells", "kind": "sql", "inputs": {"enc": ENC}, "count_column": "n", "people_column": "p",
                   "sql": "SELECT * EXCLUDE (encounter_id, admit_date, patient_id, dkey, tags), count(*) AS n, "
                          "count(DISTINCT patient_id) AS p FROM enc GROUP BY ALL"})
    build(ehr, "cells")
    table = Catalog(ehr).read(Catalog(ehr).current("cells"))
    shown = {(r["department"], r["class"]): r["p"] for r in table.to_pylist()}
    in_file = {(d, c): p for d, c, p in duckdb.sql(f"SELECT department, class, count(DISTINCT patient_id) FROM "
                                                   f"read_csv('{ehr.csv}') GROUP BY ALL").fetchall()}
    assert shown and shown == {key: in_file[key] for key in shown}
    Catalog(ehr).remove("cells")
    add_spec(ehr, {"name": "cells", "kind": "sql", "inputs": {"enc": ENC, "x": {"source": "ehr", "stream": "parts"}},
                   "count_column": "n", "people_column": "p",
                   "sql": "SELECT e.department, count(*) AS n, count(DISTINCT e.patient_id) AS p FROM enc AS e "
                          "ANTI JOIN x ON x.patient_id = e.patient_id AND x.admit_date = DATE '2020-01-02' "
                          "GROUP BY ALL"})
    build(ehr, "cells")
    shown = {r["department"]: r["p"] for r in Catalog(ehr).read(Catalog(ehr).current("cells")).to_pylist()}
    assert shown == {"Cardiology": 20, "Neurology": 30, "Oncology": 25}


def test_rows_written_are_the_rows_counted_whatever_a_run_draws(records_only):
    """A condition that draws anew each run (a sample's size) could copy records in the published
    run and not in a run made for counting. A row-level sql's rows are now counted from the marks
    of the rows it wrote: every build either finds them several or holds each record once."""
    ws = records_only
    by_department = dict(duckdb.sql(f"SELECT department, count(*) FROM read_csv('{ws.csv}') GROUP BY ALL").fetchall())
    sql = ("SELECT e.admit_date, e.department, t.s FROM enc AS e JOIN (VALUES ('all'), ('amb')) AS t(s) ON t.s = 'all' "
           "OR (e.class = 'AMB' AND (SELECT count(*) FROM enc USING SAMPLE 50 PERCENT (bernoulli)) > 53)")
    add_spec(ws, {"name": "rows", "kind": "sql", "inputs": {"enc": ENC}, "sql": sql})
    for _ in range(4):
        build(ws, "rows", full=True)
        several = [entry["why"] for entry in Catalog(ws).current("rows").privacy["several"]]
        written = Catalog(ws).read(Catalog(ws).current("rows"))
        counted = [why for why in several if why.startswith("counted on the data")]
        if written.num_rows > sum(by_department.values()):
            assert counted == [f"counted on the data, its {written.num_rows} rows hold 105 of enc's records in more "
                               "rows than their input"]
        else:
            assert counted == []


def test_every_function_duckdb_calls_volatile_counts_as_varying():
    """The nineteenth review found ``txid_current()`` (a new value for every query) missing from
    the list; the list now holds every function DuckDB marks volatile, and the query counters."""
    volatile = {name for (name,) in duckdb.sql("SELECT function_name FROM duckdb_functions() "
                                                "WHERE stability = 'VOLATILE'").fetchall()}
    assert volatile - {"error"} <= set(sql_kind.VOLATILE)
    assert {"txid_current", "current_query_id", "current_transaction_id"} <= set(sql_kind.VOLATILE)


def test_columns_by_place_are_refused_and_patterns_never_give_a_mark(records_only):
    """The twentieth review: ``#6`` named a joined table's column in the published run and the
    first read's mark in the counted one (marks move the places of the columns after them), and
    ``COLUMNS('.*')`` published the mark, a hash of the whole input row."""
    ws = records_only
    with pytest.raises(SpecError, match=r"refers to a column by its place \(#2\); rule: a sql query names"):
        add_spec(ws, {"name": "rows", "kind": "sql", "inputs": {"enc": ENC}, "sql": "SELECT DISTINCT #2 FROM enc"})
    add_spec(ws, {"name": "rows", "kind": "sql", "inputs": {"enc": ENC}, "sql": "SELECT COLUMNS('.*') FROM enc"})
    build(ws, "rows")
    table = Catalog(ws).read(Catalog(ws).current("rows"))
    assert not [c for c in table.column_names if c.startswith(sql_kind.RECORD)]
    assert table.num_rows == 106 and Catalog(ws).current("rows").privacy["several"] == []


def test_an_anti_join_written_as_a_left_join_counts_the_people_it_leaves(ehr):
    """Patients with no part dated 2 January (pass 18: ``WHERE x.patient_id IS NULL`` after a LEFT JOIN
    on the person keys was refused as a pick, though it asks what NOT IN asks); a comparison of
    the optional side's key with a value still picks."""
    parts = {"source": "ehr", "stream": "parts"}
    left = ("SELECT e.department, count(*) AS n, count(DISTINCT e.patient_id) AS p FROM enc AS e LEFT JOIN x "
            "ON x.patient_id = e.patient_id AND x.admit_date = DATE '2020-01-02' WHERE x.patient_id {} GROUP BY ALL")
    add_spec(ehr, {"name": "cells", "kind": "sql", "inputs": {"enc": ENC, "x": parts}, "count_column": "n",
                   "people_column": "p", "sql": left.format("IS NULL")})
    build(ehr, "cells")
    shown = {r["department"]: r["p"] for r in Catalog(ehr).read(Catalog(ehr).current("cells")).to_pylist()}
    assert shown == {"Cardiology": 20, "Neurology": 30, "Oncology": 25}
    with pytest.raises(LithotseError, match="chooses rows by x.patient_id = 'p003'"):
        add_spec(ehr, {"name": "cells", "kind": "sql", "inputs": {"enc": ENC, "x": parts}, "count_column": "n",
                       "people_column": "p", "sql": left.format("= 'p003'")}, replace=True)


def test_what_threads_order_decides_is_counted_in_the_run_that_publishes_it(ehr):
    """The twenty-second review: in a grouped row-level sql (then counted by a run of its own), a
    join copying records only when ``'Cardiology' IN (SELECT DISTINCT ON (class) department …)``
    held (whichever row a thread reached first) copied them in the published run and not in the
    counted one: Rare all 21 / part 20 people. Grouped sqls and sql cells are now counted in the
    run that computes them: whatever the gate chose in a build, the rows published agree with
    their count, and every cell shown holds each record once."""
    gate = "'{dept}' IN (SELECT DISTINCT ON (class) department FROM enc WHERE class = 'IMP')"
    rows = ("SELECT e.patient_id, e.department, t.s FROM enc AS e JOIN (VALUES ('all'), ('amb')) AS t(s) "
            "ON t.s = 'all' OR (e.class = 'AMB' AND {gate}) GROUP BY ALL")
    in_file = dict(duckdb.sql(f"SELECT department, count(*) FROM read_csv('{ehr.csv}') GROUP BY ALL").fetchall())
    for dept in ("Cardiology", "Oncology"):  # the gate holds, or not
        for name in ("rows", "cells"):
            if name in Catalog(ehr).names():
                Catalog(ehr).remove(name)
        add_spec(ehr, {"name": "rows", "kind": "sql", "inputs": {"enc": ENC},
                       "sql": rows.format(gate=gate.format(dept=dept))})
        build(ehr, "rows")
        version = Catalog(ehr).current("rows")
        copied = any(r["s"] == "amb" for r in Catalog(ehr).read(version).to_pylist())
        assert bool(version.privacy["several"]) == copied, f"{dept}: the rows counted are not the rows published"
        add_spec(ehr, {"name": "cells", "kind": "sql", "inputs": {"enc": ENC}, "count_column": "n",
                       "people_column": "p", "suppress_below": 0,
                       "sql": "SELECT department, count(*) AS n, count(DISTINCT patient_id) AS p FROM enc "
                              f"WHERE {gate.format(dept=dept)} GROUP BY ALL"})
        build(ehr, "cells")
        shown = {r["department"]: r["n"] for r in Catalog(ehr).read(Catalog(ehr).current("cells")).to_pylist()
                 if not r["suppressed"]}
        assert shown == {d: in_file[d] for d in shown}, f"{dept}: a record counted twice"


@pytest.mark.parametrize("values", ["(VALUES {rows}) AS r(department, region)",
                                    "(SELECT * FROM (VALUES {rows}) AS v(department, region)) AS r"])
def test_a_lookup_written_as_values_feeds_cells_when_it_holds_each_key_once(ehr, values):
    """Pass 22a found a lookup written inline refused as "cannot be followed": VALUES joined on equal
    columns is a lookup like any table, held to one row per key on the data."""
    sql = (f"SELECT r.region, {COUNTS} FROM enc AS e JOIN {values} ON r.department = e.department GROUP BY ALL")
    once = "('Cardiology', 'north'), ('Neurology', 'south'), ('Oncology', 'north')"
    add_spec(ehr, {"name": "cells", "kind": "sql", "inputs": {"enc": ENC}, "count_column": "n", "people_column": "p",
                   "sql": sql.format(rows=once)})
    build(ehr, "cells")
    shown = {r["region"]: (r["n"], r["p"]) for r in Catalog(ehr).read(Catalog(ehr).current("cells")).to_pylist()}
    in_file = dict(duckdb.sql(
        f"SELECT CASE department WHEN 'Neurology' THEN 'south' ELSE 'north' END, "
        f"(count(*), count(DISTINCT patient_id)) FROM read_csv('{ehr.csv}') GROUP BY ALL").fetchall())
    assert shown == in_file
    Catalog(ehr).remove("cells")
    twice = "('Cardiology', 'north'), ('Cardiology', 'south'), ('Oncology', 'north')"
    add_spec(ehr, {"name": "cells", "kind": "sql", "inputs": {"enc": ENC}, "count_column": "n", "people_column": "p",
                   "sql": sql.format(rows=twice)})
    with pytest.raises(LithotseError, match=f"holds a value of r.department in more than one row.*{RULE}"):
        build_all(ehr, ["cells"])
    assert Catalog(ehr).current("cells") is None


TWO_NAMES = ("SELECT CASE WHEN y.k IS NOT NULL THEN y.department WHEN x.department = 'Cardiology' THEN 'Cardiology' "
             "ELSE 'Other' END AS department, CASE WHEN y.k IS NOT NULL THEN 'amb' ELSE 'all' END AS s{counts} "
             "FROM (SELECT *, CAST(substr(encounter_id, 2) AS INT) - 31 AS k FROM a) AS x "
             "LEFT JOIN (SELECT department, CAST(substr(encounter_id, 2) AS INT) AS k FROM b "
             "WHERE class = 'AMB' AND department = 'Cardiology') AS y ON y.k = x.k{group}")


def test_one_stream_read_under_two_names_is_one_input(records_only, monkeypatch):
    """The twenty-fourth review: inputs ``a`` and ``b`` both the encounters; each Cardiology
    ambulatory visit was in a row as an ``a`` record ('all') and, as ``b``'s, beside a Neurology
    visit ('amb'): each name held each record once, so the cells Cardiology all 21 / amb 20 gave
    the one inpatient away (and so did an aggregate over the rows). Names reading the same
    stream are now counted as one input."""
    ws = records_only
    cells = {"name": "cells", "kind": "sql", "inputs": {"a": ENC, "b": ENC}, "count_column": "n",
             "sql": TWO_NAMES.format(counts=", count(*) AS n", group=" GROUP BY ALL")}
    add_spec(ws, cells)
    with pytest.raises(LithotseError, match=f"derivative 'cells': counted on the data, .* of a's records in more "
                                            f"rows than their input.*{RULE}"):
        build_all(ws, ["cells"])
    assert Catalog(ws).current("cells") is None
    with monkeypatch.context() as unchecked:
        unchecked.setattr(build_module, "_judge_counts", lambda *_args: None)
        build(ws, "cells")
        shown = {(r["department"], r["s"]): r["n"] for r in Catalog(ws).read(Catalog(ws).current("cells")).to_pylist()}
    assert shown[("Cardiology", "all")] - shown[("Cardiology", "amb")] == \
        inpatients_in_cardiology(ws.csv, "count(*)") == 1, "without the count, the cells give the inpatient away"
    Catalog(ws).remove("cells")
    add_spec(ws, {"name": "rows", "kind": "sql", "inputs": {"a": ENC, "b": ENC},
                  "sql": TWO_NAMES.format(counts="", group="")})
    build(ws, "rows")
    assert [entry["why"] for entry in Catalog(ws).current("rows").privacy["several"]][-1].startswith(
        "counted on the data")


def test_a_with_query_named_like_its_input_reads_the_input(ehr):
    """The twenty-fourth review: ``WITH enc AS (SELECT … FROM enc)`` crashed ``derive add`` (the
    name was followed into itself); DuckDB reads the inner ``enc`` as the input, and so does the build."""
    add_spec(ehr, {"name": "cells", "kind": "sql", "inputs": {"enc": ENC}, "count_column": "n", "people_column": "p",
                   "sql": "WITH enc AS (SELECT * FROM enc WHERE class = 'AMB') "
                          "SELECT department, count(*) AS n, count(DISTINCT patient_id) AS p FROM enc GROUP BY ALL"})
    build(ehr, "cells")
    shown = {r["department"]: (r["n"], r["p"]) for r in Catalog(ehr).read(Catalog(ehr).current("cells")).to_pylist()}
    assert shown == {d: (n, p) for d, n, p in duckdb.sql(
        f"SELECT department, count(*), count(DISTINCT patient_id) FROM read_csv('{ehr.csv}') WHERE class = 'AMB' "
        "GROUP BY ALL").fetchall()}


@pytest.fixture
def split_keys(workspace, tmp_path):
    """Cardiology 20 ambulatory patients and one inpatient, Neurology 30, Oncology 25, each visit
    numbered (``num``); a stream ``tk`` of text keys: ``i`` ('all') for every visit and ``0i``
    ('amb') for each ambulatory one, so each of its rows matches one visit when cast."""
    folder = tmp_path / "ehr"
    folder.mkdir()
    people = [("Cardiology", "AMB")] * 20 + [("Cardiology", "IMP")] + [("Neurology", "AMB")] * 30 + \
        [("Oncology", "AMB")] * 25
    (folder / "encounters.csv").write_text("encounter_id,patient_id,admit_date,department,class,num\n" + "".join(
        f"E{i:05d},p{i:03d},2020-01-{1 + i % 28:02d},{dept},{cls},{i}\n" for i, (dept, cls) in enumerate(people)))
    (folder / "tk.csv").write_text("tk,s,admit_date\n" + "".join(
        f"{i},all,2020-01-01\n" + (f"0{i},amb,2020-01-01\n" if cls == "AMB" else "")
        for i, (_, cls) in enumerate(people)))
    workspace.add_source("ehr", "csv", {"path": str(folder), "date_column": "admit_date", "key": "encounter_id",
                                        "person_column": "patient_id"}, {})
    run_import(workspace, "ehr")
    workspace.csv = folder / "encounters.csv"
    return workspace


def test_a_second_input_landing_once_per_row_does_not_vouch_for_the_counted_one(split_keys, monkeypatch):
    """The twenty-fifth review: the count on the data passed when any input held each record once;
    joined to ``tk`` (one of its rows per visit and split), ``tk`` did, while every ambulatory
    visit of ``enc`` was in two cells: Cardiology all 21 / amb 20 people, as sql cells and through
    a row-level sql under an aggregate. The inputs counted must now hold their records once."""
    ws = split_keys
    inputs = {"enc": ENC, "t": {"source": "ehr", "stream": "tk"}}
    cells = {"name": "cells", "kind": "sql", "inputs": inputs, "count_column": "n", "people_column": "p",
             "sql": f"SELECT e.department, t.s, {COUNTS} FROM enc AS e JOIN t ON t.tk = e.num GROUP BY ALL"}
    add_spec(ws, cells)
    with pytest.raises(LithotseError, match=f"derivative 'cells': counted on the data, .* of enc's records in more "
                                            f"rows than their input.*{RULE}"):
        build_all(ws, ["cells"])
    assert_leaks_without(ws, monkeypatch, ("_judge_counts",), "cells")
    Catalog(ws).remove("cells")
    add_spec(ws, {"name": "rows", "kind": "sql", "inputs": inputs,
                  "sql": "SELECT e.patient_id, e.department, t.s FROM enc AS e JOIN t ON CAST(t.tk AS BIGINT) = e.num"})
    build(ws, "rows")
    several = [entry["why"] for entry in Catalog(ws).current("rows").privacy["several"]]
    assert several and several[-1].startswith("counted on the data"), several
    with pytest.raises(LithotseError, match=f"derivative 'agg': .*whose rows may be several.*{RULE}"):
        add_spec(ws, {"name": "agg", "kind": "aggregate", "input": {"derivative": "rows"},
                      "group_by": ["department", "s"],
                      "measures": [{"fn": "count_distinct", "column": "patient_id", "as": "p"}]})
