"""Pieces of :mod:`lithotse_desktop.derive.complementary` checked against plain computations."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lithotse_desktop.derive.complementary import Cells, Group, _components
from lithotse_desktop.derive.relations import partitions, relations

from .test_audit_soundness import group_of
from .test_differencing_property import MONTHS, VALUES, K, _count, atoms, published, remainders


def _components_by_search(row_atoms: list[list[int]]) -> list[list[int]]:
    """Rows joined when they share an atom, found by walking from each unvisited row."""
    rows_of: dict[int, list[int]] = {}
    for r, found in enumerate(row_atoms):
        for a in found:
            rows_of.setdefault(a, []).append(r)
    seen: set[int] = set()
    out = []
    for start in range(len(row_atoms)):
        if start in seen:
            continue
        stack, component = [start], []
        seen.add(start)
        while stack:
            r = stack.pop()
            component.append(r)
            for a in row_atoms[r]:
                for other in rows_of[a]:
                    if other not in seen:
                        seen.add(other)
                        stack.append(other)
        out.append(sorted(component))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_rows_are_split_where_no_atom_joins_them(seed):
    rng = random.Random(seed)
    atom_count = rng.randint(1, 300)
    row_atoms = [sorted(rng.sample(range(atom_count), rng.randint(1, min(4, atom_count))))
                 for _ in range(rng.randint(1, 400))]
    entry_rows = np.array([r for r, found in enumerate(row_atoms) for _ in found])
    entry_atoms = np.array([a for found in row_atoms for a in found])
    found = [part.tolist() for part in _components(atom_count, len(row_atoms), entry_rows, entry_atoms)]
    assert sorted(found) == sorted(_components_by_search(row_atoms))


@pytest.mark.parametrize("seed", range(6))
def test_atoms_given_by_member_or_by_atom_index_the_same(seed):
    """The build hands a group its atoms as a column of keys per member; tests and older callers
    as each atom's keys by member: the group indexes both alike."""
    rng = random.Random(seed)
    rows = [{"person": f"p{rng.randrange(60)}", "month": rng.choice(MONTHS), "a": rng.choice(VALUES["a"]),
             "b": rng.choice(VALUES["b"]), "c": "c0", "f": "x"} for _ in range(400)]
    _tables, by_atom = group_of(rows, _specs())
    listed = atoms(_specs(), rows)
    columns = {s["name"]: [atom.get(s["name"]) for atom in listed] for s in _specs()}
    cells = [Cells.from_table(s["name"], s, K, published(s, rows)) for s in _specs()]
    types = {c.name: c.types for c in cells}
    by_member = Group(cells, relations(_specs(), types), differences=None,
                      remainders=remainders(_specs(), partitions(_specs(), types), rows), atoms=columns)
    assert by_member.atoms == by_atom.atoms
    assert dict(by_member.atoms_of) == dict(by_atom.atoms_of)
    assert all(by_member.atoms_of[c] for c in range(by_member.cell_count))


def _specs() -> list[dict]:
    return [_count("t0", grain="month", group_by=["a"]), _count("t1", grain="year", group_by=["a", "b"]),
            _count("t2", grain="quarter", group_by=["b"], filters=[{"column": "a", "op": "=", "value": "a1"}])]


def test_a_group_whose_atoms_fall_in_no_cell_is_indexed_without_any():
    """Tables with no cells, and rows every one leaves out (a build over a filter no row met
    crashed here: the index of cells per atom was built from no entry)."""
    cells = [Cells.from_table(s["name"], s, K, published(s, [])) for s in _specs()]
    types = {c.name: c.types for c in cells}
    nowhere = {s["name"]: [None, None] for s in _specs()}
    group = Group(cells, relations(_specs(), types), differences=None, remainders={}, atoms=nowhere)
    assert group.atoms is not None and not dict(group.atoms_of)
