from __future__ import annotations

import itertools
import random

import pyarrow as pa
import pytest

from lithotse_desktop.derive.suppress import apply_suppression, suppressed_cells


def test_single_dimension_gets_a_complement():
    cells = [(("a",), 50), (("b",), 3), (("c",), 20), (("d",), 40)]
    assert suppressed_cells(cells, 11) == {1, 2}


def test_nothing_below_threshold_means_nothing_hidden():
    assert suppressed_cells([(("a",), 11), (("b",), 12)], 11) == set()


def _recoverable(cells, hidden):
    """A hidden cell is recoverable when it is alone hidden in some line with a known total."""
    width = len(cells[0][0])
    for j in range(width):
        lines = {}
        for i, (dims, _n) in enumerate(cells):
            lines.setdefault(dims[:j] + dims[j + 1:], []).append(i)
        for members in lines.values():
            if len(members) > 1 and sum(i in hidden for i in members) == 1:
                return True
    return False


@pytest.mark.parametrize("seed", range(40))
def test_no_hidden_cell_recoverable_from_row_or_column_totals(seed):
    rng = random.Random(seed)
    rows = [f"r{i}" for i in range(rng.randint(1, 5))]
    cols = [f"c{i}" for i in range(rng.randint(1, 5))]
    cells = [((r, c), rng.choice([1, 2, 5, 9, 12, 30, 80])) for r, c in itertools.product(rows, cols)]
    hidden = suppressed_cells(cells, 11)
    assert {i for i, (_d, n) in enumerate(cells) if n < 11} <= hidden
    assert not _recoverable(cells, hidden)


def test_apply_nulls_every_measure_and_flags():
    table = pa.table({"period": pa.array([None] * 3, pa.date32()), "dept": ["a", "b", "c"],
                      "visits": [100, 4, 30], "mean_los": [1.5, 2.0, 3.0], "__n": [100, 4, 30]})
    out = apply_suppression(table, ["dept"], ["visits", "mean_los"], 11)
    assert out.column_names == ["period", "dept", "visits", "mean_los", "suppressed"]
    assert out.column("visits").to_pylist() == [100, None, None]
    assert out.column("mean_los").to_pylist() == [1.5, None, None]
    assert out.column("suppressed").to_pylist() == [False, True, True]
