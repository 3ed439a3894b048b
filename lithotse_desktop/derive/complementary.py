"""Small-cell suppression decided over every published aggregate of one input, and its audit.

*Cells.* Each aggregate cell carries its records (``__n``) and its people (``__people``:
distinct person keys, or the records when the input has no person key). A cell of 1 to k-1
people is hidden (primary suppression); a cell of 0 people (records whose person key is null)
follows the workspace's zero rule (``[privacy] zero_cells``).

*Lines.* Complementary suppression works on lines: sets of cells bound by one linear relation
whose other terms a reader may know. Two kinds:

- a table's own lines: the cells sharing every coordinate but one, where the coordinates are
  the dimensions *and the period* (the time dimension is a line too). Their totals are assumed
  to be known — they could be published elsewhere — whenever they hold k records or more;
- relation lines between two aggregates of the same input (see :mod:`.relations`): for each
  cell of their common margin, the inner cells, the outer cells and, where the inner leaves
  rows of the outer out, the unpublished *difference* of the two.

A line must never hold exactly one hidden term (it would be the others subtracted from the
total), and a line holding a sensitive term (a primary cell, or a difference of 1 to k-1
people) must hide at least k records in all, so subtraction cannot narrow it below k. Cells are
added until every line holds — in a category already hidden along the line's axis where one
gives the line enough, so a rare category keeps one partner across lines, periods and tables;
else the smallest — then the relations are audited exactly
(:func:`audit`, linear programming, as a reader with every published number would attack them)
and any cell still narrowed below k gets a further complementary cell, until none is.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import heapq
import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import LithotseError
from .bounds import EXACT, IPM_FROM, NEAR_LEFT, SIDE_BY_SIDE, BoundModel, submit
from .compile import CELL_COUNT, PEOPLE, PERIOD
from .margins import Margins
from .measures import sensitive_rows
from .relations import (
    Partition,
    Relation,
    additive_quantities,
    essential,
    in_inner_periods,
    margin_key,
    matches,
    no_difference,
    partitions,
)
from .spec import dimension_alias

ZERO_RULES = ("show", "suppress")
DEFAULT_ZERO_RULE = "show"
TAKEN_FROM = 5000
"""Unknowns of the whole model of every moment from which a build takes a row its smaller model
leaves narrow as narrow, the first time, rather than asking the whole model (see
:func:`_bounds_unchanged_first`): below it the whole model answers in seconds, and hides no
more than needed; the fifth daily update at 1M rows had 40,125 and took 402.6 s."""
MAX_AUDIT_ROUNDS = 200


@dataclass
class Cells:
    """The cells of one aggregate: keys, what suppression decides on, and published values."""

    name: str
    spec: dict
    k: int
    keys: list[dict[str, Any]]
    records: list[int] | None = None
    people: list[int] | None = None
    values: dict[tuple, list[Any]] = field(default_factory=dict)
    types: dict[str, pa.DataType] = field(default_factory=dict)
    hidden: set[int] = field(default_factory=set)
    counted_in_part: set[int] = field(default_factory=set)
    """Rows a measure counting part of the cell makes primary (see :mod:`.measures`)."""
    kept_hidden: set[int] = field(default_factory=set)
    kept_shown: set[int] = field(default_factory=set)
    """Rows unchanged since a version already published, hidden or shown there: they keep that
    state, since the earlier version stays readable (a shown value is known, so hiding it now
    protects nothing, and a hidden one shown now would be subtracted from the earlier lines)."""
    held: set[int] = field(default_factory=set)
    """Rows shown in that version and revised since by 1 to k-1: primary, as a small cell is
    (the two versions subtracted would count the people in between)."""
    changes: list[int] | None = None
    """Per row, how far it moved from the value last shown (its whole count where it is new, 0
    where it was hidden): what hiding it adds to the change a line's hidden terms share."""
    given_away: set[int] = field(default_factory=set)
    """Rows no small or held count, hidden only as complements, that a refusal found narrowed
    whatever else is hidden (the cells binding them keep the state a reader holds): shown, since
    hiding them protects nothing (see :func:`release`)."""

    def carry(self, carried: Carried) -> None:
        """Take the states an earlier version fixes (:func:`carried_states`)."""
        self.kept_hidden, self.kept_shown, self.held = carried.hidden, carried.shown, set(carried.held)
        self.changes = carried.changes

    @property
    def dims(self) -> list[str]:
        return [dimension_alias(d) for d in self.spec.get("group_by", [])]

    @classmethod
    def from_table(cls, name: str, spec: dict, k: int, table: pa.Table,
                   subcounts: dict[str, str] | None = None) -> Cells:
        """Cells of an unsuppressed aggregate result (with ``__n`` and ``__people``), or of a
        published table (with ``suppressed``; records and people unknown). ``subcounts``: the
        measures counting part of a cell (:func:`.measures.subcounts`)."""
        dims = [dimension_alias(d) for d in spec.get("group_by", [])]
        coordinates = ([PERIOD] if PERIOD in table.column_names else []) + dims
        columns = {c: table.column(c).to_pylist() for c in coordinates}
        keys = [{c: columns[c][i] for c in coordinates} for i in range(table.num_rows)]
        values = {q: table.column(alias).to_pylist() for q, alias in additive_quantities(spec).items()
                  if alias in table.column_names}
        types = {c: table.schema.field(c).type for c in dims}
        cells = cls(name, spec, k, keys, values=values, types=types)
        if CELL_COUNT in table.column_names:
            cells.records = table.column(CELL_COUNT).to_pylist()
            cells.people = table.column(PEOPLE).to_pylist()
            if subcounts:
                parts = {alias: table.column(alias).to_pylist() for alias in subcounts if alias in table.column_names}
                cells.counted_in_part = sensitive_rows(parts, {"records": cells.records, "people": cells.people},
                                                       subcounts, k)
        if "suppressed" in table.column_names:
            cells.hidden = {i for i, flag in enumerate(table.column("suppressed").to_pylist()) if flag}
        return cells


@dataclass
class Difference:
    """The unpublished rows of one relation's margin cell: outer rows the inner leaves out (for a
    partition: outer rows no part keeps)."""

    relation: Relation | Partition
    key: tuple
    records: int | None = None
    people: int | None = None


@dataclass
class Line:
    """Terms bound by one linear relation: (cell id, sign); ``total`` when the relation's total
    is an assumed-known margin rather than a term."""

    terms: list[tuple[int, int]]
    k: int
    relation: Relation | Partition | None = None
    axis: str | None = None
    """The coordinate the terms differ in, for a table's own line."""


class Group:
    """The published aggregates of one input and the lines binding their cells.

    Cell ids number the cells of every member in order, then the differences. The partitions
    among the members (:func:`.relations.partitions`) are found here; ``remainders`` holds, per
    partition key, the (records, people) of its remainder per margin cell when a build counted
    them (absent from a dict: zero); a partition missing from it has unknown remainders.
    """

    def __init__(self, members: list[Cells], relations: list[Relation],
                 differences: dict[tuple[str, str], dict[tuple, tuple[int, int | None]]] | None = None,
                 remainders: dict[tuple[str, ...], dict[tuple, tuple[int, int]]] | None = None,
                 atoms: Iterable[dict[str, tuple]] | dict[str, list[tuple | None]] | None = None,
                 partial: Iterable[str] = (),
                 atom_records: Iterable[int] | None = None) -> None:
        self.members = sorted(members, key=lambda m: m.name)
        self.by_name = {m.name: m for m in self.members}
        self.offsets: dict[str, int] = {}
        self.owner: list[tuple[Cells, int]] = []
        for m in self.members:
            self.offsets[m.name] = len(self.owner)
            self.owner.extend((m, i) for i in range(len(m.keys)))
        self.cell_count = len(self.owner)
        self.differences: list[Difference] = []
        self.relations = relations
        self.relation_lines: list[Line] = []
        self._margins: dict[tuple, list[tuple]] = {}
        for relation in essential(relations, {m.name: m.spec for m in self.members}):
            known = None if differences is None else differences.get((relation.inner, relation.outer))
            self._relate(relation, known)
        self.partitions = (partitions([m.spec for m in self.members], {m.name: m.types for m in self.members})
                           if len(self.members) > 1 else [])
        for partition in self.partitions:
            self._split(partition, (remainders or {}).get(partition.key))
        self.relation_lines_of: dict[int, list[Line]] = defaultdict(list)
        self.line_of_difference: dict[int, Line] = {}
        lines_of, cell_count = self.relation_lines_of, self.cell_count
        for line in self.relation_lines:
            for cell, _sign in line.terms:
                lines_of[cell].append(line)
                if cell >= cell_count:
                    self.line_of_difference[cell] = line
        if atoms is None and len(self.members) == 1:
            atoms = ({self.members[0].name: tuple(key.values())} for key in self.members[0].keys)
        self.atoms: list[tuple[int, ...]] | None = None
        self.atom_cells: np.ndarray | None = None
        """The atoms as a matrix: a row per atom, a column per member, as in :attr:`atoms`."""
        self.atom_records: list[int] | None = None
        """Records of each atom, when the build or audit counted them from the input."""
        self.atoms_of: dict[int, list[int]] = defaultdict(list)
        if atoms is not None:
            self.atom_cells, self.atom_records = self._index_atoms(atoms, set(partial), atom_records)
            self.atoms = list(map(tuple, self.atom_cells.tolist()))
            offsets = np.array([self.offsets[m.name] for m in self.members], dtype=np.int64)
            present = self.atom_cells >= 0
            atom_ids, columns = np.nonzero(present)
            cell_ids = (self.atom_cells + offsets)[present]
            order = np.argsort(cell_ids, kind="stable")
            cell_ids, atom_ids = cell_ids[order], atom_ids[order]
            starts = (np.flatnonzero(np.diff(cell_ids)) + 1).tolist()
            ids = atom_ids.tolist()
            if ids:  # no atom in any published cell (every row left out by every member): none to index
                firsts = cell_ids[[0, *starts]].tolist()
                for cell, start, end in zip(firsts, [0, *starts], [*starts, len(ids)], strict=True):
                    self.atoms_of[cell] = ids[start:end]

    def rebound(self, members: list[Cells]) -> Group:
        """This group over other members of the same names, thresholds and keys (the very key
        lists: a table of changes made from these members), for a group built with nothing but
        members and relations: its lines, differences and partitions come from the keys, specs
        and thresholds alone, so they are shared rather than made again (2 to 3 s a group at
        the benchmark's 1M rows)."""
        order = sorted(members, key=lambda m: m.name)
        if len(order) != len(self.members) or any(
                a.name != b.name or a.keys is not b.keys or a.k != b.k or a.spec != b.spec
                for a, b in zip(order, self.members, strict=True)):
            raise ValueError("a group is rebound only to members of the same names, thresholds and keys")
        other = copy.copy(self)
        other.members = order
        other.by_name = {m.name: m for m in order}
        other.owner = [(m, i) for m in order for i in range(len(m.keys))]
        return other

    def _index_atoms(self, atoms: Iterable[dict[str, tuple]] | dict[str, list[tuple | None]], partial: set[str],
                     records: Iterable[int] | None) -> tuple[np.ndarray, list[int] | None]:
        """Atoms as the cell index of each member (-1: the member does not select their rows, or
        the cell is not among the member's cells given here), one row per atom, rows sorted.

        An atom is a class of input rows that no member tells apart: the same cell (or none) in
        every member. Keys that no member cell has, or cells no atom falls in, mean the atoms were
        counted from other data than the cells; nothing could be judged from them. Only a member
        in ``partial`` (a build given just the periods it recomputed) may lack cells. ``atoms`` is
        a key per atom for each member (:class:`.atoms.Atoms`' columns) or each atom's keys by
        member; either way it is read a member at a time over every atom (tens of thousands of
        atoms, tens of members)."""
        if isinstance(atoms, dict):
            columns = atoms
            size = len(next(iter(columns.values()), []))
        else:
            listed = list(atoms)
            columns = {m.name: [atom.get(m.name) for atom in listed] for m in self.members}
            size = len(listed)
        counts = np.array(list(records) if records is not None else [0] * size, dtype=np.int64)
        cells = np.empty((size, len(self.members)), dtype=np.int64)
        for j, m in enumerate(self.members):
            index = {tuple(key.values()): i for i, key in enumerate(m.keys)}
            keys = columns.get(m.name) or [None] * size
            column = [-1 if key is None else index.get(key if type(key) is tuple else tuple(key), -2)
                      for key in keys]
            cells[:, j] = column
            unknown = np.flatnonzero(cells[:, j] == -2)
            if len(unknown) and m.name in partial:
                cells[unknown, j] = -1
            elif len(unknown):
                raise LithotseError(f"derivative {m.name}: its input holds rows of cell "
                                    f"{_describe_key(tuple(keys[unknown[0]]))}, which its cells do not have; "
                                    "rebuild it before it is audited")
        selected = (cells >= 0).any(axis=1)
        cells, counts = cells[selected], counts[selected]
        if len(cells):
            order = np.lexsort(cells.T[::-1])
            cells, counts = cells[order], counts[order]
            first = np.r_[True, np.any(cells[1:] != cells[:-1], axis=1)]
            counts = np.add.reduceat(counts, np.flatnonzero(first))
            cells = cells[first]
        for j, m in enumerate(self.members):
            covered = np.zeros(len(m.keys), dtype=bool)
            covered[cells[:, j][cells[:, j] >= 0]] = True
            missing = np.flatnonzero(~covered)
            if len(missing):
                raise LithotseError(f"derivative {m.name}: cell {_describe_key(tuple(m.keys[missing[0]].values()))} "
                                    "has no rows in its input; rebuild it before it is audited")
        return cells, None if records is None else counts.tolist()

    def _relate(self, relation: Relation, known: dict[tuple, tuple[int, int | None]] | None) -> None:
        """Lines of one relation; ``known`` holds (records, people) of its differences per margin
        cell when a build computed them (absent: none left out), None when nobody knows them."""
        inner, outer = self.by_name[relation.inner], self.by_name[relation.outer]
        k = max(inner.k, outer.k)
        sides: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
        margins = self._margin_keys(inner, [a for a, _ in relation.common], relation.grain)
        base = self.offsets[inner.name]
        for i, key in enumerate(inner.keys):
            if in_inner_periods(relation, key):
                sides[margins[i]].append((base + i, 1))
        margins = self._margin_keys(outer, [b for _, b in relation.common], relation.grain)
        base = self.offsets[outer.name]
        for i, key in enumerate(outer.keys):
            if relation.selections and not all(matches(f, key.get(alias)) for alias, f in relation.selections):
                continue
            if relation.period_range is not None:
                start, end = relation.period_range
                period = key.get(PERIOD)
                if period is None or (start and period < start) or (end and period > end):
                    continue
            sides[margins[i]].append((base + i, -1))
        for mkey in sorted(sides, key=_sort_key):
            terms = sides[mkey]
            if relation.difference and not no_difference(relation, mkey):
                records, people = known.get(mkey, (0, 0)) if known is not None else (None, None)
                self.differences.append(Difference(relation, mkey, records, people))
                terms = terms + [(self.cell_count + len(self.differences) - 1, 1)]
            if len(terms) > 1:
                self.relation_lines.append(Line(terms, k, relation))

    def _margin_keys(self, member: Cells, aliases: list[str], grain: str) -> list[tuple]:
        """Each cell's :func:`.relations.margin_key`, made once per member and margin: a member
        takes part in many relations over the same margin."""
        memo = (member.name, tuple(aliases), grain)
        if memo not in self._margins:
            self._margins[memo] = [margin_key(key, aliases, grain) for key in member.keys]
        return self._margins[memo]

    def _split(self, partition: Partition, known: dict[tuple, tuple[int, int]] | None) -> None:
        """Lines of one partition: per margin cell, parts + remainder = outer. The remainder is
        left out where it is zero: by the specs (``covered``), or as counted by the build."""
        sides: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
        for name in partition.tables:
            sign = -1 if name == partition.outer else 1
            member = self.by_name[name]
            for i, key in enumerate(member.keys):
                sides[margin_key(key, partition.common[name], partition.grain)].append(
                    (self.offsets[name] + i, sign))
        for mkey in sorted(sides, key=_sort_key):
            terms = sides[mkey]
            if not partition.covered and (known is None or mkey in known):
                records, people = known[mkey] if known is not None else (None, None)
                self.differences.append(Difference(partition, mkey, records, people))
                terms = terms + [(self.cell_count + len(self.differences) - 1, 1)]
            if len(terms) > 1:
                self.relation_lines.append(Line(terms, self.threshold(partition), partition))

    def count_differences(self) -> None:
        """Records of the differences no build counted, from the atoms' records (each difference
        is its line solved for it, its other terms sums of atoms): for the published-set audit,
        which reads the input for the atoms, so that it judges the differences a build would.
        Only when the atoms were counted from the input the cells were built from."""
        if self.atom_records is None:
            return
        for d, line in self.line_of_difference.items():
            diff = self.differences[d - self.cell_count]
            others = [(cell, sign) for cell, sign in line.terms if cell != d]
            if diff.records is not None or any(self.is_difference(cell) for cell, _sign in others):
                continue
            diff.records = -sum(sign * sum(self.atom_records[a] for a in self.atoms_of.get(cell, ()))
                                for cell, sign in others)

    def threshold(self, relation: Relation | Partition) -> int:
        """The strictest threshold among the tables of a relation."""
        return max(self.by_name[n].k for n in relation.tables)

    # --- cells --------------------------------------------------------------------------
    def is_difference(self, cell: int) -> bool:
        return cell >= self.cell_count

    def records(self, cell: int) -> int:
        if self.is_difference(cell):
            found = self.differences[cell - self.cell_count].records
            return found if found is not None else 0
        member, i = self.owner[cell]
        return member.records[i] if member.records is not None else 0

    def describe(self, cell: int) -> dict:
        if self.is_difference(cell):
            diff = self.differences[cell - self.cell_count]
            rel = diff.relation
            if isinstance(rel, Partition):
                return {"remainder": rel.tables, "period": json_value(diff.key[0]),
                        **{b: json_value(v) for b, v in zip(rel.common[rel.outer], diff.key[1:], strict=True)}}
            return {"difference": [rel.outer, rel.inner], "period": json_value(diff.key[0]),
                    **{b: json_value(v) for (_, b), v in zip(rel.common, diff.key[1:], strict=True)}}
        member, i = self.owner[cell]
        return {"derivative": member.name, **{k: json_value(v) for k, v in member.keys[i].items()}}

    # --- lines --------------------------------------------------------------------------
    def own_lines(self) -> list[Line]:
        """Each member's lines along every coordinate (its dimensions and its period)."""
        lines = []
        for m in self.members:
            coordinates = ([PERIOD] if m.keys and PERIOD in m.keys[0] else []) + m.dims
            base = self.offsets[m.name]
            if m.k <= 0:
                continue
            for axis in coordinates:
                groups: dict[tuple, list[int]] = defaultdict(list)
                for i, key in enumerate(m.keys):
                    groups[tuple(key[c] for c in coordinates if c != axis)].append(i)
                for members in groups.values():
                    if len(members) > 1 and (m.records is None or sum(m.records[i] for i in members) >= m.k):
                        lines.append(Line([(base + i, 1) for i in members], m.k, axis=axis))
            if not coordinates and len(m.keys) > 1:
                lines.append(Line([(base + i, 1) for i in range(len(m.keys))], m.k))
        return lines


def _describe_key(key: tuple) -> str:
    return "(" + ", ".join(str(json_value(v)) for v in key) + ")"


def _sort_key(key: tuple) -> tuple:
    return tuple((v is None, str(type(v).__name__), str(v)) for v in key)


def json_value(value: Any) -> Any:
    """A key's value as JSON holds it: dates as ISO text."""
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value


# --- deciding -------------------------------------------------------------------------------

SHOWN_ANCHOR = "__shown_"
HIDDEN_ANCHOR = "__hidden_"
VALUE_ANCHOR = "__value_"
"""Prefixes of an anchors table's columns (:func:`anchors_table`): each count of a cell as it
was last shown, as it was when the cell was last hidden, and (for a hidden cell) its value in
this version: what a later version's audit judges it by (:func:`pinned_together`)."""


@dataclass
class Carried:
    """What an earlier published version fixes of a new table's rows (:func:`carried_states`)."""

    hidden: set[int] = field(default_factory=set)
    """Hidden before and moved too little since: they stay hidden."""
    shown: set[int] = field(default_factory=set)
    """Shown before and unchanged: they stay shown (their values are known)."""
    held: set[int] = field(default_factory=set)
    """Shown before and revised by 1 to k-1: hidden now, as a small cell is."""
    last_shown: list[tuple | None] = field(default_factory=list)
    """Each row's counts as last shown (None: never; a None count: not known)."""
    last_hidden: list[tuple | None] = field(default_factory=list)
    """Each row's counts when it was last hidden, for a row hidden before."""
    changes: list[int] = field(default_factory=list)
    """Each row's change since last shown (:attr:`Cells.changes`)."""
    audited: set[str] = field(default_factory=set)
    """The parts of the audit that version's decision passed (:func:`audited_parts`): an
    unchanged part passes again without its solves."""


def carried_states(table: pa.Table, coordinates: list[str], counts: list[str], k: int, shown: pa.Table,
                   hidden_rows: pa.Table | None, kept: pa.Table | None, anchors: pa.Table | None = None,
                   sizes: int | None = None) -> Carried:
    """Rows of ``table`` (unsuppressed cells, with their ``counts``) whose state an earlier
    published version fixes: ``shown`` are its rows shown, ``hidden_rows`` those it hid (None
    where hidden cells are left out: then a key of ``kept`` or ``anchors`` not shown was
    hidden), ``kept`` its unsuppressed cells where this machine kept them, ``anchors`` its
    anchors (:func:`anchors_table`) where they were stored.

    Each row is compared with the counts it had when last shown and when last hidden:

    - shown before and unchanged: it stays shown (known: hiding it protects nothing, and it is
      no complement);
    - shown before and some count moved by 1 to k-1: held, hidden as a small cell is, since the
      two versions subtracted would count the people who came in between (three late records
      for January: 3);
    - hidden before: it stays hidden until each of its first ``sizes`` counts (its records and
      people; default: all) moved by k or more from when it was hidden, and none sits 1 to k-1
      from the value last shown. A reader holding both versions bounds a cell by its other
      version within the change, which the change of the totals bounds in turn, so a hidden
      cell shown after a small change would tell its earlier lines what they hid (January's
      other hidden cell grown by one late record, shown: the small cell within 2); one whose
      people did not change would be the hidden value itself; and one back within k of what
      was shown gives that revision.

    Without anchors the kept cells give a shown row's last shown counts and a hidden row stays
    hidden (the value it was last shown at is not known); without either, a shown row is compared
    with what was shown (its published counts, else every published value: any change holds
    it)."""
    def keyed(t: pa.Table) -> list[tuple]:
        columns = [t.column(c).to_pylist() for c in coordinates]
        return list(zip(*columns, strict=True)) if columns else [()] * t.num_rows

    def rows_of(t: pa.Table, columns: list[str]) -> dict[tuple, tuple]:
        values = [t.column(c).to_pylist() for c in columns]
        return dict(zip(keyed(t), zip(*values, strict=True) if values else [()] * t.num_rows, strict=True))

    shown_keys = set(keyed(shown))
    was_shown: dict[tuple, tuple | None] = {}
    was_hidden: dict[tuple, tuple | None] = {}
    if anchors is not None and all(SHOWN_ANCHOR + c in anchors.column_names for c in counts):
        for key, values in rows_of(anchors, [SHOWN_ANCHOR + c for c in counts]).items():
            was_shown[key] = None if all(v is None for v in values) else values
        for key, values in rows_of(anchors, [HIDDEN_ANCHOR + c for c in counts]).items():
            was_hidden[key] = None if all(v is None for v in values) else values
        known = set(was_shown)
    elif kept is not None:
        before = rows_of(kept, counts)
        was_shown = {key: values for key, values in before.items() if key in shown_keys}
        known = set(before)
    else:
        known = set()
    hidden_keys = set(keyed(hidden_rows)) if hidden_rows is not None else known - shown_keys
    published = [c for c in counts if c in shown.column_names] or \
        [c for c in shown.column_names if c in table.column_names and c not in coordinates and c != "suppressed"]
    measured = bool(set(published) & set(counts))
    published_before = rows_of(shown, published)
    now = list(zip(*(table.column(c).to_pylist() for c in counts), strict=True))
    published_now = rows_of(table, published)
    carried = Carried(audited=audited_parts(anchors))
    for i, key in enumerate(keyed(table)):
        last_shown = was_shown.get(key)
        last_hidden = was_hidden.get(key) if key in hidden_keys else None
        if key in shown_keys:
            if last_shown is None:  # no anchor: what was published
                moves = _moves(published_now[key], published_before[key])
                last_shown = tuple(published_before[key][published.index(c)] if c in published else None
                                   for c in counts) if measured else None
                small = not measured or _small(moves, k)
            else:
                moves = _moves(now[i], last_shown) if last_shown is not None else []
                small = _small(moves, k)
            if not any(moves):
                carried.shown.add(i)
            elif small:
                carried.held.add(i)
        elif key in hidden_keys:
            enough = last_hidden is not None and all(m is not None and m >= k
                                                     for m in _moves(now[i], last_hidden)[:sizes])
            if not enough or (last_shown is not None and _small(_moves(now[i], last_shown), k)):
                carried.hidden.add(i)
        carried.last_shown.append(last_shown)
        carried.last_hidden.append(last_hidden)
        carried.changes.append(_change(now[i], last_shown, key in shown_keys or key in hidden_keys, sizes))
    return carried


def _change(now: tuple, last_shown: tuple | None, seen: bool, sizes: int | None) -> int:
    """The people (the least of the first ``sizes`` counts) a row moved by since last shown: all
    of them where the row is new, none where it was only hidden (its change is not known to
    anyone, so it is counted as none)."""
    if last_shown is None:
        return 0 if seen else int(min((v or 0 for v in now[:sizes]), default=0))
    moves = [m for m in _moves(now, last_shown)[:sizes] if m is not None]
    return int(min(moves)) if moves and all(math.isfinite(m) for m in moves) else 0


def anchors_table(table: pa.Table, coordinates: list[str], counts: list[str], carried: Carried | None,
                  hidden: set[int], audited: Collection[str] = ()) -> pa.Table:
    """The anchors of a version's cells, for the next version to compare with: each count as the
    cell was last shown (now, where it is shown) and when it was last hidden (kept from before
    while it stays hidden, now where it is hidden anew), and the parts of the audit its decision
    passed (``audited``, see :func:`audited_parts`). Stored apart from what is published: it
    holds the counts of hidden cells (and the parts' fingerprints, taken over the structure of
    the input's rows, stay with them)."""
    rows = table.num_rows
    current = [table.column(c).to_pylist() for c in counts]
    shown_columns: list[list[Any]] = [[] for _ in counts]
    hidden_columns: list[list[Any]] = [[] for _ in counts]
    value_columns: list[list[Any]] = [[] for _ in counts]
    for i in range(rows):
        if i in hidden:
            last_shown = carried.last_shown[i] if carried is not None else None
            kept_hidden = carried is not None and i in carried.hidden and carried.last_hidden[i] is not None
            since = carried.last_hidden[i] if kept_hidden and carried is not None else \
                tuple(column[i] for column in current)
        else:
            last_shown, since = tuple(column[i] for column in current), None
        for n in range(len(counts)):
            shown_columns[n].append(None if last_shown is None else last_shown[n])
            hidden_columns[n].append(None if since is None else since[n])
            value_columns[n].append(current[n][i] if i in hidden else None)
    names, arrays = list(coordinates), [table.column(c) for c in coordinates]
    for n, c in enumerate(counts):
        typ = table.schema.field(c).type
        names += [SHOWN_ANCHOR + c, HIDDEN_ANCHOR + c, VALUE_ANCHOR + c]
        arrays += [pa.chunked_array([_arrow_array(shown_columns[n], typ)]),
                   pa.chunked_array([_arrow_array(hidden_columns[n], typ)]),
                   pa.chunked_array([_arrow_array(value_columns[n], typ)])]
    out = pa.Table.from_arrays(arrays, names=names)
    return out.replace_schema_metadata({AUDITED_KEY: json.dumps(sorted(audited))}) if audited else out


AUDITED_KEY = b"lithotse.audited"


def audited_parts(anchors: pa.Table | None) -> set[str]:
    """The fingerprints of the audit's parts an anchors table records as passed (none for
    anchors stored before they were recorded)."""
    metadata = (anchors.schema.metadata or {}) if anchors is not None else {}
    found = metadata.get(AUDITED_KEY)
    return set(json.loads(found)) if found else set()


def _arrow_array(values: list[Any], typ: pa.DataType) -> pa.Array:
    """Integers (None for null) as an Arrow array made from their bytes: pyarrow's first array
    made from Python objects imports pandas, a third of a second an aggregate build does not
    otherwise spend."""
    if not (pa.types.is_integer(typ) and all(v is None or isinstance(v, int) for v in values)):
        return pa.array(values, typ)
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    data = np.fromiter((0 if v is None else v for v in values), dtype=np.int64, count=len(values))
    nulls = len(values) - int(valid.sum())
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    return pa.Array.from_buffers(pa.int64(), len(values), [bitmap, pa.py_buffer(data)], null_count=nulls).cast(typ)


def _moves(now: tuple, before: tuple) -> list[float | None]:
    """How far each value moved (None: not known before); a float within a relative 1e-9 did
    not (a sum added up in another order)."""
    moves: list[float | None] = []
    for a, b in zip(now, before, strict=True):
        if b is None and a is not None:
            moves.append(None)
        elif isinstance(a, float) or isinstance(b, float):
            a, b = a or 0.0, b or 0.0
            moves.append(0.0 if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) else abs(a - b))
        else:
            moves.append(0 if a == b else abs((a or 0) - (b or 0)) if _number(a) and _number(b) else math.inf)
    return moves


def _number(value: Any) -> bool:
    return value is None or isinstance(value, (int, float)) or hasattr(value, "as_integer_ratio")


def _small(moves: list[float | None], k: int) -> bool:
    """Whether some count moved by 1 to k-1 (a revision a reader holding both would see)."""
    return any(m is not None and 0 < m < k for m in moves)


def primary(member: Cells, zero_cells: str, held: bool = True) -> set[int]:
    """Cells of 1 to k-1 people, of 0 people when the zero rule hides them, counted in part by
    1 to k-1, and (``held``) revised by 1 to k-1 since they were shown."""
    if member.k <= 0 or member.people is None:
        return set()
    hide_zero = zero_cells == "suppress"
    return {i for i, p in enumerate(member.people) if 0 < p < member.k or (p == 0 and hide_zero)} | \
        member.counted_in_part | (member.held if held else set())


def complemented(group: Group, zero_cells: str = DEFAULT_ZERO_RULE) -> set[int]:
    """The primary cells and their complements along every line, before any audit: the cell ids
    :func:`decide` starts its audit rounds from."""
    return _complemented(group, zero_cells)[0]


def _complemented(group: Group, zero_cells: str, start: Collection[int] = ()
                  ) -> tuple[set[int], set[int], list[Line], set[int], Margins, dict[int, list[int]]]:
    """Hidden cells, sensitive terms, lines, cells that may not be hidden, the group's virtual
    margins and the lines of each term, after the line pass (from the cells of ``start`` hidden)."""
    hidden: set[int] = set(start)
    sensitive: set[int] = set()
    for m in group.members:
        base = group.offsets[m.name]
        cells = {base + i for i in primary(m, zero_cells)}
        hidden |= cells
        sensitive |= cells
    for j, diff in enumerate(group.differences):
        k = group.threshold(diff.relation)
        people = diff.people if diff.people is not None else diff.records
        if people is None or 0 < people < k or (diff.people is None and (diff.records or 0) > 0):
            sensitive.add(group.cell_count + j)
    margins = Margins(group, group.cell_count + len(group.differences))
    sensitive |= margins.sensitive()
    lines = group.own_lines() + group.relation_lines + margins.lines
    frozen = {group.offsets[m.name] + i for m in group.members if m.k <= 0 for i in range(len(m.keys))}
    for m in group.members:
        base = group.offsets[m.name]
        hidden |= {base + i for i in m.kept_hidden}
        frozen |= {base + i for i in m.kept_shown} - hidden
        hidden -= {base + i for i in m.given_away}
        frozen |= {base + i for i in m.given_away}
    index = _lines_by_term(lines)
    _complete(group, lines, hidden, sensitive, frozen, margins, index)
    apart = people_apart(group)
    while True:
        shown = [cells for cells in apart if not hidden.intersection(cells)]
        if not shown:
            break
        # the finer cell that may still be hidden; else the finer one even though shown before
        # (cells that kept their shown state): the two counts may not both be shown now
        chosen = {next((c for c in cells if c not in frozen), cells[0]) for cells in shown}
        hidden |= chosen
        frozen -= chosen
        _complete(group, lines, hidden, sensitive, frozen, margins, index)
    return hidden, sensitive, lines, frozen, margins, index


def people_apart(group: Group) -> list[tuple[int, ...]]:
    """Published cells whose people counts, subtracted, count 1 to k-1 people: people are not
    additive, so lines of records do not see it. For a cell F whose rows all lie in a cell C of
    another table (from the atoms), C less F counts the people of C with no row in F (all classes
    less the ambulatory ones: the people seen only in emergencies); for a cell C whose rows lie in
    exactly two cells A and B of another table, or in one cell of each of two other tables, A plus
    B less C counts the people in both. Each is given as its cell ids, the finer first: one of them
    must be hidden."""
    cells = group.atom_cells
    if cells is None or not len(cells):
        return []
    members = group.members
    runs = [_grouped_by(cells, a) for a in range(len(members))]
    people = [np.array(m.people) if m.people is not None else None for m in members]
    inside = {(a, b): _inside(cells, runs[a], b, len(members[a].keys))
              for a in range(len(members)) for b in range(len(members))
              if a != b and people[a] is not None and people[b] is not None and len(members[a].keys)
              and max(members[a].k, members[b].k) > 0}
    found: list[tuple[int, ...]] = []
    for (a, b), outer_of in inside.items():
        inner, outer = members[a], members[b]
        inner_people, outer_people = people[a], people[b]
        assert inner_people is not None and outer_people is not None
        k = max(inner.k, outer.k)
        inner_base, outer_base = group.offsets[inner.name], group.offsets[outer.name]
        inner_cells = np.flatnonzero(outer_of >= 0)
        outer_cells = outer_of[inner_cells]
        apart = outer_people[outer_cells] - inner_people[inner_cells]
        small = (apart > 0) & (apart < k)
        found.extend(zip((inner_cells[small] + inner_base).tolist(), (outer_cells[small] + outer_base).tolist(),
                         strict=True))
        owner_order, owner_starts, owner_sizes, owners = runs[b]
        if not len(owners):
            continue
        column = cells[owner_order, a]
        lowest, highest = np.minimum.reduceat(column, owner_starts), np.maximum.reduceat(column, owner_starts)
        ends = np.repeat(lowest, owner_sizes), np.repeat(highest, owner_sizes)
        at_ends = np.add.reduceat(((column == ends[0]) | (column == ends[1])).astype(np.int64), owner_starts)
        two = (lowest >= 0) & (lowest != highest) & (at_ends == owner_sizes)
        two &= (outer_of[np.maximum(lowest, 0)] == owners) & (outer_of[np.maximum(highest, 0)] == owners)
        for c, left, right in zip(owners[two].tolist(), lowest[two].tolist(), highest[two].tolist(), strict=True):
            both = int(inner_people[left] + inner_people[right] - outer_people[c])
            if 0 < both < k:
                found.append((inner_base + left, inner_base + right, outer_base + c))
    found.extend(_parts_in_two_tables(group, runs, people, inside))
    return found


_Runs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""A member's atoms sorted by its cell: their order, where each cell's run starts, its length, the cell."""


def _inside(cells: np.ndarray, runs: _Runs, outer: int, size: int) -> np.ndarray:
    """For each cell of a member (``runs``, ``size`` cells), the cell of member ``outer`` holding
    all of its rows, or -1 (its rows lie in several, or in none)."""
    order, starts, _sizes, own = runs
    found = np.full(size, -1, dtype=np.int64)
    if len(own):
        column = cells[order, outer]
        lowest, highest = np.minimum.reduceat(column, starts), np.maximum.reduceat(column, starts)
        nested = (lowest == highest) & (lowest >= 0)
        found[own[nested]] = lowest[nested]
    return found


def _parts_in_two_tables(group: Group, runs: list[_Runs], people: list[np.ndarray | None],
                         inside: dict[tuple[int, int], np.ndarray]) -> list[tuple[int, ...]]:
    """Cells C with one cell A of a table and one cell B of another inside them that together hold
    all of C's rows (everyone's, the ambulatory and the emergency patients as three tables): A + B
    - C counts the people in both."""
    cells = group.atom_cells
    assert cells is not None
    found: list[tuple[int, ...]] = []
    members = group.members
    for b, outer in enumerate(members):
        order, starts, _sizes, owners = runs[b]
        outer_people = people[b]
        if outer_people is None or not len(owners):
            continue
        single: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for x in range(len(members)):
            outer_of = inside.get((x, b))
            if outer_of is None:
                continue
            column = cells[order, x]
            present = column >= 0
            highest = np.maximum.reduceat(column, starts)
            lowest = np.minimum.reduceat(np.where(present, column, np.iinfo(np.int64).max), starts)
            one = (highest >= 0) & (lowest == highest)
            one &= outer_of[np.maximum(highest, 0)] == owners
            if one.any():
                single[x] = (one, highest, present)
        for x, y in ((x, y) for x in single for y in single if x < y):
            one_x, part_x, covered_x = single[x]
            one_y, part_y, covered_y = single[y]
            people_x, people_y = people[x], people[y]
            assert people_x is not None and people_y is not None
            both_one = one_x & one_y
            if not both_one.any():
                continue
            whole = np.minimum.reduceat((covered_x | covered_y).astype(np.int64), starts) == 1
            k = max(members[x].k, members[y].k, outer.k)
            for c in np.flatnonzero(both_one & whole).tolist():
                left, right, owner = int(part_x[c]), int(part_y[c]), int(owners[c])
                both = int(people_x[left] + people_y[right] - outer_people[owner])
                if 0 < both < k:
                    found.append((group.offsets[members[x].name] + left, group.offsets[members[y].name] + right,
                                  group.offsets[outer.name] + owner))
    return found


def _grouped_by(cells: np.ndarray, member: int) -> _Runs:
    """The atoms a member selects, sorted by its cell: their order, where each cell's run starts,
    its length, and the cell."""
    selected = np.flatnonzero(cells[:, member] >= 0)
    order = selected[np.argsort(cells[selected, member], kind="stable")]
    ids = cells[order, member]
    if not len(ids):
        empty = np.empty(0, dtype=np.int64)
        return order, empty, empty, empty
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    sizes = np.diff(np.r_[starts, len(ids)])
    return order, starts, sizes, ids[starts]


def decide(group: Group, zero_cells: str = DEFAULT_ZERO_RULE, *, passed: Collection[str] = (),
           audited: set[str] | None = None, memo: dict | None = None,
           start: Collection[int] = ()) -> dict[str, set[int]]:
    """Hidden rows of each member: primary cells, then complements until every line holds and
    the audit finds no cell narrowed below its threshold. ``passed``: fingerprints of parts of
    the audit known to pass (an earlier decision's, :func:`audited_parts`), not solved again;
    ``audited`` receives those of the decision's own final audit (its large parts only).
    ``memo``: the audit's models (see :func:`audit`), shared by decisions over the same group
    (a build deciding again with more cells held keeps the points its solves found). ``start``:
    cells hidden from the first (a decision taken before over the same group, which a new one
    only adds to)."""
    hidden, sensitive, lines, frozen, margins, index = _complemented(group, zero_cells, start)
    memo = {} if memo is None else memo
    memo[PASSED] = frozenset(passed)
    for _round in range(MAX_AUDIT_ROUNDS):
        findings = audit(group, hidden, memo=memo)
        if not findings:
            break
        before = set(hidden)
        added: set[int] = set()
        dead: set[int] = set()
        for finding in findings:
            if added.intersection(finding.binding):
                continue
            cell = _widen(group, finding.cell, hidden, frozen, dead, finding.binding)
            if cell is not None:
                added.add(cell)
        if not added:
            raise _refusal(group, findings, sensitive)
        _complete(group, lines, hidden, sensitive, frozen, margins, index, before)
    else:  # pragma: no cover - each round hides at least one more cell, so this needs a huge group
        raise _refusal(group, audit(group, hidden, memo=memo), sensitive)
    if audited is not None:
        for rows in memo.values():
            if isinstance(rows, _AtomRows):
                audited |= rows.cleared
    out: dict[str, set[int]] = {m.name: set() for m in group.members}
    for cell in hidden:
        member, i = group.owner[cell]
        out[member.name].add(i)
    return out


def _lines_by_term(lines: list[Line]) -> dict[int, list[int]]:
    """The lines (by index) each term is in."""
    by_term: dict[int, list[int]] = defaultdict(list)
    for n, line in enumerate(lines):
        for term, _sign in line.terms:
            by_term[term].append(n)
    return by_term


def _complete(group: Group, lines: list[Line], hidden: set[int], sensitive: set[int], frozen: set[int],
              margins: Margins, index: dict[int, list[int]] | None = None, since: set[int] | None = None) -> None:
    """Add complementary cells until no line has a lone concealed term or too few concealed
    records. A term is concealed when it is a hidden cell, a difference, or a virtual margin
    every defining line of which holds another concealed term (see :mod:`.margins`).

    ``since``: the hidden cells when a pass over the same ``lines`` (``index``: their
    :func:`_lines_by_term`) last ended, cells only added since. That pass left every line it
    could complete complete, and a line's state changes only with its terms', so only the lines
    of the cells hidden since, and of the margins they concealed, are looked at (a decision's
    audit rounds each hide a few cells among some 100,000 lines)."""
    first_virtual = margins.first_id
    cell_count = group.cell_count
    virtual_concealed = margins.concealed
    known_records = [group.records(c) for c in range(first_virtual)]

    def concealed(c: int) -> bool:
        if c < cell_count:
            return c in hidden
        return c < first_virtual or virtual_concealed[c - first_virtual]

    def records(c: int) -> int:
        return margins.record_count(c) if c >= first_virtual else known_records[c]

    def hideable(c: int) -> bool:
        return c < group.cell_count and c not in hidden and c not in frozen

    def is_difference(c: int) -> bool:  # Group.is_difference counts virtual terms in too
        return group.cell_count <= c < first_virtual

    popular: Counter[tuple[str, Any]] = Counter()

    def count_in(cell: int) -> None:
        member, i = group.owner[cell]
        popular.update(member.keys[i].items())

    def popularity(line: Line, c: int) -> int:
        if line.axis is None or c >= group.cell_count:
            return 0
        member, i = group.owner[c]
        return popular[(line.axis, member.keys[i][line.axis])]

    for cell in hidden:
        count_in(cell)
    changes = [0] * cell_count
    held: set[int] = set()
    for m in group.members:
        base = group.offsets[m.name]
        held |= {base + i for i in m.held}
        for i, change in enumerate(m.changes or ()):
            changes[base + i] = change
    was_concealed = list(virtual_concealed)
    margins.refresh(concealed)
    by_cell = _lines_by_term(lines) if index is None else index
    if since is None:
        queue = list(range(len(lines)))
    else:
        moved = (hidden - since) | {first_virtual + v for v, now in enumerate(virtual_concealed)
                                    if now != was_concealed[v]}
        queue = sorted({n for term in moved for n in by_cell.get(term, ())})
    heapq.heapify(queue)
    queued = set(queue)

    def touch(term: int) -> None:
        for other in by_cell[term]:
            if other not in queued:
                heapq.heappush(queue, other)
                queued.add(other)

    while queue:
        n = heapq.heappop(queue)
        queued.discard(n)
        line = lines[n]
        hiding = [c for c, _ in line.terms
                  if (c in hidden if c < cell_count else c < first_virtual or virtual_concealed[c - first_virtual])]
        if not hiding:
            continue
        total = sum(known_records[c] if c < first_virtual else margins.record_count(c) for c in hiding)
        lone = len(hiding) == 1 and (not is_difference(hiding[0]) or hiding[0] in sensitive)
        thin = total < line.k and any(c in sensitive for c in hiding)
        if not (lone or thin):
            if held.intersection(hiding) and all(c < cell_count for c in hiding):
                for cell in _sharing_the_change(line, hiding, changes, hideable):
                    hidden.add(cell)
                    count_in(cell)
                    touch(cell)
                    for virtual in margins.changed_after(cell, concealed):
                        touch(virtual)
            continue
        needed = line.k - total if thin else 0
        candidates = [c for c, _ in line.terms if hideable(c) or (c >= first_virtual and not concealed(c))]
        enough = sorted((c for c in candidates if records(c) >= needed),
                        key=lambda c: (-popularity(line, c), records(c), c))
        rest = sorted((c for c in candidates if records(c) < needed), key=lambda c: (-records(c), c))
        for pick in enough + rest:
            cells = [pick] if pick < group.cell_count else margins.plan(pick, concealed, hideable, records)
            if cells is None:
                continue
            for cell in cells:
                hidden.add(cell)
                count_in(cell)
                touch(cell)
                for virtual in margins.changed_after(cell, concealed):
                    touch(virtual)
            break


@dataclass
class Pinned:
    """What :func:`pinned_changes` found: cells to hide, and the revised cells narrowed (those
    nothing left to hide can widen first)."""

    hide: list[tuple[str, int]] = field(default_factory=list)
    narrowed: list[Finding] = field(default_factory=list)

    def widen(self, group: Group, finding: Finding, hidden: set[int], frozen: set[int]) -> None:
        """Choose a cell to hide for ``finding`` (see :func:`_widen`), or put it first among
        those nothing can widen."""
        cell = _widen(group, finding.cell, hidden, frozen, None, finding.binding)
        if cell is None:
            self.narrowed.insert(0, finding)
            return
        member, i = group.owner[cell]
        self.hide.append((member.name, i))
        self.narrowed.append(finding)


def pinned_changes(members: list[Cells], relations: list[Relation], hidden: dict[str, set[int]],
                   before: dict[str, dict[tuple, dict[tuple, Any] | None]],
                   zero_cells: str = DEFAULT_ZERO_RULE, then: Moment | None = None,
                   revisable: bool = True, memo: WideRows | None = None,
                   shapes: TogetherMemo | None = None) -> Pinned:
    """Cells to hide so that no revised cell's change is narrowed below its threshold by an
    earlier version read with this one: the table of changes (each shown count less its value in
    that version, ``before``: by member, each key's published counts, None where it was hidden)
    is audited like a table of cells, its relation lines and differences included and every
    change at least 0 (records only land). Revised: hidden now, shown there, and moved by 1 to
    k-1 since; or new since (no row there) and small (:func:`primary`): its change is its value
    (3 people of a new department in a month whose other cells a reader holds, the month's total
    shown: the hidden complements did not fall, so the 3 are bounded by the total's change). A
    table not published at that moment has unknown changes. A reader holding both versions
    solves it: with
    the month's Emergency visits of a yearly table, unchanged February and March totals pin
    their hidden Emergency cells, so January's Emergency change is known, and General's held 3
    is the total's change less it. For each narrowed change, a published cell that bounded it
    is chosen (as :func:`decide` widens a cell).

    A revised cell is judged in the counts that moved (a count known unchanged tells of no one).
    Where a source revises records (``revisable``: a keyed stream, or a derivative), a cell may
    have lost some since (``then``, the moment of ``before`` with its anchors' values, tells it
    for hidden cells too): a component of lines holding a term known to have fallen in a count
    :func:`pinned_together` models is not judged here in that count, its changes not all being
    at least 0; that model judges it, leaving out only what fell. ``memo`` carries the changes
    proven wide from one round of a build to the next (against the same ``before``); ``shapes``
    the group of the same members and relations, whose lines the table of changes shares."""
    changes = []
    revised: set[tuple[str, int]] = set()
    moved: dict[tuple[str, int], set[tuple]] = defaultdict(set)  # by revised cell: the counts judged
    for m in members:
        old = before.get(m.name)
        counts = {q: v for q, v in m.values.items() if q[0] == "count"}
        delta: dict[tuple, list[Any]] = {q: [] for q in counts}
        concealed = set()
        small = primary(m, zero_cells) if old is not None else set()
        for i, key in enumerate(m.keys):
            earlier = old.get(tuple(key.values()), {}) if old is not None else None
            now_hidden = i in hidden.get(m.name, m.hidden)
            if now_hidden or earlier is None:
                concealed.add(i)
            if now_hidden and earlier == {} and i in small:
                revised.add((m.name, i))
                moved[(m.name, i)].update(counts)
            for q, values in counts.items():
                delta[q].append(None if i in concealed else (values[i] or 0) - ((earlier or {}).get(q) or 0))
                if now_hidden and earlier and values[i] is not None and earlier.get(q) is not None \
                        and 0 < abs(values[i] - earlier[q]) < m.k:
                    revised.add((m.name, i))
                    moved[(m.name, i)].add(q)
        member = Cells(m.name, m.spec, m.k, m.keys, values=delta, types=m.types)
        member.hidden = concealed
        changes.append(member)
    if not revised:  # only revised cells are judged: a moment whose changes since are all k or more has none
        return Pinned()
    group = shapes.group_over(members, relations).rebound(changes) if shapes is not None else Group(changes, relations)
    judged = {(group.offsets[name] + i, _label(q)) for (name, i), quantities in moved.items() for q in quantities}
    known = {q: _known_values(group, members, [then or Moment(before)], q)
             for q in sorted({q for c in changes for q in c.values}, key=str)}
    if revisable:
        component = _line_components(group)
        for q in _modelled_together(members):
            fell = {component[term] for term, values in known[q].items() if _falls(values, [0, 1])}
            judged = {(cell, label) for cell, label in judged if label != _label(q) or component[cell] not in fell}
    if not judged:
        return Pinned()
    concealed_ids = _published_hidden(group)
    if memo is not None:
        if any(v is not None and v < 0 for c in changes for values in c.values.values() for v in values):
            memo.forget()  # a change published below 0 (a fall in a count not modelled together): hidden, it
            memo = None    # would be an unknown ≥ 0, and the earlier points no longer the model's
        else:
            memo.start_round((*members, relations, before), (zero_cells, revisable), concealed_ids)
    found = Pinned()
    unmoved = {q: {term for term, (was, now) in values.items()
                   if was is not None and now is not None and abs(now - was) <= EXACT} for q, values in known.items()}
    for finding in audit(group, concealed_ids, judged={cell for cell, _label in judged}, wide=memo, zeros=unmoved):
        if (finding.cell, finding.measure) not in judged or finding.unresolved:  # unresolved: a fall not known
            continue
        found.widen(group, finding, concealed_ids, _frozen(group, members))
    if memo is not None:
        memo.end_round(concealed_ids)
    return found


def _label(quantity: tuple) -> str:
    """How a finding names a quantity (see :func:`_judge`)."""
    return quantity[0] if quantity[1] is None else f"{quantity[0]}({quantity[1][-1]})"


def _modelled_together(members: list[Cells]) -> list[tuple]:
    """The counts :func:`pinned_together` models: those every member publishes."""
    return sorted(set.intersection(*({q for q in m.values if q[0] == "count"} for m in members)), key=str)


def _frozen(group: Group, members: list[Cells]) -> set[int]:
    """Cells an audit across versions may not hide: those that keep their shown state, those
    a refusal showed because hiding them protected nothing, and every cell of a table that
    publishes all of them."""
    return {group.offsets[m.name] + i for m in members for i in m.kept_shown | m.given_away} | \
        {group.offsets[m.name] + i for m in members if m.k <= 0 for i in range(len(m.keys))}


@dataclass
class Moment:
    """An earlier moment a reader may hold the published set at (one decision's versions)."""

    shown: dict[str, dict[tuple, dict[tuple, Any] | None]]
    """By member published then: each key's published counts by quantity, None where hidden (a
    key missing had no row then)."""
    hidden: dict[str, dict[tuple, dict[tuple, Any]]] = field(default_factory=dict)
    """By member: the counts each hidden cell had then, where its anchors recorded them."""
    small: dict[str, set[tuple]] = field(default_factory=dict)
    """By member: the keys hidden then as cells of 1 to k-1 people."""
    approximate: set[str] = field(default_factory=set)
    """Members whose anchors recorded a hidden cell's counts as they were when it was first
    hidden, not at this moment (stored before they held each value)."""


@dataclass
class WideRows:
    """Rows (a term or a sum of terms, by quantity) a round of one build's audit proved at least
    this wide, for the next round to pass over. Sound where the next round's model holds every
    point of the last one: the same rows over unknowns that include every one the last round had
    by its end (cells it hid while judging, too), each of them at least 0 and every published
    value one a point could have had there (a round that hides more turns published values into
    unknowns: each earlier point, with those at the values they had, is a point of the new
    model). A caller whose round breaks that (a published value below 0, a cell shown again, other
    rows) forgets what was proven."""

    wide: dict[tuple, float] = field(default_factory=dict)
    context: tuple = ()
    unknown: frozenset[int] = frozenset()
    skipped: int = 0
    """Rows passed over, in all (for tests and profiles)."""
    _alive: tuple = ()  # the objects named by id in ``context``, kept so no other takes their id

    def start_round(self, objects: tuple, settings: tuple, unknown: set[int], same_rows: bool = True) -> None:
        """Keep what was proven only where this round's model holds the last one's points:
        ``objects`` (members, moments: named by identity) and ``settings`` the same, ``unknown``
        a superset of the last round's, and ``same_rows`` (the caller's rows unchanged)."""
        context = (tuple(map(id, objects)), settings)
        if not (same_rows and context == self.context and unknown >= self.unknown):
            self.forget()
        self.context, self._alive, self.unknown = context, objects, frozenset(unknown)

    def end_round(self, unknown: set[int]) -> None:
        """The unknowns the round's last rows were proven over (it hid more while judging)."""
        self.unknown = frozenset(unknown)

    def forget(self) -> None:
        self.wide.clear()
        self.context, self._alive, self.unknown = (), (), frozenset()

    def proven(self, row: tuple, width: float) -> bool:
        return self.wide.get(row, -math.inf) >= width - EXACT

    def prove(self, row: tuple, low: float, high: float, width: float) -> None:
        if high - low >= width - EXACT:
            self.wide[row] = high - low


@dataclass
class TogetherMemo:
    """What the rounds of one build's :func:`pinned_together` carry from one to the next: each
    component's answer (its rows, bounds and asked rows alike), the relation lines of the same
    members and relations (made from their keys and specs alone), and the asked rows proven
    wide (see :class:`WideRows`; the same runs of moments for every term make the same rows)."""

    components: dict[bytes, dict[int, tuple[float, float]]] = field(default_factory=dict)
    rows: WideRows = field(default_factory=WideRows)
    group: Group | None = None
    group_of: tuple = ()
    runs: dict[int, list[int]] = field(default_factory=dict)
    take_merged_narrow: bool = False
    """A build's rounds: a row the smaller model of every moment leaves narrow is taken as narrow
    the first time, without asking the whole model (see :func:`_bounds_unchanged_first`)."""
    merged_narrow: dict[tuple, set[tuple]] = field(default_factory=dict)
    """By quantity: the asked rows the smaller model has left narrow in this build; asked of the
    whole model when it leaves them narrow again."""

    def taken_narrow(self) -> int:
        """Rows the smaller model has left narrow so far (a build compares it before and after a round)."""
        return sum(map(len, self.merged_narrow.values()))

    def group_over(self, members: list[Cells], relations: list[Relation]) -> Group:
        """The group of these members and relations, made once for the build's rounds."""
        lines_of = (tuple(map(id, members)), id(relations))
        if self.group is None or self.group_of != lines_of:
            self.group, self.group_of = Group(members, relations), lines_of
        return self.group

    def start_round(self, objects: tuple, settings: tuple, hidden: set[int], runs: dict[int, list[int]]) -> None:
        same_rows = all(runs.get(cell) == were for cell, were in self.runs.items())
        self.rows.start_round(objects, settings, hidden, same_rows)
        self.runs = dict(runs)


def pinned_together(members: list[Cells], relations: list[Relation], hidden: dict[str, set[int]],
                    moments: list[Moment], zero_cells: str = DEFAULT_ZERO_RULE, revisable: bool = True,
                    memo: TogetherMemo | None = None) -> Pinned:
    """Cells to hide so that every earlier moment's published cells (``moments``, oldest first)
    read with this version's narrow no small cell, then or now, and no revision by 1 to k-1
    (of either sign), below its threshold: one model of all of them, each cell's value at each
    moment (at least 0 and never less than before: records only land, except where this machine
    knows a term fell where a source revises records, ``revisable``, see :func:`_falls`), every
    relation line holding at every
    moment, each moment's published values fixed (a row absent then is 0; a table absent then
    is free). Judged: each cell small and hidden at a moment (its value then; a cell small now
    at every moment it was hidden; a held cell at the moments it was hidden since it was last
    shown), and each revision by 1 to k-1 hidden at a moment (its change since a moment it was
    shown). Versions read two at a time miss what a third adds: a total
    held at 104 between a 103 and a 116 whose Dermatology grew by 12, shown then, is the 103
    plus at most 1; a cell hidden at 5 and shown at 17 after its line's other cells grew, its 5
    within [0, 7]. ``memo`` keeps each component's answer across the rounds of one build (a
    round hides a few more cells, leaving most components as they were), and the rows proven
    wide (see :class:`TogetherMemo`)."""
    memo = TogetherMemo() if memo is None else memo
    group = memo.group_over(members, relations)
    hidden_ids = {group.offsets[m.name] + i for m in members for i in hidden.get(m.name, m.hidden)}
    terms = group.cell_count + len(group.differences)
    last = len(moments)
    frozen = _frozen(group, members)
    published_then = [m for m in members if any(m.name in t.shown for t in moments)]
    small_now = {group.offsets[m.name] + i for m in published_then for i in primary(m, zero_cells, held=False)} \
        & hidden_ids
    held_now = {group.offsets[m.name] + i for m in published_then for i in m.held} & hidden_ids
    found = Pinned()
    if not moments or not (small_now or held_now or _hidden_then(members, moments)):
        return found
    run_of = _runs(group, hidden_ids, moments)
    memo.start_round((*members, *moments), (zero_cells, revisable), hidden_ids, run_of)
    for quantity in _modelled_together(members):
        rows: list[tuple[dict[int, float], float, float]] = []  # a row, its least and greatest value
        for line in group.relation_lines:
            rel = line.relation
            runs = run_of.get(line.terms[0][0]) if line.terms else None
            if rel is None or runs is None or any(quantity not in group.by_name[n].values for n in rel.tables):
                continue
            for r in range(runs[-1] + 1):
                merged: dict[int, float] = defaultdict(float)
                for cell, sign in line.terms:
                    merged[cell + r * terms] += float(sign)
                rows.append((dict(merged), 0.0, 0.0))
        values_known = _known_values(group, members, moments, quantity)
        known = values_known if revisable else {}
        unknown: list[float | None] = [None] * (last + 1)
        same: dict[int, int] = {}  # a term at a run: the same term at the run before, where its value was the same
        point: dict[int, float] = {}  # each term at each run: its value at the run's last moment, where known
        for c, runs in run_of.items():
            fell = _falls(known.get(c, unknown), runs)
            rows.extend(({c + r * terms: 1.0, c + (r - 1) * terms: -1.0}, 0.0, np.inf)
                        for r in range(1, runs[-1] + 1) if r not in fell)
            seen = values_known.get(c, unknown)
            same.update(_unchanged_across_runs(c, seen, runs, terms))
            point.update((c + runs[t] * terms, value) for t, value in enumerate(seen) if value is not None)
        asked: dict[tuple, tuple[int, str, int, float | None]] = {}  # a row: its cell, what of it, when, its value
        fixed: dict[int, float] = {}  # a published value: one row per run
        for m in members:
            values = m.values[quantity]
            for i, key in enumerate(m.keys):
                cell = group.offsets[m.name] + i
                runs = run_of.get(cell)
                if runs is None:
                    continue

                def at(t: int, cell: int = cell, runs: list[int] = runs) -> int:
                    return cell + runs[t] * terms

                # a held cell is judged by its value while this count moved since last shown: where
                # a source revised records, its people may have moved and its records not (one
                # visit moved out of the month, another in), and a count known unchanged tells of
                # no one; where records only land, a held cell's records always moved
                last_shown_at, last_shown = next(
                    ((t, shown.get(quantity)) for t in reversed(range(len(moments)))
                     if (shown := (moments[t].shown.get(m.name) or {}).get(tuple(key.values())))), (-1, None))
                moved = cell in held_now and values[i] != last_shown
                small = cell in small_now or moved

                shown_at: list[tuple[int, float]] = []  # moments it was shown at, with its value
                for t, moment in enumerate(moments):
                    old = moment.shown.get(m.name)
                    if old is None:
                        continue
                    earlier = old.get(tuple(key.values()), {})
                    if earlier == {}:
                        fixed.setdefault(at(t), 0.0)  # no row then: no record yet
                    elif earlier is not None:
                        if earlier.get(quantity) is not None:
                            fixed.setdefault(at(t), float(earlier[quantity]))
                            shown_at.append((t, float(earlier[quantity])))
                    else:
                        then = moment.hidden.get(m.name, {}).get(tuple(key.values()), {}).get(quantity)
                        exact = None if m.name in moment.approximate else then
                        # what a hold protects is what moved since the cell was last shown: hidden
                        # before that, it was a complement (or small then, as that moment says), and
                        # its value then is the earlier versions' to keep (the fourth daily update at
                        # 1M rows judged a held cell hidden at 29, shown at 32 next, at [24, 32]
                        # from those versions alone: 20 rounds of complements could not widen it)
                        if cell in small_now or (moved and t > last_shown_at) or \
                                tuple(key.values()) in moment.small.get(m.name, set()):
                            asked.setdefault(((at(t), 1.0),), (cell, "then", t, exact))
                        for s, value in shown_at:
                            if then is not None and 0 < abs(then - value) < m.k:
                                asked.setdefault(((at(t), 1.0), (at(s), -1.0)),
                                                 (cell, "change", t, None if exact is None else exact - value))
                if cell not in hidden_ids and values[i] is not None:
                    fixed.setdefault(at(last), float(values[i]))
                    continue
                if small:
                    asked.setdefault(((at(last), 1.0),), (cell, "now", last, values[i]))
                for s, value in shown_at:
                    if values[i] is not None and 0 < abs(values[i] - value) < m.k:
                        asked.setdefault(((at(last), 1.0), (at(s), -1.0)), (cell, "change", last, values[i] - value))
        if not asked:
            continue
        judged = list(asked.values())
        needed = {n: float(group.owner[cell][0].k) for n, (cell, _what, _at, _real) in enumerate(judged)}
        for r, (low, high) in sorted(_bounds_proven(rows, fixed, list(asked), needed, memo, quantity,
                                                     (same, point)).items()):
            cell, what, when, real = judged[r]
            unresolved = math.isnan(low) or math.isnan(high)  # the solver failed: taken as narrow
            if not unresolved and high - low >= needed[r] - EXACT:
                continue
            # nothing there, or nothing came or went: no one to tell about; told by the real value
            # where this machine knows it (a fall it does not know of can leave the model's bound
            # at 0 around a real 3), else by the bound
            nothing = abs(real) <= EXACT if real is not None else \
                not unresolved and (max(abs(low), abs(high)) if what == "change" else high) <= EXACT
            if nothing:
                continue
            finding = Finding(cell, group.describe(cell), f"{_label(quantity)} {what}", low, high, int(needed[r]), [])
            if when < last and cell not in hidden_ids and cell not in frozen:
                member, i = group.owner[cell]  # its value now bounds its value then: hide it now
                hidden_ids.add(cell)
                found.hide.append((member.name, i))
                found.narrowed.append(finding)
            else:
                found.widen(group, finding, hidden_ids, frozen)
    memo.rows.end_round(hidden_ids)
    return found


def _bounds_proven(rows: list[tuple[dict[int, float], float, float]], fixed: dict[int, float],
                   asked: list[tuple[tuple[int, float], ...]], needed: dict[int, float], memo: TogetherMemo,
                   quantity: tuple, known: tuple[dict[int, int], dict[int, float]] | None = None
                   ) -> dict[int, tuple[float, float]]:
    """:func:`_bounds_unchanged_first` for the asked rows an earlier round did not prove wide
    enough; those it did are left out, as the rows the solver's points show wide are. A component
    holding only such rows is not solved: it held a point of the earlier model, so its values
    agree. Where a bound comes back unresolved, every row is solved, as without the memo (the
    values disagree somewhere: no bound is trusted)."""
    known = known or ({}, {})
    taken = memo.merged_narrow.setdefault(quantity, set()) if memo.take_merged_narrow else None
    proven = {n for n in needed if memo.rows.proven((quantity, asked[n]), needed[n])}
    if not proven:
        found = _bounds_unchanged_first(rows, fixed, asked, needed, *known, memo.components, taken)
    else:
        order = [n for n in range(len(asked)) if n not in proven]
        some = _bounds_unchanged_first(rows, fixed, [asked[n] for n in order],
                                       {k: needed[n] for k, n in enumerate(order) if n in needed}, *known,
                                       memo.components, taken)
        if any(math.isnan(low) or math.isnan(high) for low, high in some.values()):
            proven = set()
            found = _bounds_unchanged_first(rows, fixed, asked, needed, *known, memo.components, taken)
        else:
            found = {order[k]: bound for k, bound in some.items()}
            memo.rows.skipped += len(proven)
    for n, width in needed.items():
        if n not in proven:
            memo.rows.prove((quantity, asked[n]), *found.get(n, (0.0, width)), width)  # left out: that wide
    return found


def _unchanged_across_runs(term: int, values: list[float | None], runs: list[int], terms: int) -> dict[int, int]:
    """For each run after the first at whose last moment ``term`` held the value it held at the
    last moment of the run before (both known): its variable, mapped to the run before's."""
    out: dict[int, int] = {}
    last_of = {run: t for t, run in enumerate(runs)}
    for run in range(1, runs[-1] + 1):
        now, before = values[last_of[run]], values[last_of[run - 1]]
        if now is not None and before is not None and abs(now - before) <= EXACT:
            out[term + run * terms] = term + (run - 1) * terms
    return out


def _bounds_unchanged_first(rows: list[tuple[dict[int, float], float, float]], fixed: dict[int, float],
                            asked: list[tuple[tuple[int, float], ...]], needed: dict[int, float],
                            same: dict[int, int], point: dict[int, float],
                            memo: dict[bytes, dict[int, tuple[float, float]]] | None = None,
                            taken: set[tuple] | None = None) -> dict[int, tuple[float, float]]:
    """:func:`_bounds_given`, first over the smaller model in which every variable of ``same``
    is the variable it maps to (a term that held the same value over two runs of moments, as
    this machine knows its values, is one unknown there). That model is the whole one with
    equations added, so each of its points is a point of the whole model and a row it shows wide
    is wide; only the rows it leaves narrow are asked of the whole model, which alone calls a row
    narrow. An update lands in a few months, so most of a changed year's terms kept their values:
    the model of every moment at the benchmark's 1M rows, one update, 10,333 unknowns, mostly
    settled over about 6,000 (see docs/privacy.md, Versions).

    The smaller model is used only where ``point`` (each variable's value as this machine knows
    it) is one of its points: its components without an asked row are not solved (see
    :func:`_bounds_given`), and merging can split off a part whose equations no point holds (a
    fall this machine does not know of; a second reader's case): the asked part's points, shown
    wide there, would then be points of no model at all. Where a value is not known, or breaks a
    row, the whole model answers alone, as it does where the smaller model's values disagree.

    With ``taken`` (a build's rounds, see :attr:`TogetherMemo.take_merged_narrow`) and a whole
    model of :data:`TAKEN_FROM` unknowns or more, a row the smaller model leaves narrow and not
    yet in ``taken`` is answered by the smaller model: taken as narrow, so a cell is hidden
    beside it (more than the whole model may need, never less: its bounds hold the smaller
    model's; not a row it puts at 0, below). It is added to ``taken``, and asked of the whole
    model when the smaller one leaves it narrow again. The fifth daily update at 1M rows asked 49
    rows of the whole model (40,125 unknowns) for 402.6 s of its 826.6 s; taken as narrow, the
    round after hid beside them and left none narrow."""
    if not same:
        return _bounds_given(rows, fixed, asked, needed, memo)

    def first(variable: int) -> int:
        while variable in same:
            variable = same[variable]
        return variable

    def merged(entries: Iterable[tuple[int, float]]) -> dict[int, float]:
        summed: dict[int, float] = defaultdict(float)
        for variable, coefficient in entries:
            summed[first(variable)] += coefficient
        return {v: c for v, c in summed.items() if c != 0.0}

    fixed_once: dict[int, float] = {}
    for variable, value in fixed.items():
        into = first(variable)
        if abs(fixed_once.setdefault(into, value) - value) > EXACT:
            return _bounds_given(rows, fixed, asked, needed, memo)
    kept: dict[tuple, tuple[dict[int, float], float, float]] = {}
    for row, low, high in rows:
        entries = merged(row.items())
        kept.setdefault((tuple(sorted(entries.items())), low, high), (entries, low, high))
    if not _holds_at(kept.values(), fixed_once, point):
        return _bounds_given(rows, fixed, asked, needed, memo)
    smaller = _bounds_given(list(kept.values()), fixed_once, [tuple(merged(entries).items()) for entries in asked],
                            needed, memo)
    if any(math.isnan(low) or math.isnan(high) for low, high in smaller.values()):
        return _bounds_given(rows, fixed, asked, needed, memo)
    narrow = sorted(n for n, (low, high) in smaller.items() if high - low < needed.get(n, math.inf) - EXACT)
    if not narrow:
        return {}
    taken_now: dict[int, tuple[float, float]] = {}
    if taken is not None and len({v for row, _low, _high in rows for v in row} - fixed.keys()) >= TAKEN_FROM:
        # not a row the smaller model puts at 0: a judge not knowing the real value reads "nobody
        # there" from such bounds, which the whole model may not give (a cell of 0 to 3)
        taken_now = {n: smaller[n] for n in narrow if asked[n] not in taken and max(map(abs, smaller[n])) > EXACT}
        taken.update(asked[n] for n in narrow)
        narrow = [n for n in narrow if n not in taken_now]
        if not narrow:
            return taken_now
    # a few rows left narrow are mostly narrow in the whole model too (the fourth daily update at
    # 1M rows: 11 of 23), which spread-out points never show wide: each is solved for; where the
    # merge left many, exploring shows those it alone narrowed wide at once
    found = _bounds_given(rows, fixed, [asked[n] for n in narrow],
                          {k: needed[n] for k, n in enumerate(narrow) if n in needed}, memo,
                          settle_each=len(narrow) <= NEAR_LEFT * len(asked))
    return {**taken_now, **{narrow[k]: bound for k, bound in found.items()}}


def _holds_at(rows: Iterable[tuple[dict[int, float], float, float]], fixed: dict[int, float],
              point: dict[int, float]) -> bool:
    """Whether every row holds with each variable at its ``fixed`` value, else at its value in
    ``point`` (every one at least 0); False where a variable has neither."""
    for row, low, high in rows:
        total = 0.0
        for variable, coefficient in row.items():
            value = fixed.get(variable, point.get(variable))
            if value is None or value < -EXACT:
                return False
            total += coefficient * value
        if not low - EXACT <= total <= high + EXACT:
            return False
    return True


def _bounds_given(rows: list[tuple[dict[int, float], float, float]], fixed: dict[int, float],
                  asked: list[tuple[tuple[int, float], ...]], needed: dict[int, float],
                  memo: dict[bytes, dict[int, tuple[float, float]]] | None = None,
                  settle_each: bool = False) -> dict[int, tuple[float, float]]:
    """The bounds of each asked row (by its index) that may be narrower than ``needed``, over
    variables ≥ 0 bound by ``rows`` (each with its least and greatest value), the variables of
    ``fixed`` at their values. Each published value is put into the rows it is in (a row left
    with none free only checks that the values agree), so the solver works on the unknowns
    alone: a year's changed cells over two runs are 200,000 variables of which a few thousand
    are unknown. Each component (rows joined by the unknowns they share) is a model of its own,
    solved beside the others, and one without an asked row is not solved: every year's cells
    change where a source revises records, and one model of them all made each row's solve pay
    for every year. A component answered before (``memo``: its rows, bounds and asked rows
    alike) is not solved again. Where the values disagree (a fall this machine did not know of)
    in a component solved, or in a row with no unknown left, every asked row is unresolved: the
    model's "never less than before" is then not to be trusted elsewhere either (a component
    without an asked row is not solved, so its disagreement is not seen; it judges no cell).
    ``settle_each``: the rows asked are expected narrow, each is solved for (see
    :attr:`.bounds.BoundModel.settle_each`)."""
    number: dict[int, int] = {}
    kept: list[dict[int, float]] = []
    lows: list[float] = []
    highs: list[float] = []

    def split(entries: Iterable[tuple[int, float]]) -> tuple[dict[int, float], float]:
        free: dict[int, float] = {}
        constant = 0.0
        for variable, coefficient in entries:
            if variable in fixed:
                constant += coefficient * fixed[variable]
            else:
                free[number.setdefault(variable, len(number))] = coefficient
        return free, constant

    for row, low, high in rows:
        free, constant = split(row.items())
        if free:
            kept.append(free)
            lows.append(low - constant)
            highs.append(high - constant)
        elif not low - EXACT <= constant <= high + EXACT:
            return {n: (math.nan, math.nan) for n in needed}
    out: dict[int, tuple[float, float]] = {}
    offsets: dict[int, list[tuple[int, float]]] = defaultdict(list)  # a kept row asked: each asked row it is
    asked_as: dict[tuple, int] = {}  # an asked row's unknowns: its kept row
    for n, entries in enumerate(asked):
        free, constant = split(entries)
        if not free:  # published at both ends: known
            if n in needed:
                out[n] = (constant, constant)
            continue
        # asked rows over the same unknowns differ by a constant (a cell small at every moment
        # of a run, merged by the smaller model of every moment: 14,585 rows asked at the fourth
        # daily update at 1M rows were 8,493): one row of the model answers for all of them
        same = asked_as.setdefault(tuple(sorted(free.items())), len(kept))
        offsets[same].append((n, constant))
        if same == len(kept):
            kept.append(free)
            lows.append(-np.inf)
            highs.append(np.inf)
    if not offsets:
        return out
    memo = {} if memo is None else memo
    work: list[tuple[BoundModel, dict[int, float], dict[int, float]]] = []
    asked_in: list[tuple[bytes, list[tuple[int, int]]]] = []  # per component: its key, (local row, kept row) asked
    solving: dict[bytes, int] = {}  # a component to solve: its place in work
    entry_rows = np.array([r for r, row in enumerate(kept) for _ in row], dtype=np.int64)
    entry_vars = np.array([v for row in kept for v in row], dtype=np.int64)
    entry_coefs = np.array([c for row in kept for c in row.values()], dtype=np.float64)
    low_of, high_of = np.array(lows), np.array(highs)
    for component in _components(len(number), len(kept), entry_rows, entry_vars):
        here = [(local, r) for local, r in enumerate(component.tolist()) if r in offsets]
        if not here:  # no asked row: its published values tell nothing of the others
            continue
        model = _Part(entry_rows, entry_vars, entry_coefs, component, True, None).model
        wanted = {local: max(needed[n] for n, _constant in offsets[r] if n in needed)
                  for local, r in here if any(n in needed for n, _constant in offsets[r])}
        key = hashlib.blake2b(b"".join(np.ascontiguousarray(a).tobytes() for a in (
            np.array([len(component), len(model.entry_rows), len(wanted)]), model.entry_rows, model.entry_atoms,
            model.entry_coefs, low_of[component], high_of[component],
            np.array(sorted(wanted.items()), dtype=np.float64)))).digest()
        if key not in memo and key not in solving:  # two components alike are solved once
            model.bound(low_of[component], high_of[component])
            model.settle_each = settle_each
            solving[key] = len(work)
            work.append((model, wanted, {}))
        asked_in.append((key, here))
    solved = _solve_all(work)
    memo.update((key, solved[n]) for key, n in solving.items())
    if any(math.isnan(low) for key, _here in asked_in for low, _high in memo[key].values()):
        return {n: (math.nan, math.nan) for n in needed}  # a fall not known somewhere: trust no bound
    for key, here in asked_in:
        kept_row = dict(here)
        for local, (low, high) in memo[key].items():
            out.update((n, (low + constant, high + constant)) for n, constant in offsets[kept_row[local]])
    return out


def _runs(group: Group, hidden_ids: set[int], moments: list[Moment]) -> dict[int, list[int]]:
    """For each term of a component (terms joined by relation lines) whose published cells were
    not the same at every moment: the run each moment (and now, last) falls in, a run being
    moments in a row publishing the same there. A component published the same throughout holds
    nothing the decision's own audit did not see; one moment in a run of the same tells what the
    others do (any value of it is theirs too, records only landing), so the model grows with the
    changes, not with the builds."""
    root = _line_components(group)
    states: dict[int, list[Any]] = {}
    for m in group.members:
        counts = [q for q in m.values if q[0] == "count"]
        for i, key in enumerate(m.keys):
            cell = group.offsets[m.name] + i
            values = tuple(key.values())
            state: list[Any] = []
            for moment in moments:
                old = moment.shown.get(m.name)
                earlier = old.get(values, "absent") if old is not None else "free"
                state.append(tuple(earlier.get(q) for q in counts) if isinstance(earlier, dict) else earlier)
            state.append(None if cell in hidden_ids else tuple(m.values[q][i] for q in counts))
            states[cell] = state
    components: dict[int, list[int]] = defaultdict(list)
    for c, first in enumerate(root):
        components[first].append(c)
    out: dict[int, list[int]] = {}
    for cells in components.values():
        runs = [0]
        for t in range(1, len(moments) + 1):
            same = all(states[c][t] == states[c][t - 1] for c in cells if c in states)
            runs.append(runs[-1] if same else runs[-1] + 1)
        if runs[-1]:
            out.update((c, runs) for c in cells)
    return out


def _line_components(group: Group) -> list[int]:
    """Each term's component (terms joined by relation lines), named by one of its terms."""
    parent = list(range(group.cell_count + len(group.differences)))

    def root(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for line in group.relation_lines:
        if line.relation is not None:
            first = root(line.terms[0][0])
            for c, _sign in line.terms[1:]:
                parent[root(c)] = first
    return [root(c) for c in range(len(parent))]


def _known_values(group: Group, members: list[Cells], moments: list[Moment], quantity: tuple
                  ) -> dict[int, list[float | None]]:
    """Each term's value at each moment and now (last), where this machine knows it: a count
    published then, a hidden cell's count as that version's anchors recorded it, 0 for a row
    absent from a table published then, every cell's count now, and a difference as its line
    solved for it where the line's other terms are known. None where not known (a table not
    published then, a hidden cell whose anchors were not read)."""
    out: dict[int, list[float | None]] = {}
    for m in members:
        now = m.values.get(quantity)
        if now is None:
            continue
        base = group.offsets[m.name]
        for i, key in enumerate(m.keys):
            values = tuple(key.values())
            seen: list[float | None] = []
            for moment in moments:
                old = moment.shown.get(m.name)
                earlier = old.get(values, {}) if old is not None else None
                if old is None:
                    value = None
                elif earlier == {}:
                    value = 0
                elif earlier is not None:
                    value = earlier.get(quantity)
                elif m.name not in moment.approximate:
                    value = moment.hidden.get(m.name, {}).get(values, {}).get(quantity)
                else:
                    value = None
                seen.append(None if value is None else float(value))
            seen.append(None if now[i] is None else float(now[i]))
            out[base + i] = seen
    unknown: list[float | None] = [None] * (len(moments) + 1)
    for d, line in group.line_of_difference.items():
        sign = next(s for c, s in line.terms if c == d)
        others = [(out.get(c, unknown), s) for c, s in line.terms if c != d]
        solved: list[float | None] = []
        for t in range(len(moments) + 1):
            known = [(v[t], s) for v, s in others]
            solved.append(None if any(v is None for v, _s in known)
                          else -sum(s * (v or 0.0) for v, s in known) / sign)
        out[d] = solved
    return out


def _falls(values: list[float | None], runs: list[int]) -> set[int]:
    """The runs (by index, each from the run before it) over which a term is known to have
    fallen: records do not only land where a source revises them (an encounter moved to another
    department), and a model holding every value at least the one before would then leave out
    the real values, bounding the cell the record left to no change at all. Where the values in
    between are not known, every run the fall spans."""
    out: set[int] = set()
    known = [(t, value) for t, value in enumerate(values) if value is not None]
    for n, (late, value) in enumerate(known):
        first = next((t for t, before in known[:n] if before > value + EXACT), None)
        if first is not None:
            out.update(range(runs[first] + 1, runs[late] + 1))
    return out


def _hidden_then(members: list[Cells], moments: list[Moment]) -> bool:
    """Whether a moment hid a small cell, or one revised by 1 to k-1, of these members."""
    names = {m.name for m in members}
    return any(moment.small.get(n) or moment.hidden.get(n) for moment in moments for n in names)


def _sharing_the_change(line: Line, hiding: list[int], changes: list[int], hideable: Any) -> list[int]:
    """Cells to hide beside a held cell until the line's hidden cells moved by k or more in all
    since last shown: the line read in both versions gives the change its hidden cells share
    (General +3 held, Emergency +11 shown, the month's total +14 shown, Cardiology and
    Dermatology hidden and unchanged: the 3 is General's, whatever they hold). Largest changes
    first; none where no other cell changed (the documented limit of a total assumed known)."""
    shared = sum(changes[c] for c in hiding)
    chosen: list[int] = []
    for cell in sorted((c for c, _ in line.terms if hideable(c) and changes[c] > 0), key=lambda c: (-changes[c], c)):
        if shared >= line.k:
            break
        chosen.append(cell)
        shared += changes[cell]
    return chosen


def _widen(group: Group, cell: int, hidden: set[int], frozen: set[int], dead: set[int] | None = None,
           binding: Iterable[int] = ()) -> int | None:
    """Hide, and return, the finest of the published cells that held ``cell``'s bounds (``binding``, when
    the solver named them: the one of fewest atoms, the largest among those); else the largest
    visible cell of the nearest relation line around it. A fine cell is a term of few lines, so
    hiding it rarely leaves another cell alone in one; a coarse total (a department's year) is the
    sum of a line in every finer table, and hiding it set off a cascade of hidden totals, each
    narrow in turn (at 5M rows the findings grew each round instead of falling).

    ``dead`` collects the terms whose search found nothing to hide: every term reached from
    ``cell`` through hidden terms reaches the same ones back, so it would search them all again
    for nothing (where nearly every cell is hidden, each search walks the whole group). Hiding
    another cell does not revive them: a visible cell sharing a line with one of them would have
    been found."""
    held = [c for c in binding if c < group.cell_count and c not in hidden and c not in frozen]
    if held:
        return _hide(hidden, max(held, key=lambda c: (-len(group.atoms_of.get(c, ())), group.records(c), -c)))
    if dead is not None and cell in dead:
        return None
    by_cell = group.relation_lines_of
    seen = {cell}
    frontier = [cell]
    while frontier:
        candidates: list[int] = []
        following: list[int] = []
        for c in frontier:
            for line in by_cell[c]:
                for other, _sign in line.terms:
                    if other in seen:
                        continue
                    seen.add(other)
                    if other in hidden or group.is_difference(other):
                        following.append(other)
                    elif other not in frozen:
                        candidates.append(other)
        if candidates:
            return _hide(hidden, max(candidates, key=lambda c: (group.records(c), -c)))
        frontier = following
    found = _widen_by_atoms(group, cell, hidden, frozen)
    if found is None and dead is not None:
        dead |= seen
    return found


def _hide(hidden: set[int], cell: int) -> int:
    hidden.add(cell)
    return cell


def _widen_by_atoms(group: Group, cell: int, hidden: set[int], frozen: set[int]) -> int | None:
    """Hide the largest visible cell sharing rows with ``cell`` (for a difference: with its line's
    cells): the audit over atoms may find a cell narrow through tables no relation line joins."""
    if group.atoms is None:
        return None
    line = group.line_of_difference.get(cell)
    around = ([c for c, _ in line.terms] if line is not None else []) if group.is_difference(cell) else [cell]
    candidates = set()
    for c in around:
        for a in group.atoms_of.get(c, ()):
            for j, i in enumerate(group.atoms[a]):
                other = group.offsets[group.members[j].name] + i
                if i >= 0 and other not in hidden and other not in frozen:
                    candidates.add(other)
    if not candidates:
        return None
    return _hide(hidden, max(candidates, key=lambda c: (group.records(c), -c)))


def release(members: list[Cells], refused: Undecided, zero_cells: str = DEFAULT_ZERO_RULE) -> bool:
    """Let go of what a refusal shows hiding cannot protect, so the set is decided again:
    the held cells it names (a held cell another table gives away protects nothing hidden; it
    is decided anew, and the build counts its revision), else, where every cell it names was
    hidden only as a complement (no small, held or kept-hidden count), those cells, which are
    then shown (a held cell released and hidden again as a complement of another held cell in
    its table's own line, both quarters' Emergency visits, its count given by months and the
    other class unchanged and shown). Whether any was."""
    named = set(refused.cells)
    by_name = {m.name: m for m in members}
    held = [(m, {i for i in m.held if (m.name, i) in named}) for m in members]
    if any(rows for _m, rows in held):
        for m, rows in held:
            m.held -= rows
            for i in rows:  # its change is shown there: hiding it shares none
                if m.changes is not None:
                    m.changes[i] = 0
        return True
    if not named or any(name not in by_name or i in primary(by_name[name], zero_cells) or i in by_name[name].kept_hidden
                        or i in by_name[name].given_away for name, i in named):
        return False  # a cell shown so and hidden again (its people apart from another's) stays refused
    for name, i in named:
        by_name[name].given_away.add(i)
    return True


class Undecided(LithotseError):
    """The group's cells could not be decided: a hidden cell stays narrower than its threshold
    whatever else is hidden. ``cells``: the members' rows the findings name."""

    def __init__(self, message: str, cells: list[tuple[str, int]]) -> None:
        super().__init__(message)
        self.cells = cells


def _refusal(group: Group, findings: list[Finding], sensitive: Collection[int] = ()) -> Undecided:
    """The refusal naming the first finding about a small cell (a complement found exactly is
    a consequence; pass 47: a quarter of every cell showed April's Emergency 5, and the refusal
    named April's Cardiology 30), else the first."""
    first = next((f for f in findings if f.cell in sensitive), findings[0])
    via = sorted(set(first.via) - {first.cell_info.get("derivative")}) or first.via
    where = ", ".join(f"{k}={v}" for k, v in first.cell_info.items() if k != "derivative")
    owner = first.cell_info.get("derivative") or " − ".join(first.cell_info.get("difference", []))
    frozen = [m.name for m in group.members if m.k <= 0 and m.name in first.via]
    reason = (f"; {', '.join(frozen)} publish(es) every cell (suppress_below 0)" if frozen else "")
    bounds = (f"{first.measure} could not be bounded (the published numbers disagree, or the solver failed)"
              if first.unresolved
              else f"{first.measure} between {first.lower + 0:g} and {first.upper + 0:g}")
    # the pair is the table that may hide nothing and the one whose cell it gives away; the
    # other tables only lent their totals to the bound (naming one of them first misled)
    pair = [*frozen, *([owner] if owner and owner not in frozen else [])] if frozen else via
    lent = [name for name in via if name not in pair]
    totals = f", with the totals of {', '.join(lent)}" if lent else ""
    kept = [m.name for m in group.members if m.kept_shown or m.kept_hidden or m.held]
    remedy = ("raise suppress_below or remove one of them" if not kept else
              f"cells of {', '.join(kept)} keep the state their previous version published them in (a reader "
              "holds both), so none of them may complement it; the published versions stay as they are "
              "(this derivative is not updated while the cell stays below the threshold); removing the "
              "derivative and building it again would let readers' copies of its versions be differenced "
              "with the new one")
    named = [(group.owner[f.cell][0].name, group.owner[f.cell][1]) for f in findings if f.cell < group.cell_count]
    return Undecided(f"publishing {' and '.join(pair)} would make a hidden cell of {owner} "
                     f"({where}) recoverable: {bounds}{totals}{reason}; {remedy}", named)


# --- auditing -------------------------------------------------------------------------------

@dataclass
class Finding:
    """A hidden cell (or an unpublished difference) a reader narrows below the threshold."""

    cell: int
    cell_info: dict
    measure: str
    lower: float
    upper: float
    threshold: int
    via: list[str]
    binding: list[int] = field(default_factory=list)
    """Published cells whose values held the bounds there, when the solver said (see
    :attr:`.bounds.BoundModel.binding`): where :func:`decide` looks first for a complement."""

    @property
    def exact(self) -> bool:
        return self.upper - self.lower <= EXACT

    @property
    def unresolved(self) -> bool:
        """The solver gave no bounds (failure or time-out); taken as narrow."""
        return math.isnan(self.lower) or math.isnan(self.upper)

    def to_json(self) -> dict:
        lower, upper = (None, None) if self.unresolved else (self.lower, self.upper)
        return {"cell": self.cell_info, "measure": self.measure, "lower": lower, "upper": upper,
                "exact": self.exact, "threshold": self.threshold, "via": self.via}


def audit(group: Group, hidden: set[int] | None = None, *, memo: dict | None = None,
          judged: set[int] | None = None, wide: WideRows | None = None,
          zeros: dict[tuple, set[int]] | None = None) -> list[Finding]:
    """Bounds on every hidden cell and unpublished difference from the published values of the
    group's relation lines, for each additive quantity (``count``, ``sum``) two related members
    both publish. Reported: a hidden count narrowed to less than its threshold, a hidden sum
    determined exactly, a difference pinned inside 1..k-1, and any term the solver could not
    bound (failure or time-out: taken as narrow). ``hidden`` defaults to the members' published
    flags; the values of hidden cells are never read, even when a build has them. ``memo``
    carries the bounds of components already audited from one call to the next: a component's
    bounds depend on its equations only, so when a round hides more cells, only the components
    those cells touch are solved again. ``judged``: only these terms are reported; over relation
    lines only these are bounded (each with the whole of its component's model), over atoms (a
    group of one table is its own atoms) every term is, as without it. ``wide``: counts an
    earlier round proved wide over relation lines are not bounded again (the caller keeps it
    only where that holds, see :class:`WideRows`). ``zeros``: by quantity, terms the caller
    knows to be 0, tried there first over relation lines (see :func:`_bounds_of_lines`); they
    change how quickly bounds are found, not the bounds."""
    hidden = _published_hidden(group) if hidden is None else hidden
    findings: list[Finding] = []
    quantities = sorted({q for m in group.members for q in m.values}, key=str)
    for quantity in quantities:
        if group.atoms is None:
            findings.extend(_audit_relations(group, hidden, quantity, memo if memo is not None else {}, judged,
                                             wide, (zeros or {}).get(quantity, set())))
        else:
            findings.extend(f for f in _audit_atoms(group, hidden, quantity, memo if memo is not None else {})
                            if judged is None or f.cell in judged)
    findings.sort(key=lambda f: f.cell)
    return findings


def _published_hidden(group: Group) -> set[int]:
    return {group.offsets[m.name] + i for m in group.members for i in m.hidden}


Rows = list[tuple[list[tuple[int, float]], float]]


def _audit_atoms(group: Group, hidden: set[int], quantity: tuple, memo: dict) -> list[Finding]:
    """Bounds over the finest common structure of the group: one unknown per atom (see
    :meth:`Group._index_atoms`), ≥ 0 for counts; every published cell of a member publishing
    ``quantity`` is the sum of its atoms, an equation when it is visible, a judged term when it is
    hidden; an unpublished difference (or remainder) is its relation line solved for it, over atoms.

    A reader who knows every published number and every absent cell can deduce no more than
    this model over *every* combination of the members' cells; it is stronger than the relation
    lines between pairs of tables, whose differences are unknowns of their own although they are
    sums of the same rows. Only the atoms present in the input are unknowns here: a reader cannot
    tell which other combinations are empty, so this fixes more of them at zero than a reader
    could, and every bound is as narrow as a reader's or narrower. What it passes, a reader cannot
    narrow; it may report a cell a reader could not narrow (more suppression, never less).

    The model is kept in ``memo`` from one round of :func:`decide` to the next: a round only
    hides more cells, which frees their rows (see :mod:`.bounds`)."""
    key = ("atoms", quantity)
    if key not in memo:
        memo[key] = _AtomRows(group, quantity)
    return memo[key].findings(hidden, memo.get(PASSED, frozenset()))


PASSED = "passed"
"""The key of :func:`audit`'s memo holding the fingerprints of parts known to pass."""
FINGERPRINTED_FROM = IPM_FROM
"""Parts with more atoms than this are fingerprinted and passed by an earlier audit's pass:
smaller ones solve in about the time their fingerprint takes, and would only fill the anchors."""
AUDIT_MODEL = b"atoms-1"
"""Names the audit's model in each part's fingerprint: a change to what a part's audit judges
must change it, so that no part passes by an older audit's fingerprint."""


class _AtomRows:
    """One quantity's rows over the group's atoms: each published cell of a member publishing it,
    and each judged difference; split in components, each a :class:`.bounds.BoundModel`."""

    def __init__(self, group: Group, quantity: tuple) -> None:
        self.group = group
        self.quantity = quantity
        self.is_count = quantity[0] == "count"
        publishing = [j for j, m in enumerate(group.members) if quantity in m.values]
        assert group.atom_cells is not None, "audited over atoms only where the group has them"
        # the atoms as the publishing members tell them apart, numbered as first met
        matrix = group.atom_cells[:, publishing]
        selected = np.flatnonzero((matrix >= 0).any(axis=1))
        unique, first, inverse = np.unique(matrix[selected], axis=0, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        number = np.empty(len(order), dtype=np.int64)
        number[order] = np.arange(len(order))
        projected = unique[order]
        counted = group.atom_records if quantity == ("count", None) else None
        records = (np.bincount(number[inverse.reshape(-1)], weights=np.asarray(counted, dtype=np.float64)[selected],
                               minlength=len(order)) if counted is not None else np.zeros(len(order)))
        # each published cell's atoms: a row per cell that has any, in cell order
        offsets = np.array([group.offsets[group.members[j].name] for j in publishing], dtype=np.int64)
        present = projected >= 0
        atom_ids, _columns = np.nonzero(present)
        cell_ids = (projected + offsets)[present]
        by_cell = np.lexsort((atom_ids, cell_ids))
        cell_ids, atom_ids = cell_ids[by_cell], atom_ids[by_cell]
        cells_with_atoms, row_of_entry = np.unique(cell_ids, return_inverse=True)
        starts = np.searchsorted(cell_ids, cells_with_atoms).tolist() + [len(cell_ids)]
        atoms_of = {cell: (starts[n], starts[n + 1]) for n, cell in enumerate(cells_with_atoms.tolist())}
        self.term_of_row: list[int] = cells_with_atoms.tolist()
        self.value_of_row: list[float | None] = []
        self.line_of_row: dict[int, list[tuple[int, int]]] = {}
        """A difference's row: the other terms of its line, whose published values give it
        outright while every one is visible."""
        self.empty: list[int] = []
        for j in publishing:
            m = group.members[j]
            base = group.offsets[m.name]
            values = m.values[quantity]
            self.empty.extend(base + i for i in range(len(m.keys)) if base + i not in atoms_of)
            self.value_of_row.extend(float(values[i] or 0) for i in range(len(m.keys)) if base + i in atoms_of)
        entry_rows, entry_atoms, entry_coefs = [row_of_entry], [atom_ids], [np.ones(len(atom_ids))]
        publishers = {group.members[j].name for j in publishing}
        for d, line in sorted(group.line_of_difference.items()):
            if (line.relation is None or not set(line.relation.tables) <= publishers
                    or _width_needed(group, d, quantity) is None):
                continue
            spans = [(atoms_of[cell], sign) for cell, sign in line.terms if cell != d and cell in atoms_of]
            if not spans:
                continue
            touched = np.concatenate([atom_ids[a:b] for (a, b), _sign in spans])
            signs = np.concatenate([np.full(b - a, -float(sign)) for (a, b), sign in spans])
            atoms_in, first_at, where = np.unique(touched, return_index=True, return_inverse=True)
            coefs = np.bincount(where.reshape(-1), weights=signs, minlength=len(atoms_in))
            met = np.argsort(first_at, kind="stable")  # in the order the line's terms meet them
            atoms_in, coefs = atoms_in[met], coefs[met]
            if not np.any(coefs != 0.0):
                continue
            row = len(self.term_of_row)
            self.line_of_row[row] = [(cell, sign) for cell, sign in line.terms if cell != d]
            entry_rows.append(np.full(int(np.count_nonzero(coefs)), row))
            entry_atoms.append(atoms_in[coefs != 0.0])
            entry_coefs.append(coefs[coefs != 0.0])
            self.term_of_row.append(d)
            self.value_of_row.append(None)
        rows_at, atoms_at, coefs_at = (np.concatenate(entry_rows), np.concatenate(entry_atoms),
                                       np.concatenate(entry_coefs))
        anchor = records if counted is not None else None
        self.parts = [_Part(rows_at, atoms_at, coefs_at, component, self.is_count, anchor)
                      for component in _components(len(order), len(self.term_of_row), rows_at, atoms_at)]
        self.cleared: set[str] = set()
        """Fingerprints of the large parts the last call of :meth:`findings` found nothing in."""
        self._labels: dict[int, int] = {}

    def findings(self, hidden: set[int], passed: Collection[str] = frozenset()) -> list[Finding]:
        """What the published values narrow with ``hidden`` hidden; a large part whose
        fingerprint is in ``passed`` is passed without a solve."""
        group, quantity, is_count = self.group, self.quantity, self.is_count
        findings = []
        self.cleared = set()
        fingerprints: list[str | None] = []
        for cell in self.empty:
            if cell in hidden and _width_needed(group, cell, quantity) is not None:
                finding = _judge(group, cell, quantity, 0.0, 0.0, is_count)
                if finding is not None:
                    findings.append(finding)
        work: list[tuple[_Part, dict[int, float], dict[int, float]]] = []
        published: set[int] = set()
        for r, terms in self.line_of_row.items():
            value = self._published_sum(terms, hidden)
            if value is not None:
                published.add(r)
                finding = _judge(group, self.term_of_row[r], quantity, value, value, is_count)
                if finding is not None:
                    finding.via = _atom_via(group, self.term_of_row[r])
                    finding.binding = [cell for cell, _sign in terms]
                    findings.append(finding)
        for part in self.parts:
            needed: dict[int, float] = {}
            floors: dict[int, float] = {}
            lower = np.empty(len(part.rows))
            upper = np.empty(len(part.rows))
            for local, r in enumerate(part.rows):
                term = self.term_of_row[r]
                value = self.value_of_row[r]
                if value is not None and term not in hidden:
                    lower[local] = upper[local] = value
                    continue
                lower[local] = 0.0 if value is None and is_count else -np.inf
                upper[local] = np.inf
                width = _width_needed(group, term, quantity)
                if width is not None and r not in published:
                    needed[local] = width
                    if group.is_difference(term):
                        floors[local] = width
            if needed:
                fingerprint = self._fingerprint(part, lower, upper, needed, floors) \
                    if part.model.size > FINGERPRINTED_FROM else None
                if fingerprint is not None and fingerprint in passed:
                    self.cleared.add(fingerprint)
                    continue
                part.model.bound(lower, upper)
                work.append((part, needed, floors))
                fingerprints.append(fingerprint)
        solved = _solve_all([(part.model, needed, floors) for part, needed, floors in work])
        for (part, _needed, _floors), found, fingerprint in zip(work, solved, fingerprints, strict=True):
            narrowed = False
            for local, (low, high) in found.items():
                term = self.term_of_row[part.rows[local]]
                finding = _judge(group, term, quantity, low, high, is_count)
                if finding is not None:
                    narrowed = True
                    finding.via = _atom_via(group, term)
                    finding.binding = [self.term_of_row[part.rows[b]] for b in part.model.binding.get(local, ())]
                    findings.append(finding)
            if fingerprint is not None and not narrowed:
                self.cleared.add(fingerprint)
        return findings

    def _fingerprint(self, part: _Part, lower: np.ndarray, upper: np.ndarray, needed: dict[int, float],
                     floors: dict[int, float]) -> str:
        """What decides a part's audit, whatever the ids of its rows and atoms: each row by what
        it is (a table's cell or a difference, by its keys), its bounds and what it is judged by;
        each atom by the rows it is in (with their coefficients). Equal fingerprints are equal
        linear programs asked the same, so the same findings; the atoms' records (the anchor)
        only guide the solves."""
        labels = np.array([self._label(self.term_of_row[r]) for r in part.rows], dtype=np.uint64)
        model = part.model
        coefficients = (model.entry_coefs + 0.0).view(np.uint64)
        signatures = np.zeros(model.size, dtype=np.uint64)
        np.add.at(signatures, model.entry_atoms, _mix(labels[model.entry_rows] ^ _mix(coefficients)))
        order = np.argsort(labels, kind="stable")
        asked = np.full((2, len(labels)), np.nan)
        for n, judged in enumerate((needed, floors)):
            if judged:
                asked[n, list(judged)] = list(judged.values())
        digest = hashlib.blake2b(AUDIT_MODEL, digest_size=16)
        digest.update(repr((self.quantity, self.is_count)).encode())
        for array in (np.sort(signatures), labels[order], lower[order] + 0.0, upper[order] + 0.0,
                      asked[0, order], asked[1, order]):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def _label(self, term: int) -> int:
        """A term's name as a number, the same in every build: its table and keys, or its relation
        and margin key for a difference."""
        found = self._labels.get(term)
        if found is None:
            described = json.dumps(self.group.describe(term), sort_keys=True, default=str).encode()
            found = self._labels[term] = int.from_bytes(hashlib.blake2b(described, digest_size=8).digest(), "little")
        return found


    def _published_sum(self, terms: list[tuple[int, int]], hidden: set[int]) -> float | None:
        """A difference's value from the other terms of its line, when each is a visible cell:
        every point of the model holds it there, so it is both its bounds (no solve)."""
        total = 0.0
        for cell, sign in terms:
            if cell >= self.group.cell_count or cell in hidden:
                return None
            member, i = self.group.owner[cell]
            total -= sign * float(member.values[self.quantity][i] or 0)
        return total


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over unsigned 64-bit integers (wrapping): spreads each bit of a
    value over the whole word, so sums of mixed values tell sets apart."""
    x = values + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _solve_all(work: list[tuple[BoundModel, dict[int, float], dict[int, float]]]
               ) -> list[dict[int, tuple[float, float]]]:
    """Each component's bounds (its model, rows needed, floors), components side by side on the
    machine's cores: every component has its own model, and HiGHS lets go of the interpreter while
    it solves. The bounds do not depend on the order (each model keeps its own points and random
    directions)."""
    heavy = sorted((n for n, (model, _, _) in enumerate(work) if model.size > IPM_FROM),
                   key=lambda n: -work[n][0].size)  # largest first, so the last to start is a small one
    workers = min(len(heavy), os.cpu_count() or 1)
    for n, (model, _, _) in enumerate(work):  # a large component solved alone: its directions side by side
        model.threads = SIDE_BY_SIDE if heavy == [n] else 1
    if workers < 2:
        return [model.bounds(needed, floors) for model, needed, floors in work]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lithotse-audit") as pool:
        futures = {n: submit(pool, work[n][0].bounds, work[n][1], work[n][2]) for n in heavy}
        light = {n: model.bounds(needed, floors)
                 for n, (model, needed, floors) in enumerate(work) if n not in futures}
        return [futures[n].result() if n in futures else light[n] for n in range(len(work))]


class _Part:
    """A component of rows (of :class:`_AtomRows`, or of the model of every moment): its rows
    (indices into them) and their bound model, over atoms numbered from 0 within it."""

    def __init__(self, entry_rows: np.ndarray, entry_atoms: np.ndarray, entry_coefs: np.ndarray,
                 component: np.ndarray, nonnegative: bool, anchor: np.ndarray | None) -> None:
        self.rows = component.tolist()
        local_row = np.full(int(entry_rows.max()) + 1 if len(entry_rows) else 0, -1)
        local_row[component] = np.arange(len(component))
        mine = np.flatnonzero(local_row[entry_rows] >= 0)
        mine = mine[np.argsort(local_row[entry_rows[mine]], kind="stable")]
        atoms = entry_atoms[mine]
        unique, first, inverse = np.unique(atoms, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # atoms numbered as the rows meet them
        number = np.empty(len(order), dtype=np.int64)
        number[order] = np.arange(len(order))
        at = None if anchor is None else anchor[unique[order]]
        self.model = BoundModel.from_entries(len(component), local_row[entry_rows[mine]], number[inverse.reshape(-1)],
                                             entry_coefs[mine], nonnegative, at)


def _atom_via(group: Group, cell: int) -> list[str]:
    """The members whose cells share rows with a judged term: the tables a reader combines."""
    if group.is_difference(cell):
        return sorted(group.differences[cell - group.cell_count].relation.tables)
    names = set()
    for a in group.atoms_of[cell]:
        for j, i in enumerate(group.atoms[a] if group.atoms is not None else ()):
            if i >= 0:
                names.add(group.members[j].name)
    return sorted(names)


def _audit_relations(group: Group, hidden: set[int], quantity: tuple, memo: dict,
                     judged: set[int] | None = None, wide: WideRows | None = None,
                     zeros: Collection[int] = frozenset()) -> list[Finding]:
    """The relation lines' model, for a group whose atoms nobody counted (see :func:`audit`): an
    unknown per hidden cell and difference, a fixed row per line (its published terms moved to
    the right), and a free row per judged unknown. Components are remembered in ``memo`` by their
    equations, so a round solves again only the ones its new hidden cells touch."""
    rows: Rows = []
    row_tables: list[set[str]] = []
    variables: dict[int, int] = {}
    lines_of: dict[int, list[int]] = defaultdict(list)
    for line in group.relation_lines:
        rel = line.relation
        if rel is None or any(quantity not in group.by_name[n].values for n in rel.tables):
            continue
        known = 0.0
        unknown: list[tuple[int, float]] = []
        for cell, sign in line.terms:
            if cell in hidden or group.is_difference(cell):
                unknown.append((variables.setdefault(cell, len(variables)), float(sign)))
            else:
                member, i = group.owner[cell]
                value = member.values[quantity][i]
                known += sign * float(value or 0)
        if unknown:
            rows.append((unknown, -known))
            row_tables.append(set(rel.tables))
            for var, _ in unknown:
                lines_of[var].append(len(rows) - 1)
    if not variables:
        return []
    cells = {v: c for c, v in variables.items()}
    is_count = quantity[0] == "count"
    needed = {v: w for v, c in cells.items()
              if (judged is None or c in judged) and (w := _width_needed(group, c, quantity)) is not None}
    prover = wide if is_count else None  # a width is what judges a count (a sum: exactness)
    if prover is not None:
        proven = {v for v, w in needed.items() if prover.proven((quantity, cells[v]), w)}
        needed = {v: w for v, w in needed.items() if v not in proven}
        prover.skipped += len(proven)
    findings = []
    entry_rows = np.array([r for r, (terms, _rhs) in enumerate(rows) for _ in terms], dtype=np.int64)
    entry_vars = np.array([v for terms, _rhs in rows for v, _ in terms], dtype=np.int64)
    for component in (c.tolist() for c in _components(len(variables), len(rows), entry_rows, entry_vars)):
        if not any(v in needed for r in component for v, _ in rows[r][0]):
            continue  # nothing in it is judged: bounds come back only for needed terms
        signature = (quantity, "lines", tuple(sorted((tuple((cells[v], c) for v, c in rows[r][0]), rows[r][1])
                                                     for r in component)), None if judged is None else
                     tuple(sorted(cells[v] for r in component for v, _ in rows[r][0] if v in needed)))
        if signature not in memo:
            memo[signature] = _bounds_of_lines(component, rows, cells, needed, is_count, group, zeros)
        if prover is not None:
            for v in {v for r in component for v, _ in rows[r][0] if v in needed}:  # left out: that wide
                low, high = memo[signature].get(cells[v], (0.0, needed[v]))
                prover.prove((quantity, cells[v]), low, high, needed[v])
        for cell, (lower, upper) in memo[signature].items():
            finding = _judge(group, cell, quantity, lower, upper, is_count)
            if finding is not None:
                finding.via = sorted({n for r in lines_of[variables[cell]] for n in row_tables[r]})
                findings.append(finding)
    return findings


def _bounds_of_lines(component: list[int], rows: Rows, cells: dict[int, int], needed: dict[int, float],
                     is_count: bool, group: Group, zeros: Collection[int] = frozenset()
                     ) -> dict[int, tuple[float, float]]:
    """Bounds of the judged unknowns of one component of line equations, by cell. Where some
    unknowns are known to be 0 (``zeros``, by cell: a hidden cell's change where it did not
    move), the judged ones are first bounded with those held there: a model of the others
    alone, whose points are points of the whole one, so a term it shows wide is wide; only the
    rest are solved over the whole model, which alone calls a term narrow (the audit of changes
    after an update landing in a few months, at the benchmark's 1M rows: 6,562 unknowns, most of
    them unmoved)."""
    local: dict[int, int] = {}
    for r in component:
        for var, _ in rows[r][0]:
            local.setdefault(var, len(local))
    model_rows: list[dict[int, float]] = []
    for r in component:
        merged: dict[int, float] = defaultdict(float)
        for var, coef in rows[r][0]:
            merged[local[var]] += coef
        model_rows.append(dict(merged))
    fixed = len(model_rows)
    judged = [var for var in local if var in needed]
    model_rows += [{local[var]: 1.0} for var in judged]
    rhs = np.array([rows[r][1] for r in component] + [0.0] * len(judged))
    lower = rhs.copy()
    upper = rhs.copy()
    lower[fixed:] = -np.inf
    upper[fixed:] = np.inf
    row_needed = {fixed + n: needed[var] for n, var in enumerate(judged)}
    floors = {fixed + n: needed[var] for n, var in enumerate(judged) if group.is_difference(cells[var])}
    held = {local[var] for var in local if cells[var] in zeros and var not in needed}
    if held:
        still_open = _open_with_zeros(model_rows, lower, upper, held, row_needed, is_count)
        row_needed = {r: w for r, w in row_needed.items() if r in still_open}
        floors = {r: w for r, w in floors.items() if r in still_open}
        if not row_needed:
            return {}
    model = BoundModel(model_rows, is_count)
    model.bound(lower, upper)
    return {cells[judged[r - fixed]]: b for r, b in model.bounds(row_needed, floors).items()}


def _open_with_zeros(rows: list[dict[int, float]], lower: np.ndarray, upper: np.ndarray, zeros: set[int],
                     needed: dict[int, float], nonnegative: bool) -> set[int]:
    """The rows of ``needed`` a model with the variables of ``zeros`` held at 0 does not show
    as wide as needed (every row, where that model has no point)."""
    number: dict[int, int] = {}
    kept: list[dict[int, float]] = []
    place: dict[int, int] = {}  # a row of ``rows``: its place among the kept
    for r, row in enumerate(rows):
        entries = {number.setdefault(v, len(number)): c for v, c in row.items() if v not in zeros}
        if entries:
            place[r] = len(kept)
            kept.append(entries)
        elif not lower[r] - EXACT <= 0.0 <= upper[r] + EXACT:
            return set(needed)
    if any(r not in place for r in needed):
        return set(needed)
    rows_kept = np.array(sorted(place), dtype=np.int64)
    model = BoundModel(kept, nonnegative)
    model.bound(lower[rows_kept], upper[rows_kept])
    found = model.bounds({place[r]: w for r, w in needed.items()}, {})
    if any(math.isnan(low) for low, _high in found.values()):
        return set(needed)
    back = {k: r for r, k in place.items()}
    return {back[k] for k, (low, high) in found.items() if high - low < needed[back[k]] - EXACT}


def _width_needed(group: Group, cell: int, quantity: tuple) -> float | None:
    """How wide a term's interval must be for :func:`_judge` to pass it without knowing its
    exact bounds; None when it is never judged (nothing to solve for it).

    A difference whose rows a build counted at 2k or more is never judged: its true count lies
    in every interval a reader can derive, and an interval narrower than k around a value of
    2k or more starts above k, which :func:`_judge` passes. (Only for the record count, the
    quantity the build counted, or the audit from the atoms: :meth:`Group.count_differences`.)"""
    is_count = quantity[0] == "count"
    if group.is_difference(cell):
        diff = group.differences[cell - group.cell_count]
        k = group.threshold(diff.relation)
        if quantity == ("count", None) and diff.records is not None and diff.records >= 2 * k:
            return None
        return float(k) if is_count and k > 0 else None
    member, _i = group.owner[cell]
    if member.k <= 0:
        return None
    return float(member.k) if is_count else 2 * EXACT


def _judge(group: Group, cell: int, quantity: tuple, lower: float, upper: float, is_count: bool) -> Finding | None:
    """A finding when a term's bounds are too narrow. Bounds come from floating-point solves of
    integer equations: a width of exactly k can come back as k less 1e-12, which is not narrow,
    so the comparisons allow :data:`.bounds.EXACT`."""
    label = _label(quantity)
    if group.is_difference(cell):
        k = group.threshold(group.differences[cell - group.cell_count].relation)
        if not is_count or k <= 0:
            return None
        if math.isnan(lower) or math.isnan(upper) or (upper - lower < k - EXACT and lower < k - EXACT
                                                      and upper > EXACT):
            return Finding(cell, group.describe(cell), label, lower, upper, k, [])
        return None
    member, _i = group.owner[cell]
    if member.k <= 0:
        return None
    narrow = not (upper - lower >= member.k - EXACT) if is_count else not (upper - lower > EXACT)
    return Finding(cell, group.describe(cell), label, lower, upper, member.k, []) if narrow else None


def _components(atom_count: int, row_count: int, entry_rows: np.ndarray,
                entry_atoms: np.ndarray) -> list[np.ndarray]:
    """Rows grouped by the unknowns (atoms, or hidden cells) they share, each group solved on its
    own, from the entries (row, unknown) of every row: each unknown takes the least id it reaches
    through rows until none changes (following labels to their own label each time, so a year's
    chain of rows settles in a few passes)."""
    if not row_count:
        return []
    label = np.arange(atom_count)
    while True:
        least = np.full(row_count, atom_count)
        np.minimum.at(least, entry_rows, label[entry_atoms])
        spread = label.copy()
        np.minimum.at(spread, entry_atoms, least[entry_rows])
        while not np.array_equal(spread[spread], spread):
            spread = spread[spread]
        if np.array_equal(spread, label):
            break
        label = spread
    of_row = np.empty(row_count, dtype=np.int64)
    of_row[entry_rows] = label[entry_atoms]
    order = np.argsort(of_row, kind="stable")
    edges = np.flatnonzero(np.diff(of_row[order])) + 1
    return np.split(order, edges)


def members_of(specs: Iterable[dict], input_item: dict) -> list[dict]:
    """Aggregates reading exactly this input."""
    return [s for s in specs if s.get("kind") == "aggregate" and s.get("input") == input_item]
