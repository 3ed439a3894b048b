"""Header text as column names, lists of names in one text, total-row labels."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lithotse_desktop.names import CORE_COLUMNS, clean_header, header_names, is_total_label, split_names


def letters(i: int) -> str:
    return f"column_{i + 1}"


def test_header_text_is_kept_except_what_makes_a_name_unusable():
    assert header_names(["LOS (days)", "% Readmit", "Ward/Bed", "Patient #", "Diagnóstico", 'a "q"; --'],
                        letters) == ["LOS (days)", "% Readmit", "Ward/Bed", "Patient #", "Diagnóstico", 'a "q"; --']
    assert header_names(["  LOS\r\n(days) ", "a\tb", "x\x07y", "\ufeffid"], letters) == \
        ["LOS (days)", "a b", "x y", "id"]
    assert header_names([None, "", "  ", "column_2"], letters) == ["column_1", "column_2_2", "column_3", "column_2"]
    assert header_names(["Name", None, "column_2"], letters) == ["Name", "column_2_2", "column_2"]


def test_repeats_are_numbered_ignoring_case_without_taking_another_header():
    assert header_names(["Name", "Name", "name"], letters) == ["Name", "Name_2", "name_3"]
    assert header_names(["Name", "Name", "Name_2"], letters) == ["Name", "Name_3", "Name_2"]
    assert header_names(["_row", "_Landing_Id", "x"], letters) == ["_row_2", "_Landing_Id_2", "x"]


@given(st.lists(st.one_of(st.none(), st.text(max_size=6)), max_size=12))
def test_names_are_never_empty_and_unique_ignoring_case(cells):
    names = header_names(cells, letters)
    assert len(names) == len(cells)
    assert all(n and n == n.strip() and "\n" not in n for n in names)
    folded = [n.casefold() for n in names] + [c.casefold() for c in CORE_COLUMNS]
    assert len(set(folded)) == len(folded)
    for cell, name in zip(cells, names, strict=True):
        base = clean_header(cell) or None
        if base is not None:
            assert name == base or name.startswith(base + "_")


def test_a_list_keeps_commas_that_are_part_of_a_known_name():
    known = {"period", "Cost, total ($)", "n", "a,b,c"}
    assert split_names("period,Cost, total ($), n", known) == ["period", "Cost, total ($)", "n"]
    assert split_names("a,b,c,n", known) == ["a,b,c", "n"]
    assert split_names(" x , y ,, ", known) == ["x", "y"]
    assert split_names("", known) == []


@pytest.mark.parametrize("text", ["Total", "TOTAL", "Totals", "Total:", "Grand total", "Grand Total (all wards)",
                                  "Total 2024", "Sum", "Subtotal - north", "Gesamt", "Summe", "Total général",
                                  "Suma", "Total geral", "Totale", "Totaal", "Totalt", "I alt", "Razem",
                                  "Yhteensä", "  total  "])
def test_total_labels(text):
    assert is_total_label(text)


@pytest.mark.parametrize("value", ["Totally", "Summary", "Total cholesterol", "Total hip replacement",
                                   "Sum of parts", "Subtotals are below", "", None, 5, "W1/3"])
def test_not_total_labels(value):
    assert not is_total_label(value)
