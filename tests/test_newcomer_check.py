"""CI's newcomer check accepts only demo output whose figures derive show confirms (its own logic;
tests/test_demo.py runs it on a real demo run)."""

from __future__ import annotations

import pytest

from tests.test_demo import load_newcomer_check

check = load_newcomer_check()

SPECS = {
    "by_year": {"name": "by_year", "kind": "aggregate", "grain": "year",
                "measures": [{"fn": "count", "as": "n"}, {"fn": "mean", "column": "x", "as": "avg"}]},
    "flat": {"name": "flat", "kind": "view"},
    "tiny": {"name": "tiny", "kind": "aggregate", "group_by": ["test"], "measures": [{"fn": "count", "as": "n"}]},
}
TABLES = {
    "by_year": {"version": "v1", "columns": ["period", "n", "avg", "suppressed"], "rows": [
        {"period": "2020-01-01", "n": None, "avg": None, "suppressed": True},
        {"period": "2021-01-01", "n": 14, "avg": 2.5, "suppressed": False},
        {"period": "2022-01-01", "n": 12, "avg": 3.0, "suppressed": False}]},
    "flat": {"version": "v2", "columns": ["id", "text"], "rows": [{"id": "a", "text": "x, y"}]},
    "tiny": {"version": "v3", "columns": ["test", "n", "suppressed"], "rows": [
        {"test": "GLUCOSE", "n": None, "suppressed": True}, {"test": None, "n": None, "suppressed": True}]},
}
OUTPUT = """workspace: /somewhere/demo-workspace

derivative by_year (version v1, 3 rows, 1 suppressed)
  period=2021-01-01, n=14, avg=2.5, suppressed=False
  period=2022-01-01, n=12, avg=3.0, suppressed=False

derivative flat (version v2, 1 rows)
  id=a, text=x, y

derivative tiny (version v3, 2 rows, all suppressed)
  test=GLUCOSE, n=None, suppressed=True
  test=None, n=None, suppressed=True

next steps:
    curl -H "Authorization: Bearer $(.venv/bin/lithotse token --workspace demo-workspace)" \\
      'http://127.0.0.1:8765/api/v1/derivatives/by_year/value?measure=n&from=2021-01-01&to=2022-12-31'
"""


def test_consistent_output_passes_and_names_each_derivative():
    report = check.check_figures(SPECS, check.parse_demo_output(OUTPUT), TABLES)
    assert report == ["by_year: 4 figure(s) printed and confirmed, e.g. n=14",
                      "flat: 1 rows (a view; its row count is its figure)",
                      "tiny: all 2 rows suppressed, as printed"]


@pytest.mark.parametrize("change, message", [
    (("n=14", "n=15"), "is not in derive show"),
    (("derivative flat (version v2, 1 rows)", "derivative flat (version v9, 1 rows)"), "printed version v9"),
    (("derivative tiny (version v3, 2 rows, all suppressed)", "derivative tiny (version v3, 2 rows)"),
     "printed no figure"),
    (("derivative by_year", "derivative other"), "no table for derivative by_year"),
    (("  period=2021-01-01, n=14", "  when=2021-01-01, n=14"), "cannot read the printed row"),
])
def test_a_wrong_missing_or_unreadable_figure_fails(change, message):
    with pytest.raises(check.CheckFailed, match=message):
        check.check_figures(SPECS, check.parse_demo_output(OUTPUT.replace(*change)), TABLES)


def test_the_curl_example_is_read_and_its_value_follows_from_the_table():
    name, query = check.example_query(OUTPUT)
    assert (name, query) == ("by_year", {"measure": "n", "from": "2021-01-01", "to": "2022-12-31"})
    assert check.expected_value(SPECS[name], TABLES[name], query) == (26, False)
    assert check.expected_value(SPECS[name], TABLES[name], {**query, "from": "2020-01-01"}) == (None, True)
    with pytest.raises(check.CheckFailed, match="2 rows of a non-additive"):
        check.expected_value(SPECS[name], TABLES[name], {**query, "measure": "avg"})


def test_a_curl_line_without_the_token_command_fails():
    with pytest.raises(check.CheckFailed, match="no ready curl line"):
        check.example_query(OUTPUT.replace("$(.venv/bin/lithotse token --workspace demo-workspace)", "TOKEN"))


def test_the_check_runs_with_nothing_but_home_and_the_system_path(tmp_path):
    assert check.minimal_env(tmp_path) == {"HOME": str(tmp_path), "PATH": "/usr/local/bin:/usr/bin:/bin",
                                           "LANG": "C.UTF-8"}
