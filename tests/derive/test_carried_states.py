"""What an earlier published version fixes of a new table's cells (``carried_states``): each row
compared with its anchor, the counts it had when its state was last decided."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from lithotse_desktop.derive.complementary import ANCHOR, carried_states

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


def carry(now: pa.Table, shown: pa.Table, kept: pa.Table | None):
    flags = shown.column("suppressed").to_pylist()
    return carried_states(now, ["period", "department"], ["__n", "__people"], K,
                          shown.filter(pa.array([not f for f in flags])), shown.filter(pa.array(flags)), kept,
                          sizes=2)


BEFORE = cells({"Cardiology": (8, 8), "Dermatology": (30, 30), "Emergency": (40, 40), "General": (50, 50)})
SHOWN = published({"Cardiology": None, "Dermatology": None, "Emergency": 40, "General": 50})


@pytest.mark.parametrize("dermatology, stays_hidden", [
    ((45, 30), True),    # 15 more visits by the same 30 people: shown, 30 would be the hidden value
    ((35, 35), True),    # 5 more people: the earlier lines would bound the 8 within 5
    ((45, 45), False),   # 15 more visits by 15 new people: decided anew
])
def test_a_hidden_cell_is_decided_anew_only_once_records_and_people_each_moved_k(dermatology, stays_hidden):
    now = cells({"Cardiology": (8, 8), "Dermatology": dermatology, "Emergency": (40, 40), "General": (50, 50)})
    carried = carry(now, SHOWN, BEFORE)
    assert (1 in carried.hidden) is stays_hidden
    assert 0 in carried.hidden and carried.shown == {2, 3} and not carried.held
    assert carried.anchors["__people"][1] == (30 if stays_hidden else dermatology[1])


def test_a_shown_cell_revised_by_fewer_than_k_is_held_against_the_value_last_shown():
    now = cells({"Cardiology": (8, 8), "Dermatology": (30, 30), "Emergency": (40, 40), "General": (53, 53)})
    first = carry(now, SHOWN, BEFORE)
    assert first.held == {3} and first.anchors["__people"][3] == 50, "50 was shown"
    kept = now.append_column(ANCHOR + "__n", pa.array(first.anchors["__n"])) \
        .append_column(ANCHOR + "__people", pa.array(first.anchors["__people"]))
    held_shown = published({"Cardiology": None, "Dermatology": None, "Emergency": 40, "General": None})
    for general, held in (((56, 56), True), ((62, 62), False)):
        later = cells({"Cardiology": (8, 8), "Dermatology": (30, 30), "Emergency": (40, 40), "General": general})
        carried = carry(later, held_shown, kept)
        assert (3 in carried.hidden) is held, f"{general}: 50 last shown"


def test_without_kept_cells_a_shown_cell_is_compared_with_its_published_counts():
    now = cells({"Cardiology": (8, 8), "Dermatology": (30, 30), "Emergency": (40, 40), "General": (53, 53)},
                patients=[8, 30, 40, 53])
    carried = carried_states(now, ["period", "department"], ["__n", "__people", "patients"], K,
                             published({"Emergency": 40, "General": 50}), None, None, sizes=2)
    assert carried.held == {3} and carried.shown == {2}
