"""An audit part passed by an earlier decision is not solved again.

Deciding suppression ends with an exact audit of every component of the published set (a year's
cells joined by the yearly tables, say), a linear program per component. A daily update lands
records in the last weeks only; every other component is the same set of equations, with the same
cells hidden (unchanged cells keep their state), as the last decision passed. Each decision
records a fingerprint of every part it passed with its anchors, and the next one passes a part of
the same fingerprint without its solves. These tests check that the fingerprint tells apart what
changes an audit (a value, a hidden cell, a threshold) whatever the ids, and that the builds of
a user's sequence (a range, late records, a wider range) publish exactly what they publish when
every part is solved again.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest

from lithotse_desktop.dates import DateRange
from lithotse_desktop.derive import complementary
from lithotse_desktop.derive.build import build_all
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.complementary import Cells, Group, _AtomRows, audit, audited_parts, decide
from lithotse_desktop.derive.relations import relations
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.raw import run_import
from lithotse_desktop.workspace import Workspace

from .test_differencing_property import counted_atoms, published

K = 5
INPUT = {"source": "s", "stream": "rows"}
TWO_YEARS = [dt.date(2023 + m // 12, m % 12 + 1, 1) for m in range(18)]
GROUP_SPECS = [
    {"name": "monthly", "kind": "aggregate", "input": INPUT, "date_field": "month", "grain": "month",
     "group_by": ["a", "b"], "measures": [{"fn": "count", "as": "n"}]},
    {"name": "yearly", "kind": "aggregate", "input": INPUT, "date_field": "month", "grain": "year",
     "group_by": ["a"], "measures": [{"fn": "count", "as": "n"}]},
    {"name": "total", "kind": "aggregate", "input": INPUT, "date_field": "month", "grain": "month",
     "group_by": [], "measures": [{"fn": "count", "as": "n"}]},
]
"""A year's cells are one part: the yearly table joins its months, the monthly totals its values of a."""


def generated(count: int, seed: int, months: list[dt.date] = TWO_YEARS) -> list[dict]:
    draw = random.Random(seed)
    return [{"person": f"p{n}", "month": draw.choice(months), "a": draw.choice("xyzw"), "b": draw.choice("uv"),
             "c": "c0", "f": "x"} for n in range(count)]


def group_of(rows: list[dict], k: int = K, carried: dict[str, set[int]] | None = None) -> Group:
    """The group a build decides over, counted here; ``carried``: each member's cells hidden by
    an earlier decision (kept hidden, every other one kept shown), as a build carries them when
    nothing changed."""
    cells = [Cells.from_table(s["name"], s, k, published(s, rows)) for s in GROUP_SPECS]
    for c in cells:
        if carried is not None:
            c.kept_hidden = set(carried[c.name])
            c.kept_shown = set(range(len(c.keys))) - c.kept_hidden
    keys, records = counted_atoms(GROUP_SPECS, rows)
    return Group(cells, relations(GROUP_SPECS, {c.name: c.types for c in cells}), atoms=keys, atom_records=records)


def fingerprints_by_year(group: Group, hidden: set[int]) -> dict[str, str]:
    """Each part's fingerprint, by the year its cells are in, with ``hidden`` hidden."""
    found: dict[str, str] = {}
    original = _AtomRows._fingerprint

    def recording(self, part, *args):
        fingerprint = original(self, part, *args)
        years = {str(self.group.describe(self.term_of_row[r]).get("period"))[:4] for r in part.rows}
        assert len(years) == 1, "a part is one year's cells"
        found[years.pop()] = fingerprint
        return fingerprint

    _AtomRows._fingerprint = recording  # type: ignore[method-assign]
    try:
        audit(group, hidden)
    finally:
        _AtomRows._fingerprint = original  # type: ignore[method-assign]
    return found


def ids(group: Group, hidden: dict[str, set[int]]) -> set[int]:
    return {group.offsets[name] + i for name, rows in hidden.items() for i in rows}


@pytest.fixture
def every_part_fingerprinted(monkeypatch):
    monkeypatch.setattr(complementary, "FINGERPRINTED_FROM", 0)


def test_a_decision_carried_unchanged_solves_nothing_and_decides_the_same(every_part_fingerprinted, monkeypatch):
    rows = generated(260, 1)
    audited: set[str] = set()
    first = decide(group_of(rows), audited=audited)
    assert sum(map(len, first.values())) > 4 and len(audited) == 2  # a part a year, both passed
    solved: list[int] = []
    original = complementary._solve_all
    monkeypatch.setattr(complementary, "_solve_all", lambda work: solved.append(len(work)) or original(work))
    again: set[str] = set()
    assert decide(group_of(rows, carried=first), passed=audited, audited=again) == first
    assert solved == [0] and again == audited
    assert decide(group_of(rows, carried=first), audited=set()) == first
    assert solved == [0, 2], "without the passed parts both years are solved"


@pytest.mark.parametrize("change", ["a value", "a hidden cell", "the threshold", "a cell added elsewhere"])
def test_the_fingerprint_changes_with_what_the_audit_reads_and_not_with_ids(every_part_fingerprinted, change):
    rows = generated(260, 2)
    group = group_of(rows)
    hidden = ids(group, decide(group))
    before = fingerprints_by_year(group, hidden)
    assert set(before) == {"2023", "2024"}
    if change == "a value":  # one more record in 2023: its year's and month's totals, shown, move
        late = next(r for r in rows if r["month"].year == 2023)
        changed = group_of([*rows, {**late, "person": "late"}])
        after = fingerprints_by_year(changed, hidden)
    elif change == "a hidden cell":
        shown = next(c for c in range(group.cell_count)
                     if c not in hidden and str(group.describe(c)["period"]).startswith("2023"))
        after = fingerprints_by_year(group, hidden | {shown})
    elif change == "the threshold":
        after = fingerprints_by_year(group_of(rows, k=K + 1), hidden)
        assert after["2023"] != before["2023"] and after["2024"] != before["2024"]
        return
    else:  # a new 2024 cell: the ids of the next tables' cells shift, 2023 is the same part
        changed = group_of([*rows, {"person": "new", "month": dt.date(2024, 1, 1), "a": "a", "b": "u",
                                    "c": "c0", "f": "x"}])
        moved = {changed.offsets[changed.owner[c][0].name] + changed.by_name[group.owner[c][0].name].keys.index(
            group.owner[c][0].keys[group.owner[c][1]]) for c in hidden}
        after = fingerprints_by_year(changed, moved)
        assert after["2023"] == before["2023"]
        assert after["2024"] != before["2024"]
        return
    assert after["2023"] != before["2023"]
    assert after["2024"] == before["2024"], "a part the change does not touch keeps its fingerprint"


DEPARTMENTS = ["Cardiology", "Dermatology", "Emergency", "General", "Oncology"]
CLASSES = ["AMB", "EMER", "IMP"]
ENCOUNTERS = {"source": "ehr", "stream": "encounters"}
MEASURES = [{"fn": "count", "as": "visits"}, {"fn": "count_distinct", "column": "patient_id", "as": "patients"}]
BUILD_SPECS = [{"name": name, "kind": "aggregate", "input": ENCOUNTERS, "date_field": "admit_date", "grain": grain,
                "group_by": dims, "measures": MEASURES}
               for name, grain, dims in [("by_dept_class", "month", ["department", "class"]),
                                         ("by_dept_year", "year", ["department"]),
                                         ("by_class", "month", ["class"])]]


def write_encounters(path, seed: int, count: int, first: dt.date, days: int, mode: str = "w") -> None:
    draw = random.Random(seed)
    with path.open(mode) as out:
        if mode == "w":
            out.write("encounter_id,patient_id,admit_date,department,class\n")
        for n in range(count):
            day = first + dt.timedelta(days=draw.randrange(days))
            out.write(f"E{seed}-{n},P{seed}-{n},{day.isoformat()},{draw.choice(DEPARTMENTS)},{draw.choice(CLASSES)}\n")


def sequence(workspace, tmp_path, solved_years: list[set[str]]) -> list[dict[str, list[dict]]]:
    """A range built, late records for its last months, then a wider range: what each build
    published, and the years of the parts each audit solved."""
    folder = tmp_path / "ehr"
    folder.mkdir()
    csv = folder / "encounters.csv"
    write_encounters(csv, 1, 1400, dt.date(2023, 1, 1), 547)  # 2023 and 2024's first half
    workspace.add_source("ehr", "csv", {"path": str(folder), "date_column": "admit_date", "key": "encounter_id"}, {})
    for spec in BUILD_SPECS:
        add_spec(workspace, spec)
    catalog = Catalog(workspace)
    out = []
    steps = [(DateRange.parse("2023-01-01", "2024-06-30"), None),
             (DateRange.parse("2023-01-01", "2024-06-30"), (2, 40, dt.date(2024, 5, 1), 61)),
             (DateRange.parse("2023-01-01", "2024-09-30"), (3, 150, dt.date(2024, 7, 1), 92))]
    for dates, late in steps:
        if late is not None:
            write_encounters(csv, *late, mode="a")
        run_import(workspace, "ehr", dates)
        solved_years.append(set())
        assert all(r.status != "failed" for r in build_all(workspace))
        out.append({s["name"]: catalog.read(catalog.current(s["name"])).to_pylist() for s in BUILD_SPECS})
    return out


def test_a_users_sequence_publishes_the_same_with_the_passed_parts_and_solves_only_what_changed(
        workspace, tmp_path, every_part_fingerprinted, monkeypatch):
    solved: list[set[str]] = []
    original = _AtomRows._fingerprint
    fingerprinted: dict[int, tuple[object, set[str]]] = {}  # the model held, so its id is not reused

    def recording(self, part, *args):
        fingerprinted[id(part.model)] = (part.model, {str(self.group.describe(self.term_of_row[r]).get("period"))[:4]
                                                      for r in part.rows})
        return original(self, part, *args)

    original_solve = complementary._solve_all

    def solving(work):
        for model, _needed, _floors in work:
            held, years = fingerprinted.get(id(model), (None, set()))
            if held is model:
                solved[-1] |= years
        return original_solve(work)

    monkeypatch.setattr(_AtomRows, "_fingerprint", recording)
    monkeypatch.setattr(complementary, "_solve_all", solving)
    (tmp_path / "passed").mkdir()
    (tmp_path / "again").mkdir()
    passed = sequence(workspace, tmp_path / "passed", solved)
    catalog = Catalog(workspace)
    assert all(audited_parts(catalog.anchors(catalog.current(s["name"]))) for s in BUILD_SPECS)
    assert sum(r["suppressed"] for r in passed[0]["by_dept_class"]) > 10
    assert "2023" in solved[0] and "2024" in solved[0]
    assert "2023" not in solved[1] and "2024" in solved[1], "late 2024 records: 2023 passes as before"
    assert "2023" not in solved[2]

    monkeypatch.setattr(complementary, "audited_parts", lambda anchors: set())
    every: list[set[str]] = []
    solved = every
    again = sequence(Workspace.create(tmp_path / "ws-again"), tmp_path / "again", solved)
    assert "2023" in every[1], "without the parts passed before, every part is solved again"
    assert again == passed
