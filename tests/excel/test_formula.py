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


def test_a_dimension_name_with_an_equals_sign_cannot_be_written():
    with pytest.raises(FormulaError, match="contains '='"):
        build_value_formula("v", "n", dims={"a=b": "c"})


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_name = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)


@given(_text, _text, st.dictionaries(_name, _text.filter(str.strip), max_size=3))
def test_build_then_parse_is_the_identity(derivative, measure, dims):
    parsed = parse_formula(build_value_formula(derivative, measure, "2024-01-01", "", dims))
    assert parsed.args[:4] == (derivative, measure, "2024-01-01", "")
    assert dims_from_args(parsed.args[4:]) == {k: v.strip() for k, v in dims.items()}
