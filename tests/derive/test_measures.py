"""Measures that count part of a cell pass the threshold as the cell's people do (a count of the
rows where a column is present, a sum of a 0/1 column, the distinct keys a sql input kept for
some people only); other measures of a 0/1 column are refused.

January 2024: Cardiology has 40 patients, 3 of them discharged, 3 readmitted, 2 with B20;
Neurology 30 (15, 15, none); Oncology 25 (all discharged, none readmitted). All are insured
but two of Cardiology's. ``readmit_code`` is readmitted coded 1 (yes) and 2 (no); ``hiv`` is 1 for
3 of Cardiology, 0 for the others but one in Neurology, 9 (unknown); Cardiology has 3 death dates.
``only2`` is 2 for those 3 and empty for everyone else; ``lab`` is measured for 3 of Cardiology's
and everyone else; ``seen_date`` is empty for 2 of Cardiology's; ``big`` holds numbers above 2**53,
each its own; ``huge2`` is 10**17 + 1 for 3 of Cardiology's, 10**17 for the others; ``vast`` 2e200 and 1e200
likewise; ``positive`` is true for those 3, false for the others, ``answer`` Ja and Nein;
``seen_month`` a number of 1 to 5, empty where ``seen_date`` is; ``tiny`` 3e-160 for the 3 and
1e-160 for the others.
"""

from __future__ import annotations

import re

import duckdb
import pytest

from lithotse_desktop.derive.build import build, build_all
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.measures import FLAG_RULE
from lithotse_desktop.derive.service import add_spec, read_table
from lithotse_desktop.derive.spec import SpecError
from lithotse_desktop.raw import run_import

VISITS = {"source": "ehr", "stream": "visits"}


@pytest.fixture
def visits(workspace, tmp_path):
    folder = tmp_path / "ehr"
    folder.mkdir()
    rows = ["patient_id,admit_date,department,discharge_date,readmitted,dx,insured,readmit_code,hiv,death_date,"
            "only2,lab,seen_date,big,huge2,vast,positive,answer,seen_month,tiny"]
    for department, people, discharged, readmitted, b20 in (("Cardiology", 40, 3, 3, 2), ("Neurology", 30, 15, 15, 0),
                                                            ("Oncology", 25, 25, 0, 0)):
        for i in range(people):
            rows.append(f"{department[0]}{i:03d},2024-01-{1 + i % 28:02d},{department},"
                        f"{'2024-02-01' if i < discharged else ''},{int(i < readmitted)},{'B20' if i < b20 else 'I10'},"
                        f"{int(i >= 2 or department != 'Cardiology')},{1 if i < readmitted else 2},"
                        f"{9 if (department, i) == ('Neurology', 0) else int(i < 3 and department == 'Cardiology')},"
                        f"{f'2024-03-0{i + 1}' if i < 3 and department == 'Cardiology' else ''},"
                        f"{2 if i < 3 and department == 'Cardiology' else ''},"
                        f"{4.5 + i if i < 3 or department != 'Cardiology' else ''},"
                        f"{'' if i < 2 and department == 'Cardiology' else f'2024-02-{1 + i % 28:02d}'},"
                        f"{10**16 + 7 * i},{10**17 + (i < 3)},{2e200 if i < 3 else 1e200},"
                        f"{'true' if i < 3 and department == 'Cardiology' else 'false'},"
                        f"{'Ja' if i < 3 and department == 'Cardiology' else 'Nein'},"
                        f"{'' if i < 2 and department == 'Cardiology' else 1 + i % 5},{3e-160 if i < 3 else 1e-160}")
    (folder / "visits.csv").write_text("\n".join(rows) + "\n")
    workspace.add_source("ehr", "csv", {"path": str(folder), "date_column": "admit_date"}, {})
    run_import(workspace, "ehr")
    return workspace, folder / "visits.csv"


def by_department(ws, name):
    return {r["department"]: r for r in read_table(ws, name)[1].to_pylist()}


def aggregate(name, measure, inputs=VISITS):
    return {"name": name, "kind": "aggregate", "input": inputs, "date_field": "admit_date", "grain": "month",
            "group_by": ["department"], "measures": [{"fn": "count_distinct", "column": "patient_id", "as": "people"},
                                                     {**measure, "as": "part"}]}


@pytest.mark.parametrize("measure", [{"fn": "count", "column": "discharge_date"},
                                     {"fn": "sum", "column": "readmitted"}])
def test_a_measure_counting_three_of_forty_people_hides_its_cell(visits, measure):
    ws, csv = visits
    truth = dict(duckdb.sql(f"SELECT department, count(discharge_date) FROM read_csv('{csv}') GROUP BY 1").fetchall())
    assert truth == {"Cardiology": 3, "Neurology": 15, "Oncology": 25}, "the independent count"
    add_spec(ws, aggregate("parts", measure))
    build(ws, "parts")
    rows = by_department(ws, "parts")
    assert rows["Cardiology"]["suppressed"] and rows["Cardiology"]["part"] is None, "3 of 40: a count of 3 people"
    assert rows["Neurology"]["part"] == 15 or rows["Neurology"]["suppressed"]
    assert sum(r["suppressed"] for r in rows.values()) >= 2, "with a complement along the month's line"
    assert all(r["part"] is None or r["part"] >= 11 or r["part"] == 0 for r in rows.values())


def test_a_measure_leaving_out_two_of_forty_people_hides_its_cell_too(visits):
    ws, _csv = visits
    add_spec(ws, aggregate("insured", {"fn": "sum", "column": "insured"}))
    build(ws, "insured")
    rows = by_department(ws, "insured")
    assert rows["Cardiology"]["suppressed"], "38 of 40: 40 - 38 = 2 uninsured people"
    assert sum(r["suppressed"] for r in rows.values()) == 2, "one complement"


def test_counting_rows_by_the_person_key_hides_nothing(visits):
    ws, _csv = visits
    spec = {**aggregate("not_b20", {"fn": "count", "column": "patient_id"}),
            "filters": [{"column": "dx", "op": "!=", "value": "B20"}]}
    add_spec(ws, spec)
    build(ws, "not_b20")
    rows = by_department(ws, "not_b20")
    assert {d: r["part"] for d, r in rows.items()} == {"Cardiology": 38, "Neurology": 30, "Oncology": 25}
    assert not any(r["suppressed"] for r in rows.values())


def test_distinct_keys_a_sql_input_kept_for_some_people_count_those_people(visits):
    ws, _csv = visits
    add_spec(ws, {"name": "flagged", "kind": "sql", "inputs": {"e": VISITS},
                  "sql": "SELECT *, CASE WHEN dx = 'B20' THEN patient_id END AS b20_patient FROM e"})
    add_spec(ws, aggregate("b20", {"fn": "count_distinct", "column": "b20_patient"},
                           inputs={"derivative": "flagged"}))
    build_all(ws, ["flagged", "b20"])
    rows = by_department(ws, "b20")
    assert rows["Cardiology"]["suppressed"] and rows["Cardiology"]["part"] is None, "2 people with B20"
    assert all(r["part"] in (None, 0) for r in rows.values())


@pytest.mark.parametrize("fn", ["mean", "max", "median"])
def test_other_measures_of_a_0_1_column_are_refused(visits, fn):
    ws, _csv = visits
    spec = aggregate("rates", {"fn": fn, "column": "readmitted"})
    add_spec(ws, spec)
    with pytest.raises(SpecError, match=f"measures\\[1\\]: derivative 'rates': {fn} of 'readmitted', a column "
                                        f"holding only 0 and 1.*{re.escape(FLAG_RULE)}"):
        build(ws, "rates")
    assert Catalog(ws).current("rates") is None


def test_without_suppression_the_measures_are_published_as_they_are(visits):
    ws, _csv = visits
    add_spec(ws, {**aggregate("open", {"fn": "mean", "column": "readmitted"}), "suppress_below": 0})
    build(ws, "open")
    assert by_department(ws, "open")["Cardiology"]["part"] == pytest.approx(3 / 40)


@pytest.mark.parametrize("measure", [{"fn": "sum", "column": "readmit_code"}, {"fn": "mean", "column": "readmit_code"},
                                     {"fn": "sum", "column": "hiv"}, {"fn": "mean", "column": "hiv"},
                                     {"fn": "count_distinct", "column": "death_date"}])
def test_a_sum_of_two_values_or_distinct_values_of_three_people_hides_its_cell(visits, measure):
    """A yes/no coded 1 and 2 (2 * 40 - 83 = 3 readmitted), a 0/1 column another cell holds a 9
    in (the table is not all 0 and 1, Cardiology's cell is), three people's death dates: each
    gives the count of 3 people its cell holds, as a count of them would."""
    ws, csv = visits
    truth = duckdb.sql(f"SELECT department, count(*) FILTER (readmit_code = 1), count(*) FILTER (hiv = 1), "
                       f"count(death_date) FROM read_csv('{csv}') GROUP BY 1 ORDER BY 1").fetchall()
    assert truth == [("Cardiology", 3, 3, 3), ("Neurology", 15, 0, 0), ("Oncology", 0, 0, 0)], "independent"
    add_spec(ws, aggregate("coded", measure))
    build(ws, "coded")
    rows = by_department(ws, "coded")
    assert rows["Cardiology"]["suppressed"] and rows["Cardiology"]["part"] is None, "3 of 40 people"
    assert sum(r["suppressed"] for r in rows.values()) >= 2, "with a complement along the month's line"
    assert any(not r["suppressed"] for r in rows.values())


def test_a_sum_of_two_values_each_held_by_enough_people_is_published(visits):
    ws, _csv = visits
    spec = aggregate("coded", {"fn": "sum", "column": "readmit_code"})
    add_spec(ws, {**spec, "group_by": [], "filters": [{"column": "department", "op": "=", "value": "Neurology"}]})
    build(ws, "coded")
    [row] = read_table(ws, "coded")[1].to_pylist()
    assert (row["suppressed"], row["people"], row["part"]) == (False, 30, 15 * 1 + 15 * 2)


@pytest.mark.parametrize("measures", [
    [{"fn": "sum", "column": "only2", "as": "part"}],
    [{"fn": "sum", "column": "lab", "as": "part"}, {"fn": "mean", "column": "lab", "as": "mean"}],
    [{"fn": "mean", "column": "lab", "as": "part"}],
    [{"fn": "percentile", "column": "readmit_code", "p": 0.93, "as": "part"}],
    [{"fn": "median", "column": "readmit_code", "as": "part"}],
    [{"fn": "count_distinct", "column": "seen_date", "as": "part"}],
    [{"fn": "mean", "column": "huge2", "as": "part"}],
    [{"fn": "mean", "column": "vast", "as": "part"}],
    [{"fn": "mean", "column": "tiny", "as": "part"}],
    [{"fn": "mean", "column": "seen_month", "as": "part"}],
    [{"fn": "percentile", "column": "seen_month", "p": 0.53, "as": "part"}],
    [{"fn": "min", "column": "answer", "as": "part"}],
    [{"fn": "max", "column": "answer", "as": "part"}]])
def test_values_of_a_few_rows_or_splitting_a_cell_in_two_hide_it(visits, measures):
    """The thirtieth review: 2 for each of 3 people and empty for the others (sum 6), a sum and a
    mean of a value 3 people have (19.5 / 6.5), a mean of 3 people's values, a percentile or
    median of a 1/2 column split 37/3, 38 seen dates of 40 people (2 never seen), and a 1/2-like
    column too large for doubles to tell apart: each gives or rests on a count of 2 or 3 people."""
    ws, csv = visits
    truth = duckdb.sql(f"SELECT count(only2), count(lab), count(*) - count(seen_date) FROM read_csv('{csv}') "
                       f"WHERE department = 'Cardiology'").fetchall()
    assert truth == [(3, 3, 2)], "the independent count"
    spec = aggregate("few", {"fn": "count", "as": "visits"})
    add_spec(ws, {**spec, "measures": [spec["measures"][0], *measures]})
    build(ws, "few")
    rows = by_department(ws, "few")
    assert rows["Cardiology"]["suppressed"] and rows["Cardiology"]["part"] is None
    assert sum(r["suppressed"] for r in rows.values()) >= 2, "with a complement along the month's line"


def test_numbers_beyond_doubles_build(visits):
    """Numbers above 2**53 (each row its own) broke the build; now the cells whose values doubles
    cannot count are hidden (they might hold two values)."""
    ws, csv = visits
    add_spec(ws, aggregate("big", {"fn": "mean", "column": "big"}))
    build(ws, "big")
    assert all(r["suppressed"] for r in by_department(ws, "big").values())


def test_a_mean_of_everyday_values_is_published(visits):
    ws, csv = visits
    add_spec(ws, {**aggregate("labs", {"fn": "mean", "column": "lab"}),
                  "filters": [{"column": "department", "op": "!=", "value": "Cardiology"}]})
    build(ws, "labs")
    truth = dict(duckdb.sql(f"SELECT department, avg(lab) FROM read_csv('{csv}') WHERE department <> 'Cardiology' "
                            f"GROUP BY 1").fetchall())
    rows = by_department(ws, "labs")
    assert not any(r["suppressed"] for r in rows.values())
    assert {d: r["part"] for d, r in rows.items()} == pytest.approx(truth, rel=1e-12)


@pytest.mark.parametrize("fn", ["min", "max"])
def test_a_yes_no_column_brought_by_a_join_is_a_flag_too(visits, tmp_path, fn):
    """The thirty-first review: ``max`` of a true/false column joined from another source (read
    as text there) said which departments held an HIV-positive person, where the same column
    of the input was refused."""
    ws, csv = visits
    folder = tmp_path / "reg"
    folder.mkdir()
    duckdb.sql(f"COPY (SELECT patient_id AS pid, positive AS hivpos FROM read_csv('{csv}', all_varchar = true)) "
               f"TO '{folder / 'reg.csv'}' (HEADER)")
    ws.add_source("reg", "csv", {"path": str(folder)}, {})
    run_import(ws, "reg")
    spec = {**aggregate("joined", {"fn": fn, "column": "hivpos"}),
            "join": {"input": {"source": "reg", "stream": "reg"}, "on": {"left": "patient_id", "right": "pid"},
                     "columns": ["hivpos"]}}
    add_spec(ws, spec)
    with pytest.raises(SpecError, match=re.escape(FLAG_RULE)):
        build(ws, "joined")
