"""sql cells publish their keys and declared counts only, chosen by their keys, and count the
people of their own rows: the checks on DuckDB's syntax tree (at ``derive add`` and at build),
and the sequence a user runs, where each refused query would have published what it should not."""

from __future__ import annotations

import re

import pytest

from lithotse_desktop.derive import build as build_module
from lithotse_desktop.derive import service as service_module
from lithotse_desktop.derive.build import build
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.kinds import sql as sql_kind
from lithotse_desktop.derive.kinds.sql import JOIN_RULE, SHAPE_RULE, check_counts
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.derive.spec import SpecError
from lithotse_desktop.raw import run_import

ROLES = {"enc": {"patient_id": "person_key", "department": "code", "class": "code", "admit_date": "date"},
         "w": {"patient_id": "person_key", "ward": "code"},
         "beds": {"ward": "code", "beds": "value"}}
COUNTS = "count(*) AS n, count(DISTINCT e.patient_id) AS p"


def _check(sql: str):
    return check_counts({"name": "x", "sql": sql, "count_column": "n", "people_column": "p"}, ROLES)


@pytest.mark.parametrize(("extra", "shown"), [
    ("count(*) FILTER (WHERE class = 'IMP') AS inpatients", r"count\(\*\) FILTER"),
    ("sum(CASE WHEN class = 'IMP' THEN 1 ELSE 0 END) AS inpatients", "sum"),
    ("string_agg(class, ',') AS classes", "string_agg"),
    ("CAST(count(DISTINCT e.patient_id) AS VARCHAR) AS people_text", "CAST"),
    ("sum(count(*)) OVER () AS total", "OVER"),
    ("(SELECT count(*) FROM enc) AS everyone", "subquery"),
])
def test_a_column_computed_over_a_cells_rows_other_than_its_counts_is_refused(extra, shown):
    with pytest.raises(SpecError, match=f"sql: derivative 'x': output column .* is .*{shown}.*computed over a "
                                        f"cell's rows.*{re.escape(SHAPE_RULE)}"):
        _check(f"SELECT department, {COUNTS}, {extra} FROM enc e GROUP BY department")


@pytest.mark.parametrize(("tail", "what"), [
    ("HAVING count(*) = 1", "HAVING"),
    ("QUALIFY row_number() OVER (ORDER BY count(*)) = 1", "QUALIFY"),
    ("ORDER BY department LIMIT 2", "LIMIT"),
    ("ORDER BY n", "ORDER BY n"),
    ("ORDER BY 3 DESC", "ORDER BY 3"),
    ("ORDER BY count(DISTINCT e.patient_id)", r"ORDER BY count\(DISTINCT"),
    ("ORDER BY department, n * 1", r"ORDER BY n \* 1"),
    ("ORDER BY ALL", "ORDER BY ALL"),
    ("ORDER BY #2, #1", "ORDER BY positional reference"),
    ("ORDER BY -length(department)", "ORDER BY -"),
])
def test_cells_chosen_or_ordered_by_their_counts_are_refused(tail, what):
    with pytest.raises(SpecError, match=f"derivative 'x': {what}.*{re.escape(SHAPE_RULE)}"):
        _check(f"SELECT department, {COUNTS} FROM enc e GROUP BY department {tail}")


@pytest.mark.parametrize("sql", [
    f"SELECT department, upper(class) AS class, {COUNTS} FROM enc e GROUP BY ALL ORDER BY department, 2",
    f"SELECT DISTINCT department, {COUNTS} FROM enc e GROUP BY department",
    f"SELECT department, {COUNTS} FROM enc e WHERE e.patient_id IN (SELECT patient_id FROM w) GROUP BY ALL",
    f"SELECT e.department, ward, {COUNTS} FROM enc e JOIN w ON e.patient_id = w.patient_id GROUP BY ALL",
    f"SELECT e.department, ward, {COUNTS} FROM enc e, w WHERE w.patient_id = e.patient_id GROUP BY ALL",
    f"SELECT e.department, ward, {COUNTS} FROM enc e JOIN w USING (patient_id) GROUP BY ALL",
    f"SELECT ward, {COUNTS} FROM enc e JOIN (SELECT * FROM w) AS v ON v.patient_id = e.patient_id GROUP BY ALL",
    f"SELECT e.department, beds, {COUNTS} FROM enc e JOIN beds b ON b.ward = e.department GROUP BY ALL",
])
def test_keys_beside_declared_counts_and_joins_on_person_keys_are_taken(sql):
    assert _check(sql).counted_by == "enc.patient_id"


@pytest.mark.parametrize(("sql", "apart"), [
    (f"SELECT ward, {COUNTS} FROM w CROSS JOIN enc e GROUP BY ward", "with w"),
    (f"SELECT e.department, {COUNTS} FROM enc e JOIN w ON w.ward = e.department GROUP BY ALL", "with w"),
    (f"SELECT e.department, {COUNTS} FROM enc e JOIN enc f ON f.department = e.department GROUP BY ALL", "with f"),
    (f"SELECT e.department, {COUNTS} FROM enc e, (SELECT patient_id AS pid, ward FROM w) AS v GROUP BY ALL",
     "with the subquery v"),
    (f"WITH v AS (SELECT * FROM w) SELECT e.department, {COUNTS} FROM enc e JOIN v ON v.ward = e.class "
     "GROUP BY ALL", "with v"),
    ("WITH j AS (SELECT e.department, x.patient_id FROM enc e CROSS JOIN (SELECT DISTINCT patient_id FROM w) AS x) "
     "SELECT department, count(*) AS n, count(DISTINCT patient_id) AS p FROM j GROUP BY ALL",
     r"\(in the query over e\) with the subquery x"),
    ("SELECT department, count(*) AS n, count(DISTINCT e.patient_id) AS p FROM (SELECT enc.department, "
     "w.patient_id FROM enc, w) AS e GROUP BY ALL", r"\(in the query over enc\) with w"),
])
def test_joins_with_other_people_not_on_their_person_keys_are_refused(sql, apart):
    with pytest.raises(SpecError, match=f"counts the people of [a-z]+.patient_id over a join {apart}, which holds "
                                        f"people too.*{re.escape(JOIN_RULE)}"):
        _check(sql)


@pytest.fixture
def visits(workspace, tmp_path):
    """January 2020: 20 Cardiology patients, 2 of them inpatients; 20 ward patients, none the same."""
    folder = tmp_path / "ehr"
    folder.mkdir()
    rows = ["patient_id,admit_date,department,class"]
    rows += [f"p{i:02d},2020-01-{1 + i:02d},Cardiology,{'IMP' if i < 2 else 'AMB'}" for i in range(20)]
    (folder / "encounters.csv").write_text("\n".join(rows) + "\n")
    (folder / "wards.csv").write_text("patient_id,admit_date,ward\n" + "".join(
        f"w{i:02d},2020-01-{1 + i:02d},north\n" for i in range(20)))
    workspace.add_source("ehr", "csv", {"path": str(folder), "date_column": "admit_date",
                                        "person_column": "patient_id"}, {})
    run_import(workspace, "ehr")
    return workspace


INPUTS = {"e": {"source": "ehr", "stream": "encounters"}, "w": {"source": "ehr", "stream": "wards"}}


@pytest.mark.parametrize(("sql", "rule", "leaked"), [
    ("SELECT department, count(*) AS n, count(DISTINCT patient_id) AS p, "
     "count(*) FILTER (WHERE class = 'IMP') AS inpatients FROM e GROUP BY ALL", SHAPE_RULE, ("inpatients", 2)),
    ("SELECT department, count(*) AS n, count(DISTINCT w.patient_id) AS p "
     "FROM e CROSS JOIN w WHERE e.class = 'IMP' GROUP BY ALL", JOIN_RULE, ("p", 20)),
])
def test_what_each_refused_query_would_publish_is_refused_at_add_and_at_build(visits, monkeypatch, sql, rule,
                                                                              leaked):
    """Built without these checks, each query publishes a visible cell about the 2 inpatients
    (their count beside the 20 people; or the 20 ward patients counted as theirs); with them,
    ``derive add`` and the build refuse it and nothing is published."""
    ws = visits
    spec = {"name": "cells", "kind": "sql", "inputs": INPUTS, "sql": sql, "count_column": "n", "people_column": "p"}
    with monkeypatch.context() as unchecked:
        unchecked.setattr(sql_kind, "_check_shape", lambda *_args: None)
        unchecked.setattr(sql_kind, "_check_people_joined", lambda *_args: None)
        unchecked.setattr(sql_kind, "_lookups", lambda *_args: ())
        unchecked.setattr(build_module, "_check_lookups", lambda *_args: None)
        unchecked.setattr(build_module, "_judge_counts", lambda *_args: None)
        unchecked.setattr(build_module, "check_cell_keys", lambda *_args: None)
        unchecked.setattr(service_module, "check_cell_keys", lambda *_args: None)
        add_spec(ws, spec)
        build(ws, "cells")
        published = Catalog(ws).read(Catalog(ws).current("cells")).to_pylist()
    column, value = leaked
    assert [(row[column], row["suppressed"]) for row in published] == [(value, False)]
    Catalog(ws).remove("cells")
    with pytest.raises(SpecError, match=re.escape(rule)):
        add_spec(ws, spec)
    Catalog(ws).save_spec(spec)
    with pytest.raises(SpecError, match=re.escape(rule)):
        build(ws, "cells")
    assert Catalog(ws).current("cells") is None
