"""What an earlier published version fixes of a new table's cells (``carried_states``): each row
compared with its anchor, the counts it had when its state was last decided."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from lithotse_desktop.derive.complementary import anchors_table, carried_states

K = 11
JAN = dt.date(2024, 1, 1)


def cells(rows: dict[str, tuple[int, int]], **extra: list) -> pa.Table:
    """Cells by department: (records, people)."""
    names = list(rows)
    return pa.table({"period": [JAN] * len(names), "department": names,
                     "__n": [r for r, _ in rows.values()], "__people": [p for _, p in rows.values()], **extra})


def published(rows: dict[str, int | None]) -> pa.Table:
    return pa.table({"period": [JAN] * len(rows), "department": list(rows),
                     "patients": list(rows.values()), "suppressed": [v is None for v in rows.values()]})


def carry(now: pa.Table, shown: pa.Table, kept: pa.Table | None, anchors: pa.Table | None = None):
    flags = shown.column("suppressed").to_pylist()
    return carried_states(now, COORDINATES, COUNTS, K, shown.filter(pa.array([not f for f in flags])),
                          shown.filter(pa.array(flags)), kept, anchors, sizes=2)


COORDINATES, COUNTS = ["period", "department"], ["__n", "__people"]
BEFORE = cells({"Cardiology": (8, 8), "Dermatology": (30, 30), "Emergency": (40, 40), "General": (50, 50)})
SHOWN = published({"Cardiology": None, "Dermatology": None, "Emergency": 40, "General": 50})


@pytest.mark.parametrize("dermatology, stays_hidden", [
    ((45, 30), True),    # 15 more visits by the same 30 people: shown, 30 would be the hidden value
    ((35, 35), True),    # 5 more people: the earlier lines would bound the 8 within 5
    ((45, 45), False),   # 15 more visits by 15 new people: decided anew
])
def test_a_hidden_cell_is_decided_anew_only_once_records_and_people_each_moved_k(dermatology, stays_hidden):
    first = {"Cardiology": (8, 8), "Dermatology": (30, 30), "Emergency": (40, 40), "General": (50, 50)}
    carried = versions((first, {0, 1}), ({**first, "Dermatology": dermatology}, set()))
    assert (1 in carried.hidden) is stays_hidden
    assert 0 in carried.hidden and carried.shown == {2, 3} and not carried.held
    assert carried.last_hidden[1] == (30, 30) and carried.last_shown[1] is None


def test_with_kept_cells_and_no_anchors_a_hidden_cell_stays_hidden():
    """A version built before anchors were stored: the kept cells give what a shown cell showed,
    not what a hidden one last showed, so a hidden cell stays hidden however far it moved."""
    now = cells({"Cardiology": (8, 8), "Dermatology": (45, 45), "Emergency": (40, 40), "General": (50, 50)})
    carried = carry(now, SHOWN, BEFORE)
    assert carried.hidden == {0, 1} and carried.shown == {2, 3}


def versions(*steps: tuple[dict[str, tuple[int, int]], set[int]]):
    """Each step's cells and the rows hidden in it, published in turn with their anchors (no
    kept cells: as on another machine): the last step's carried states."""
    anchors = shown = None
    for rows, hidden in steps:
        table = cells(rows)
        carried = carry(table, shown, None, anchors) if shown is not None else None
        anchors = anchors_table(table, COORDINATES, COUNTS, carried, hidden)
        shown = published({d: None if i in hidden else r[1] for i, (d, r) in enumerate(rows.items())})
    return carried


def test_a_held_cell_is_shown_again_once_it_moved_k_from_when_it_was_hidden_and_from_what_was_shown():
    first = {"Cardiology": (8, 8), "Dermatology": (30, 30), "Emergency": (40, 40), "General": (50, 50)}
    held = versions((first, {0, 1}), ({**first, "General": (53, 53)}, {0, 1, 3}))
    assert held.last_shown[3] == (50, 50) and 3 in held.hidden | held.held
    for general, stays in ((56, True), (62, True), (64, False)):  # 62: 9 from the 53 hidden
        carried = versions((first, {0, 1}), ({**first, "General": (53, 53)}, {0, 1, 3}),
                           ({**first, "General": (general, general)}, set()))
        assert (3 in carried.hidden) is stays, general


def test_a_cell_hidden_as_a_complement_is_not_shown_back_within_k_of_what_was_shown():
    """Pass 41: General shown at 50, then 61 (decided anew) but hidden as a new small cell's
    complement, then 45 after 16 visits moved to Emergency: shown, 45 against 50 gave a revision
    of 5."""
    first = {"Cardiology": (20, 20), "Dermatology": (30, 30), "Emergency": (40, 40), "General": (50, 50)}
    carried = versions((first, set()), ({**first, "General": (61, 61)}, {3}),
                       ({**first, "General": (45, 45), "Emergency": (56, 56)}, set()))
    assert 3 in carried.hidden, "16 from the 61 hidden, but 5 from the 50 shown"
    again = versions((first, set()), ({**first, "General": (61, 61)}, {3}),
                     ({**first, "General": (39, 39), "Emergency": (62, 62)}, set()))
    assert 3 not in again.hidden, "22 from 61 and 11 from 50"


def test_without_kept_cells_a_shown_cell_is_compared_with_its_published_counts():
    now = cells({"Cardiology": (8, 8), "Dermatology": (30, 30), "Emergency": (40, 40), "General": (53, 53)},
                patients=[8, 30, 40, 53])
    carried = carried_states(now, COORDINATES, ["__n", "__people", "patients"], K,
                             published({"Emergency": 40, "General": 50}), None, None, sizes=2)
    assert carried.held == {3} and carried.shown == {2}
    assert carried.last_shown[3] == (None, None, 50), "only the published count is known"
