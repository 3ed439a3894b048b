"""The count of a sql's rows against its inputs' records, made in the run that publishes them
(:func:`lithotse_desktop.derive.kinds.sql.record_check`): the marks it adds change nothing the
query gives, and they count what an independent query counts."""

from __future__ import annotations

from collections import Counter

import duckdb
import pytest

from lithotse_desktop.derive.kinds.sql import check_reads, record_check
from lithotse_desktop.derive.spec import SpecError


@pytest.fixture(scope="module")
def con():
    con = duckdb.connect()
    con.execute("CREATE TABLE visits AS SELECT 'p' || (i % 50) AS patient_id, "
                "['Cardiology', 'Oncology', 'Dermatology'][1 + i % 3] AS department, "
                "CASE WHEN i % 7 = 0 THEN 'IMP' ELSE 'AMB' END AS class, i AS n FROM range(300) AS t(i)")
    yield con
    con.close()


SAME = [
    "SELECT department, count(*) AS n, count(DISTINCT patient_id) AS p FROM visits GROUP BY department",
    "SELECT department, class, count(*) AS n FROM visits WHERE n > 20 GROUP BY ALL HAVING count(*) > 10",
    "SELECT department, count(*) AS n, sum(count(*)) OVER () AS total FROM visits GROUP BY ALL",
    "SELECT department, count(*) AS n FROM visits GROUP BY department QUALIFY rank() OVER (ORDER BY count(*)) = 1",
    "SELECT department, count(*) AS n FROM visits GROUP BY ALL ORDER BY n DESC, department LIMIT 2",
    "SELECT DISTINCT department, class FROM visits",
    "SELECT DISTINCT department FROM visits ORDER BY department LIMIT 2",
    "SELECT DISTINCT ON (patient_id) patient_id, department FROM visits ORDER BY patient_id, n",
    "SELECT department, class, count(*) AS n FROM visits GROUP BY GROUPING SETS ((department), (department, class))",
    "SELECT COLUMNS(lambda c: c IN ('department', 'class')), count(*) AS n FROM visits GROUP BY ALL",
    "SELECT * EXCLUDE (n, patient_id) FROM visits GROUP BY ALL",
    "SELECT a.department, count(*) AS n FROM visits AS a JOIN visits AS b ON a.n = b.n GROUP BY ALL",
    "WITH imp AS (SELECT * FROM visits WHERE class = 'IMP') SELECT department, count(*) AS n FROM imp GROUP BY ALL",
    "SELECT department, count(*) AS n FROM (SELECT * FROM visits WHERE n % 2 = 0) AS v GROUP BY ALL",
    "SELECT DISTINCT department, count(*) OVER (PARTITION BY department) AS c FROM visits",
    "SELECT DISTINCT count(*) AS c FROM visits GROUP BY department",
    "SELECT count(*) AS n FROM visits",
    "SELECT DISTINCT department, class FROM visits ORDER BY ALL",
    "SELECT department, count(*) AS n FROM visits GROUP BY ALL ORDER BY ALL",
    "SELECT * FROM visits ORDER BY ALL LIMIT 7",
    "SELECT DISTINCT patient_id, department FROM visits QUALIFY count(*) OVER () > 0",
    "SELECT department FROM visits UNION SELECT department FROM visits",
    "SELECT * FROM (SELECT department FROM visits UNION SELECT class FROM visits) AS u",
    "SELECT department FROM visits UNION ALL SELECT class FROM visits",
    "SELECT department FROM visits UNION ALL SELECT a.department FROM visits AS a JOIN visits AS b ON a.n = b.n",
    "SELECT COLUMNS('.*') FROM visits WHERE n < 5",
]


@pytest.mark.parametrize("sql", SAME)
def test_the_marked_run_gives_what_the_query_gives(con, sql):
    check = record_check(sql, {"visits"})
    published = check.strip(con.sql(check.query()).to_arrow_table())
    assert Counter(tuple(row.values()) for row in published.to_pylist()) == Counter(con.sql(sql).fetchall())
    assert published.column_names == con.sql(sql).columns


COUNTED = [  # sql, rows its groups are made of (or its own rows), records in more rows than held
    ("SELECT department, count(*) AS n FROM visits WHERE class = 'IMP' GROUP BY ALL",
     "SELECT count(*) FROM visits WHERE class = 'IMP'", 0),
    ("SELECT DISTINCT department FROM visits", "SELECT count(*) FROM visits", 0),
    ("SELECT department, count(*) FROM visits GROUP BY ROLLUP (department)", "SELECT 2 * count(*) FROM visits", 300),
    ("SELECT department, count(*) AS n FROM visits, (VALUES (1), (2)) AS t(x) GROUP BY ALL",
     "SELECT 2 * count(*) FROM visits", 300),
    ("SELECT a.department, count(*) AS n FROM visits AS a FULL JOIN (SELECT * FROM visits WHERE class = 'IMP') AS b "
     "ON a.n = b.n + 1000 GROUP BY ALL", "SELECT count(*) + count(*) FILTER (class = 'IMP') FROM visits",
     "SELECT count(*) FROM visits WHERE class = 'IMP'"),
    ("SELECT * FROM visits UNION ALL SELECT * FROM visits WHERE class = 'IMP'",
     "SELECT count(*) + count(*) FILTER (class = 'IMP') FROM visits",
     "SELECT count(*) FROM visits WHERE class = 'IMP'"),
]


@pytest.mark.parametrize(("sql", "rows", "over"), COUNTED)
def test_the_count_is_what_an_independent_query_counts(con, sql, rows, over):
    check = record_check(sql, {"visits"})
    counts = check.count(con.sql(check.query()).to_arrow_table(), lambda held: con.sql(held).to_arrow_table())
    expected_over = over if isinstance(over, int) else con.sql(over).fetchall()[0][0]
    assert counts == (con.sql(rows).fetchall()[0][0],) * 2 + (expected_over,)
    assert check.holds_each_once(counts, {"visits"}) == (expected_over == 0)


def test_two_equal_rows_of_an_input_are_two_records(con):
    con.execute("CREATE TABLE twice AS SELECT * FROM visits UNION ALL SELECT * FROM visits WHERE n < 10")
    check = record_check("SELECT department, count(*) AS n FROM twice GROUP BY ALL", {"twice"})
    counts = check.count(con.sql(check.query()).to_arrow_table(), lambda held: con.sql(held).to_arrow_table())
    assert counts == (310, 310, 0) and check.holds_each_once(counts, {"twice"})


def test_rows_made_by_grouping_below_the_top_are_no_records(con):
    for sql in ("SELECT count(*) AS n FROM (SELECT DISTINCT department FROM visits)",
                "SELECT DISTINCT count(*) AS c FROM visits GROUP BY department"):
        check = record_check(sql, {"visits"})
        counts = check.count(con.sql(check.query()).to_arrow_table(), lambda held: con.sql(held).to_arrow_table())
        assert not check.holds_each_once(counts, {"visits"})


@pytest.mark.parametrize("sql", ["SELECT COLUMNS('^(department|__.*)$') FROM visits GROUP BY ALL",
                                 "SELECT DISTINCT COLUMNS('.*') FROM visits"])
def test_a_pattern_that_would_group_by_the_marks_is_refused(sql):
    """The twenty-sixth review: a COLUMNS pattern matching the marks' names made a group of each
    record in a DISTINCT or GROUP BY ALL (76 rows for 3 departments)."""
    with pytest.raises(SpecError, match=r"COLUMNS\(.*\) would also take the columns the build reads"):
        check_reads({"sql": sql, "inputs": {"visits": {}}})
    check_reads({"sql": "SELECT DISTINCT COLUMNS('^dep.*') FROM visits", "inputs": {"visits": {}}})
