"""Suppression of one table: primary cells by people, complements along its lines, the zero rule."""

from __future__ import annotations

import datetime as dt
import itertools
import random

import pyarrow as pa
import pytest

from lithotse_desktop.derive.complementary import Cells, Group, decide
from lithotse_desktop.derive.suppress import publish_cells, row_mask, suppress_table


def spec(dims: list[str], grain: str = "none") -> dict:
    out = {"name": "t", "kind": "aggregate", "input": {"source": "s", "stream": "x"}, "group_by": dims,
           "measures": [{"fn": "count", "as": "n"}]}
    if grain != "none":
        out.update(date_field="day", grain=grain)
    return out


def hidden_of(table: pa.Table, dims: list[str], k: int, grain: str = "none", zero: str = "show") -> set[int]:
    cells = Cells.from_table("t", spec(dims, grain), k, table)
    return decide(Group([cells], []), zero)["t"]


def one_dim(counts: list[tuple[str, int, int]]) -> pa.Table:
    return pa.table({"dept": [c[0] for c in counts], "n": [c[1] for c in counts],
                     "__n": [c[1] for c in counts], "__people": [c[2] for c in counts]})


def test_single_dimension_gets_a_complement():
    table = one_dim([("a", 50, 50), ("b", 3, 3), ("c", 20, 20), ("d", 40, 40)])
    assert hidden_of(table, ["dept"], 11) == {1, 2}


def test_nothing_below_threshold_means_nothing_hidden():
    assert hidden_of(one_dim([("a", 11, 11), ("b", 12, 12)]), ["dept"], 11) == set()


def test_people_not_records_decide():
    """40 visits of 4 patients is a small cell; 11 visits of 11 patients is not."""
    table = one_dim([("a", 40, 4), ("b", 11, 11), ("c", 60, 30), ("d", 80, 50)])
    hidden = hidden_of(table, ["dept"], 11)
    assert 0 in hidden and 1 in hidden, "a by its people; b as a's complement (smallest)"
    assert hidden == {0, 1}


def test_two_small_cells_of_a_line_get_a_third_when_together_they_are_small():
    """3 + 2 hidden in a line of known total would both be known to lie in 0..5."""
    table = one_dim([("a", 3, 3), ("b", 2, 2), ("c", 30, 30), ("d", 90, 90)])
    hidden = hidden_of(table, ["dept"], 11)
    assert hidden == {0, 1, 2}


def test_zero_people_cells_follow_the_rule():
    table = one_dim([("a", 7, 0), ("b", 30, 30), ("c", 40, 40)])
    assert hidden_of(table, ["dept"], 11, zero="show") == set()
    assert hidden_of(table, ["dept"], 11, zero="suppress") == {0, 1}


def _lines(keys: list[tuple]) -> list[list[int]]:
    width = len(keys[0])
    out = []
    for j in range(width):
        groups: dict[tuple, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key[:j] + key[j + 1:], []).append(i)
        out.extend(m for m in groups.values() if len(m) > 1)
    return out


@pytest.mark.parametrize("seed", range(40))
def test_no_hidden_cell_alone_in_a_line_time_included(seed):
    """Every line — along each dimension and along the periods — with a hidden cell holds two,
    and at least k records among them when one is small."""
    rng = random.Random(seed)
    rows = [f"r{i}" for i in range(rng.randint(1, 4))]
    cols = [f"c{i}" for i in range(rng.randint(1, 4))]
    months = [dt.date(2024, m, 1) for m in range(1, rng.randint(2, 5))]
    keys = list(itertools.product(months, rows, cols))
    people = [rng.choice([1, 2, 5, 9, 12, 30, 80]) for _ in keys]
    table = pa.table({"period": [k[0] for k in keys], "r": [k[1] for k in keys], "c": [k[2] for k in keys],
                      "n": people, "__n": people, "__people": people})
    hidden = hidden_of(table, ["r", "c"], 11, grain="month")
    assert {i for i, p in enumerate(people) if p < 11} <= hidden
    for line in _lines(keys):
        inside = [i for i in line if i in hidden]
        if sum(people[i] for i in line) < 11:
            continue
        assert len(inside) != 1, [keys[i] for i in line]
        if any(people[i] < 11 for i in inside):
            assert sum(people[i] for i in inside) >= 11


def test_publish_nulls_every_measure_flags_and_drops_the_counts():
    table = pa.table({"period": pa.array([None] * 3, pa.date32()), "dept": ["a", "b", "c"],
                      "visits": [100, 4, 30], "mean_los": [1.5, 2.0, 3.0], "__n": [100, 4, 30],
                      "__people": [80, 4, 25]})
    out = publish_cells(table, ["visits", "mean_los"], {1, 2})
    assert out.column_names == ["period", "dept", "visits", "mean_los", "suppressed"]
    assert out.column("visits").to_pylist() == [100, None, None]
    assert out.column("mean_los").to_pylist() == [1.5, None, None]
    assert out.column("suppressed").to_pylist() == [False, True, True]


@pytest.mark.parametrize("rows", [0, 1, 7, 8, 9, 64, 1000])
def test_a_row_mask_is_true_exactly_at_the_marked_rows(rows):
    marked = {i for i in range(rows) if i % 3 == 0 or i == rows - 1}
    mask = row_mask(rows, marked)
    assert mask.type == pa.bool_() and mask.null_count == 0
    assert mask.to_pylist() == [i in marked for i in range(rows)]


def test_a_row_mask_refuses_a_row_outside_the_table():
    with pytest.raises(IndexError, match="row 3 is not among the table's 3 rows"):
        row_mask(3, {0, 3})


def test_suppress_table_decides_and_applies():
    table = one_dim([("a", 50, 50), ("b", 3, 3), ("c", 20, 20)])
    out = suppress_table(table, spec(["dept"]), 11)
    assert out.to_pylist() == [{"dept": "a", "n": 50, "suppressed": False},
                               {"dept": "b", "n": None, "suppressed": True},
                               {"dept": "c", "n": None, "suppressed": True}]


@pytest.mark.parametrize("hidden", [set(), {1}])
def test_published_cells_have_one_schema_whether_or_not_a_cell_is_hidden(hidden):
    """An engine may call a count not null (Spark does; DuckDB does not): a published measure is
    nullable either way, so a version hiding nothing has the schema of one hiding a cell."""
    schema = pa.schema([pa.field("department", pa.string()), pa.field("visits", pa.int64(), nullable=False)])
    table = pa.table({"department": ["a", "b", "c"], "visits": [7, 8, 9]}, schema=schema)
    out = publish_cells(table, ["visits"], hidden)
    assert out.schema == pa.schema([pa.field("department", pa.string()), pa.field("visits", pa.int64()),
                                    pa.field("suppressed", pa.bool_())])
    assert out.column("visits").to_pylist() == [None if i in hidden else v for i, v in enumerate([7, 8, 9])]
    assert out.column("suppressed").to_pylist() == [i in hidden for i in range(3)]
