"""Dropping relations implied by others (relations.essential) must not change what a reader
can reconstruct: the equations kept span the same space as every relation's equations, over
random rows and random sets of aggregates, and the audit's bounds stay the same."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lithotse_desktop.derive import complementary
from lithotse_desktop.derive.bounds import BoundModel
from lithotse_desktop.derive.complementary import Cells, Group, audit
from lithotse_desktop.derive.relations import essential, relations

from .test_differencing_property import INPUT, K, datasets, published


@st.composite
def related_specs(draw):
    """3 to 7 aggregates, most of the same rows, so many relations follow from others."""
    specs = []
    for i in range(draw(st.integers(3, 7))):
        spec = {"name": f"t{i}", "kind": "aggregate", "input": INPUT,
                "group_by": draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=3)),
                "measures": [{"fn": "count", "as": "n"}]}
        grain = draw(st.sampled_from(["month", "quarter", "year", "none"]))
        if grain != "none":
            spec.update(date_field="month", grain=grain)
        kind = draw(st.sampled_from(["none", "none", "none", "dimension", "attribute"]))
        if kind == "dimension":
            spec["filters"] = [{"column": "a", "op": "in", "value": draw(
                st.sampled_from([["a0"], ["a1", "a2"], ["a0", "a1"]]))}]
        elif kind == "attribute":
            spec["filters"] = [{"column": "f", "op": "=", "value": "x"}]
        specs.append(spec)
    return specs


def _matrix(group: Group) -> np.ndarray:
    """Every relation line as a row over all terms (cells and differences), as if none were published."""
    size = group.cell_count + len(group.differences)
    out = np.zeros((len(group.relation_lines), size))
    for r, line in enumerate(group.relation_lines):
        for cell, sign in line.terms:
            out[r, cell] += sign
    return out


def _groups(specs: list[dict], rows: list[dict]) -> tuple[Group, Group, list]:
    tables = {s["name"]: published(s, rows) for s in specs}
    cells = [Cells.from_table(s["name"], s, K, tables[s["name"]]) for s in specs]
    rels = relations(specs, {c.name: c.types for c in cells})
    reduced = Group(cells, rels)
    with mock.patch.object(complementary, "essential", lambda found, _specs: found):
        full = Group(cells, rels)
    return reduced, full, rels


@settings(max_examples=60, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rows=datasets(), specs=related_specs(), seed=st.integers(0, 2**16))
def test_dropped_relations_change_nothing_a_reader_can_reconstruct(rows, specs, seed):
    reduced, full, rels = _groups(specs, rows)
    assert len(reduced.differences) == len(full.differences)
    kept, every = _matrix(reduced), _matrix(full)
    rank = np.linalg.matrix_rank(every) if len(every) else 0
    assert (np.linalg.matrix_rank(kept) if len(kept) else 0) == rank
    hidden = set(np.random.default_rng(seed).choice(reduced.cell_count, reduced.cell_count // 2, replace=False))
    hidden = {int(c) for c in hidden}
    def bounds(group: Group) -> list:
        return [(f.cell, round(f.lower, 6), round(f.upper, 6)) for f in audit(group, hidden)]
    assert bounds(reduced) == bounds(full)


def test_a_month_and_year_family_keeps_only_the_equations_that_carry_information():
    """Monthly and yearly tables of nested dimensions: every year–year and month–other-year
    relation follows from month–month and each table's month–year pair."""
    dims = [["a"], ["b"], ["a", "b"], ["a", "b", "c"]]
    specs = [{"name": f"{grain}_{i}", "kind": "aggregate", "input": INPUT, "group_by": d, "date_field": "month",
              "grain": grain, "measures": [{"fn": "count", "as": "n"}]}
             for grain in ("month", "year") for i, d in enumerate(dims)]
    rows = [{"person": f"p{i % 37}", "month": dt.date(2023, 1 + i % 12, 1), "a": f"a{i % 3}", "b": f"b{i % 2}",
             "c": f"c{i % 5 % 2}", "f": "x"} for i in range(300)]
    reduced, full, rels = _groups(specs, rows)
    kept = essential(rels, {s['name']: s for s in specs})
    assert len(rels) == 28 and len(kept) < len(rels) // 2
    assert np.linalg.matrix_rank(_matrix(reduced)) == np.linalg.matrix_rank(_matrix(full))


def _exact(rows: list, size: int, var: int, sense) -> float:
    """A term's least or greatest value from a fresh model (no warm start, no shortcut)."""
    import highspy

    solver = highspy.Highs()
    solver.setOptionValue("output_flag", False)
    solver.addVars(size, np.zeros(size), np.full(size, highspy.kHighsInf))
    for terms, rhs in rows:
        index = np.array([v for v, _ in terms], dtype=np.int32)
        solver.addRow(rhs, rhs, len(index), index, np.array([c for _, c in terms]))
    costs = np.zeros(size)
    costs[var] = 1.0
    solver.changeColsCost(size, np.arange(size, dtype=np.int32), costs)
    solver.changeObjectiveSense(sense)
    solver.run()
    if solver.getModelStatus() == highspy.HighsModelStatus.kUnbounded:
        return float("inf")
    return solver.getInfo().objective_function_value


@settings(max_examples=40, derandomize=True, deadline=None)
@given(seed=st.integers(0, 2**20), tables=st.integers(2, 4), zeros=st.floats(0.0, 0.9))
def test_the_solver_shortcuts_never_call_a_narrow_term_wide(seed, tables, zeros):
    """Random nonnegative tables of hidden terms tied by their row and column sums and a margin
    across the tables (many terms zero, as empty differences are): the bounds found with warm starts,
    feasible-point witnesses and the all-zero test agree with each term solved on its own."""
    import highspy

    rng = np.random.default_rng(seed)
    shape = (3, 4)
    values = [np.where(rng.random(shape) < zeros, 0, rng.integers(0, 15, shape)) for _ in range(tables)]
    base = [t * shape[0] * shape[1] for t in range(tables)]
    rows = []
    for t, table in enumerate(values):
        for i in range(shape[0]):
            rows.append(([(base[t] + i * shape[1] + j, 1.0) for j in range(shape[1])], float(table[i].sum())))
        for j in range(shape[1]):
            rows.append(([(base[t] + i * shape[1] + j, 1.0) for i in range(shape[0])], float(table[:, j].sum())))
    for i in range(shape[0]):  # a margin across the tables ties them into one component
        for j in range(shape[1]):
            if (i + j) % 2 == 0:
                rows.append(([(base[t] + i * shape[1] + j, 1.0) for t in range(tables)],
                             float(sum(table[i, j] for table in values))))
    size = tables * shape[0] * shape[1]
    model = BoundModel([dict(terms) for terms, _ in rows] + [{v: 1.0} for v in range(size)], nonnegative=True)
    fixed = np.array([rhs for _, rhs in rows])
    model.bound(np.concatenate([fixed, np.full(size, -np.inf)]), np.concatenate([fixed, np.full(size, np.inf)]))
    needed = {v: 11.0 for v in range(size)}
    found = {r - len(rows): b for r, b in model.bounds({len(rows) + v: w for v, w in needed.items()}, {}).items()}
    for var in range(size):
        lower = _exact(rows, size, var, highspy.ObjSense.kMinimize)
        upper = _exact(rows, size, var, highspy.ObjSense.kMaximize)
        if var not in found:
            assert upper - lower >= needed[var] - 1e-6, f"term {var} passed as wide: [{lower}, {upper}]"
        else:
            low, high = found[var]
            assert (high - low >= needed[var]) == (upper - lower >= needed[var] - 1e-9), (var, found[var], lower, upper)
            assert abs(low - lower) < 1e-6 and abs(high - upper) < 1e-6, (var, found[var], lower, upper)


def test_a_relation_is_kept_when_the_middle_table_lacks_a_quantity_the_two_share():
    """The audit ties ``sum(v)`` only through tables publishing it: a middle table counting
    only cannot stand in for the relation of two tables that both sum ``v``."""
    def spec(name: str, dims: list[str], grain: str, measures: list[dict]) -> dict:
        return {"name": name, "kind": "aggregate", "input": INPUT, "group_by": dims, "date_field": "month",
                "grain": grain, "measures": measures}
    count = [{"fn": "count", "as": "n"}]
    both = [*count, {"fn": "sum", "column": "v", "as": "total"}]
    specs = [spec("fine", ["a", "b"], "month", both), spec("middle", ["a"], "month", count),
             spec("coarse", ["a"], "year", both)]
    rels = relations(specs, {s["name"]: {} for s in specs})
    by_name = {s["name"]: s for s in specs}
    pairs = {(r.inner, r.outer) for r in essential(rels, by_name)}
    assert any({"fine", "coarse"} == set(p) for p in pairs)
    counted_only = [{**s, "measures": count} for s in specs]
    rels = relations(counted_only, {s["name"]: {} for s in specs})
    pairs = {(r.inner, r.outer) for r in essential(rels, {s["name"]: s for s in counted_only})}
    assert not any({"fine", "coarse"} == set(p) for p in pairs)
