"""Compiled aggregate SQL run on small in-memory tables, checked against hand-computed answers."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pyarrow as pa
import pytest

from lithotse_desktop.derive.compile import compile_aggregate
from lithotse_desktop.derive.spec import SpecError, validate_spec

SNOMED = "http://snomed.info/sct"


def concept(code, system=SNOMED):
    return json.dumps({"coding": [{"system": "http://other", "code": "zz"}, {"system": system, "code": code}]})


OBS = pa.table({
    "id": ["o1", "o2", "o3", "o4", "o5"],
    "patient": ["p1", "p1", "p2", "p3", "p3"],
    "when": pa.array([dt.datetime(2024, 1, 31, 23, 30, tzinfo=dt.UTC),
                      dt.datetime(2024, 2, 1, 8, 0, tzinfo=dt.UTC),
                      dt.datetime(2024, 2, 10, 8, 0, tzinfo=dt.UTC),
                      dt.datetime(2024, 2, 11, 8, 0, tzinfo=dt.UTC),
                      None], pa.timestamp("us", tz="UTC")),
    "code": [concept("111"), concept("222"), concept("111"), concept("111", "http://x"), concept("222")],
    "value": [1.0, 2.0, 3.0, 4.0, 5.0],
})
PATIENTS = pa.table({"pid": ["p1", "p2", "p3"], "sex": ["F", "M", "F"],
                     "birth": pa.array([dt.date(2000, 2, 1), dt.date(1950, 1, 1), dt.date(2010, 6, 30)])})


def run(spec, timezone="UTC", person_key=None, people=False, **tables):
    """Rows of the compiled query; its last column (people per cell) only when asked for."""
    validate_spec(spec)
    con = duckdb.connect()
    for name, table in tables.items():
        con.register(name, table)
    compiled = compile_aggregate(spec, {k: v.schema for k, v in tables.items()}, timezone=timezone,
                                 person_key=person_key)
    rows = con.execute(compiled.sql, compiled.params).fetchall()
    return rows if people else [row[:-1] for row in rows]


def test_people_per_cell_count_distinct_person_keys_and_each_unknown_person_once():
    """A row whose person key is null names a person the key cannot give (the twenty-second
    review: FHIR references by identifier only made visits of real patients cells of 0 people,
    published): it counts as a person of its own."""
    table = OBS.append_column("other", pa.array(["x", None, "x", "y", "y"]))
    by_month = spec(date_field="when", grain="month")
    assert [r[-1] for r in run(by_month, person_key=["other"], people=True, input=table)] == [1, 3]
    assert [r[-1] for r in run(by_month, people=True, input=table)] == [1, 3], "records without a key"
    two = run(spec(), person_key=["patient", "other"], people=True, input=table)
    assert two[0][-1] == 4, "(p1,x), (p2,x), (p3,y), and the row with a null part: someone"


def spec(**kw):
    base = {"name": "t", "kind": "aggregate", "input": {"source": "s", "stream": "o"},
            "measures": [{"fn": "count", "as": "n"}]}
    base.update(kw)
    return base


def test_grain_follows_workspace_timezone():
    utc = run(spec(date_field="when", grain="month"), input=OBS)
    assert utc == [(dt.date(2024, 1, 1), 1, 1), (dt.date(2024, 2, 1), 3, 3)]
    tokyo = run(spec(date_field="when", grain="month"), timezone="Asia/Tokyo", input=OBS)
    assert tokyo == [(dt.date(2024, 2, 1), 4, 4)]


def test_a_date_field_without_grain_or_range_is_checked_but_not_read():
    """An instant's day is bound to the time zone as a parameter: a query that never reads the
    day must not bind it (DuckDB refuses an unread parameter), yet the field must be a date."""
    assert run(spec(date_field="when", grain="none", group_by=["patient"]), timezone="Asia/Tokyo",
               input=OBS) == [("p1", 2, 2), ("p2", 1, 1), ("p3", 2, 2)]
    with pytest.raises(SpecError, match="'value' is double, not a date"):
        run(spec(date_field="value", grain="none"), input=OBS)


@pytest.mark.parametrize("grain,expected", [
    ("day", 4), ("week", 2), ("quarter", 1), ("year", 1)])
def test_grains(grain, expected):
    assert len(run(spec(date_field="when", grain=grain), input=OBS)) == expected


def test_measures():
    rows = run(spec(measures=[
        {"fn": "count", "as": "n"}, {"fn": "count_distinct", "column": "patient", "as": "p"},
        {"fn": "sum", "column": "value", "as": "s"}, {"fn": "mean", "column": "value", "as": "m"},
        {"fn": "min", "column": "value", "as": "lo"}, {"fn": "max", "column": "value", "as": "hi"},
        {"fn": "median", "column": "value", "as": "med"},
        {"fn": "percentile", "column": "value", "as": "p90", "p": 0.9}]), input=OBS)
    assert rows == [(5, 3, 15.0, 3.0, 1.0, 5.0, 3.0, pytest.approx(4.6), 5)]


@pytest.mark.parametrize("flt,count", [
    ({"column": "value", "op": ">", "value": 2}, 3), ({"column": "value", "op": "<=", "value": 2}, 2),
    ({"column": "value", "op": "!=", "value": 2}, 4), ({"column": "patient", "op": "=", "value": "p3"}, 2),
    ({"column": "patient", "op": "in", "value": ["p1", "p2"]}, 3),
    ({"column": "patient", "op": "not in", "value": ["p1"]}, 3),
    ({"column": "value", "op": "between", "value": [2, 4]}, 3),
    ({"column": "when", "op": "is null"}, 1), ({"column": "when", "op": "is not null"}, 4),
    ({"column": "code", "op": "contains", "value": "222"}, 2),
    ({"column": "value", "op": ">=", "value": 4}, 2), ({"column": "value", "op": "<", "value": 4}, 3)])
def test_filters(flt, count):
    assert run(spec(filters=[flt]), input=OBS)[0][0] == count


def test_date_range_is_inclusive():
    rows = run(spec(date_field="when", **{"from": "2024-02-01", "to": "2024-02-10"}), input=OBS)
    assert rows[0][0] == 2


def test_code_from_codeable_concept_by_system():
    rows = run(spec(group_by=[{"as": "snomed", "code": {"column": "code", "system": SNOMED}}]), input=OBS)
    assert rows == [("111", 2, 2), ("222", 2, 2), (None, 1, 1)]


def test_join_and_age_band_at_event_date():
    s = spec(date_field="when",
             join={"input": {"source": "s", "stream": "patients"}, "on": {"left": "patient", "right": "pid"},
                   "columns": ["sex", "birth"]},
             group_by=["sex", {"as": "age", "age_band": {"birth_date": "birth", "bands": [0, 18, 65]}}])
    rows = run(s, input=OBS, joined=PATIENTS)
    # p1 is 23 on 2024-01-31 and 24 on 2024-02-01; p2 is 74; p3 is 13, and undated once
    assert rows == [("F", "0-17", 1, 1), ("F", "18-64", 2, 2), ("F", None, 1, 1), ("M", "65+", 1, 1)]



def test_a_dimension_named_as_a_column_groups_by_its_own_values():
    # a band named as the column it bands, a code named as its CodeableConcept column, and an
    # input column named "period" beside a monthly grain: each groups by what it computes
    # (grouped by name, each took the input's column of that name: one row per birth date)
    patients = PATIENTS.append_column("period", pa.array(["a", "b", "c"]))
    s = spec(date_field="when", grain="month",
             join={"input": {"source": "s", "stream": "patients"}, "on": {"left": "patient", "right": "pid"},
                   "columns": ["birth"]},
             group_by=[{"as": "birth", "age_band": {"birth_date": "birth", "bands": [0, 65]}}])
    obs = OBS.append_column("period", pa.array(["x", "y", "z", "w", "v"]))
    rows = run(s, input=obs, joined=patients)
    # (the measure, then the records; the undated record is left out of a grain)
    assert rows == [(dt.date(2024, 1, 1), "0-64", 1, 1), (dt.date(2024, 2, 1), "0-64", 2, 2),
                    (dt.date(2024, 2, 1), "65+", 1, 1)]
    code = run(spec(group_by=[{"as": "code", "code": {"column": "code", "system": SNOMED}}]), input=OBS)
    assert code == [("111", 2, 2), ("222", 2, 2), (None, 1, 1)]

def test_age_band_needs_date_field():
    s = spec(join={"input": {"source": "s", "stream": "patients"}, "on": {"left": "patient", "right": "pid"},
                   "columns": ["birth"]},
             group_by=[{"as": "age", "age_band": {"birth_date": "birth"}}])
    with pytest.raises(SpecError, match=r"group_by\[0\].age_band"):
        run(s, input=OBS, joined=PATIENTS)


def test_unknown_join_column_names_field():
    s = spec(join={"input": {"source": "s", "stream": "p"}, "on": {"left": "patient", "right": "nope"},
                   "columns": ["sex"]})
    with pytest.raises(SpecError, match=r"join.on.right: unknown column 'nope'"):
        run(s, input=OBS, joined=PATIENTS)


def test_a_join_keeps_the_same_row_of_a_key_every_time():
    """Of a key's several rows on a join's right side the one of least joined values is kept, on
    every run and whatever order the rows come in: the aggregate's query and the atoms the audit
    counts must put a row in the same cell."""
    from lithotse_desktop.derive.compile import DUCKDB

    con = duckdb.connect()
    con.execute("SET threads = 4")
    con.execute("CREATE TABLE joined AS SELECT i % 50000 AS pid, ['M', 'F', NULL][1 + (i * 7) % 3] AS sex, "
                "i AS n FROM range(300000) t(i) ORDER BY hash(i)")
    sql = DUCKDB.first_per_key('"pid"', ['"sex"'], '"joined"')
    picked = [dict(con.sql(f"SELECT __jk, sex FROM ({sql})").fetchall()) for _ in range(3)]
    assert picked[0] == picked[1] == picked[2]
    assert len(picked[0]) == 50000 and set(picked[0].values()) == {"F"}
