"""A view compiled over values extracted beforehand (what a build reads from each resource in the one
parse that also gives its key and version) gives the rows of the view over the resources themselves."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from lithotse_desktop.derive.sof import ViewError, compile_view
from lithotse_desktop.derive.sof.compile import compile_view_hoisted
from tests.conftest import TEST_DATA

SUITE = TEST_DATA / "sql-on-fhir-v2"


def _cases() -> list[tuple[str, list[dict], dict]]:
    cases = []
    for path in sorted(SUITE.glob("*.json")):
        suite = json.loads(path.read_text(encoding="utf-8"))
        for test in suite.get("tests", []):
            cases.append((f"{path.stem}: {test.get('title')}", suite.get("resources", []), test["view"]))
    return cases


CASES = _cases()


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: list[object]) -> list[tuple] | str:
    try:
        return con.execute(sql, params).fetchall()
    except duckdb.Error as exc:
        return f"error: {type(exc).__name__}"


@pytest.mark.parametrize(("resources", "view"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hoisted_view_gives_the_rows_of_the_view_over_resources(resources: list[dict], view: dict) -> None:
    try:
        whole_sql, whole_params = compile_view(view, "(SELECT resource, \"resourceType\", n FROM res)",
                                               type_column="resourceType", carry=("n",))
    except ViewError:
        with pytest.raises(ViewError):
            compile_view_hoisted(view, type_column="resourceType", carry=("n",))
        return
    hoisted = compile_view_hoisted(view, type_column="resourceType", carry=("n",))
    con = duckdb.connect()
    con.execute("CREATE TABLE res (resource VARCHAR, \"resourceType\" VARCHAR, n BIGINT)")
    con.executemany("INSERT INTO res VALUES (?, ?, ?)",
                    [[json.dumps(r), r.get("resourceType"), i] for i, r in enumerate(resources)])
    whole = _run(con, whole_sql, whole_params)
    if hoisted is None:
        # it reads more of a resource than the values at a few paths: a build runs it over the text
        assert "__r" in whole_sql
        return
    values = "".join(f"json_extract(resource, '{p.replace(chr(39), chr(39) * 2)}') AS {c}, "
                     for p, c in zip(hoisted.paths, hoisted.columns, strict=True))
    staged = f"SELECT {values}\"resourceType\", n FROM res"
    assert _run(con, hoisted.over(staged), hoisted.params) == whole
    text = hoisted.as_text()
    if text is not None:
        # the values extracted as text, as a build reads them when the view reads them so only
        texts = "".join(f"json_extract_string(resource, '{p.replace(chr(39), chr(39) * 2)}') AS {c}, "
                        for p, c in zip(text.paths, text.columns, strict=True))
        assert _run(con, text.over(f"SELECT {texts}\"resourceType\", n FROM res"), text.params) == whole


def test_most_suite_views_are_hoisted() -> None:
    """The fast path is the common one: plain paths, where, forEach over root elements."""
    hoisted = 0
    for _, _, view in CASES:
        try:
            hoisted += compile_view_hoisted(view, type_column="resourceType") is not None
        except ViewError:
            pass
    assert hoisted >= len(CASES) // 2, (hoisted, len(CASES))


def test_plain_columns_read_their_values_as_text() -> None:
    """A view reading each value as text takes it extracted as text; one reading a value as JSON
    (here its elements, with forEach) keeps the JSON."""
    plain = {"resource": "Encounter", "select": [{"column": [{"name": "id", "path": "getResourceKey()"},
                                                             {"name": "status", "path": "status"},
                                                             {"name": "start", "path": "period.start"}]}]}
    hoisted = compile_view_hoisted(plain, type_column="resourceType")
    assert hoisted is not None and not hoisted.text
    text = hoisted.as_text()
    assert text is not None and text.text and text.paths == hoisted.paths
    assert "json_extract_string(__h" not in text.sql
    each = {"resource": "Patient", "select": [{"forEach": "name", "column": [{"name": "family", "path": "family"}]}]}
    found = compile_view_hoisted(each, type_column="resourceType")
    assert found is not None and found.as_text() is None


def test_view_reading_the_resource_itself_is_not_hoisted() -> None:
    view = {"resource": "Patient", "select": [{"column": [{"name": "whole", "path": "$this", "type": "string"}]}]}
    assert compile_view_hoisted(view, type_column="resourceType") is None


def test_suite_is_there() -> None:
    assert len(CASES) >= 134 and Path(SUITE).is_dir()
