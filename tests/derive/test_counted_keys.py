"""A count of a group's rows made before the cells (a window, an inner GROUP BY not by person)
never becomes a cell's key, filter or measure: beside a suppressed cell it would show the count
suppression hides. A count of one person's rows is that person's value and stays usable.

The visits of ``tests.derive.test_measures``: January 2024, Cardiology 40 patients, Neurology 30,
Oncology 25, one visit each, spread over the month's days (1 to 2 visits a department-day).
"""

from __future__ import annotations

import re

import pytest

from lithotse_desktop.derive.build import BuildsFailed, build_all
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.disclosure import COUNT_KEY_RULE, IdentifierRefused
from lithotse_desktop.derive.kinds.sql import ONCE_RULE
from lithotse_desktop.derive.service import add_spec, read_table
from lithotse_desktop.derive.spec import SpecError
from tests.derive.test_measures import VISITS, visits  # noqa: F401 - the fixture

PER_DAY = "count(*) OVER (PARTITION BY department, admit_date)"


def test_sql_cells_refuse_a_key_counted_in_an_inner_query(visits):  # noqa: F811
    ws, _csv = visits
    spec = {"name": "cells", "kind": "sql", "inputs": {"e": VISITS}, "count_column": "n", "people_column": "p",
            "sql": f"WITH t AS (SELECT *, CAST({PER_DAY} AS VARCHAR) AS rows_here FROM e) "
                   "SELECT department, admit_date, rows_here, count(*) AS n, count(DISTINCT patient_id) AS p "
                   "FROM t GROUP BY ALL"}
    with pytest.raises(SpecError, match=f"the query over e, inside it, computes over groups of rows; "
                                        f"rule: {re.escape(ONCE_RULE)}"):
        add_spec(ws, spec)
    Catalog(ws).save_spec(spec)
    with pytest.raises(SpecError, match=re.escape(ONCE_RULE)):
        build_all(ws, ["cells"])
    assert Catalog(ws).current("cells") is None


@pytest.mark.parametrize("counted", ["sum(1) OVER (PARTITION BY department, admit_date)",
                                     "row_number() OVER (PARTITION BY department ORDER BY admit_date)",
                                     "count(*) OVER (PARTITION BY department, admit_date, patient_id IS NULL)"])
def test_sql_cells_refuse_reading_a_count_its_sql_input_made(visits, counted):  # noqa: F811
    """``WHERE k = 1`` with ``k`` a count per department-day would list the days of one visit."""
    ws, _csv = visits
    add_spec(ws, {"name": "per_day", "kind": "sql", "inputs": {"e": VISITS},
                  "sql": f"SELECT *, {counted} AS k FROM e"})
    add_spec(ws, {"name": "cells", "kind": "sql", "inputs": {"s": {"derivative": "per_day"}}, "count_column": "n",
                  "people_column": "p", "sql": "SELECT department, admit_date, count(*) AS n, "
                                               "count(DISTINCT patient_id) AS p FROM s WHERE k = 1 GROUP BY ALL"})
    with pytest.raises(BuildsFailed, match=f"cells: failed: sql: derivative 'cells': reads s.k, a count of a group's "
                                           f"rows made upstream; rule: {re.escape(ONCE_RULE)}"):
        build_all(ws, ["per_day", "cells"])
    assert Catalog(ws).current("cells") is None


@pytest.mark.parametrize(("use", "field"), [
    ({"group_by": ["department", "rows_here"]}, "group_by[1]"),
    ({"group_by": ["department"], "filters": [{"column": "rows_here", "op": "=", "value": 1}]}, "filters[0]"),
    ({"group_by": ["department"], "measures": [{"fn": "sum", "column": "rows_here", "as": "n"}]}, "measures[0]"),
])
def test_an_aggregate_refuses_a_count_its_sql_input_made(visits, use, field):  # noqa: F811
    ws, _csv = visits
    add_spec(ws, {"name": "per_day", "kind": "sql", "inputs": {"e": VISITS},
                  "sql": f"SELECT *, {PER_DAY} AS rows_here FROM e"})
    add_spec(ws, {"name": "by_size", "kind": "aggregate", "input": {"derivative": "per_day"},
                  "date_field": "admit_date", "grain": "day",
                  "measures": [{"fn": "count_distinct", "column": "patient_id", "as": "people"}],
                  **use})
    with pytest.raises(BuildsFailed, match=f"by_size: failed: {re.escape(field)}: column 'rows_here' is a count.*"
                                           f"{re.escape(COUNT_KEY_RULE)}"):
        build_all(ws, ["per_day", "by_size"])
    assert Catalog(ws).current("by_size") is None and Catalog(ws).current("per_day") is not None


def test_a_count_of_each_persons_rows_is_their_value(visits):  # noqa: F811
    """Visits per patient (a histogram): the count is partitioned by the person key."""
    ws, _csv = visits
    add_spec(ws, {"name": "per_patient", "kind": "sql", "inputs": {"e": VISITS},
                  "sql": "SELECT *, count(*) OVER (PARTITION BY patient_id) AS visits FROM e"})
    add_spec(ws, {"name": "by_visits", "kind": "aggregate", "input": {"derivative": "per_patient"},
                  "group_by": ["visits"],
                  "measures": [{"fn": "count_distinct", "column": "patient_id", "as": "people"}]})
    build_all(ws, ["per_patient", "by_visits"])
    assert {r["visits"]: r["people"] for r in read_table(ws, "by_visits")[1].to_pylist()} == {1: 95}


def test_sql_cells_refuse_choosing_rows_by_comparing_masked_identifiers(visits):  # noqa: F811
    """Tokens still compare equal or not: the department-days with no other visit are those of one."""
    ws, _csv = visits
    spec = {"name": "alone", "kind": "sql", "inputs": {"e": VISITS}, "count_column": "n", "people_column": "p",
            "sql": "SELECT department, admit_date, count(*) AS n, count(DISTINCT patient_id) AS p FROM e v "
                   "WHERE NOT EXISTS (SELECT 1 FROM e w WHERE w.department = v.department AND "
                   "w.admit_date = v.admit_date AND w.patient_id <> v.patient_id) GROUP BY ALL"}
    with pytest.raises(IdentifierRefused, match="derivative 'alone': a subquery or LATERAL join reads the rows "
                                                "around it \\(v.admit_date, v.department, v.patient_id\\), comparing "
                                                "rows with each other; rule: a filter may not single out people"):
        add_spec(ws, spec)
    for other in ("NOT (w.patient_id = v.patient_id AND true)", "if(w.patient_id = v.patient_id, false, true)"):
        with pytest.raises(IdentifierRefused, match="comparing rows with each other"):
            add_spec(ws, {**spec, "sql": spec["sql"].replace("w.patient_id <> v.patient_id", other)})
    cohort = {**spec, "name": "cohort", "sql": "SELECT department, admit_date, count(*) AS n, count(DISTINCT "
              "patient_id) AS p FROM e WHERE patient_id IN (SELECT patient_id FROM e WHERE dx = 'B20') GROUP BY ALL"}
    add_spec(ws, cohort)
