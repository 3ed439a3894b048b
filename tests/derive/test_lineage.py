"""Column lineage of sql: an output column keeps the role of every input column it reads."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from lithotse_desktop.derive.deidentify import _years, actions
from lithotse_desktop.derive.disclosure import output_roles
from lithotse_desktop.derive.lineage import sql_column_roles
from lithotse_desktop.derive.spec import SpecError

INPUTS = {"enc": {"patient_id": "person_key", "admit_date": "date", "department": None, "los": None},
          "adt": {"patient_id": "person_key", "birth_date": "birth_date", "mrn": "mrn", "ward": "code"}}


@pytest.fixture(scope="module")
def con():
    con = duckdb.connect()
    con.execute("CREATE TABLE enc (patient_id VARCHAR, admit_date DATE, department VARCHAR, los INTEGER)")
    con.execute("CREATE TABLE adt (patient_id VARCHAR, birth_date DATE, mrn VARCHAR, ward VARCHAR)")
    yield con
    con.close()


def roles(con, sql: str) -> dict[str, str | None]:
    schema = con.sql(f"SELECT * FROM ({sql}) LIMIT 0").to_arrow_table().schema
    return sql_column_roles(sql, schema, INPUTS)


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT patient_id AS pt, admit_date AS d, department FROM enc",
     {"pt": "person_key", "d": "date", "department": None}),
    ("SELECT upper(mrn) AS u, 'x' || mrn || ward AS joined, substr(mrn, 2) AS s FROM adt",
     {"u": "mrn", "joined": "mrn", "s": "mrn"}),
    ("SELECT CAST(substr(mrn, 2) AS INTEGER) AS pnum, CAST(strftime(birth_date, '%Y%m%d') AS INTEGER) AS born "
     "FROM adt", {"pnum": "mrn", "born": "birth_date"}),
    ("SELECT CASE WHEN mrn LIKE 'A%' THEN 'a' ELSE 'b' END AS flag, CASE WHEN true THEN ward END AS w FROM adt",
     {"flag": "mrn", "w": "code"}),
    ("SELECT (SELECT max(mrn) FROM adt) AS top, los FROM enc", {"top": "mrn", "los": "value"}),
    ("WITH c AS (SELECT patient_id AS p, ward FROM adt) SELECT p AS who, ward FROM (SELECT * FROM c) AS s",
     {"who": "person_key", "ward": "code"}),
    ("SELECT e.department, a.mrn AS m, e.admit_date FROM enc AS e JOIN adt AS a ON e.patient_id = a.patient_id",
     {"department": None, "m": "mrn", "admit_date": "date"}),
    ("SELECT * EXCLUDE (mrn) RENAME (birth_date AS b) FROM adt",
     {"patient_id": "person_key", "b": "birth_date", "ward": "code"}),
    ("SELECT * FROM enc JOIN adt USING (patient_id)",
     {"patient_id": "person_key", "admit_date": "date", "department": None, "los": "value",
      "birth_date": "birth_date", "mrn": "mrn", "ward": "code"}),
    ("SELECT ward, count(mrn) AS n, count(DISTINCT mrn) AS people, count(*) AS rows FROM adt GROUP BY ward",
     {"ward": "code", "n": "count", "people": "count", "rows": "count"}),
    ("SELECT mrn, count(*) AS visits FROM adt GROUP BY mrn", {"mrn": "mrn", "visits": "count"}),
    ("SELECT ward, sum(1) OVER (PARTITION BY ward) AS a, row_number() OVER (PARTITION BY ward) AS b, "
     "count(*) OVER (PARTITION BY ward, mrn IS NULL) AS c FROM adt", {"ward": "code", "a": "count", "b": "count",
                                                                      "c": "count"}),
    ("SELECT v.ward, count(*) OVER (PARTITION BY p.patient_id, v.ward) AS k FROM adt v LEFT JOIN adt p "
     "ON v.patient_id = p.patient_id AND false", {"ward": "code", "k": "count"}),
    ("WITH x AS (SELECT ward, patient_id AS pid FROM adt UNION ALL BY NAME SELECT patient_id FROM adt WHERE false) "
     "SELECT pid AS patient_id, ward, count(*) OVER (PARTITION BY patient_id, ward) AS k FROM x",
     {"patient_id": "person_key", "ward": "code", "k": "count"}),
    ("SELECT patient_id, ward, count(*) AS k FROM adt GROUP BY GROUPING SETS ((patient_id, ward), (ward))",
     {"patient_id": "person_key", "ward": "code", "k": "count"}),
    ("SELECT patient_id AS pk, count(*) AS visits FROM adt GROUP BY pk", {"pk": "person_key", "visits": "value"}),
    ("SELECT v.ward, (SELECT count(*) FROM adt w WHERE w.ward = v.ward GROUP BY v.patient_id) AS k FROM adt v",
     {"ward": "code", "k": "count"}),
    ("SELECT ward, count(*) OVER (PARTITION BY patient_id) AS visits, max(birth_date) OVER (PARTITION BY ward) AS "
     "oldest FROM adt", {"ward": "code", "visits": "value", "oldest": "birth_date"}),
    ("SELECT mrn AS m, m || '!' AS loud FROM adt", {"m": "mrn", "loud": "mrn"}),
    ("SELECT ward AS x FROM adt UNION ALL SELECT mrn FROM adt", {"x": "mrn"}),
    ("SELECT list_transform([mrn], lambda v: v || '') AS l, 1 AS one FROM adt", {"l": "mrn", "one": "value"}),
])
def test_an_output_column_takes_the_strongest_role_it_reads(con, sql, expected):
    assert roles(con, sql) == expected


def test_a_recursive_cte_follows_what_its_recursive_part_adds(con):
    sql = ("WITH RECURSIVE r(k, n) AS (SELECT ward, 1 FROM adt UNION ALL SELECT mrn, n + 1 FROM r, adt "
           "WHERE n < 2) SELECT k, n FROM r")
    assert roles(con, sql) == {"k": "mrn", "n": "value"}


@pytest.mark.parametrize("sql", [
    "SELECT * FROM range(3) AS r(department)",
    "SELECT COLUMNS('ward|mrn') FROM adt",
])
def test_what_cannot_be_followed_takes_the_strongest_role_of_every_input(con, sql):
    assert set(roles(con, sql).values()) == {"mrn"}


def test_spark_sql_is_followed_where_duckdb_parses_it_else_keeps_the_input_column_of_the_same_name():
    parsed = {"kind": "sql", "engine": "spark", "sql": "SELECT mrn AS m, 1 AS n FROM adt"}
    assert output_roles(parsed, pa.schema([("m", pa.string()), ("n", pa.int64())]), INPUTS) == \
        {"m": "mrn", "n": "value"}
    unparsed = {"kind": "sql", "engine": "spark", "sql": "SELECT `mrn` AS m, mrn FROM adt DISTRIBUTE BY ward"}
    assert output_roles(unparsed, pa.schema([("m", pa.string()), ("mrn", pa.string())]), INPUTS) == \
        {"m": None, "mrn": "mrn"}


def test_declared_columns_still_win_over_lineage():
    sql = "SELECT CASE WHEN mrn IS NULL THEN 'none' ELSE 'some' END AS has FROM adt"
    schema = pa.schema([("has", pa.string())])
    assert output_roles({"kind": "sql", "sql": sql}, schema, INPUTS) == {"has": "mrn"}
    assert output_roles({"kind": "sql", "sql": sql, "columns": {"has": "code"}}, schema, INPUTS) == {"has": "code"}


def test_a_year_is_kept_only_from_what_reads_as_a_date():
    text = pa.chunked_array([["1965-08-01", "19650801", "1965", "2020-03-15T10:00:00Z", "20200315103000",
                              "08011965", "650801", "abc", None]])
    assert _years(text).to_pylist() == [1965, 1965, 1965, 2020, 2020, None, None, None, None]
    numbers = pa.chunked_array([[19650801, 8011965, -142560000, 1420070400]])
    assert _years(numbers).to_pylist() == [1965, None, None, None]


@pytest.mark.parametrize(("typ", "role"), [(pa.bool_(), "birth_date"), (pa.float64(), "date"),
                                           (pa.struct([("y", pa.int32())]), "zip")])
def test_safe_harbor_refuses_what_it_cannot_generalise(typ, role):
    with pytest.raises(SpecError, match="cannot cut down .*rule: de-identification publishes only what it can "
                                        "generalise"):
        actions("safe-harbor", {"c": role}, {"c": typ})
