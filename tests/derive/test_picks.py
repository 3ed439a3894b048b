"""Which conditions of a sql query pick people out by an identifier, read from DuckDB's syntax tree."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from lithotse_desktop.derive.disclosure import picks
from lithotse_desktop.derive.lineage import sql_picks

INPUTS = {"enc": {"patient_id": "person_key", "admit_date": "date", "department": "code", "los": "value"},
          "pat": {"id": "person_key", "family": "name", "mrn": "mrn", "birth": "birth_date", "sex": "code"}}


@pytest.fixture(scope="module")
def con():
    con = duckdb.connect()
    con.execute("CREATE TABLE enc (patient_id VARCHAR, admit_date DATE, department VARCHAR, los INTEGER)")
    con.execute("CREATE TABLE pat (id VARCHAR, family VARCHAR, mrn VARCHAR, birth DATE, sex VARCHAR)")
    yield con
    con.close()


def found(con, sql: str, computed: dict[str, frozenset[str]] | None = None):
    schema = con.sql(f"SELECT * FROM ({sql}) LIMIT 0").to_arrow_table().schema
    return sql_picks(sql, schema, INPUTS, computed)


@pytest.mark.parametrize(("sql", "condition"), [
    ("SELECT * FROM enc WHERE patient_id = 'P000646'", "patient_id = 'P000646'"),
    ("SELECT *, CASE WHEN patient_id = 'P000646' THEN 1 END AS flag FROM enc", "patient_id = 'P000646'"),
    ("SELECT * FROM enc WHERE patient_id IN ('P1', 'P2') AND los > 2", "patient_id IN ('P1', 'P2')"),
    ("SELECT * FROM enc WHERE lower(patient_id) LIKE 'p0006%'", "lower(patient_id) LIKE 'p0006%'"),
    ("SELECT * FROM pat WHERE family BETWEEN 'Sm' AND 'Sn'", "family BETWEEN 'Sm' AND 'Sn'"),
    ("SELECT * FROM enc WHERE hash(patient_id) % 100 = 7", "hash(patient_id) % 100 = 7"),
    ("SELECT * FROM enc WHERE starts_with(patient_id, 'P0006')", "starts_with(patient_id, 'P0006')"),
    ("SELECT e.* FROM enc e JOIN pat p ON e.patient_id = p.id AND p.family = 'Smith'", "p.family = 'Smith'"),
    ("SELECT * FROM enc WHERE EXISTS (SELECT 1 FROM pat WHERE pat.id = enc.patient_id AND pat.mrn = 'M1')",
     "pat.mrn = 'M1'"),
    ("SELECT * FROM enc WHERE patient_id IN (SELECT 'P1')", "patient_id IN (SELECT 'P1')"),
    ("SELECT * FROM enc WHERE patient_id = (SELECT min(id) FROM pat)", "patient_id = (SELECT min(id) FROM pat)"),
    ("SELECT department, count(*) FILTER (WHERE patient_id = 'x') AS n FROM enc GROUP BY ALL", "patient_id = 'x'"),
    ("SELECT if(patient_id = 'x', 1, 0) AS f FROM enc", "patient_id = 'x'"),
    ("SELECT nullif(patient_id, 'x') AS f FROM enc", "nullif(patient_id, 'x')"),
    ("SELECT * FROM enc QUALIFY row_number() OVER (ORDER BY patient_id) = 1",
     "row_number() OVER (ORDER BY patient_id) = 1"),
    ("SELECT * FROM enc ORDER BY patient_id LIMIT 1", "ORDER BY patient_id with LIMIT or DISTINCT ON"),
    ("WITH s AS (SELECT * FROM enc WHERE patient_id = 'x') SELECT department FROM s", "patient_id = 'x'"),
    ("SELECT * FROM enc JOIN (SELECT 'P1' AS patient_id) USING (patient_id)", "USING (patient_id)"),
    ("SELECT * FROM pat WHERE birth > DATE '1990-01-01'", "birth > DATE '1990-01-01'"),
    ("SELECT e.* FROM enc e, unnest(CASE WHEN e.patient_id = 'P1' THEN [1] ELSE [] END) AS t(x)",
     "CASE WHEN e.patient_id = 'P1' THEN [1] ELSE [] END in FROM, whose rows depend on an identifier or a "
     "group's size"),
    ("SELECT e.* FROM enc e, range(CAST(hash(e.patient_id) % 1000 = 7 AS INTEGER)) AS t(x)",
     "CAST(hash(e.patient_id) % 1000 = 7 AS INTEGER) in FROM, whose rows depend on an identifier or a "
     "group's size"),
    ("SELECT v.* FROM enc v WHERE NOT EXISTS (SELECT 1 FROM enc w WHERE w.department = v.department AND "
     "NOT (w.patient_id = v.patient_id))", "NOT (w.patient_id = v.patient_id)"),
    ("SELECT department, count(*) AS n FROM enc GROUP BY department HAVING count(DISTINCT patient_id) > 10",
     "count(DISTINCT patient_id) > 10 (a test of a group's size or value)"),
    ("SELECT s.* FROM (SELECT *, count(*) OVER (PARTITION BY department) AS c FROM enc) s, range(2 - s.c) t(x)",
     "2 - s.c in FROM, whose rows depend on an identifier or a group's size"),
    ("SELECT s.* FROM enc s WHERE 1 IN (SELECT count(*) FROM enc w WHERE w.department = s.department)",
     "1 IN (SELECT count(*) FROM enc w WHERE w.department = s.department) (a test of a group's size or value)"),
    ("SELECT * FROM enc QUALIFY count(*) OVER (PARTITION BY department, admit_date) = 1",
     "count(*) OVER (PARTITION BY department, admit_date) = 1 (a test of a group's size or value)"),
    ("SELECT e.* FROM enc e, LATERAL (SELECT unnest(range(1 - length(replace(e.patient_id, 'P1', '')) // 7)) AS z) t",
     "unnest(range(1 - length(replace(e.patient_id, 'P1', '')) // 7)), whose rows depend on an identifier or a "
     "group's size"),
    ("SELECT e.* FROM enc e, unnest(list_filter([e.patient_id], lambda x: x = 'P1')) AS t(x)",
     "list_filter([e.patient_id], lambda x: x = 'P1') in FROM, whose rows depend on an identifier or a "
     "group's size"),
])
def test_a_comparison_of_an_identifier_picks_people_out(con, sql, condition):
    assert found(con, sql).conditions == (condition,)


@pytest.mark.parametrize("sql", [
    "SELECT e.* FROM enc e JOIN pat p ON e.patient_id = p.id",
    "SELECT * FROM enc e JOIN pat p ON 'Patient/' || p.id = e.patient_id",
    "SELECT * FROM enc e JOIN pat p ON split_part(e.patient_id, '/', 2) = p.id",
    "SELECT * FROM enc e, pat p WHERE e.patient_id = p.id AND p.sex = 'f'",
    "SELECT * FROM enc JOIN (SELECT id AS patient_id, sex FROM pat) USING (patient_id)",
    "SELECT * FROM enc WHERE patient_id IN (SELECT id FROM pat WHERE sex = 'f')",
    "SELECT * FROM enc WHERE patient_id IS NOT NULL AND department = 'cardio'",
    "SELECT e.*, t.x FROM enc e, range(3) AS t(x)",
    "SELECT e.*, d FROM enc e, unnest(['a', e.department]) AS t(d)",
    "SELECT * FROM enc WHERE admit_date >= DATE '2024-01-01' AND los > 3",
    "SELECT patient_id AS pt, upper(patient_id) AS u, count(DISTINCT patient_id) OVER () AS n FROM enc",
])
def test_joins_on_keys_presence_and_conditions_on_codes_dates_and_counts_pick_no_one(con, sql):
    assert found(con, sql).conditions == ()


def test_a_presence_test_of_a_computed_identifier_is_a_pick_down_the_chain(con):
    assert found(con, "SELECT * FROM enc WHERE upper(patient_id) IS NULL").conditions == \
        ("upper(patient_id) IS NULL",)
    assert found(con, "SELECT *, MAP {'P1': patient_id}[patient_id] AS hit FROM enc").computed == {"hit"}
    changed = {"enc": frozenset({"patient_id"})}
    assert found(con, "SELECT * FROM enc WHERE patient_id IS NOT NULL", changed).conditions == \
        ("patient_id IS NOT NULL",)
    assert found(con, "SELECT patient_id AS pt FROM enc", changed).computed == {"pt"}


def test_spark_sql_duckdb_cannot_parse_picks_when_it_names_an_identifier_or_reads_more_than_select_star():
    spec = {"name": "spark", "kind": "sql", "engine": "spark"}
    schema = pa.schema([("department", pa.string())])
    named = picks({**spec, "sql": "SELECT department FROM enc LATERAL VIEW explode(array(patient_id)) x AS y"},
                  schema, INPUTS, {})
    assert named["picks"] == [{"derivative": "spark", "condition": "Spark SQL DuckDB cannot parse, naming "
                                                                   "patient_id"}]
    plain = picks({**spec, "sql": "SELECT * FROM enc DISTRIBUTE BY department"}, schema, INPUTS, {})
    assert plain["picks"] == []
    starred = picks({**spec, "sql": "SELECT department FROM enc WHERE hash(enc.*) = 7 DISTRIBUTE BY department"},
                    schema, INPUTS, {})
    assert starred["picks"][0]["condition"] == "Spark SQL DuckDB cannot parse, using * beyond SELECT *"
