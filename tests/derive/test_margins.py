"""Unpublished margins in the line pass: two tables sharing ``a × b`` make that margin known to a
reader wherever one side is all visible, and a small margin of a rare ``b`` bounds every hidden
cell inside it, however each table protects its own lines."""

from __future__ import annotations

import random

import pytest

from lithotse_desktop.derive import margins as margins_module
from lithotse_desktop.derive.complementary import Cells, Group, audit, complemented
from lithotse_desktop.derive.margins import Margins
from lithotse_desktop.derive.relations import partitions, relations

from .test_differencing_property import INPUT, MONTHS, K, atoms, check_attack, published, remainders


def _spec(name: str, dims: list[str], **extra) -> dict:
    return {"name": name, "kind": "aggregate", "input": INPUT, "group_by": dims, "date_field": "month",
            "grain": "month", "measures": [{"fn": "count", "as": "n"}], **extra}


RARE_SPECS = [_spec("t_a", ["a"]), _spec("t_abf", ["a", "b", "f"]), _spec("t_acb", ["a", "c", "b"]),
              _spec("t_cfb", ["c", "f", "b"])]


def _rare_rows(seed: int) -> list[dict]:
    """A month of people in departments ``a`` × classes ``c`` × sexes ``f`` × regions ``b``: 5
    to 14 people in each of b0 and b1, and 0 to 2 in the rare region ``br``."""
    pick = random.Random(seed)
    rows = []
    for a in range(pick.randint(3, 6)):
        for c in ("c0", "c1"):
            for f in ("x", "y"):
                for b in ("b0", "b1"):
                    rows += [{"a": f"a{a}", "b": b, "c": c, "f": f} for _ in range(pick.randint(5, 14))]
                rows += [{"a": f"a{a}", "b": "br", "c": c, "f": f} for _ in range(pick.choice([0, 1, 1, 2]))]
    return [{**row, "person": f"p{i}", "month": MONTHS[0]} for i, row in enumerate(rows)]


def _values(rows: list[dict]) -> dict[str, list[str]]:
    return {d: sorted({row[d] for row in rows}) for d in ("a", "b", "c", "f")}


def _group(rows: list[dict], specs: list[dict]) -> Group:
    tables = {s["name"]: published(s, rows) for s in specs}
    cells = [Cells.from_table(s["name"], s, K, tables[s["name"]]) for s in specs]
    types = {c.name: c.types for c in cells}
    return Group(cells, relations(specs, types), differences=None,
                 remainders=remainders(specs, partitions(specs, types), rows), atoms=atoms(specs, rows))


def test_a_rare_region_is_protected_by_the_line_pass_alone():
    """Found while profiling the 5M-row benchmark: ``a × br`` is published nowhere, yet it is
    ``t_a`` minus the regions ``b0`` and ``b1``, each known from whichever of ``t_abf`` and
    ``t_acb`` shows it whole. With the margins as terms, the line pass hides enough that the exact
    audit finds nothing; without them (checked below) it leaves cells the audit narrows."""
    rows = _rare_rows(0)
    group = _group(rows, RARE_SPECS)
    hidden = complemented(group)
    assert audit(group, hidden) == []
    check_attack(rows, RARE_SPECS, _values(rows))


def _without_axes(monkeypatch) -> None:
    """A table's own lines without their axis: complements are then the smallest cell of each
    line, not one in a category already hidden along it."""
    own_lines = Group.own_lines

    def without_axes(self):
        lines = own_lines(self)
        for line in lines:
            line.axis = None
        return lines

    monkeypatch.setattr(Group, "own_lines", without_axes)


def test_without_the_margins_the_same_line_pass_leaves_narrow_cells(monkeypatch):
    """The other half of the test above: it would pass for nothing if the line pass already
    protected the rare region. (Its preference for hidden categories protects this month too,
    see below, so it is switched off with the margins.)"""
    monkeypatch.setattr(margins_module.Margins, "_context", lambda self, *args: None)
    _without_axes(monkeypatch)
    group = _group(_rare_rows(0), RARE_SPECS)
    findings = audit(group, complemented(group))
    assert findings
    assert all(f.cell_info.get("b") == "br" or f.cell_info.get("b") in ("b0", "b1") for f in findings)


def test_the_margins_alone_protect_the_rare_region(monkeypatch):
    _without_axes(monkeypatch)
    group = _group(_rare_rows(0), RARE_SPECS)
    assert audit(group, complemented(group)) == []


def test_margin_terms_records_and_concealment():
    rows = _rare_rows(0)
    group = _group(rows, RARE_SPECS)
    margins = Margins(group, group.cell_count + len(group.differences))
    a_b = [v for v, (dims, _key) in enumerate(margins.where)
           if dims == (("column", ("input", "a")), ("column", ("input", "b")))]
    counted: dict[tuple, int] = {}
    for row in rows:
        counted[(row["a"], row["b"])] = counted.get((row["a"], row["b"]), 0) + 1
    assert {margins.where[v][1][1:]: margins.records[v] for v in a_b} == counted
    sensitive = margins.sensitive()
    assert {margins.where[v][1][1:] for v in a_b if margins.first_id + v in sensitive} == {
        key for key, n in counted.items() if 0 < n < K}
    margins.refresh(lambda cell: False)
    assert not any(margins.concealed), "with every cell visible, every margin is known"
    margins.refresh(lambda cell: True)
    assert all(margins.concealed[v] for v in a_b), "with every cell hidden, no margin is known"


@pytest.mark.parametrize("seed", range(1, 9))
def test_rare_regions_pass_the_independent_attacker(seed):
    rows = _rare_rows(seed)
    check_attack(rows, RARE_SPECS, _values(rows))


def _wide_month_rows() -> list[dict]:
    """Two months of 10 × 5 × 5 combinations of ``a``, ``b``, ``c`` (over 200 atoms each, so each
    month is a component the audit solves with its interior point solver), a few of them small."""
    pick = random.Random(7)
    rows = []
    for month in MONTHS[:2]:
        for a in range(10):
            for b in range(5):
                for c in range(5):
                    n = pick.choice([0, 1, 2, 3, 6, 9, 14])
                    rows += [{"month": month, "a": f"a{a}", "b": f"b{b}", "c": f"c{c}", "f": "x"}] * n
    return [{**row, "person": f"p{i}"} for i, row in enumerate(rows)]


def test_components_solved_side_by_side_give_the_bounds_solved_one_by_one(monkeypatch):
    """The audit solves independent components on several threads; the findings (cells and
    bounds) are those of solving them one after the other."""
    import lithotse_desktop.derive.complementary as complementary

    rows = _wide_month_rows()
    specs = [_spec("t_ab", ["a", "b"]), _spec("t_bc", ["b", "c"]), _spec("t_ac", ["a", "c"])]

    def findings(cores: int) -> list[tuple]:
        monkeypatch.setattr(complementary.os, "cpu_count", lambda: cores)
        group = _group(rows, specs)
        hidden = {group.offsets[m.name] + i for m in group.members for i, p in enumerate(m.people) if 0 < p < K}
        return [(f.cell, round(f.lower, 6), round(f.upper, 6)) for f in audit(group, hidden)]

    pools = []
    real_pool = complementary.ThreadPoolExecutor
    monkeypatch.setattr(complementary, "ThreadPoolExecutor",
                        lambda **kwargs: pools.append(kwargs["max_workers"]) or real_pool(**kwargs))
    one_by_one = findings(1)
    assert pools == []
    side_by_side = findings(4)
    assert pools == [2], "both months solved in the pool"
    assert one_by_one and side_by_side == one_by_one


BENCH_DIMENSIONS = [["a"], ["c"], ["a", "c"], ["a", "f"], ["c", "b"], ["a", "c", "f"], ["a", "b", "f"],
                    ["c", "f", "b"], ["a", "c", "b"]]
YEAR_SPECS = ([_spec(f"m{i}", dims) for i, dims in enumerate(BENCH_DIMENSIONS)]
              + [_spec(f"y{i}", dims, grain="year") for i, dims in enumerate(BENCH_DIMENSIONS)])
"""bench/privacy.py's tables, at monthly and yearly grains."""


def _rare_year_rows(seed: int, months: int = 4) -> list[dict]:
    """Months of departments ``a`` × classes ``c`` × sexes ``f`` × regions ``b``: 3 to 8 people in
    each of b0, b1 and b2, and 0 to 2 in the rare region ``br``, whose cells are then small in
    every month wherever it is crossed with departments."""
    pick = random.Random(seed)
    rows = []
    for month in MONTHS[:months]:
        for a in ("a0", "a1", "a2"):
            for c in ("c0", "c1"):
                for f in ("x", "y"):
                    for b in ("b0", "b1", "b2"):
                        rows += [{"month": month, "a": a, "b": b, "c": c, "f": f} for _ in range(pick.randint(3, 8))]
                    rows += [{"month": month, "a": a, "b": "br", "c": c, "f": f}
                             for _ in range(pick.choice([0, 0, 1, 1, 2]))]
    return [{**row, "person": f"p{i}"} for i, row in enumerate(rows)]


def test_complements_in_categories_already_hidden_leave_nothing_narrow(monkeypatch):
    """Found at 5M rows: each month's line of a rare cell took its own complement region, and the
    yearly and ``c × b`` totals of those regions then summed a few months' rare cells to a known
    small number. The line pass prefers complements in categories already hidden along the same
    axis, so the same partners are hidden with the rare region across months and tables: here
    nothing is left for the exact audit to narrow, with fewer cells hidden. Without the
    preference (complements the smallest cell of each line), more are hidden and the audit still
    narrows some."""
    rows = _rare_year_rows(2)
    group = _group(rows, YEAR_SPECS)
    hidden = complemented(group)
    assert audit(group, hidden) == []
    with monkeypatch.context() as patched:
        _without_axes(patched)
        plain = _group(rows, YEAR_SPECS)
        smallest_first = complemented(plain)
        assert audit(plain, smallest_first)
    assert len(hidden) < len(smallest_first)


@pytest.mark.parametrize("seed", range(3, 6))
def test_rare_regions_over_months_pass_the_independent_attacker(seed):
    rows = _rare_year_rows(seed)
    check_attack(rows, YEAR_SPECS, _values(rows))
