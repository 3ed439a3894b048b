"""The add-in's formulas: what the app writes is what the worksheet functions read."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lithotse_desktop.excel.formula import (
    TABLE_FUNCTION,
    VALUE_FUNCTION,
    FormulaError,
    build_table_formula,
    build_value_formula,
    dims_from_args,
    parse_formula,
)
from lithotse_desktop.names import clean_header


def test_a_value_formula_writes_dimensions_as_pairs():
    text = build_value_formula("visits", "n", "2024-01-01", "2024-12-31", {"grp": "b", "sex": "F"})
    assert text == '=LITHOTSE_VALUE("visits","n","2024-01-01","2024-12-31","grp","b","sex","F")'
    parsed = parse_formula(text)
    assert parsed.function == VALUE_FUNCTION
    assert parsed.args == ("visits", "n", "2024-01-01", "2024-12-31", "grp", "b", "sex", "F")
    assert dims_from_args(parsed.args[4:]) == {"grp": "b", "sex": "F"}


def test_open_ends_are_empty_text_and_a_table_formula_joins_its_columns():
    assert build_value_formula("visits", "n") == '=LITHOTSE_VALUE("visits","n","","")'
    text = build_table_formula("visits", "2024-01-01", None, ["period", "grp", "n"])
    assert text == '=LITHOTSE_TABLE("visits","2024-01-01","","period,grp,n")'
    assert parse_formula(text).function == TABLE_FUNCTION
    assert parse_formula(text).args == ("visits", "2024-01-01", "", "period,grp,n")


def test_quotes_double_inside_text_and_read_back_single():
    text = build_value_formula('say "hi"', "n", dims={"team": 'A "B", C'})
    assert '"say ""hi"""' in text
    assert parse_formula(text).args == ('say "hi"', "n", "", "", "team", 'A "B", C')


def test_the_parser_reads_excel_literals():
    parsed = parse_formula(' = lithotse_value( "v" , "n", , 45292, "grp", 3, "flag", TRUE, "x", -1.5e2 ) ')
    assert parsed.function == VALUE_FUNCTION
    assert parsed.args == ("v", "n", None, 45292, "grp", 3, "flag", True, "x", -150.0)
    assert parse_formula("=LITHOTSE.VALUE(\"v\",\"n\")").function == VALUE_FUNCTION
    assert parse_formula("=LITHOTSE_TABLE()").args == ()
    assert parse_formula('=LITHOTSE_TABLE("v",)').args == ("v", None)


@pytest.mark.parametrize("text, message", [
    ("=SUM(A1:A3)", "SUM is not a Lithotse function"),
    ('=LITHOTSE_VALUE("v", A1)', "argument 2: only text in double quotes"),
    ('=LITHOTSE_VALUE("v", "n"', "missing ')'"),
    ('=LITHOTSE_VALUE("v, "n")', "expected ',' or ')'"),
    ('=LITHOTSE_VALUE("v)', "without its closing"),
    ('=LITHOTSE_VALUE("v") + 1', "unexpected text after ')'"),
    ("visits", "not a function call"),
])
def test_the_parser_names_what_it_cannot_read(text, message):
    with pytest.raises(FormulaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_formula(text)


def test_dimension_arguments_pairs_and_the_older_single_form():
    assert dims_from_args(["grp", "b"]) == {"grp": "b"}
    assert dims_from_args(["grp=b"]) == {"grp": "b"}, "workbooks written before pairs"
    assert dims_from_args(["grp=b", "sex", "F"]) == {"grp": "b", "sex": "F"}
    assert dims_from_args(["sex", "F", " grp = b "]) == {"sex": "F", "grp": "b"}
    assert dims_from_args(["formula", "a=b"]) == {"formula": "a=b"}, "a value may contain '='"
    assert dims_from_args(["grp", "b", None, ""]) == {"grp": "b"}, "unused trailing arguments"
    assert dims_from_args([[["grp", "b"]], ("sex", "F")]) == {"grp": "b", "sex": "F"}, "Excel ranges"
    assert dims_from_args(["year", 2024.0, "day", dt.datetime(2024, 3, 1), "ok", True]) == \
        {"year": "2024", "day": "2024-03-01", "ok": "true"}
    assert dims_from_args([]) == {}


@pytest.mark.parametrize("args, message", [
    (["grp"], "dimension 'grp' has no value"),
    (["grp", "", "sex", "F"], "dimension 'grp' has no value"),
    (["", "b"], "dimension argument 1 is empty"),
    (["=b"], "no dimension name before '='"),
])
def test_incomplete_dimension_arguments_are_refused(args, message):
    with pytest.raises(FormulaError, match=message):
        dims_from_args(args)


def test_dimension_names_are_any_header_text():
    dims = {"Ward/Bed": "W1/3", "% Readmit": "0.1", 'say "hi"; DROP': "x", "Diagnóstico": "I10"}
    text = build_value_formula("adm", "mean_los", "", "", dims)
    assert '"say ""hi""; DROP"' in text
    asked = []

    def dimensions():
        asked.append(True)
        return list(dims)

    assert dims_from_args(parse_formula(text).args[4:], dimensions) == dims
    assert asked == [], "the dimensions are looked up only for a name holding '='"


def test_a_dimension_name_with_an_equals_sign_reads_when_it_is_a_dimension():
    text = build_value_formula("v", "n", dims={"a=b": "c", "grp": "x"})
    args = parse_formula(text).args[4:]
    assert args == ("a=b", "c", "grp", "x")
    assert dims_from_args(args, lambda: ["a=b", "grp"]) == {"a=b": "c", "grp": "x"}
    assert dims_from_args(args, ["a=b", "grp"]) == {"a=b": "c", "grp": "x"}
    # without the dimensions, "a=b" is the older one-argument filter: c=grp, then x lacks a value
    with pytest.raises(FormulaError, match="dimension 'x' has no value"):
        dims_from_args(args)
    assert dims_from_args(["a=b"], ["grp"]) == {"a": "b"}, "an older filter still reads"


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_name = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12) \
    .map(clean_header).filter(bool)


@given(_text, _text, st.dictionaries(_name, _text.filter(str.strip), max_size=3))
def test_build_then_parse_is_the_identity(derivative, measure, dims):
    parsed = parse_formula(build_value_formula(derivative, measure, "2024-01-01", "", dims))
    assert parsed.args[:4] == (derivative, measure, "2024-01-01", "")
    assert dims_from_args(parsed.args[4:], list(dims)) == {k: v.strip() for k, v in dims.items()}
