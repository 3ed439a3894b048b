"""Differencing attacks on random sets of aggregates of one input (property tests).

Rows are random (person, month, three dimensions, one attribute no table groups by); specs are
random grains (month, quarter, year, none), dimension subsets, filters on a dimension or on the
attribute, and date ranges on or off the coarser grains' edges. The cells each spec publishes
are counted here in plain Python (not by the product's SQL); the product decides what to hide
over the whole set; then an attacker that knows the structure at the finest level — every
(month, dimensions, attribute) combination as an unknown count ≥ 0, every published number and
every absent cell as an equation — bounds each hidden cell by linear programming. No hidden
cell may be recovered exactly or narrowed to an interval narrower than the threshold.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from unittest import mock

import highspy
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lithotse_desktop.derive import bounds
from lithotse_desktop.derive.complementary import Cells, Group, audit, complemented, decide
from lithotse_desktop.derive.relations import partitions, period_start, relations

K = 5
MONTHS = [dt.date(2023 + (m // 12), m % 12 + 1, 1) for m in range(24)]
VALUES = {"a": ["a0", "a1", "a2"], "b": ["b0", "b1"], "c": ["c0", "c1"], "f": ["x", "y"]}
INPUT = {"source": "s", "stream": "rows"}


@st.composite
def datasets(draw):
    persons = draw(st.integers(8, 60))
    count = draw(st.integers(20, 160))
    rows = []
    for _ in range(count):
        rows.append({"person": f"p{draw(st.integers(0, persons - 1))}",
                     "month": MONTHS[draw(st.integers(0, 23))],
                     **{d: draw(st.sampled_from(v)) for d, v in VALUES.items()}})
    return rows


@st.composite
def spec_sets(draw):
    specs = []
    for i in range(draw(st.integers(2, 4))):
        spec = {"name": f"t{i}", "kind": "aggregate", "input": INPUT,
                "group_by": draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=2)),
                "measures": [{"fn": "count", "as": "n"}]}
        grain = draw(st.sampled_from(["month", "quarter", "year", "none"]))
        if grain != "none" or draw(st.booleans()):
            spec.update(date_field="month", grain=grain)
        if "date_field" in spec and draw(st.booleans()):
            spec["from"] = MONTHS[draw(st.sampled_from([0, 3, 4, 12]))].isoformat()
        kind = draw(st.sampled_from(["none", "none", "dimension", "attribute"]))
        if kind == "dimension":
            spec["filters"] = [{"column": "a", "op": "in", "value": draw(
                st.lists(st.sampled_from(VALUES["a"]), unique=True, min_size=1, max_size=2))}]
        elif kind == "attribute":
            spec["filters"] = [{"column": "f", "op": "=", "value": "x"}]
        specs.append(spec)
    return specs


def selected(spec: dict, row: dict) -> bool:
    """The spec's WHERE, evaluated on one row (or one finest-level combination)."""
    if spec.get("from") and row["month"] < dt.date.fromisoformat(spec["from"]):
        return False
    for f in spec.get("filters", []):
        value = row[f["column"]]
        if f["op"] == "in" and value not in f["value"]:
            return False
        if f["op"] == "=" and value != f["value"]:
            return False
    return True


def cell_of(spec: dict, row: dict) -> tuple:
    grain = spec.get("grain", "none")
    period = period_start(row["month"], grain) if grain != "none" else None
    return (period, *(row[d] for d in spec["group_by"]))


def published(spec: dict, rows: list[dict]) -> pa.Table:
    """The spec's cells with records and people, computed independently of the product."""
    cells: dict[tuple, list[str]] = defaultdict(list)
    for row in rows:
        if selected(spec, row):
            cells[cell_of(spec, row)].append(row["person"])
    keys = sorted(cells, key=lambda k: tuple(str(v) for v in k))
    columns = {} if spec.get("grain", "none") == "none" else {"period": [k[0] for k in keys]}
    for j, d in enumerate(spec["group_by"]):
        columns[d] = [k[j + 1] for k in keys]
    n = [len(cells[k]) for k in keys]
    return pa.table({**columns, "n": n, "__n": n, "__people": [len(set(cells[k])) for k in keys]})


def atoms(specs: list[dict], rows: list[dict]) -> list[dict]:
    """Each row's cell in every spec that selects it, as a build counts a group's atoms (here in
    plain Python): the keys in the order of the published coordinates (period, then dimensions)."""
    return counted_atoms(specs, rows)[0]


def counted_atoms(specs: list[dict], rows: list[dict]) -> tuple[list[dict], list[int]]:
    """:func:`atoms` and the rows of each, as a build counts them."""
    found: dict[tuple, int] = defaultdict(int)
    for row in rows:
        atom = []
        for spec in specs:
            if selected(spec, row):
                key = cell_of(spec, row)
                atom.append((spec["name"], key if spec.get("grain", "none") != "none" else key[1:]))
        found[tuple(atom)] += 1
    ordered = sorted(found, key=str)
    return [dict(atom) for atom in ordered], [found[atom] for atom in ordered]


def attack(specs: list[dict], tables: dict[str, pa.Table], hidden: dict[str, set[int]],
           values: dict[str, list[str]] = VALUES) -> list[tuple]:
    """(table, cell, lower, upper) of every hidden cell, from an LP over the finest combinations
    of ``values`` (every value a reader knows each column may take)."""
    atoms = [dict(zip(["month", *values], combo, strict=True))
             for combo in itertools.product(MONTHS, *values.values())]
    solver = highspy.Highs()
    solver.setOptionValue("output_flag", False)
    solver.addVars(len(atoms), np.zeros(len(atoms)), np.full(len(atoms), highspy.kHighsInf))
    members: dict[tuple, list[int]] = defaultdict(list)
    for spec in specs:
        for i, atom in enumerate(atoms):
            if selected(spec, atom):
                members[(spec["name"], cell_of(spec, atom))].append(i)
    targets = []
    for spec in specs:
        table = tables[spec["name"]]
        present = {}
        for r, row in enumerate(table.to_pylist()):
            present[(row.get("period"), *(row[d] for d in spec["group_by"]))] = (r, row["n"])
        for (name, key), idx in members.items():
            if name != spec["name"]:
                continue
            r, n = present.get(key, (None, 0))
            if r is not None and r in hidden[name]:
                targets.append((name, key, idx))
                continue
            solver.addRow(n, n, len(idx), np.array(idx, dtype=np.int32), np.ones(len(idx)))
    out = []
    for name, key, idx in targets:
        ends = []
        for sense in (highspy.ObjSense.kMinimize, highspy.ObjSense.kMaximize):
            costs = np.zeros(len(atoms))
            costs[idx] = 1.0
            solver.changeColsCost(len(atoms), np.arange(len(atoms), dtype=np.int32), costs)
            solver.changeObjectiveSense(sense)
            solver.run()
            status = solver.getModelStatus()
            assert status in (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kUnbounded), status
            ends.append(solver.getInfo().objective_function_value if status == highspy.HighsModelStatus.kOptimal
                        else float("inf"))
        out.append((name, key, ends[0], ends[1]))
    return out


@settings(max_examples=100, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rows=datasets(), specs=spec_sets())
def test_no_hidden_cell_is_recovered_or_narrowed_below_the_threshold(rows, specs):
    check_attack(rows, specs)


@settings(max_examples=60, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rows=datasets(), specs=spec_sets())
def test_the_audit_near_the_atoms_records_finds_what_the_whole_model_finds(rows, specs):
    """Cells shown wide near the atoms' records are wide in the whole model, and only the whole
    model calls a cell narrow: the findings (cells and bounds) are the same either way."""
    def findings(with_records: bool) -> list[tuple]:
        group = counted_group(rows, specs, with_records=with_records)
        with mock.patch.object(bounds, "NEAR_FROM", 0), mock.patch.object(bounds, "NEAR_SHARE", 1.0):
            found = audit(group, complemented(group))
        return [(f.cell, round(f.lower, 6), round(f.upper, 6)) for f in found]

    assert findings(True) == findings(False)


def remainders(specs: list[dict], found: list, rows: list[dict]) -> dict:
    """Records and people of each partition's outer rows that no part keeps, per margin cell, as
    a build counts them (here from the rows, in plain Python)."""
    by_name = {s["name"]: s for s in specs}
    out = {}
    for p in found:
        outer = by_name[p.outer]
        counted: dict[tuple, list[str]] = defaultdict(list)
        for row in rows:
            if selected(outer, row) and not any(selected(by_name[n], row) for n in p.parts):
                period = period_start(row["month"], p.grain) if p.grain != "none" else None
                counted[(period, *(row[d] for d in p.common[p.outer]))].append(row["person"])
        out[p.key] = {key: (len(people), len(set(people))) for key, people in counted.items()}
    return out


def counted_group(rows: list[dict], specs: list[dict], *, with_records: bool = True) -> Group:
    """The group a build decides over, counted here: cells, relations, remainders and atoms
    (with each atom's rows, as a build counts them, unless ``with_records`` is off)."""
    tables = {s["name"]: published(s, rows) for s in specs}
    cells = [Cells.from_table(s["name"], s, K, tables[s["name"]]) for s in specs]
    types = {c.name: c.types for c in cells}
    keys, records = counted_atoms(specs, rows)
    return Group(cells, relations(specs, types), differences=None,
                 remainders=remainders(specs, partitions(specs, types), rows), atoms=keys,
                 atom_records=records if with_records else None)


def check_attack(rows: list[dict], specs: list[dict], values: dict[str, list[str]] = VALUES) -> None:
    """Decide as a build does (every model, however small, tried near the atoms' records first),
    then attack every hidden cell with the independent LP."""
    tables = {s["name"]: published(s, rows) for s in specs}
    with mock.patch.object(bounds, "NEAR_FROM", 0), mock.patch.object(bounds, "NEAR_SHARE", 1.0):
        hidden = decide(counted_group(rows, specs))
    for spec in specs:
        people = tables[spec["name"]].column("__people").to_pylist()
        small = {i for i, p in enumerate(people) if 0 < p < K}
        assert small <= hidden[spec["name"]], "every cell of 1..k-1 people is hidden"
    for name, key, lower, upper in attack(specs, tables, hidden, values):
        assert upper - lower >= K - 1e-6, f"{name} {key}: narrowed to [{lower}, {upper}]"


def _rows(month: dt.date, people: list[str], a: str = "a0") -> list[dict]:
    return [{"person": p, "month": month, "a": a, "b": "b0", "c": "c0", "f": "x"} for p in people]


def _count(name: str, **extra) -> dict:
    return {"name": name, "kind": "aggregate", "input": INPUT, "group_by": [], "measures": [{"fn": "count", "as": "n"}],
            "date_field": "month", **extra}


JAN, FEB, MAR, JUL = (dt.date(2023, m, 1) for m in (1, 2, 3, 7))
PARTITIONED = _rows(JAN, ["p0"] * 66) + _rows(FEB, ["p0", "p1", "p2", "p3", "p4"]) + _rows(MAR, ["p0"])


def test_a_quarter_wholly_inside_a_narrower_monthly_table_is_not_recovered():
    """Found by the property test: a monthly table from May holds all of Q3, so the quarterly
    table's Q3 equals its months; no difference hides it."""
    check_attack(_rows(JAN, ["p0"] * 70) + _rows(JUL, ["p0", "p1", "p2", "p3", "p4"]),
                 [_count("t0", grain="quarter"), _count("t1", grain="month", **{"from": "2023-05-01"})])


def test_a_filter_keeping_fewer_values_is_related_to_one_keeping_more():
    """Found by the property test: ``a in [a0]`` rows are a subset of ``a in [a0, a1]`` rows."""
    check_attack(_rows(JAN, ["p0"] * 67 + ["p1", "p2", "p3", "p4"]) + _rows(FEB, ["p0"] * 4) + _rows(MAR, ["p0"]),
                 [_count("t0", grain="month", filters=[{"column": "a", "op": "in", "value": ["a0"]}]),
                  _count("t1", grain="month"), _count("t2", grain="month"),
                  _count("t3", grain="month", group_by=["a"],
                         filters=[{"column": "a", "op": "in", "value": ["a0", "a1"]}])])


def test_filtered_tables_that_partition_a_column_together_bound_the_rest():
    """Found by the property test: ``a in [a2]`` publishing no rows in Q1 tells a reader that all
    of February's rows are ``a in [a0, a1]``, so that table's hidden February equals the whole."""
    check_attack(PARTITIONED,
                 [_count("t0", grain="month", filters=[{"column": "a", "op": "in", "value": ["a0", "a1"]}]),
                  _count("t1", grain="month"), _count("t2", grain="month"),
                  _count("t3", grain="quarter", filters=[{"column": "a", "op": "in", "value": ["a2"]}])])


def test_a_partition_whose_remainder_is_zero_only_in_some_quarters_bounds_those():
    """``a in [a0]`` and ``a in [a2]`` leave ``a1`` out; the only a1 rows are in July, so in Q1
    the remainder is zero (a reader who knows the column's values knows it) and the parts add up
    to the whole there."""
    check_attack(PARTITIONED + _rows(JUL, ["p5"] * 30, a="a1"),
                 [_count("t0", grain="month", filters=[{"column": "a", "op": "in", "value": ["a0"]}]),
                  _count("t1", grain="month"), _count("t2", grain="month"),
                  _count("t3", grain="quarter", filters=[{"column": "a", "op": "=", "value": "a2"}])])


def test_parts_covering_the_whole_tables_own_filter_have_no_remainder():
    """The whole keeps ``a in [a0, a1, a2]`` and the parts split exactly those values: the
    remainder is zero by the specs alone, with no counts given."""
    whole = [{"column": "a", "op": "in", "value": ["a0", "a1", "a2"]}]
    specs = [_count("t0", grain="month", filters=[{"column": "a", "op": "in", "value": ["a0", "a1"]}]),
             _count("t1", grain="month", filters=whole), _count("t2", grain="month", filters=whole),
             _count("t3", grain="quarter", filters=[{"column": "a", "op": "=", "value": "a2"}])]
    found = partitions(specs, {s["name"]: {} for s in specs})
    assert {(p.outer, tuple(p.parts), p.covered) for p in found} == {("t1", ("t0", "t3"), True),
                                                                     ("t2", ("t0", "t3"), True)}
    tables = {s["name"]: published(s, PARTITIONED) for s in specs}
    cells = [Cells.from_table(s["name"], s, K, tables[s["name"]]) for s in specs]
    hidden = decide(Group(cells, relations(specs, {c.name: c.types for c in cells})))
    for name, key, lower, upper in attack(specs, tables, hidden):
        assert upper - lower >= K - 1e-6, f"{name} {key}: narrowed to [{lower}, {upper}]"


def test_partitions_are_found_as_maximal_families_of_disjoint_value_sets():
    specs = [_count("whole", grain="month"),
             _count("x", grain="month", filters=[{"column": "a", "op": "=", "value": "a0"}]),
             _count("y", grain="year", filters=[{"column": "a", "op": "in", "value": ["a1", "a2"]}]),
             _count("z", grain="month", filters=[{"column": "a", "op": "in", "value": ["a0", "a1"]}]),
             _count("other", grain="month", filters=[{"column": "f", "op": "=", "value": "x"}])]
    found = {(p.outer, tuple(p.parts), p.grain, p.covered) for p in partitions(specs, {s["name"]: {} for s in specs})}
    assert found == {("whole", ("x", "y"), "year", False)}
    covered = partitions([*specs[1:3], _count("xy", grain="month", filters=[
        {"column": "a", "op": "in", "value": ["a0", "a1", "a2"]}])], {n: {} for n in ("x", "y", "xy")})
    assert [(p.outer, p.parts, p.covered) for p in covered] == [("xy", ["x", "y"], True)]


def _published_table(spec: dict, rows: list[tuple], hidden: set[int]) -> pa.Table:
    """A table as published: cells (the hidden ones null) and their suppression flags."""
    columns = {"period": [r[0] for r in rows], **{d: [r[1 + j] for r in rows] for j, d in enumerate(spec["group_by"])}}
    return pa.table({**columns, "n": [None if i in hidden else r[-1] for i, r in enumerate(rows)],
                     "suppressed": [i in hidden for i in range(len(rows))]})


@pytest.mark.parametrize("yearly", [3, 30])
def test_numbers_the_audit_cannot_reconcile_are_reported_not_passed(yearly):
    """Published numbers that no counts ≥ 0 satisfy (tables published from different data) leave
    the hidden cells without bounds; the audit reports them rather than passing them as safe.
    With one equation the closed form meets it (yearly 3 < February's 5); with two, the solver."""
    months = _count("m", grain="month", group_by=["a"])
    years = _count("y", grain="year", group_by=["a"])
    month_rows = [(JAN, "a0", 40), (FEB, "a0", 5), (JAN, "a1", 2), (FEB, "a1", 60)]
    hidden = {0} if yearly == 3 else {0, 2}
    year_rows = [(dt.date(2023, 1, 1), "a0", yearly), (dt.date(2023, 1, 1), "a1", 62)]
    specs = [months, years]
    tables = {"m": _published_table(months, month_rows, hidden),
              "y": _published_table(years, year_rows, set() if yearly == 3 else {0})}
    cells = [Cells.from_table(s["name"], s, K, tables[s["name"]]) for s in specs]
    if yearly == 30:  # a monthly total of 1 in January, while a1 alone must hold 2 there
        tables["t"] = _published_table(_count("t", grain="month"), [(JAN, 1), (FEB, 65)], set())
        specs.append(_count("t", grain="month"))
        cells.append(Cells.from_table("t", specs[-1], K, tables["t"]))
    group = Group(cells, relations(specs, {c.name: c.types for c in cells}))
    findings = audit(group)
    assert findings, "inconsistent numbers must not pass as safe"
    assert all(f.unresolved and f.to_json()["lower"] is None for f in findings), [f.to_json() for f in findings]
