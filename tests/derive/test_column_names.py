"""Column names are whatever a header holds: every place a spec names a column takes any text,
which reaches SQL only quoted, and never breaks or changes the query."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict

import duckdb
import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lithotse_desktop.derive.compile import DUCKDB, compile_aggregate
from lithotse_desktop.derive.spec import SpecError, validate_spec

HOSTILE = [
    'a"b', "back\\slash", 'x"; DROP TABLE "input"; --', "select", "from", "' OR 1=1 --",
    "Robert'); DROP TABLE Students;--", "L" * 300 + " (days)", "LOS (days)", "Cost ($)", "% Readmit",
    "Ward/Bed", "Patient #", "Diagnóstico", "$1", "?", "a.b", "[x]", "`tick`", "日付", "  padded  ", " ",
]
SNOMED = "http://snomed.info/sct"


def run(spec: dict, **tables: pa.Table) -> list[dict]:
    validate_spec(spec)
    con = duckdb.connect()
    for name, table in tables.items():
        con.register(name, table)
    compiled = compile_aggregate(spec, {k: v.schema for k, v in tables.items()})
    rows = con.sql(compiled.sql, params=compiled.params or None).to_arrow_table().to_pylist()
    assert con.execute("SELECT count(*) FROM input").fetchone()[0] == tables["input"].num_rows
    return rows


def base(**kw) -> dict:
    return {"name": "t", "kind": "aggregate", "input": {"source": "s", "stream": "x"}, **kw}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_name_works_in_every_place_a_spec_names_a_column(name):
    day, birth, code, group, value = (f"{name} {role}" for role in ("day", "birth", "code", "group", "value"))
    table = pa.table({
        name: ["a", "b", "a", "c", None],
        day: pa.array([dt.date(2024, 1, d) for d in (1, 2, 3, 4, 5)]),
        birth: pa.array([dt.date(1950, 1, 1), dt.date(2000, 1, 1), dt.date(2010, 1, 1), None,
                         dt.date(1980, 1, 1)]),
        code: [json.dumps({"coding": [{"system": SNOMED, "code": c}]}) for c in "xyxyx"],
        value: [1.5, 2.0, 3.0, 4.0, 10.0],
        group: ["g1", "g1", "g2", "g2", "g2"],
    })
    people = pa.table({name: ["a", "b", "c"], "joined " + name: ["A", "B", "C"]})
    spec = base(date_field=day, grain="month", **{"from": "2024-01-01", "to": "2024-01-04"},
                filters=[{"column": name, "op": "is not null"}, {"column": value, "op": "<", "value": 5}],
                group_by=[group, {"as": "band", "age_band": {"birth_date": birth, "bands": [0, 18, 65]}},
                          {"as": "snomed", "code": {"column": code, "system": SNOMED}}],
                measures=[{"fn": "count", "as": "n"}, {"fn": "sum", "column": value, "as": "total"},
                          {"fn": "count_distinct", "column": "joined " + name, "as": "joined"}],
                join={"input": {"source": "s", "stream": "p"}, "on": {"left": name, "right": name},
                      "columns": ["joined " + name]})
    rows = run(spec, input=table, joined=people)
    got = sorted(((r[group], r["band"], r["snomed"], r["n"], r["total"], r["joined"]) for r in rows), key=str)
    assert got == [("g1", "18-64", "y", 1, 2.0, 1), ("g1", "65+", "x", 1, 1.5, 1), ("g2", "0-17", "x", 1, 3.0, 1),
                   ("g2", None, "y", 1, 4.0, 1)]
    assert [r["period"] for r in rows] == [dt.date(2024, 1, 1)] * 4


def test_a_name_is_always_quoted_by_the_dialect():
    name = 'x"; DROP TABLE "input"; --'
    compiled = compile_aggregate(base(group_by=[name], measures=[{"fn": "count", "as": "n"}]),
                                 {"input": pa.schema([(name, pa.string())])})
    assert DUCKDB.quote(name) == '"x""; DROP TABLE ""input""; --"'
    assert compiled.sql.count(DUCKDB.quote(name)) == 2  # read and named (grouped and ordered by place)
    assert compiled.sql.replace(DUCKDB.quote(name), "").count("DROP") == 0


@pytest.mark.parametrize("column, message", [
    ("", r"filters\[0\].column: is empty: name a column"),
    (None, r"filters\[0\].column: None is not a column name \(text\)"),
    (7, r"filters\[0\].column: 7 is not a column name \(text\)"),
])
def test_a_column_must_be_non_empty_text(column, message):
    with pytest.raises(SpecError, match=message):
        validate_spec(base(filters=[{"column": column, "op": "is null"}], measures=[{"fn": "count", "as": "n"}]))


def test_a_name_that_is_not_a_column_of_the_input_is_refused_naming_the_columns():
    spec = base(group_by=["los (days)"], measures=[{"fn": "count", "as": "n"}])
    with pytest.raises(SpecError, match=r"^group_by\[0\]: unknown column 'los \(days\)'; the input has: LOS \(days\)"):
        compile_aggregate(spec, {"input": pa.schema([("LOS (days)", pa.int64())])})
    nul = base(group_by=["a\x00b"], measures=[{"fn": "count", "as": "n"}])
    with pytest.raises(SpecError, match="unknown column"):
        compile_aggregate(nul, {"input": pa.schema([("a", pa.int64())])})


def test_names_an_aggregate_adds_itself_need_another_name():
    with pytest.raises(SpecError, match=r'group_by\[0\]: \'period\' is the name of a column aggregates add .* '
                                        r'\{"as": "…", "column": "period"\}'):
        validate_spec(base(group_by=["period"], measures=[{"fn": "count", "as": "n"}]))
    with pytest.raises(SpecError, match=r"measures\[0\].as: 'Suppressed' is the name"):
        validate_spec(base(measures=[{"fn": "count", "as": "Suppressed"}]))
    with pytest.raises(SpecError, match=r"output names used twice \(case aside\): N, n"):
        validate_spec(base(group_by=["N"], measures=[{"fn": "count", "as": "n"}]))
    rows = run(base(group_by=[{"as": "period_label", "column": "period"}], measures=[{"fn": "count", "as": "n"}]),
               input=pa.table({"period": ["2024-Q1", "2024-Q1", "2024-Q2"]}))
    assert rows == [{"period_label": "2024-Q1", "n": 2, "__n": 2, "__people": 2},
                    {"period_label": "2024-Q2", "n": 1, "__n": 1, "__people": 1}]


NAME = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(names=st.lists(NAME, min_size=2, max_size=2, unique_by=str.casefold),
       rows=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(-100, 100)), max_size=20),
       threshold=st.integers(-100, 100))
def test_any_header_text_groups_filters_and_sums_like_plain_python(names, rows, threshold):
    group, value = names
    assume(group.casefold() not in ("total", "n"))  # the measures' own names: refused as used twice
    table = pa.table({group: pa.array([g for g, _ in rows], pa.string()), value: pa.array([v for _, v in rows],
                                                                                         pa.int64())})
    spec = base(filters=[{"column": value, "op": ">=", "value": threshold}], group_by=[group],
                measures=[{"fn": "sum", "column": value, "as": "total"}, {"fn": "count", "column": value, "as": "n"}])
    got = {r[group]: (r["total"], r["n"]) for r in run(spec, input=table)}
    sums: dict[str, int] = defaultdict(int)
    counts: Counter[str] = Counter()
    for g, v in rows:
        if v >= threshold:
            sums[g] += v
            counts[g] += 1
    assert got == {g: (sums[g], counts[g]) for g in counts}
