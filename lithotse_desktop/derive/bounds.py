"""Least and greatest values of linear functions under published equations, kept across rounds.

The disclosure audit asks, for each hidden cell, how narrow a reader can make it from every
published number. Over atoms (see :mod:`.atoms`) each cell is a *row*: a sum of atoms, fixed to
its value when the cell is published and free when it is hidden. One :class:`BoundModel` holds
one connected component of those rows for one quantity.

Deciding suppression audits, hides more cells, and audits again. Hiding a cell only frees its
row, so every point found before still satisfies every row and still shows the spread it showed:
a cell once shown wide stays wide and is not solved for again. The solver keeps its model and
basis between rounds, so each round solves only for the cells still open, from a basis that is
still feasible.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

EXACT = 1e-6
EXPLORE_ROUNDS = 60
EXPLORE_MIN = 4
ROWS_TIMED = 3
"""Row solves timed to stand for every row's in :meth:`BoundModel._explore`."""
PRIMAL_SIMPLEX = 4
"""HiGHS's ``simplex_strategy`` for primal simplex. Every solve after the first changes only the
costs (or frees rows), which keeps the last basis primal feasible, so primal simplex continues
from it in a few pivots where dual simplex (the default) takes thousands on a year's component."""
IPM_FROM = 200
"""Models with more atoms than this solve spread-out objectives with the interior point solver;
smaller ones stay on simplex, which is quick there."""
FEW_ROWS = 48
"""Up to this many rows asked about, each is solved for on its own after one interior point solve
(whose vertex gives simplex its first basis; a cold simplex solve takes seconds on a year's
component): the rows a model near the anchor left open are mostly narrow, which no spread-out
point shows, so the further spread-out solves would only cost time. The second round of the
fourth daily update at 1M rows asked 35 rows of the smaller model of every moment: 26.0 s with
four spread-out solves and a round of exploring, 19.3 s so (16 until then; deciding afresh at 1M
rows took the same either way, 22.8 s and 23.1 s)."""
NEAR_FROM = IPM_FROM
"""Models with more atoms than this, given an anchor, first try the smaller model of
:meth:`BoundModel._settle_near_anchor`."""
NEAR_SHARE = 0.75
"""The smaller model is tried only where it varies at most this share of the atoms. Where hidden
cells and differences reach (nearly) every atom, as in a year whose earlier cells are carried
hidden, it is the whole model over again: solved cold after each round hides more, where the
whole model keeps its points and basis (a decision's audit of the changed year of the benchmark's
update at 1M rows: 34 s → 26 s)."""
NEAR_LEFT = 0.1
"""Where the smaller model left at most this share of the rows asked open, the whole model
solves for each of them rather than exploring (see :meth:`BoundModel._bounds`; the model of every
moment's smaller model, its unchanged terms merged, is used alike: :attr:`BoundModel.settle_each`)."""
TIE_BREAK = 0.05
"""A random cost of at most this on every atom in each exploring round, beside the rows pushed
(weights from 0.2 to 1.8). With few rows still open most atoms cost nothing, so the optimum is a
wide face: the interior point solver ends at its centre and crossover walks to a vertex, and a
round took twice as long as the first (the benchmark's years at 200k rows: 1.4 s growing to 3 s;
with the ties broken 1.3 to 1.8 s, and a year's exploring 48 s → 33 s; the update's model of
every moment at 1M rows 43 s → 36 s)."""
SIDE_BY_SIDE = max(1, min(os.cpu_count() or 1, 4))
"""Copies of a model solved alone that solve spread-out directions at once (see
:attr:`BoundModel.threads`); past four, a round's directions mostly settle the same rows."""
SIMPLEX_PATIENCE = 2.0
"""A row's simplex solve on a model that had spread-out solves may take this many times the
longest of them before the interior point solver answers it instead (see
:meth:`BoundModel._run`)."""
SIMPLEX_PATIENCE_MIN = 5.0
"""Seconds a row's simplex solve always has (a model whose spread-out solves were quick)."""
UNRESOLVED = (math.nan, math.nan)
"""The bounds of a row the solver could not bound (the published numbers disagree, or it failed):
judged narrow, so a build hides more rather than trusting it."""


_stop_check: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar("lithotse_bounds_stop",
                                                                                       default=None)


@contextlib.contextmanager
def interruptible(check: Callable[[], None]) -> Iterator[None]:
    """Every solve made inside calls ``check`` first and at each of its iterations, in whichever
    thread it runs (see :func:`submit`, :func:`_run_checked`): a cancelled job's check raises, so
    an audit of minutes stops within an iteration, whatever one solve would take."""
    token = _stop_check.set(check)
    try:
        yield
    finally:
        _stop_check.reset(token)


NOTE_EVERY = 5.0
"""Seconds between two notes of a :class:`Tally`: an audit of minutes says how far it is without
a line per component (a decision at 5M rows bounds thousands of them)."""


class Tally:
    """How many of the hidden values asked about are checked (shown wide, or bounded), over every
    model solved inside one :func:`reporting` stretch, components solved side by side adding up;
    told to its ``note`` at most every :data:`NOTE_EVERY` seconds. A long audit (the fifth daily
    update at 1M rows bounds 17,243 values for minutes) otherwise shows one line until it ends."""

    def __init__(self, note: Callable[[str], None]) -> None:
        self._note = note
        self._lock = threading.Lock()
        self.asked = 0
        self.checked = 0
        self._told = time.monotonic()  # a decision of a second or two says nothing more

    def reset(self) -> None:
        """Counts from zero again (a new stage of the work asks its own values)."""
        with self._lock:
            self.asked = self.checked = 0

    def add(self, asked: int) -> None:
        with self._lock:
            self.asked += asked

    def check_off(self, count: int) -> None:
        with self._lock:
            self.checked += count
            now = time.monotonic()
            if now - self._told < NOTE_EVERY:
                return
            self._told = now
            text = f"checked {self.checked:,} of {self.asked:,} hidden values"
        self._note(text)


_tally: contextvars.ContextVar[Tally | None] = contextvars.ContextVar("lithotse_bounds_tally", default=None)


@contextlib.contextmanager
def reporting(note: Callable[[str], None]) -> Iterator[Tally]:
    """Models solved inside (in whichever thread, see :func:`submit`) count the hidden values they
    check into one :class:`Tally`, which tells ``note`` how far they are."""
    tally = Tally(note)
    token = _tally.set(tally)
    try:
        yield tally
    finally:
        _tally.reset(token)


class _Checking:
    """One :meth:`BoundModel.bounds` call's share of the current :class:`Tally` (none outside
    :func:`reporting`): ``total`` values asked, checked off as they settle, the rest at the end."""

    def __init__(self, tally: Tally | None, total: int) -> None:
        self._tally, self._total, self._counted = tally, total, 0
        self._lock = threading.Lock()
        if tally is not None:
            tally.add(total)

    def left(self, remaining: int) -> None:
        """``remaining`` of the values asked are still open."""
        self._move(self._total - remaining)

    def one(self) -> None:
        """One more value is settled (copies settling rows side by side each say so)."""
        self._move(1, relative=True)

    def finish(self) -> None:
        self._move(self._total)

    def _move(self, settled: int, relative: bool = False) -> None:
        if self._tally is None:
            return
        with self._lock:
            delta = min(self._counted + settled if relative else settled, self._total) - self._counted
            if delta <= 0:
                return
            self._counted += delta
        self._tally.check_off(delta)


def submit(pool: ThreadPoolExecutor, fn: Callable[..., Any], *args: Any) -> Future:
    """``pool.submit``, the worker running in a copy of the caller's context so that it calls the
    caller's :func:`interruptible` check too."""
    return pool.submit(contextvars.copy_context().run, fn, *args)


def at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Each call's result, the first made in this thread and the others beside it, each in a copy
    of the caller's context (see :func:`submit`): how a model's copies solve side by side."""
    with ThreadPoolExecutor(max_workers=max(1, len(calls) - 1), thread_name_prefix="lithotse-bounds") as pool:
        beside = [submit(pool, call) for call in calls[1:]]
        return [calls[0](), *(future.result() for future in beside)]


class BoundModel:
    """One component: atoms (≥ 0 for counts, free for sums) and rows over them.

    ``rows`` maps each row to its atoms' coefficients, atoms numbered from 0 (or, through
    :meth:`from_entries`, the same as three arrays of entries). Row bounds are set with
    :meth:`bound`; :meth:`bounds` answers for the rows asked about."""

    def __init__(self, rows: list[dict[int, float]], nonnegative: bool, anchor: np.ndarray | None = None) -> None:
        self._setup(len(rows), np.array([r for r, row in enumerate(rows) for _ in row], dtype=np.int64),
                    np.array([a for row in rows for a in row], dtype=np.int64),
                    np.array([c for row in rows for c in row.values()], dtype=np.float64), nonnegative, anchor)

    @classmethod
    def from_entries(cls, row_count: int, entry_rows: np.ndarray, entry_atoms: np.ndarray, entry_coefs: np.ndarray,
                     nonnegative: bool, anchor: np.ndarray | None = None) -> BoundModel:
        """A model from its entries (row, atom, coefficient), rows in order, no atom twice in a
        row: how a year's component of hundreds of thousands of entries is handed over."""
        model = cls.__new__(cls)
        model._setup(row_count, entry_rows.astype(np.int64), entry_atoms.astype(np.int64),
                     entry_coefs.astype(np.float64), nonnegative, anchor)
        return model

    def _setup(self, row_count: int, entry_rows: np.ndarray, entry_atoms: np.ndarray, entry_coefs: np.ndarray,
               nonnegative: bool, anchor: np.ndarray | None) -> None:
        self.row_count = row_count
        self.anchor = anchor
        """A point known to satisfy every fixed row (the atoms' records, counted from the input),
        or None; see :meth:`_settle_near_anchor`."""
        self._near: tuple[bytes, tuple[BoundModel, np.ndarray, np.ndarray] | None] | None = None
        """The last smaller model of :meth:`_settle_near_anchor`, by the rows it varies (None
        where it was not worth making)."""
        self.nonnegative = nonnegative
        self.size = 1 + int(entry_atoms.max()) if len(entry_atoms) else 0
        self.lower = np.full(row_count, -np.inf)
        self.upper = np.full(row_count, np.inf)
        self.entry_rows, self.entry_atoms, self.entry_coefs = entry_rows, entry_atoms, entry_coefs
        self.positive = np.bincount(entry_rows[entry_coefs <= 0], minlength=row_count) == 0
        """Rows whose every coefficient is positive: over atoms ≥ 0 their least value is at least 0,
        so a point holding one at 0 has found its least value without a solve."""
        order = np.lexsort((entry_atoms, entry_rows))
        self._by_row = order
        self._row_starts = np.searchsorted(entry_rows[order], np.arange(row_count + 1))
        self.seen_low = np.full(row_count, np.inf)
        self.seen_high = np.full(row_count, -np.inf)
        self.started = False
        self.infeasible = False
        self.answered: dict[tuple, dict[int, tuple[float, float]]] = {}
        self.binding: dict[int, list[int]] = {}
        """For each row last reported narrow by two solves, the fixed rows whose values held it
        there (their duals were not zero at its least or greatest value): the published cells a
        further complement should come from."""
        self._solver: Any = None
        self.threads = 1
        """Spread-out solves side by side, each on its own copy of the model (HiGHS lets go of the
        interpreter while it solves): for a model solved alone, as the model of every moment is
        and a build's one changed year; components solved side by side keep one each."""
        self._helpers: list[Any] = []
        self._recording = threading.Lock()
        self._row_spans: list[float] = []
        """Times of the row solves :meth:`_explore` timed, latest last."""
        self._spread_seconds = 0.0
        """The longest spread-out (interior point) solve so far: what a row's simplex solve may
        take before the interior point solver answers it instead (see :meth:`_run`)."""
        self.interior_rows = 0
        """Row solves the interior point solver answered that way (for tests and profiles)."""
        self.settle_each = False
        """The rows asked are expected narrow (a smaller model left them open): each is solved for,
        with no spread-out solves to find points that show rows wide (see :meth:`_bounds`)."""
        self._rng = np.random.default_rng(row_count * 7919 + self.size)
        self.reports = True
        """Whether :meth:`bounds` counts into the current :class:`Tally` (a smaller model made
        inside one does not: its rows are the larger model's)."""
        self._checking = _Checking(None, 0)

    def bound(self, lower: np.ndarray, upper: np.ndarray) -> None:
        """New bounds of every row. Freeing rows keeps the points found (they satisfy the looser
        rows too); fixing a free row, or tightening any, forgets them."""
        changed = np.flatnonzero((lower != self.lower) | (upper != self.upper))
        if not len(changed):
            return
        tightened = bool(np.any(lower[changed] > self.lower[changed]) or np.any(upper[changed] < self.upper[changed]))
        self.lower, self.upper = lower.copy(), upper.copy()
        self.answered.clear()
        if tightened:
            self.binding.clear()
            self.seen_low[:] = np.inf
            self.seen_high[:] = -np.inf
            self.started = False
            self.infeasible = False
        for solver in [self._solver, *self._helpers] if self._solver is not None else []:
            solver.changeRowsBounds(len(changed), changed.astype(np.int32), lower[changed], upper[changed])

    def bounds(self, needed: dict[int, float], floors: dict[int, float]) -> dict[int, tuple[float, float]]:
        """The least and greatest value of each row in ``needed`` that may be narrower than its
        width there; rows the points found show that wide are left out. A row whose least value
        reaches its ``floors`` entry is reported with that least value and the greatest seen (it
        is never narrow, whatever its greatest)."""
        key = (tuple(sorted(needed.items())), tuple(sorted(floors.items())))
        if key in self.answered:
            return self.answered[key]
        self._checking = _Checking(_tally.get() if self.reports else None, len(needed))
        try:
            out = self._bounds(needed, floors)
        finally:
            self._checking.finish()
        self.answered[key] = out
        return out

    def _bounds(self, needed: dict[int, float], floors: dict[int, float]) -> dict[int, tuple[float, float]]:
        if not needed:
            return {}
        if self.row_count == 1:
            simple = self._lone_row(needed)
            if simple is not None:
                return simple
        if self.infeasible:
            return {r: UNRESOLVED for r in needed}
        # points an earlier round found (freeing rows keeps them) settle most rows outright: a
        # round after a few more cells were hidden asks the smaller model about the rest only
        needed = {r: w for r, w in needed.items() if self.seen_high[r] - self.seen_low[r] < w}
        self._checking.left(len(needed))
        if not needed:
            return {}
        # the few rows a smaller model near the anchor explored and left open are mostly narrow
        # or need atoms it held: spread-out solves of the whole model rarely settle them (the
        # benchmark's years at 1M rows: 52 rows of 3,140 open after four, 46 after a round of
        # exploring, 8 s of a component's 10), so they are solved for one by one, as a few rows
        # are; where it left many open, it was the wrong model, and the whole one explores
        left_by_near = False
        if self.anchor is not None and self.size > NEAR_FROM:
            asked = len(needed)
            needed = self._settle_near_anchor(needed, floors)
            self._checking.left(len(needed))
            if not needed:
                return {}
            left_by_near = (self._near is not None and self._near[1] is not None
                            and len(needed) <= NEAR_LEFT * asked)
        few = len(needed) <= FEW_ROWS or left_by_near or self.settle_each
        self._ensure_solver()
        out: dict[int, tuple[float, float]] = {}
        if not self.started and few and self.threads > 1 and self.size > IPM_FROM:
            # a large model's first solves, each costing an interior point solve, are the first
            # row's own least and greatest side by side: a spread-out start would only give a
            # basis, from which that row's two simplex solves took tens of seconds each
            if not self._settle_row_at_once(min(needed), needed, floors, out):
                self.infeasible = True
                return {r: UNRESOLVED for r in needed}
            self.started = True
        if not self.started:
            for _ in range(1 if few else 2):
                direction = self._rng.choice([-1.0, 1.0], self.row_count)
                costs = self._costs(direction)
                solvers = self._solvers()  # the greatest on a copy, beside the least, where there is one
                jobs = [(solvers[0], costs, False)] + ([(solvers[-1], costs, True)] if not few else [])
                with self._boxed(solvers):
                    found = self._side_by_side(jobs)[0][0]
                if found is None and self._side_by_side(jobs[:1])[0][0] is None:  # not for the box alone
                    self.infeasible = True
                    return {r: UNRESOLVED for r in needed}
            self.started = True
        judged = np.array(sorted(needed), dtype=np.int64)
        need = np.array([needed[r] for r in judged])

        def open_ones() -> np.ndarray:
            return judged[self.seen_high[judged] - self.seen_low[judged] < need]

        pending = open_ones()
        self._checking.left(len(pending))
        if len(pending) > EXPLORE_MIN and not few:
            self._explore(pending, open_ones)
            pending = open_ones()
            self._checking.left(len(pending))
        pending = pending[~np.isin(pending, list(out))]
        if self.nonnegative:
            pending = self._settle_zeros(pending, out)
        rows = [int(r) for r in pending]
        # copies already made (their bases warm from the spread-out solves): a new copy's first
        # row solve would start cold, which takes longer on a year's component than the row's own
        solvers = [self._solver, *self._helpers[:self.threads - 1]][:max(1, len(rows))]
        if len(solvers) == 1:
            for row in rows:
                self._settle_row(solvers[0], row, needed, floors, out)
                self._checking.one()
            return out
        queue = iter(rows)
        taking = threading.Lock()
        failed = threading.Event()  # one copy raised (a cancelled job): the others stop at their next row

        def settle_rows(solver: Any) -> None:
            try:
                while not failed.is_set():
                    with taking:
                        row = next(queue, None)
                    if row is None:
                        return
                    self._settle_row(solver, row, needed, floors, out)
                    self._checking.one()
            except BaseException:
                failed.set()
                raise

        at_once([functools.partial(settle_rows, solver) for solver in solvers])
        return out

    def _settle_row(self, solver: Any, row: int, needed: dict[int, float], floors: dict[int, float],
                    out: dict[int, tuple[float, float]]) -> None:
        """A row's least value and, where that does not show it wide enough, its greatest, on
        ``solver``: with :attr:`threads` above one each copy of the model takes the next open row,
        since the rows left after exploring are mostly narrow and each needs both solves (the
        model of every moment at the benchmark's third update at 1M rows: 69 rows, 142 solves
        of about 4 s each on one copy)."""
        if self.seen_high[row] - self.seen_low[row] >= needed[row]:
            return
        costs = self._costs_of(row)
        at_floor = self.nonnegative and self.seen_low[row] <= EXACT and self._positive(row)
        lower = 0.0 if at_floor else self._solve_on(solver, costs, maximize=False)
        floor = floors.get(row)
        reaches = floor is not None and lower is not None and lower >= floor
        # unbounded below, the row is as wide as can be, though no point was seen yet
        spread = math.inf if lower == -math.inf else self.seen_high[row] - (lower or 0.0)
        if lower is not None and (spread >= needed[row] or reaches):
            if spread < needed[row]:
                out[row] = (lower, max(lower, float(self.seen_high[row])))
            return
        # a least value of 0 is the atoms' own floor (or no solve was made): no published row holds it
        held = self._held(solver, row) if lower != 0.0 else []
        upper = self._solve_on(solver, costs, maximize=True)
        out[row] = UNRESOLVED if lower is None or upper is None else (lower, upper)
        if lower is not None and upper is not None:
            self.binding[row] = sorted(set(held) | set(self._held(solver, row)))

    def _settle_row_at_once(self, row: int, needed: dict[int, float], floors: dict[int, float],
                            out: dict[int, tuple[float, float]]) -> bool:
        """A row's least value on the model's solver and its greatest on a copy, at once, by the
        interior point solver (with crossover, so both copies keep a basis for the next rows);
        judged as :meth:`_settle_row` judges. False where the model has no optimum (infeasible)."""
        solvers = self._solvers()[:2]
        costs = self._costs_of(row)
        with self._boxed(solvers):  # duals read before the box is lifted, which drops the solution
            (lower, _), (upper, _) = self._side_by_side([(solvers[0], costs, False), (solvers[1], costs, True)])
            again = [lower is None or self._box_holds(solvers[0]), upper is None or self._box_holds(solvers[1])]
            held = [[] if again[n] else self._held(solvers[n], row) for n in (0, 1)]
        if lower is not None and upper is not None and upper - lower >= needed[row]:
            return True  # the box only narrows a row
        # a side the box holds (or leaves without an optimum) is solved again without it, from the
        # basis found: where the box holds no atom (none at it with a reduced cost), the boxed
        # optimum's duals prove it optimal without the box too
        for n, maximize in ((0, False), (1, True)):
            if again[n]:
                value = self._solve_on(solvers[n], costs, maximize=maximize)
                held[n] = self._held(solvers[n], row) if value is not None and abs(value) < math.inf else []
                lower, upper = (lower, value) if maximize else (value, upper)
        if lower is None or upper is None:
            return False
        if lower == -math.inf or upper == math.inf or upper - lower >= needed[row]:
            return True
        out[row] = (lower, upper)
        floor = floors.get(row)
        if floor is None or lower < floor:
            # a least value of 0 is the atoms' own floor: no published row holds it
            self.binding[row] = sorted(set(held[0] if lower != 0.0 else []) | set(held[1]))
        return True

    def _box_holds(self, solver: Any) -> bool:
        """Whether the box of :meth:`_boxed` holds ``solver``'s last optimum: an atom at the box
        with a reduced cost (one at the box with none, as atoms in no costed row often are,
        leaves the optimum what it is without the box)."""
        solution = solver.getSolution()
        at_box = np.abs(np.asarray(solution.col_value)) >= self._cap() * (1 - 1e-9) - EXACT
        return bool(np.any(np.abs(np.asarray(solution.col_dual)[at_box]) > EXACT))

    def _settle_near_anchor(self, needed: dict[int, float], floors: dict[int, float]) -> dict[int, float]:
        """The rows of ``needed`` not shown wide by a smaller model: only the atoms of the free
        rows judged by their spread vary, every other atom stays at the anchor. Each point of
        it, with the anchor's other atoms, satisfies every row of this model, so the spread it
        shows is real; it is several times quicker to solve where most cells are published (a
        year's component at 5M rows: a third of the atoms). Rows it cannot show wide are left
        for the whole model, which alone may call a row narrow, and so are rows with a floor:
        only their exact least value settles them. Nothing is settled when the anchor does not
        satisfy the fixed rows (the input changed since the cells were published)."""
        anchor = self.anchor
        assert anchor is not None
        varied = (self.lower != self.upper)
        varied[list(floors)] = False
        key = varied.tobytes()
        if self._near is None or self._near[0] != key:
            self._near = (key, self._near_model(anchor, varied))
        if self._near[1] is None:
            return needed
        model, rows, offsets = self._near[1]
        position = {int(r): n for n, r in enumerate(rows)}
        model.bounds({position[r]: w for r, w in needed.items() if r in position and r not in floors}, {})
        found = np.isfinite(model.seen_low)
        np.minimum.at(self.seen_low, rows[found], model.seen_low[found] + offsets[found])
        np.maximum.at(self.seen_high, rows[found], model.seen_high[found] + offsets[found])
        return {r: w for r, w in needed.items() if self.seen_high[r] - self.seen_low[r] < w}

    def _near_model(self, anchor: np.ndarray,
                    varied: np.ndarray) -> tuple[BoundModel, np.ndarray, np.ndarray] | None:
        """The model of :meth:`_settle_near_anchor` (the atoms of the ``varied`` rows vary), the
        rows it keeps, and what the anchored atoms add to each; None when the anchor breaks a
        fixed row or a bound, or when it would vary more than :data:`NEAR_SHARE` of the atoms."""
        contributions = self.entry_coefs * anchor[self.entry_atoms]
        values = np.bincount(self.entry_rows, weights=contributions, minlength=self.row_count)
        fixed = self.lower == self.upper
        if (np.any(np.abs(values[fixed] - self.lower[fixed]) > EXACT) or np.any(values < self.lower - EXACT)
                or np.any(values > self.upper + EXACT) or (self.nonnegative and np.any(anchor < 0))):
            return None
        free_atoms = np.zeros(self.size, dtype=bool)
        free_atoms[self.entry_atoms[varied[self.entry_rows]]] = True
        if not free_atoms.any() or free_atoms.sum() > NEAR_SHARE * self.size:
            return None
        varying = free_atoms[self.entry_atoms]
        offsets_all = np.bincount(self.entry_rows[~varying], weights=contributions[~varying], minlength=self.row_count)
        rows = np.unique(self.entry_rows[varying])
        number = np.cumsum(free_atoms) - 1
        position = np.full(self.row_count, -1)
        position[rows] = np.arange(len(rows))
        model = BoundModel.from_entries(len(rows), position[self.entry_rows[varying]],
                                        number[self.entry_atoms[varying]], self.entry_coefs[varying],
                                        self.nonnegative)
        model.threads = self.threads
        model.reports = False
        offsets = offsets_all[rows]
        model.bound(self.lower[rows] - offsets, self.upper[rows] - offsets)
        return model, rows, offsets

    def _positive(self, row: int) -> bool:
        return bool(self.positive[row])

    def _held(self, solver: Any, row: int) -> list[int]:
        """Fixed rows with a dual value at ``solver``'s last optimum, other than ``row``."""
        duals = np.asarray(solver.getSolution().row_dual)
        fixed = (self.lower == self.upper) & (np.abs(duals) > EXACT)
        fixed[row] = False
        return [int(r) for r in np.flatnonzero(fixed)]

    def _lone_row(self, needed: dict[int, float]) -> dict[int, tuple[float, float]] | None:
        """A component of one row, the commonest, without a solver, where its bounds are plain:
        atoms ≥ 0 with positive coefficients range from 0 to anything, so the row ranges over its
        own bounds from 0; free atoms range over everything."""
        if self.nonnegative and not self._positive(0):
            return None
        low = max(self.lower[0], 0.0) if self.nonnegative else self.lower[0]
        high = self.upper[0]
        if low > high + EXACT:
            return {0: UNRESOLVED} if 0 in needed else {}
        return {0: (float(low), float(high))} if 0 in needed and high - low < needed[0] else {}

    def _ensure_solver(self) -> None:
        if self._solver is None:
            self._solver = self._new_solver()

    def _solvers(self) -> list[Any]:
        """The model's solver and, with :attr:`threads` above one, its copies."""
        while len(self._helpers) < self.threads - 1:
            self._helpers.append(self._new_solver())
        return [self._solver, *self._helpers[:self.threads - 1]]

    def _new_solver(self) -> Any:
        import highspy

        solver = make_solver()
        inf = highspy.kHighsInf
        solver.addVars(self.size, np.full(self.size, 0.0 if self.nonnegative else -inf), np.full(self.size, inf))
        order = self._by_row  # every row at once, its entries in atom order
        solver.addRows(self.row_count, np.where(np.isfinite(self.lower), self.lower, -inf),
                       np.where(np.isfinite(self.upper), self.upper, inf), len(order),
                       self._row_starts[:-1].astype(np.int32), self.entry_atoms[order].astype(np.int32),
                       self.entry_coefs[order])
        return solver

    def _costs(self, direction: np.ndarray) -> np.ndarray:
        """Costs on the atoms that make the objective the rows weighted by ``direction``."""
        costs = np.zeros(self.size)
        np.add.at(costs, self.entry_atoms, self.entry_coefs * direction[self.entry_rows])
        return costs

    def _costs_of(self, row: int) -> np.ndarray:
        costs = np.zeros(self.size)
        entries = self._by_row[self._row_starts[row]:self._row_starts[row + 1]]
        costs[self.entry_atoms[entries]] = self.entry_coefs[entries]
        return costs

    def _solve(self, costs: np.ndarray, *, maximize: bool, spread_out: bool = False) -> float | None:
        """The optimum (±inf when unbounded, None when infeasible); records the point's rows. The
        model is always minimised (a maximum is the least of the negated costs), so each solve
        starts from the previous one's basis. Costs on every row at once (``spread_out``) move
        the optimum far from the last basis, which takes simplex tens of thousands of pivots on
        a year's component; the interior point solver (with crossover, so the point is a vertex
        and its basis serves the next simplex solve) takes a second or two there."""
        return self._solve_on(self._solver, costs, maximize=maximize, spread_out=spread_out)

    def _solve_on(self, solver: Any, costs: np.ndarray, *, maximize: bool, spread_out: bool = False) -> float | None:
        """:meth:`_solve` on ``solver``, the model's own or one of its copies."""
        return self._record(self._run(solver, costs, maximize, spread_out))

    def _side_by_side(self, jobs: list[tuple[Any, np.ndarray, bool]]) -> list[tuple[float | None, np.ndarray | None]]:
        """Spread-out solves, each ``(solver, costs, maximize)``, their results as :meth:`_run`
        gives them and their points recorded: on solvers of their own, at once (the first in this
        thread, the others beside it); on one solver, one after another, up to the first without
        an optimum. Least and greatest values seen do not depend on the order."""
        results: list[tuple[float | None, np.ndarray | None]] = []
        if len(jobs) == 1 or len({id(solver) for solver, _, _ in jobs}) < len(jobs):
            for job in jobs:
                results.append(self._run(*job, True))
                self._record(results[-1])
                if results[-1][0] is None:
                    break
            return results
        results = at_once([functools.partial(self._run, *job, True) for job in jobs])
        for result in results:
            self._record(result)
        return results

    def _run(self, solver: Any, costs: np.ndarray, maximize: bool,
             spread_out: bool) -> tuple[float | None, np.ndarray | None]:
        """One solve on ``solver``: its optimum (see :meth:`_solve`) and its point's row values
        (None when it has none). Touches nothing of the model but that solver."""
        import highspy

        check = _stop_check.get()
        if check is not None:
            check()

        columns = np.arange(self.size, dtype=np.int32)
        solver.changeColsCost(self.size, columns, -costs if maximize else costs)
        interior = spread_out and self.size > IPM_FROM
        solver.setOptionValue("solver", "ipm" if interior else "simplex")
        # primal simplex from the last basis mostly takes a few pivots, but on the model of every
        # moment at the fourth daily update one row's solve ran for minutes where the interior
        # point solver answers any objective in about 20 s: past twice its longest solve, it answers
        patient = not interior and self._spread_seconds > 0
        if patient:  # the limit is on the solver's clock, which runs across its solves
            patience = max(SIMPLEX_PATIENCE * self._spread_seconds, SIMPLEX_PATIENCE_MIN)
            solver.setOptionValue("time_limit", max(0.0, solver.getRunTime() + patience))
        started = time.perf_counter()
        try:
            _run_checked(solver, check)
            status = solver.getModelStatus()
        finally:
            if patient:  # a cancelled solve leaves the solver as a later one expects it too
                solver.setOptionValue("time_limit", highspy.kHighsInf)
        if interior:
            with self._recording:  # copies solving side by side each report their solve's time
                self._spread_seconds = max(self._spread_seconds, time.perf_counter() - started)
        elif patient:
            if status == highspy.HighsModelStatus.kTimeLimit:
                solver.setOptionValue("solver", "ipm")
                _run_checked(solver, check)
                status = solver.getModelStatus()
                with self._recording:
                    self.interior_rows += 1
        if status == highspy.HighsModelStatus.kOptimal:
            value = float(solver.getInfo().objective_function_value)
            return (-value if maximize else value), np.asarray(solver.getSolution().row_value)
        if status in (highspy.HighsModelStatus.kUnbounded, highspy.HighsModelStatus.kUnboundedOrInfeasible):
            return (math.inf if maximize else -math.inf), None
        return None, None

    def _record(self, result: tuple[float | None, np.ndarray | None]) -> float | None:
        value, values = result
        if values is not None:
            with self._recording:  # copies solving rows side by side record into the same arrays
                np.minimum(self.seen_low, values, out=self.seen_low)
                np.maximum(self.seen_high, values, out=self.seen_high)
        return value

    def _settle_zeros(self, pending: np.ndarray, out: dict[int, tuple[float, float]]) -> np.ndarray:
        """Bound at once the open rows every point found holds at zero (commonly differences that
        are empty): rows of atoms ≥ 0 with positive coefficients, whose sum's greatest value is
        zero, are each zero in every solution, which one solve proves instead of two per row."""
        zeros = [int(r) for r in pending if self.seen_high[r] <= EXACT and self.seen_low[r] >= -EXACT
                 and self._positive(int(r))]
        if len(zeros) < 2:
            return pending
        direction = np.zeros(self.row_count)
        direction[zeros] = 1.0
        greatest = self._solve(self._costs(direction), maximize=True)
        if greatest is None or greatest > EXACT:
            return pending
        for r in zeros:
            out[r] = (float(self.seen_low[r]), greatest)
        settled = set(zeros)
        return np.array([r for r in pending if int(r) not in settled], dtype=np.int64)

    def _explore(self, pending: np.ndarray, open_ones: Any) -> None:
        """Find feasible points that show many rows wide at once, so few need their own two
        solves. Each round pushes every still-open row one random way. The atoms are boxed for
        these rounds so no direction is unbounded; a point of the boxed model satisfies every
        row of the real one, so the spread it shows is real. The box is lifted afterwards.

        After the first round each open row is pushed away from where the last point left it
        (down when it was in the upper half of the values seen, up otherwise), with a random
        weight: a row the last point held high most often needs a low one to show its spread,
        and the weights keep rows tied by published totals from settling into the same vertex.
        Measured on the six yearly components at 5M rows: 100 rounds and 15 row solves where
        random signs took 119 and 68.

        Rounds go on while one settles more rows than their own solves would in its time (the
        median of the last few greatest-value solves of rows still open stands for each of a
        row's two; rows are timed only where a round's yield does not outweigh the quickest of
        them, see :meth:`_time_rows`): on a year's component a round takes a second or more,
        most rows' solves from the last basis a few hundredths, the rows left open longest tenths
        (timed once, on the first open row, the estimate was 0.01 s or 0.2 s by chance, and
        exploring stopped with 200 rows open or went on past its use), so the last rounds,
        settling a handful of rows each, cost more than they save.
        With :attr:`threads` above one, each round solves as many directions side by side, each
        copy of the model pushed away from its own last point."""
        solvers = self._solvers()
        points: list[np.ndarray | None] = [None] * len(solvers)
        with self._boxed(solvers):
            for _round in range(EXPLORE_ROUNDS):
                started = time.perf_counter()
                jobs = []
                for solver, point in zip(solvers, points, strict=True):  # each pushed away from its own last point
                    direction = np.zeros(self.row_count)
                    signs = self._rng.choice([-1.0, 1.0], len(pending))
                    if point is not None:
                        last = point[pending]
                        middle = (self.seen_low[pending] + self.seen_high[pending]) / 2
                        signs = np.where(last > middle, 1.0, np.where(last < middle, -1.0, signs))
                        signs *= self._rng.uniform(0.2, 1.8, len(pending))
                    direction[pending] = signs
                    ties = self._rng.uniform(-TIE_BREAK, TIE_BREAK, self.size)
                    jobs.append((solver, self._costs(direction) + ties, False))
                results = self._side_by_side(jobs)
                if any(value is None for value, _ in results):
                    return
                points = [values for _, values in results]
                spent = time.perf_counter() - started
                still = open_ones()
                self._checking.left(len(still))
                if len(still) <= EXPLORE_MIN:
                    return
                # a round that settled more rows than even the quickest row solve timed would in its
                # time goes on without timing more (on the model of every moment of the fourth daily
                # update at 1M rows, the timing took 23 s of 126 s on one core, the other idle)
                if self._row_spans and (len(pending) - len(still)) * 2 * min(self._row_spans) >= spent:
                    pending = still
                    continue
                self._time_rows(solvers, still)
                still = open_ones()
                if len(still) <= EXPLORE_MIN:
                    return
                row_seconds = float(np.median(self._row_spans[-ROWS_TIMED:]))
                if (len(pending) - len(still)) * 2 * row_seconds < spent:
                    return
                pending = still

    def _time_rows(self, solvers: list[Any], still: np.ndarray) -> None:
        """What a row's solve costs now, for :meth:`_explore`'s stopping rule: the greatest values
        of rows still open (the rows left open longest take the longest; a least value is mostly
        found at once, a point holding the row at 0 showing it), a few the first time and one per
        copy of the model after, the copies side by side (the rows left are settled so too)."""
        count = min(max(ROWS_TIMED, len(solvers)) if not self._row_spans else len(solvers), len(still))
        rows = [int(row) for row in self._rng.choice(still, count, replace=False)]

        def timed(solver: Any, mine: list[int]) -> None:
            for row in mine:
                started = time.perf_counter()
                self._solve_on(solver, self._costs_of(row), maximize=True)
                with self._recording:
                    self._row_spans.append(time.perf_counter() - started)

        at_once([functools.partial(timed, solver, rows[n::len(solvers)]) for n, solver in enumerate(solvers[:count])])

    def _cap(self) -> float:
        """The box of :meth:`_boxed`: more than any finite row bound."""
        finite = np.concatenate([self.lower[np.isfinite(self.lower)], self.upper[np.isfinite(self.upper)]])
        return 1.0 + float(np.abs(finite).sum())

    @contextlib.contextmanager
    def _boxed(self, solvers: list[Any]) -> Iterator[None]:
        """Every atom of ``solvers`` within ``[-cap, cap]`` (from 0 where atoms are ≥ 0) meanwhile,
        so no objective is unbounded: the interior point solver takes minutes to tell an unbounded
        one (a spread-out start on the model of every moment at the fourth daily update: 100 s,
        where a bounded one took 7). A point of the boxed model satisfies every row of the real
        one, so the spread it shows is real."""
        import highspy

        cap = self._cap()
        columns = np.arange(self.size, dtype=np.int32)
        for solver in solvers:
            solver.changeColsBounds(self.size, columns, np.full(self.size, 0.0 if self.nonnegative else -cap),
                                    np.full(self.size, cap))
        try:
            yield
        finally:
            inf = highspy.kHighsInf
            for solver in solvers:
                solver.changeColsBounds(self.size, columns, np.full(self.size, 0.0 if self.nonnegative else -inf),
                                        np.full(self.size, inf))


def _run_checked(solver: Any, check: Callable[[], None] | None) -> None:
    """``solver.run()``, with ``check`` (see :func:`interruptible`) called at every iteration of
    the simplex and interior point solvers: where it raises (a cancelled job) the solve stops
    there and its exception is raised. A solve on the whole model of every moment at the fifth
    daily update at 1M rows takes up to two minutes, which a check made only between solves
    waited out (and closing the app with it). Not in the main thread: a Ctrl-C arriving while
    Python runs the callback there is raised inside it, and HiGHS ends the solve as failed with
    the KeyboardInterrupt gone (the solve judged unresolved, the build going on); there the
    interrupt is raised when the solve returns. The app's jobs and the CLI's long commands
    (:func:`.cliutil.cancellable`, which turns Ctrl-C into a cancel) run in worker threads."""
    if check is None or threading.current_thread() is threading.main_thread():
        solver.run()
        return
    import highspy

    raised: list[BaseException] = []

    def interrupt(_kind: int, _message: str, _out: Any, data_in: Any, _user: Any) -> None:
        if not raised:
            try:
                check()
            except BaseException as exc:  # raised again below, once HiGHS has stopped
                raised.append(exc)
        if raised:
            data_in.user_interrupt = True

    kinds = (highspy.cb.HighsCallbackType.kCallbackSimplexInterrupt,
             highspy.cb.HighsCallbackType.kCallbackIpmInterrupt)
    solver.setCallback(interrupt, None)
    for kind in kinds:
        solver.startCallback(kind)
    try:
        solver.run()
    finally:
        for kind in kinds:
            solver.stopCallback(kind)
    if raised:
        raise raised[0]


_banner_shown = threading.Lock()
_banner_done = False


def make_solver() -> Any:
    """A silent HiGHS model. HiGHS prints its banner on the C stdout when the first model of a
    process is made, which would corrupt ``--json`` output; that one construction runs with the
    stdout descriptor pointed at the null device."""
    global _banner_done
    import highspy

    with _banner_shown:
        if not _banner_done:
            sys.stdout.flush()
            saved = os.dup(1)
            try:
                with open(os.devnull, "wb") as null:
                    os.dup2(null.fileno(), 1)
                    solver = highspy.Highs()
            finally:
                os.dup2(saved, 1)
                os.close(saved)
            _banner_done = True
        else:
            solver = highspy.Highs()
    solver.setOptionValue("output_flag", False)
    solver.setOptionValue("simplex_strategy", PRIMAL_SIMPLEX)
    return solver
