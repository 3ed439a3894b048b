"""Compiler behaviour beyond the conformance suite: API shape, error locations, types, parameters."""

from __future__ import annotations

import json

import duckdb
import pytest

from lithotse_desktop.derive.sof import ViewError, compile_view, run_view, validate_view
from lithotse_desktop.derive.sof.functions import FUNCTIONS

PATIENTS = [
    {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-02-03", "active": True,
     "name": [{"use": "official", "family": "Ng", "given": ["Ann", "B"]}, {"family": "Old"}],
     "multipleBirthInteger": 2},
    {"resourceType": "Patient", "id": "p2", "gender": "male"},
    {"resourceType": "Observation", "id": "o1", "status": "final", "valueQuantity": {"value": 7.5}},
]


@pytest.fixture()
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE res (resource JSON)")
    con.executemany("INSERT INTO res VALUES (?)", [[json.dumps(r)] for r in PATIENTS])
    yield con
    con.close()


def test_output_columns_are_named_ordered_and_typed(con: duckdb.DuckDBPyConnection) -> None:
    view = {"resource": "Patient", "select": [{"column": [
        {"name": "id", "path": "getResourceKey()"},
        {"name": "active", "path": "active", "type": "boolean"},
        {"name": "births", "path": "multipleBirth.ofType(integer)", "type": "integer"},
        {"name": "given", "path": "name.given", "collection": True},
        {"name": "born", "path": "birthDate", "type": "date"},
    ]}]}
    sql, params = compile_view(view, "res")
    rel = con.sql(sql, params=params)
    assert rel.columns == ["id", "active", "births", "given", "born"]
    assert [str(t) for t in rel.types] == ["VARCHAR", "BOOLEAN", "BIGINT", "VARCHAR[]", "VARCHAR"]
    assert sorted(rel.fetchall()) == [("p1", True, 2, ["Ann", "B"], "1970-02-03"), ("p2", None, None, [], None)]


def test_constants_are_bound_parameters_not_sql_text() -> None:
    view = {"resource": "Patient", "constant": [{"name": "g", "valueString": "x' OR 1=1 --"}],
            "select": [{"column": [{"name": "id", "path": "id"}]}], "where": [{"path": "gender = %g"}]}
    sql, params = compile_view(view, "res")
    assert "x' OR 1=1" not in sql
    assert "x' OR 1=1 --" in params
    assert "$1" in sql


@pytest.mark.parametrize(("view", "location"), [
    ({"resource": "Patient", "select": [{"column": [{"name": "a", "path": "id"},
                                                    {"name": "b", "path": "id"},
                                                    {"name": "c", "path": "foo..bar"}]}]},
     "select[0].column[2].path: cannot parse FHIRPath 'foo..bar'"),
    ({"resource": "Patient", "select": [{"column": [{"name": "a", "path": "name.frobnicate()"}]}]},
     "select[0].column[0].path: unknown FHIRPath function frobnicate()"),
    ({"resource": "Patient", "select": [{"forEach": "name", "column": [{"name": "a", "path": "%nope"}]}]},
     "select[0].column[0].path: undefined constant %nope"),
    ({"select": [{"column": [{"name": "a", "path": "id"}]}]}, "resource:"),
    ({"resource": "Patient", "select": [{"column": [{"name": "a b", "path": "id"}]}]}, "select[0].column[0].name:"),
    ({"resource": "Patient", "select": [{"column": [{"name": "a", "path": "id"}]},
                                        {"column": [{"name": "a", "path": "id"}]}]}, "duplicate column names"),
])
def test_validate_names_the_offending_path(view: dict, location: str) -> None:
    with pytest.raises(ViewError) as err:
        validate_view(view)
    assert location in str(err.value)


def test_runtime_errors_become_view_errors(con: duckdb.DuckDBPyConnection) -> None:
    view = {"resource": "Patient", "select": [{"column": [{"name": "family", "path": "name.family"}]}]}
    with pytest.raises(ViewError, match="more than one value"):
        run_view(con, view, "res")


def test_fhirpath_functions_and_operators(con: duckdb.DuckDBPyConnection) -> None:
    view = {"resource": "Patient", "where": [{"path": "id = 'p1'"}], "select": [{"column": [
        {"name": "official", "path": "name.where(use = 'official').family.first()"},
        {"name": "n_names", "path": "name.count()", "type": "integer"},
        {"name": "upper", "path": "gender.upper()"},
        {"name": "starts", "path": "gender.startsWith('fem')", "type": "boolean"},
        {"name": "joined", "path": "name.given.join('+')"},
        {"name": "concat", "path": "id & '-' & gender"},
        {"name": "math", "path": "(multipleBirth.ofType(integer) * 3 + 1) div 2", "type": "integer"},
        {"name": "logic", "path": "active implies gender = 'female'", "type": "boolean"},
        {"name": "iif", "path": "iif(active, 'yes', 'no')"},
        {"name": "in", "path": "gender in ('male' | 'female')", "type": "boolean"},
        {"name": "low", "path": "birthDate.lowBoundary()", "type": "date"},
    ]}]}
    rows = run_view(con, view, "res").to_pylist()
    assert rows == [{"official": "Ng", "n_names": 2, "upper": "FEMALE", "starts": True, "joined": "Ann+B",
                     "concat": "p1-female", "math": 3, "logic": True, "iif": "yes", "in": True,
                     "low": "1970-02-03"}]


def test_other_resource_types_are_ignored(con: duckdb.DuckDBPyConnection) -> None:
    view = {"resource": "Observation", "select": [{"column": [
        {"name": "id", "path": "id"}, {"name": "v", "path": "value.ofType(Quantity).value", "type": "decimal"}]}]}
    assert run_view(con, view, "res").to_pylist() == [{"id": "o1", "v": 7.5}]


def test_source_relation_may_be_a_subquery(con: duckdb.DuckDBPyConnection) -> None:
    view = {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}
    rows = run_view(con, view, "(SELECT resource FROM res WHERE resource->>'$.id' <> 'p2')").to_pylist()
    assert rows == [{"id": "p1"}]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_in_the_table_checks_its_argument_count(name: str) -> None:
    function = FUNCTIONS[name]
    args = ", ".join(["'x'"] * (function.high + 1))
    view = {"resource": "Patient", "select": [{"column": [{"name": "a", "path": f"name.{name}({args})"}]}]}
    expected = (f"{name}() takes one type name" if function.type_argument
                else f"{name}() takes {function.low}..{function.high} arguments, got {function.high + 1}")
    with pytest.raises(ViewError) as err:
        validate_view(view)
    assert str(err.value) == f"select[0].column[0].path: {expected}"
