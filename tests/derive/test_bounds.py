"""The bound model kept across audit rounds answers as a fresh solve of each round's rows would."""

from __future__ import annotations

import contextlib
import itertools
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lithotse_desktop.derive import bounds
from lithotse_desktop.derive.bounds import BoundModel

K = 11.0


def _cube(rng: np.random.Generator, shape: tuple[int, ...], zeros: float) -> tuple[list[dict[int, float]], np.ndarray]:
    """Atoms: the cells of a random nonnegative array; rows: every cell of every margin over one
    or two axes (as a set of tables at several grains publishes them), with their true values."""
    rows, sums, _values = _cube_with_atoms(rng, shape, zeros)
    return rows, sums


def _cube_with_atoms(rng: np.random.Generator, shape: tuple[int, ...],
                     zeros: float) -> tuple[list[dict[int, float]], np.ndarray, np.ndarray]:
    """:func:`_cube` and the atoms' values (the point every published row holds at)."""
    values = np.where(rng.random(shape) < zeros, 0, rng.integers(0, 15, shape)).astype(float)
    index = np.arange(values.size).reshape(shape)
    rows: list[dict[int, float]] = []
    sums: list[float] = []
    axes = range(len(shape))
    for kept in [c for n in (1, 2) for c in itertools.combinations(axes, n)]:
        for key in itertools.product(*(range(shape[a]) for a in kept)):
            chosen = [slice(None)] * len(shape)
            for a, v in zip(kept, key, strict=True):
                chosen[a] = v
            atoms = index[tuple(chosen)].ravel()
            rows.append(dict.fromkeys(int(a) for a in atoms) | {int(a): 1.0 for a in atoms})
            sums.append(float(values[tuple(chosen)].sum()))
    return rows, np.array(sums), values.ravel()


def _exact(rows: list[dict[int, float]], fixed: dict[int, float], size: int, row: int) -> tuple[float, float]:
    """A row's least and greatest value over atoms ≥ 0 under the fixed rows, from a fresh model."""
    import highspy

    solver = highspy.Highs()
    solver.setOptionValue("output_flag", False)
    solver.addVars(size, np.zeros(size), np.full(size, highspy.kHighsInf))
    for r, value in fixed.items():
        index = np.array(sorted(rows[r]), dtype=np.int32)
        solver.addRow(value, value, len(index), index, np.ones(len(index)))
    found = []
    for sign in (1.0, -1.0):
        costs = np.zeros(size)
        costs[list(rows[row])] = sign
        solver.changeColsCost(size, np.arange(size, dtype=np.int32), costs)
        solver.run()
        status = solver.getModelStatus()
        if status in (highspy.HighsModelStatus.kUnbounded, highspy.HighsModelStatus.kUnboundedOrInfeasible):
            found.append(-sign * float("inf"))
        else:
            found.append(sign * solver.getInfo().objective_function_value)
    return found[0], found[1]


def _assert_as_fresh(found: dict[int, tuple[float, float]], rows: list[dict[int, float]], fixed: dict[int, float],
                     size: int, hidden: set[int], step: int = 0) -> None:
    """Each hidden row reported carries the fresh model's bounds; each left out is at least ``K``
    wide there."""
    for row in hidden:
        low, high = _exact(rows, fixed, size, row)
        if row in found:
            assert np.allclose(found[row], (low, high), atol=1e-6), (step, row, found[row], low, high)
        else:
            assert high - low >= K - 1e-6, (step, row, low, high)


@pytest.mark.parametrize(("shape", "threads"), [((3, 3, 4), 1), ((3, 3, 4), 2), ((5, 6, 8), 2)],
                         ids=["alone", "side by side", "interior point, side by side"])
@settings(max_examples=30, derandomize=True, deadline=None)
@given(seed=st.integers(0, 2**20), zeros=st.floats(0.0, 0.8), steps=st.integers(2, 5))
def test_rounds_that_hide_more_rows_answer_as_fresh_solves(shape, threads, seed, zeros, steps):
    """Rows hidden a few at a time, as audit rounds hide complements, then one row published
    again: after every step each hidden row a fresh solve finds narrower than k is reported, and
    every row reported carries the fresh solve's bounds. Side by side, each round's copies of the
    model must hold the rows as the model does (a copy left with last round's rows would show
    a row wide that is not); past 200 atoms the spread-out solves are interior point ones."""
    with mock.patch.multiple(bounds, FEW_ROWS=2 if threads > 1 else bounds.FEW_ROWS,
                             EXPLORE_MIN=1 if threads > 1 else bounds.EXPLORE_MIN):  # rounds explore
        _hide_and_compare(shape, threads, seed, zeros, steps)


def _hide_and_compare(shape: tuple[int, ...], threads: int, seed: int, zeros: float, steps: int) -> None:
    rng = np.random.default_rng(seed)
    rows, sums = _cube(rng, shape, zeros)
    size = int(np.prod(shape))
    model = BoundModel(rows, nonnegative=True)
    model.threads = threads
    hidden: set[int] = set()
    order = [int(r) for r in rng.permutation(len(rows))]
    for step in range(steps + 1):
        if step < steps:
            hidden |= set(order[step * 4:(step + 1) * 4])
        else:
            hidden.discard(order[0])  # published again (hidden first): the points found before may not hold
        lower = np.where([r in hidden for r in range(len(rows))], -np.inf, sums)
        upper = np.where([r in hidden for r in range(len(rows))], np.inf, sums)
        model.bound(lower, upper)
        found = model.bounds(dict.fromkeys(hidden, K), {})
        fixed = {r: float(sums[r]) for r in range(len(rows)) if r not in hidden}
        seen = [r for r in fixed if np.isfinite(model.seen_low[r])]  # every point found holds every published row
        assert np.allclose(model.seen_low[seen], sums[seen], atol=1e-6)
        assert np.allclose(model.seen_high[seen], sums[seen], atol=1e-6)
        _assert_as_fresh(found, rows, fixed, size, hidden, step)


@settings(max_examples=30, derandomize=True, deadline=None)
@given(seed=st.integers(0, 2**20), zeros=st.floats(0.0, 0.8), steps=st.integers(2, 5), off=st.booleans())
def test_rounds_near_the_anchor_answer_as_fresh_solves(seed, zeros, steps, off):
    """As above, with the atoms' values as the anchor (tried on every model here), or a point
    that breaks published rows (``off``: never used); a row the smaller model shows wide is wide,
    and a row reported carries the whole model's bounds."""
    rng = np.random.default_rng(seed)
    rows, sums, values = _cube_with_atoms(rng, (3, 3, 4), zeros)
    model = BoundModel(rows, nonnegative=True, anchor=values + 1.0 if off else values)
    hidden: set[int] = set()
    order = [int(r) for r in rng.permutation(len(rows))]
    with mock.patch.object(bounds, "NEAR_FROM", 0), mock.patch.object(bounds, "NEAR_SHARE", 1.0):
        for step in range(steps + 1):
            if step < steps:
                hidden |= set(order[step * 4:(step + 1) * 4])
            else:
                hidden.discard(min(hidden))
            lower = np.where([r in hidden for r in range(len(rows))], -np.inf, sums)
            upper = np.where([r in hidden for r in range(len(rows))], np.inf, sums)
            model.bound(lower, upper)
            found = model.bounds(dict.fromkeys(hidden, K), {})
            assert model._near is not None and (model._near[1] is None) == off
            fixed = {r: float(sums[r]) for r in range(len(rows)) if r not in hidden}
            _assert_as_fresh(found, rows, fixed, 36, hidden, step)


def test_rows_shown_wide_near_the_anchor_need_no_solve_of_the_whole_model():
    """Where most rows are published, the model over the hidden rows' atoms alone settles every
    wide row: the whole model's solver is never made."""
    rows, sums, values = _cube_with_atoms(np.random.default_rng(3), (6, 6, 6), 0.0)
    values_wide = values + 20.0
    sums = np.array([sum(values_wide[a] for a in row) for row in rows])
    model = BoundModel(rows, nonnegative=True, anchor=values_wide)
    hidden = {18, 19, 24, 25}  # a 2 × 2 rectangle of the first two axes' margin
    lower = np.where([r in hidden for r in range(len(rows))], -np.inf, sums)
    upper = np.where([r in hidden for r in range(len(rows))], np.inf, sums)
    model.bound(lower, upper)
    with mock.patch.object(bounds, "NEAR_FROM", 0):
        assert model.bounds(dict.fromkeys(hidden, K), {}) == {}
    assert model._near is not None and model._near[1] is not None and model._near[1][0].size < model.size
    assert model._solver is None


def test_a_smaller_model_that_would_vary_nearly_every_atom_is_not_made():
    """Where the hidden rows reach more than the set share of the atoms, the smaller model would be
    the whole one solved cold each round: the whole model answers, as fresh solves do, keeping its
    points from one round to the next."""
    rng = np.random.default_rng(11)
    rows, sums, values = _cube_with_atoms(rng, (4, 4, 5), 0.2)
    model = BoundModel(rows, nonnegative=True, anchor=values)
    hidden = {r for r in range(len(rows)) if len(rows[r]) == 5}  # every cell of the first two axes' margin
    lower = np.where([r in hidden for r in range(len(rows))], -np.inf, sums)
    upper = np.where([r in hidden for r in range(len(rows))], np.inf, sums)
    fixed = {r: float(sums[r]) for r in range(len(rows)) if r not in hidden}
    with mock.patch.object(bounds, "NEAR_FROM", 0):
        for step in range(2):
            model.bound(lower, upper)
            found = model.bounds(dict.fromkeys(hidden, K), {})
            assert model._near is not None and model._near[1] is None
            _assert_as_fresh(found, rows, fixed, 80, hidden, step)
            if step == 0:
                assert model._solver is not None
                spread = model.seen_high - model.seen_low
                gone = max(hidden, key=lambda r: spread[r])  # shown again: the next round keeps the points
                hidden.discard(gone)
                lower[gone] = upper[gone] = fixed[gone] = sums[gone]
    share = bounds.NEAR_SHARE
    with mock.patch.object(bounds, "NEAR_FROM", 0), mock.patch.object(bounds, "NEAR_SHARE", 1.0):
        again = BoundModel(rows, nonnegative=True, anchor=values)
        again.bound(lower, upper)
        again.bounds(dict.fromkeys(hidden, K), {})
        assert again._near is not None and again._near[1] is not None and again._near[1][0].size > share * 80


@pytest.mark.parametrize("left_share", [1.0, 0.1])
def test_rows_a_smaller_model_left_open_are_solved_one_by_one(left_share):
    """The few rows the model near the anchor explored and could not show wide are mostly
    narrow: the whole model makes the one spread-out solve that gives simplex its basis, then
    solves for each row; where it left more than ``NEAR_LEFT`` of them open, the whole model
    explores. Either way it answers as fresh solves do."""
    rng = np.random.default_rng(5)
    rows, sums, values = _cube_with_atoms(rng, (6, 6, 6), 0.0)
    model = BoundModel(rows, nonnegative=True, anchor=values)
    pairs = [r for r in range(len(rows)) if len(rows[r]) == 6]
    hidden = {int(r) for r in rng.choice(pairs, 30, replace=False)}
    lower = np.where([r in hidden for r in range(len(rows))], -np.inf, sums)
    upper = np.where([r in hidden for r in range(len(rows))], np.inf, sums)
    model.bound(lower, upper)
    spread: list[bool] = []
    run = model._run

    def counted(solver, costs, maximize, spread_out):
        spread.append(spread_out)
        return run(solver, costs, maximize, spread_out)

    model._run = counted  # type: ignore[method-assign]
    settle = model._settle_near_anchor
    left: list[int] = []

    def near(needed, floors):
        out = settle(needed, floors)
        left.append(len(out))
        return out

    model._settle_near_anchor = near  # type: ignore[method-assign]
    with mock.patch.object(bounds, "NEAR_FROM", 0), mock.patch.object(bounds, "FEW_ROWS", 8), \
            mock.patch.object(bounds, "NEAR_LEFT", left_share):
        found = model.bounds(dict.fromkeys(hidden, K), {})
    assert left and 8 < left[0] and left[0] > 0.1 * len(hidden), left
    assert (spread.count(True) == 1) == (left_share == 1.0), spread
    fixed = {r: float(sums[r]) for r in range(len(rows)) if r not in hidden}
    _assert_as_fresh(found, rows, fixed, 216, hidden)


def test_a_round_that_hides_one_more_row_solves_only_for_what_is_open():
    """The spread-out solves of the first round are not repeated, and rows the points found
    showed wide are not solved for again."""
    rows, sums = _cube(np.random.default_rng(7), (4, 4, 5), 0.3)
    model = BoundModel(rows, nonnegative=True)
    calls: list[bool] = []  # every solve, spread out or not
    run = BoundModel._run

    def counted(self: BoundModel, solver: object, costs: np.ndarray, maximize: bool, spread_out: bool) -> tuple:
        calls.append(spread_out)
        return run(self, solver, costs, maximize, spread_out)

    with mock.patch.object(BoundModel, "_run", counted):
        hidden = set(range(0, len(rows), 3))
        lower = np.where([r in hidden for r in range(len(rows))], -np.inf, sums)
        upper = np.where([r in hidden for r in range(len(rows))], np.inf, sums)
        model.bound(lower, upper)
        model.bounds(dict.fromkeys(hidden, K), {})
        first = len(calls)
        assert first >= 3  # boxed, the spread-out starts show more rows wide than unbounded ones did
        calls.clear()
        model.bounds(dict.fromkeys(hidden, K), {})
        assert calls == [], "an unchanged model answers from what it found"
        more = hidden | {1}
        lower[1], upper[1] = -np.inf, np.inf
        model.bound(lower, upper)
        model.bounds(dict.fromkeys(more, K), {})
    assert len(calls) < first
    assert True not in calls, "the first round's spread-out solves are not repeated"


def test_a_narrow_row_names_the_published_rows_that_hold_it():
    """``binding`` is where :func:`.complementary.decide` takes the next complement from: the
    fixed rows that pin a narrow row, and none that play no part in its bounds."""
    rows = [{0: 1.0}, {0: 1.0, 1: 1.0}, {1: 1.0, 2: 1.0}, {2: 1.0}, {3: 1.0, 4: 1.0}, {3: 1.0}]
    lower = np.array([-np.inf, 9.0, 12.0, 4.0, 30.0, 20.0])
    upper = np.array([np.inf, 9.0, 12.0, 4.0, 30.0, 20.0])
    model = BoundModel(rows, nonnegative=True)
    model.bound(lower, upper)
    found = model.bounds({0: K}, {})
    assert found == {0: (1.0, 1.0)}, "x0 = 9 - (12 - 4)"
    assert set(model.binding[0]) == {1, 2, 3}
    lower[3], upper[3] = -np.inf, np.inf
    model.bound(lower, upper)
    assert model.bounds({0: K}, {}) == {0: (0.0, 9.0)}
    assert set(model.binding[0]) <= {1, 2}


def test_the_copies_solving_side_by_side_hold_the_rows_the_model_holds():
    """A copy of the model made for side-by-side solves must follow every later change of the
    rows: a copy left with a row free that was published since would find points that break it,
    and show rows wide that are not (in a cube of margins every row is implied by the others,
    so the property test above cannot see it)."""
    rng = np.random.default_rng(3)
    rows, sums = _cube(rng, (3, 3, 4), 0.2)
    model = BoundModel(rows, nonnegative=True)
    model.threads = 2
    hidden = list(range(0, len(rows), 3))
    with mock.patch.multiple(bounds, FEW_ROWS=2, EXPLORE_MIN=1):
        for step in (hidden, hidden[3:], hidden[:2] + hidden[5:]):
            free = np.isin(np.arange(len(rows)), step)
            model.bound(np.where(free, -np.inf, sums), np.where(free, np.inf, sums))
            model.bounds(dict.fromkeys(step, K), {})
            assert model._helpers, "solved side by side"
            for copy in model._helpers:
                lp = copy.getLp()
                assert np.array_equal(np.asarray(lp.row_lower_), np.where(free, -np.inf, sums))
                assert np.array_equal(np.asarray(lp.row_upper_), np.where(free, np.inf, sums))


def test_rows_left_open_are_settled_on_every_copy_and_answer_as_fresh_solves():
    """The rows exploring leaves open are mostly narrow, each needing two solves of seconds on
    the model of every moment; with copies of the model each takes the next open row. Every copy
    must do row solves, each row's bounds must be those of a fresh solve and of the model solved
    on one copy, and a narrow row must still name the published rows that hold it."""
    rng = np.random.default_rng(11)
    rows, sums = _cube(rng, (5, 6, 8), 0.3)
    hidden = [int(r) for r in rng.permutation(len(rows))[:60]]
    free = np.isin(np.arange(len(rows)), hidden)
    answers = []
    for threads in (1, 2):
        model = BoundModel(rows, nonnegative=True)
        model.threads = threads
        model.bound(np.where(free, -np.inf, sums), np.where(free, np.inf, sums))
        row_solves: list[int] = []
        run = BoundModel._run

        def counted(self: BoundModel, solver: object, costs: np.ndarray, maximize: bool, spread_out: bool,
                    run=run, row_solves=row_solves) -> tuple:
            if not spread_out:
                row_solves.append(id(solver))
            return run(self, solver, costs, maximize, spread_out)

        with mock.patch.object(BoundModel, "_run", counted), mock.patch.multiple(bounds, FEW_ROWS=2, EXPLORE_MIN=1):
            found = model.bounds(dict.fromkeys(hidden, K), {})
        assert len(set(row_solves)) == threads, "each copy settles rows"
        narrow = {r for r, (low, high) in found.items() if high - low < K}
        assert narrow, "the cube leaves narrow rows to settle"
        fixed = {r: float(sums[r]) for r in range(len(rows)) if r not in hidden}
        _assert_as_fresh(found, rows, fixed, int(np.prod((5, 6, 8))), set(hidden))
        assert all(model.binding[r] for r in narrow if found[r][0] > 0), "a narrow row names what holds it"
        answers.append(found)
    assert set(answers[0]) == set(answers[1])
    for row, (low, high) in answers[0].items():
        assert np.allclose(answers[1][row], (low, high), atol=1e-6)


def _cells_and_margins(seed: int, hidden_count: int
                       ) -> tuple[BoundModel, list[dict[int, float]], np.ndarray, list[int]]:
    """A 6x8x10 cube whose cells are published too, beside its margins, ``hidden_count`` of all
    those rows hidden at random, on a model with two copies: the model, its rows, their true
    values and the rows hidden."""
    rng = np.random.default_rng(seed)
    margins, totals, values = _cube_with_atoms(rng, (6, 8, 10), 0.3)
    rows = [{a: 1.0} for a in range(values.size)] + margins
    sums = np.concatenate([values, totals])
    hidden = [int(r) for r in rng.permutation(len(rows))[:hidden_count]]
    free = np.isin(np.arange(len(rows)), hidden)
    model = BoundModel(rows, nonnegative=True)
    model.threads = 2
    model.bound(np.where(free, -np.inf, sums), np.where(free, np.inf, sums))
    return model, rows, sums, hidden


def test_exploring_times_rows_only_where_a_rounds_yield_leaves_the_choice_open():
    """Exploring goes on while a round settles more rows than their own solves would cost; the
    model of every moment at the fourth daily update timed a row after every round, 23 s of 126
    on one core. Rows are timed after the first round (nothing timed yet) on every copy side by
    side, and after a later round only where its yield does not outweigh the quickest row solve
    timed; with row solves timed as very slow, every round that settles a row goes on untimed,
    and the answers stay those of fresh solves."""
    model, rows, sums, hidden = _cells_and_margins(11, 276)
    timings: list[tuple[int, int]] = []  # per timing: rows open, solvers the rows were timed on
    rounds: list[int] = []
    time_rows, side_by_side, solve_on = BoundModel._time_rows, BoundModel._side_by_side, BoundModel._solve_on

    def timed_slow(self: BoundModel, solvers: list, still: np.ndarray) -> None:
        used: set[int] = set()

        def on(self: BoundModel, solver: object, *args: object, **kwargs: object) -> object:
            used.add(id(solver))
            return solve_on(self, solver, *args, **kwargs)

        with mock.patch.object(BoundModel, "_solve_on", on):
            time_rows(self, solvers, still)
        self._row_spans[:] = [1e6] * len(self._row_spans)  # every row solve as if it took days
        timings.append((len(still), len(used)))

    def counted_rounds(self: BoundModel, jobs: list) -> list:
        rounds.append(len(jobs))
        return side_by_side(self, jobs)

    with mock.patch.object(BoundModel, "_time_rows", timed_slow), \
            mock.patch.object(BoundModel, "_side_by_side", counted_rounds), \
            mock.patch.multiple(bounds, FEW_ROWS=2, EXPLORE_MIN=1):
        found = model.bounds(dict.fromkeys(hidden, K), {})
    explored = len(rounds) - 2  # after the two spread-out starts
    assert explored >= 3, "the cube explores for a few rounds"
    assert all(used == 2 for _open, used in timings), "rows are timed on both copies"
    # after the first, rows are timed only after a round that settled nothing, which then stops
    assert len(timings) <= 2 < explored, timings
    fixed = {r: float(sums[r]) for r in range(len(rows)) if r not in hidden}
    _assert_as_fresh(found, rows, fixed, model.size, set(hidden))


def test_a_few_dozen_rows_are_each_solved_for_without_exploring():
    """The build's second round on the fourth daily update asked 35 rows of the smaller model
    of every moment, and four spread-out solves and a round of exploring took 26 s where the
    rows' own solves after their first took 19 s: up to ``FEW_ROWS`` (48) rows asked are solved
    for one by one, and answer as fresh solves."""
    model, rows, sums, hidden = _cells_and_margins(5, 35)
    with mock.patch.object(BoundModel, "_explore", lambda *args: pytest.fail("explored")):
        found = model.bounds(dict.fromkeys(hidden, K), {})
    fixed = {r: float(sums[r]) for r in range(len(rows)) if r not in hidden}
    _assert_as_fresh(found, rows, fixed, model.size, set(hidden))


def test_a_row_solve_past_its_patience_is_answered_by_the_interior_point_solver():
    """On the model of every moment at the fourth daily update (1M rows) one row's primal simplex
    solve ran for minutes where an interior point solve takes about 20 s: a row's simplex solve on
    a model that had spread-out solves stops after a few times the longest of them and the
    interior point solver answers. With no patience at all every row solve needing a pivot goes
    that way, and the bounds, and the rows named as holding a narrow row, must be as before."""
    rng = np.random.default_rng(11)
    rows, sums = _cube(rng, (6, 6, 8), 0.3)  # large enough that presolve leaves the row solves work
    hidden = [int(r) for r in rng.permutation(len(rows))[:80]]
    free = np.isin(np.arange(len(rows)), hidden)
    model = BoundModel(rows, nonnegative=True)
    assert model.size > bounds.IPM_FROM, "spread-out solves use the interior point solver"
    model.bound(np.where(free, -np.inf, sums), np.where(free, np.inf, sums))
    with mock.patch.multiple(bounds, FEW_ROWS=2, EXPLORE_MIN=1, SIMPLEX_PATIENCE=0.0, SIMPLEX_PATIENCE_MIN=-1.0):
        found = model.bounds(dict.fromkeys(hidden, K), {})
    assert model.interior_rows > 0, "row solves ran out of patience"
    narrow = {r for r, (low, high) in found.items() if high - low < K}
    assert narrow, "the cube leaves narrow rows to settle"
    fixed = {r: float(sums[r]) for r in range(len(rows)) if r not in hidden}
    _assert_as_fresh(found, rows, fixed, int(np.prod((6, 6, 8))), set(hidden))
    assert all(model.binding[r] for r in narrow if found[r][0] > 0), "a narrow row names what holds it"


def test_rows_expected_narrow_start_from_the_first_rows_own_solves_side_by_side():
    """Rows a smaller model left narrow are asked of the whole model of every moment one by one
    (``settle_each``): its first solves are the first row's least and greatest, by the interior
    point solver on two copies at once, where a spread-out start only gave a basis from which
    that row's simplex solves took tens of seconds each (the fourth daily update at 1M rows).
    No exploring follows; every row's bounds are a fresh solve's, both copies settle rows, and a
    narrow row names what holds it, the first row too."""
    rng = np.random.default_rng(11)
    rows, sums = _cube(rng, (6, 6, 8), 0.3)
    hidden = [int(r) for r in rng.permutation(len(rows))[:80]]
    free = np.isin(np.arange(len(rows)), hidden)
    plain = BoundModel(rows, nonnegative=True)
    plain.bound(np.where(free, -np.inf, sums), np.where(free, np.inf, sums))
    narrow_before = {r for r, (low, high) in plain.bounds(dict.fromkeys(hidden, K), {}).items() if high - low < K}
    asked = [r for r in hidden if r >= min(narrow_before)]  # the first row asked is a narrow one
    model = BoundModel(rows, nonnegative=True)
    assert model.size > bounds.IPM_FROM
    model.threads = 2
    model.settle_each = True
    model.bound(np.where(free, -np.inf, sums), np.where(free, np.inf, sums))
    solves: list[tuple[int, bool, bool, tuple[int, ...]]] = []  # solver, spread out, greatest, atoms costed
    run = BoundModel._run

    def logged(self: BoundModel, solver: object, costs: np.ndarray, maximize: bool, spread_out: bool) -> tuple:
        solves.append((id(solver), spread_out, maximize, tuple(np.flatnonzero(costs))))
        return run(self, solver, costs, maximize, spread_out)

    with mock.patch.object(BoundModel, "_run", logged):
        found = model.bounds(dict.fromkeys(asked, K), {})
    first = min(asked)
    spread = [s for s in solves if s[1]]
    assert [(greatest, atoms) for _solver, _spread, greatest, atoms in sorted(spread, key=lambda s: s[2])] == \
        [(False, tuple(sorted(rows[first]))), (True, tuple(sorted(rows[first])))], "the first row's own, no others"
    assert len({s[0] for s in spread}) == 2, "on two copies at once"
    assert len({s[0] for s in solves if not s[1]}) == 2, "both copies settle the other rows"
    narrow = {r for r, (low, high) in found.items() if high - low < K}
    assert first in narrow and len(narrow) > 1, "the cube leaves narrow rows, the first among them"
    fixed = {r: float(sums[r]) for r in range(len(rows)) if r not in hidden}
    _assert_as_fresh(found, rows, fixed, int(np.prod((6, 6, 8))), set(asked))
    assert all(model.binding[r] for r in narrow if found[r][0] > 0), "a narrow row names what holds it"


def test_spread_out_starts_are_boxed_so_none_is_unbounded():
    """A model whose hidden rows leave atoms bounded by no published row: a random direction's
    least is unbounded, which the interior point solver took 100 s to tell on the model of every
    moment at the fourth daily update (a bounded one 7 s). The starts run boxed, so each gives a
    point; where the box leaves no point at all, the start runs again without it rather than
    calling the model infeasible. Bounds as fresh solves either way."""
    rows, sums = _cube(np.random.default_rng(7), (4, 4, 5), 0.3)
    hidden = set(range(0, len(rows), 3))
    fixed = {r: float(sums[r]) for r in range(len(rows)) if r not in hidden}
    for cap in (None, 0.5):
        model = BoundModel(rows, nonnegative=True)
        model.bound(np.where([r in hidden for r in range(len(rows))], -np.inf, sums),
                    np.where([r in hidden for r in range(len(rows))], np.inf, sums))
        starts: list[float | None] = []
        run = BoundModel._run

        def logged(self: BoundModel, solver: object, costs: np.ndarray, maximize: bool, spread_out: bool,
                   run=run, starts=starts) -> tuple:
            result = run(self, solver, costs, maximize, spread_out)
            if spread_out and not self.started:
                starts.append(result[0])
            return result

        box = mock.patch.object(BoundModel, "_cap", lambda self, cap=cap: cap) if cap else contextlib.nullcontext()
        with mock.patch.object(BoundModel, "_run", logged), box:
            found = model.bounds(dict.fromkeys(hidden, K), {})
        if cap is None:
            assert starts and all(v is not None and np.isfinite(v) for v in starts), starts
        else:
            assert None in starts, "the box left no point"
        assert not model.infeasible
        _assert_as_fresh(found, rows, fixed, 4 * 4 * 5, hidden)


def test_a_side_the_box_holds_is_solved_again_without_it():
    """The first row's two solves run with every atom boxed (the interior point solver takes
    minutes to tell an unbounded objective); a narrow answer the box holds (an atom at it with a
    reduced cost), or a box that leaves no point, is solved again without it. A box of 6 here
    narrows x0 + x1 = 10 to x0 in [4, 6] where the truth is [0, 10]."""
    filler = range(2, 2 + bounds.IPM_FROM + 50)
    rows = [{0: 1.0, 1: 1.0}, {0: 1.0}, dict.fromkeys(filler, 1.0), {2: 1.0, 3: 1.0}]
    for cap, asked, fixed_filler in ((6.0, {1}, 1000.0), (6.0, {1, 3}, 1000.0), (3.0, {1}, 1000.0)):
        model = BoundModel(rows, nonnegative=True)
        model.threads = 2
        model.settle_each = True
        model.bound(np.array([10.0, -np.inf, fixed_filler, -np.inf]), np.array([10.0, np.inf, fixed_filler, np.inf]))
        with mock.patch.object(BoundModel, "_cap", lambda self, cap=cap: cap):  # 250 atoms of at most 3: no point
            found = model.bounds(dict.fromkeys(asked, K), {})
        assert found.keys() == {1}, (cap, asked, found)
        assert np.allclose(found[1], (0.0, 10.0), atol=1e-6), (cap, asked, found)
        assert model.binding[1] == [0], "the published row that holds it"


def test_a_cancelled_job_stops_the_solves_side_by_side_and_the_model_answers_afterwards():
    """A decision where most cells are hidden takes minutes; a job cancelled meanwhile must stop
    within one solve, in the threads solving beside the model too, and a later call outside the
    check answers as a fresh solve would."""
    from lithotse_desktop.errors import Cancelled
    from lithotse_desktop.progress import Progress

    rng = np.random.default_rng(5)
    rows, sums = _cube(rng, (5, 6, 8), 0.2)
    hidden = [int(r) for r in rng.permutation(len(rows))[:40]]
    free = np.isin(np.arange(len(rows)), hidden)

    def fresh_model() -> BoundModel:
        model = BoundModel(rows, nonnegative=True)
        model.threads = 2
        model.bound(np.where(free, -np.inf, sums), np.where(free, np.inf, sums))
        return model

    progress = Progress()
    checked: list[str] = []

    def check() -> None:
        import threading

        checked.append(threading.current_thread().name)
        if len(checked) >= 3:
            progress.cancel()
        progress.check()

    model = fresh_model()
    with bounds.interruptible(check), pytest.raises(Cancelled):
        model.bounds(dict.fromkeys(hidden, K), {})
    assert 3 <= len(checked) <= 4, "stopped at the next solve (the one beside it checks too)"
    assert any(name.startswith("lithotse-bounds") for name in checked), "the solves beside it were checked too"

    found = fresh_model().bounds(dict.fromkeys(hidden, K), {})  # no check outside the block
    fixed = {r: float(sums[r]) for r in range(len(rows)) if r not in hidden}
    _assert_as_fresh(found, rows, fixed, 5 * 6 * 8, set(hidden), 0)


def test_an_audit_says_how_many_hidden_values_it_has_checked(monkeypatch):
    """A decision's audit runs for minutes at scale with one progress line; inside
    :func:`bounds.reporting` the models solved (components side by side, here two in threads of
    their own) count the hidden values they check into one tally: the counts only grow, never
    pass what was asked, and end at all of it. Answers are those of fresh solves."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(bounds, "NOTE_EVERY", 0.0)
    notes: list[str] = []
    models = [_cells_and_margins(seed, 200) for seed in (3, 4)]
    with bounds.reporting(notes.append), ThreadPoolExecutor(2) as pool:
        futures = [bounds.submit(pool, model.bounds, dict.fromkeys(hidden, K), {})
                   for model, _rows, _sums, hidden in models]
        found = [future.result() for future in futures]
    counts = [tuple(int(n.replace(",", "")) for n in note.removeprefix("checked ").split(" hidden")[0].split(" of "))
              for note in notes]
    assert counts and all(note.endswith(" hidden values") for note in notes), notes
    checked = [c for c, _asked in counts]
    assert checked == sorted(checked) and all(c <= asked for c, asked in counts), counts
    assert counts[-1] == (400, 400), "every value asked of both models, checked"
    for (_model, rows, sums, hidden), answer in zip(models, found, strict=True):
        fixed = {r: float(sums[r]) for r in range(len(rows)) if r not in hidden}
        _assert_as_fresh(answer, rows, fixed, 6 * 8 * 10, set(hidden), 0)
    notes.clear()
    models[0][0].bounds({r: K + 1 for r in models[0][3]}, {})  # outside reporting: nothing told
    assert notes == []


def test_a_cancel_stops_a_solve_in_the_middle():
    """One solve on the whole model of every moment at the fifth daily update at 1M rows takes up
    to two minutes, which a check made between solves waited out. The check is also made at every
    iteration of the solver: a cancel during the first solve stops that solve (one solve started,
    the next never), and the model answers as fresh solves afterwards; in the main thread, between
    solves only."""
    from concurrent.futures import ThreadPoolExecutor

    from lithotse_desktop.errors import Cancelled
    from lithotse_desktop.progress import Progress

    model, rows, sums, hidden = _cells_and_margins(7, 200)
    model.threads = 1
    progress = Progress()
    checks: list[int] = []
    started: list[bool] = []
    run = BoundModel._run

    def check() -> None:
        checks.append(len(started))
        if len(checks) == 2:
            progress.cancel()
        progress.check()

    def counted(self: BoundModel, *args) -> tuple:
        started.append(True)
        return run(self, *args)

    with mock.patch.object(BoundModel, "_run", counted), bounds.interruptible(check), pytest.raises(Cancelled), \
            ThreadPoolExecutor(1) as pool:  # as the app's jobs run: in a worker thread
        bounds.submit(pool, model.bounds, dict.fromkeys(hidden, K), {}).result()
    assert checks == [1, 1], "cancelled by the check made inside the first solve, which stopped there"
    found = model.bounds(dict.fromkeys(hidden, K), {})
    fixed = {r: float(sums[r]) for r in range(len(rows)) if r not in hidden}
    _assert_as_fresh(found, rows, fixed, 6 * 8 * 10, set(hidden), 0)

    # in the main thread (the CLI) only between solves: a Ctrl-C raised inside HiGHS's callback there
    # would end the solve as failed with the interrupt lost
    model, _rows, _sums, hidden = _cells_and_margins(7, 200)
    model.threads = 1
    checks.clear()
    started.clear()
    progress = Progress()
    with mock.patch.object(BoundModel, "_run", counted), bounds.interruptible(check), pytest.raises(Cancelled):
        model.bounds(dict.fromkeys(hidden, K), {})
    assert checks == [1, 2], "checked as each solve starts"
