"""The atoms query over the input grouped first by what the members read gives the atoms of
the query over every row: same keys, same records, whatever the grains, date types, time zone,
date ranges, filters and dimensions."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter

import duckdb
import pyarrow as pa
import pytest

from lithotse_desktop.derive import atoms as atoms_module
from lithotse_desktop.derive.atoms import compile_atoms, read_atoms

GRAINS = ["day", "week", "month", "quarter", "year", "none"]


def _rows(seed: int, count: int = 400) -> pa.Table:
    pick = random.Random(seed)
    start = dt.datetime(2023, 12, 20, tzinfo=dt.UTC)
    when = [start + dt.timedelta(hours=pick.randrange(24 * 120)) for _ in range(count)]
    return pa.table({
        "when": pa.array([w if pick.random() > 0.05 else None for w in when], pa.timestamp("us", tz="UTC")),
        "day_text": [w.date().isoformat() + "T08:00" for w in when],
        "born": [dt.date(1940 + pick.randrange(80), 1 + pick.randrange(12), 1) for _ in when],
        "dept": [pick.choice(["a", "b", "c", None]) for _ in when],
        "kind": [pick.choice(["AMB", "EMER", "IMP"]) for _ in when],
        "cost": [pick.randrange(1000) for _ in when],
    })


def _specs(seed: int) -> list[dict]:
    pick = random.Random(seed)
    specs = []
    for i in range(pick.randint(2, 5)):
        spec: dict = {"name": f"t{i}", "kind": "aggregate", "input": {"source": "s", "stream": "x"},
                      "measures": [{"fn": "count", "as": "n"}],
                      "group_by": pick.sample(["dept", "kind"], pick.randint(0, 2))}
        grain = pick.choice(GRAINS)
        if grain != "none" or pick.random() < 0.5:
            spec["date_field"] = pick.choice(["when", "when", "day_text"])
            spec["grain"] = grain
            if pick.random() < 0.2:
                spec["from"] = "2024-01-10"
            if pick.random() < 0.2:
                spec["group_by"] = [*spec["group_by"], {"age_band": {"birth_date": "born"}}]
        if pick.random() < 0.4:
            spec["filters"] = [pick.choice([{"column": "kind", "op": "=", "value": "EMER"},
                                            {"column": "cost", "op": ">", "value": 500},
                                            {"column": "when", "op": "is not null"}])]
        specs.append(spec)
    return specs


def _atoms(table: pa.Table, specs: list[dict], timezone: str) -> tuple[str, Counter]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("input", table)
    compiled = compile_atoms(specs, {"input": table.schema}, timezone=timezone)
    found = read_atoms(specs, con.sql(compiled.sql, params=compiled.params or None).to_arrow_table())
    counted: Counter = Counter()
    for keys, records in zip(found.keys, found.records, strict=True):
        counted[tuple(sorted(keys.items()))] += records
    return compiled.sql, counted


@pytest.mark.parametrize("seed", range(12))
def test_grouping_the_input_first_gives_the_atoms_of_every_row(seed, monkeypatch):
    table, specs = _rows(seed), _specs(seed)
    timezone = ["UTC", "Asia/Tokyo", "America/St_Johns"][seed % 3]
    grouped_sql, grouped = _atoms(table, specs, timezone)
    monkeypatch.setattr(atoms_module, "_grouped_input", lambda *args: None)
    per_row_sql, per_row = _atoms(table, specs, timezone)
    assert grouped_sql != per_row_sql
    assert grouped == per_row
    assert len(per_row) > 1


def test_a_date_read_only_for_monthly_periods_is_cut_to_its_month():
    """The grouping is worth it: months, not days, when every period is made of months."""
    specs = [{"name": "m", "kind": "aggregate", "input": {"source": "s", "stream": "x"}, "date_field": "when",
              "grain": "month", "group_by": ["dept"], "measures": [{"fn": "count", "as": "n"}]},
             {"name": "y", "kind": "aggregate", "input": {"source": "s", "stream": "x"}, "date_field": "when",
              "grain": "year", "group_by": ["kind"], "measures": [{"fn": "count", "as": "n"}]}]
    table = _rows(1, 2000)
    grouped = atoms_module._grouped_input(specs, table.schema, "UTC", atoms_module._Params(atoms_module.DUCKDB),
                                          atoms_module.DUCKDB)
    assert grouped is not None
    con = duckdb.connect()
    con.register("input", table)
    sql, schema = grouped
    groups = con.sql(sql.replace("$1", "'UTC'")).fetchall()
    assert schema.names == ["dept", "kind", "when"]
    assert len(groups) <= 4 * 3 * 5 + 12
    assert {row[2].day for row in groups if row[2] is not None} == {1}


def test_members_joining_different_inputs_each_get_their_own_querys_cells():
    """Members joining one input on two keys and with other columns, another input, a joined
    column named as an input column (filtered on), and none: summed per member, the atoms are each member's
    own query's cells, whichever input the counting build joins itself (``own``)."""
    from lithotse_desktop.derive.atoms import joined_inputs
    from lithotse_desktop.derive.compile import compile_aggregate

    con = duckdb.connect()
    con.execute("CREATE TABLE visits AS SELECT i % 97 AS pid, (i * 7) % 89 AS nurse, ['a', 'b', 'c', 'z'][1 + i % 4] "
                "AS ward, DATE '2024-01-01' + CAST((i * 13) % 200 AS INTEGER) AS day, ['x', 'y'][1 + i % 2] AS kind "
                "FROM range(3000) t(i)")
    con.execute("CREATE TABLE people AS SELECT i % 80 AS pid, ['F', 'M', NULL][1 + (i * 5) % 3] AS sex, "
                "['n', 's', NULL][1 + (i * 3) % 3] AS region, ['a', 'b', 'c'][1 + i % 3] AS ward "
                "FROM range(200) t(i) ORDER BY hash(i)")
    con.execute("CREATE TABLE wards AS SELECT * FROM (VALUES ('a', 'north'), ('b', 'south'), ('b', 'east'), "
                "('c', NULL)) t(code, site)")
    people, wards = {"source": "s", "stream": "people"}, {"source": "s", "stream": "wards"}
    tables = {"people": "people", "wards": "wards"}

    def member(name: str, join: dict | None, group_by: list, **more) -> dict:
        return {"name": name, "kind": "aggregate", "input": {"source": "s", "stream": "visits"}, "date_field": "day",
                "grain": "month", "group_by": group_by, "measures": [{"fn": "count", "as": "n"}], **more,
                **({"join": join} if join else {})}

    specs = [member("by_sex", {"input": people, "on": {"left": "pid", "right": "pid"}, "columns": ["sex"]}, ["sex"]),
             member("by_region", {"input": people, "on": {"left": "pid", "right": "pid"},
                                  "columns": ["region", "sex"]}, ["region", "sex"]),
             member("by_nurse_sex", {"input": people, "on": {"left": "nurse", "right": "pid"}, "columns": ["sex"]},
                    ["sex"], filters=[{"column": "kind", "op": "=", "value": "x"}]),
             member("by_site", {"input": wards, "on": {"left": "ward", "right": "code"}, "columns": ["site"]},
                    ["site", "ward"]),
             member("home_ward_a", {"input": people, "on": {"left": "pid", "right": "pid"}, "columns": ["ward"]},
                    ["kind"], filters=[{"column": "ward", "op": "=", "value": "a"}]),
             member("by_kind", None, ["kind"], grain="quarter")]
    schema_of = {name: con.sql(f"SELECT * FROM {name} LIMIT 0").to_arrow_table().schema
                 for name in ("visits", "people", "wards")}
    own_cells = {}
    for spec in specs:
        con.execute("CREATE OR REPLACE VIEW input AS SELECT * FROM visits")
        joined = tables[spec["join"]["input"]["stream"]] if "join" in spec else "people"
        con.execute(f"CREATE OR REPLACE VIEW joined AS SELECT * FROM {joined}")
        compiled = compile_aggregate(spec, {"input": schema_of["visits"], "joined": schema_of[joined]})
        found = con.sql(compiled.sql, params=compiled.params or None).fetchall()
        own_cells[spec["name"]] = {row[:1 + len(spec["group_by"])]: row[-2] for row in found}
    for own in (None, people, wards):
        relations = joined_inputs(specs, own)
        assert len(relations) == 2 and relations["joined"] == (own or people)
        for alias, item in relations.items():
            con.execute(f"CREATE OR REPLACE VIEW {alias} AS SELECT * FROM {tables[item['stream']]}")
        schemas = {"input": schema_of["visits"], **{a: schema_of[tables[i["stream"]]] for a, i in relations.items()}}
        compiled = compile_atoms(specs, schemas, own=own)
        atoms = read_atoms(specs, con.sql(compiled.sql, params=compiled.params or None).to_arrow_table())
        for spec in specs:
            summed: Counter = Counter()
            for key, records in zip(atoms.columns[spec["name"]], atoms.records, strict=True):
                if key is not None:
                    summed[key] += records
            assert dict(summed) == own_cells[spec["name"]], (own, spec["name"])
