"""Unpublished margins that a reader can still work out, as terms of the line pass.

Two published tables of the same rows and grain share every margin of their common dimensions:
``department × region × sex`` and ``department × class × region`` both sum to ``department ×
region``, which nobody publishes. When every cell on one side of such a margin cell is visible,
a reader knows it; when it is small (fewer than k records) and known, every hidden cell inside
it is bounded by it, however well each table protects its own lines. A rare category shows this
at scale: each ``department × rare region`` cell is hidden in both tables, yet the department's
total minus its visible regions leaves the rare one, a number below k.

This module gives every such margin cell a term of its own (*virtual*; ids after the group's
cells and differences) and the lines that bind it: summed from each finer table along one
dimension (its *defining* lines), and summed itself along each of its dimensions into the next
coarser margin or published table. A virtual term is *concealed* while every defining line
holds another concealed term; concealing one means hiding a cell in each defining line that has
none. The line pass then treats these terms as it treats cells: no line with a lone concealed
term, and a small margin hidden with at least k records around it. The exact audit remains the
judge; this only lets the line pass choose complements the audit would otherwise have to find
one round at a time.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .compile import PERIOD
from .relations import dimension_identity, row_context
from .spec import dimension_alias

if TYPE_CHECKING:
    from .complementary import Cells, Group, Line


@dataclass
class _Table:
    """The cells of one set of dimensions in one row context: a member's, or virtual."""

    dims: tuple
    member: Cells | None = None
    cells: dict[tuple, int] = field(default_factory=dict)


class Margins:
    """Virtual margin terms of a group, their records, lines and concealment."""

    def __init__(self, group: Group, first_id: int) -> None:
        self.first_id = first_id
        self.records: list[int] = []
        self.threshold: list[int] = []
        self.where: list[tuple[tuple, tuple]] = []
        self.defining: list[list[int]] = []
        self.lines: list[Line] = []
        """Each line's terms are its finer terms (+1), then its total (-1), last."""
        self.parents: dict[int, list[int]] = defaultdict(list)
        contexts: dict[Any, list[Cells]] = defaultdict(list)
        for m in group.members:
            contexts[row_context(m.spec)].append(m)
        if all(m.records is not None for m in group.members):
            for members in contexts.values():
                self._context(group, members)
        self.concealed = [False] * len(self.records)

    def _context(self, group: Group, members: list[Cells]) -> None:
        from .complementary import Line  # complementary imports this module

        k = max((m.k for m in members), default=0)
        if k <= 0:
            return
        tables: dict[tuple, _Table] = {}
        for m in members:
            identities = {dimension_alias(d): dimension_identity(m.spec, d) for d in m.spec.get("group_by", [])}
            dims = tuple(sorted(identities.values(), key=repr))
            if dims in tables or len(set(dims)) != len(dims):
                continue
            alias_of = {ident: alias for alias, ident in identities.items()}
            table = tables[dims] = _Table(dims, m)
            base = group.offsets[m.name]
            for i, values in enumerate(m.keys):
                table.cells[(values.get(PERIOD), *(values[alias_of[d]] for d in dims))] = base + i
        for dims in sorted(tables, key=len, reverse=True):
            for size in range(len(dims) - 1, -1, -1):
                for kept in itertools.combinations(dims, size):
                    if kept not in tables:
                        tables[kept] = _Table(kept)
        records_of = {c: group.records(c) for t in tables.values() if t.member for c in t.cells.values()}
        for table in sorted(tables.values(), key=lambda t: len(t.dims), reverse=True):
            for dropped in range(len(table.dims)):
                coarser = tables[table.dims[:dropped] + table.dims[dropped + 1:]]
                if table.member is not None and coarser.member is not None:
                    continue
                sides: dict[tuple, list[int]] = defaultdict(list)
                for key, term in table.cells.items():
                    sides[key[:dropped + 1] + key[dropped + 2:]].append(term)
                for key, terms in sides.items():
                    total = coarser.cells.get(key)
                    if total is None:
                        total = coarser.cells[key] = self.first_id + len(self.records)
                        records_of[total] = sum(records_of[t] for t in terms)
                        self.records.append(records_of[total])
                        self.threshold.append(k)
                        self.where.append((coarser.dims, key))
                        self.defining.append([])
                    line = len(self.lines)
                    self.lines.append(Line([(t, 1) for t in terms] + [(total, -1)], k))
                    if total >= self.first_id:
                        self.defining[total - self.first_id].append(line)
                    for t in terms:
                        self.parents[t].append(line)

    def is_virtual(self, term: int) -> bool:
        return term >= self.first_id

    def record_count(self, term: int) -> int:
        return self.records[term - self.first_id]

    def sensitive(self) -> set[int]:
        """Virtual terms of 1 to k-1 records: every cell inside them is hidden, and so must they be."""
        return {self.first_id + v for v, (r, k) in enumerate(zip(self.records, self.threshold, strict=True))
                if 0 < r < k}

    def refresh(self, concealed: Callable[[int], bool]) -> None:
        """Concealment of every virtual term from ``concealed`` (for the group's own terms),
        finest first: a defining line's finer terms are settled before its total."""
        for v in range(len(self.records)):
            self.concealed[v] = False
        for v in sorted(range(len(self.records)), key=lambda v: -len(self.where[v][0])):
            self.concealed[v] = self._hides(v, concealed)

    def _hides(self, v: int, concealed: Callable[[int], bool]) -> bool:
        term = self.first_id + v
        return all(any(t != term and self._is_concealed(t, concealed) for t, _ in self.lines[n].terms)
                   for n in self.defining[v])

    def _is_concealed(self, term: int, concealed: Callable[[int], bool]) -> bool:
        return self.concealed[term - self.first_id] if self.is_virtual(term) else concealed(term)

    def changed_after(self, term: int, concealed: Callable[[int], bool]) -> list[int]:
        """Virtual terms that became concealed because ``term`` did (its totals, theirs, …)."""
        out = []
        stack = [term]
        while stack:
            t = stack.pop()
            for n in self.parents.get(t, ()):
                total = self.lines[n].terms[-1][0]
                if not self.is_virtual(total) or self.concealed[total - self.first_id]:
                    continue
                if self._hides(total - self.first_id, concealed):
                    self.concealed[total - self.first_id] = True
                    out.append(total)
                    stack.append(total)
        return out

    def plan(self, term: int, concealed: Callable[[int], bool], hideable: Callable[[int], bool],
             records: Callable[[int], int]) -> list[int] | None:
        """Cells to hide so that a virtual term is concealed (None: some defining line has only
        cells that may not be hidden): in each defining line with nothing concealed, its smallest
        hideable cell, or a finer virtual term concealed the same way."""
        chosen: list[int] = []
        for n in self.defining[term - self.first_id]:
            terms = [t for t, _ in self.lines[n].terms if t != term]
            if any(self._is_concealed(t, concealed) or t in chosen for t in terms):
                continue
            direct = [t for t in terms if not self.is_virtual(t) and hideable(t)]
            if direct:
                chosen.append(min(direct, key=lambda t: (records(t), t)))
                continue
            found = None
            for t in sorted((t for t in terms if self.is_virtual(t)), key=lambda t: (self.record_count(t), t)):
                found = self.plan(t, concealed, hideable, records)
                if found is not None:
                    break
            if found is None:
                return None
            chosen.extend(c for c in found if c not in chosen)
        return chosen
