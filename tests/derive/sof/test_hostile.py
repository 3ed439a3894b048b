"""Hostile view content must fail as ViewError or match nothing; it must never run as SQL."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from lithotse_desktop.derive.sof import ViewError, compile_view, run_view

SNEAKY = [
    "'; DROP TABLE res; --",
    "x\"; ATTACH 'evil.db' AS evil; --",
    "read_csv('/etc/passwd')",
    "') UNION SELECT * FROM read_csv('/etc/passwd') --",
    "COPY res TO '/tmp/lithotse-sof-pwned.csv'",
    "\\'; COPY (SELECT 1) TO 'x.csv'; --",
    "$1",
]


@pytest.fixture()
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    con.execute("CREATE TABLE res (resource JSON)")
    con.execute("INSERT INTO res VALUES (?)", [json.dumps({"resourceType": "Patient", "id": "p1", "gender": "x"})])
    yield con
    con.close()


def _still_intact(con: duckdb.DuckDBPyConnection) -> None:
    assert con.execute("SELECT count(*) FROM res").fetchone() == (1,)
    assert [r[0] for r in con.execute("SELECT database_name FROM duckdb_databases() WHERE NOT internal").fetchall()] \
        == ["db"]
    assert not Path("/tmp/lithotse-sof-pwned.csv").exists()


def _run(con: duckdb.DuckDBPyConnection, view: dict) -> list[dict] | None:
    try:
        return run_view(con, view, "res").to_pylist()
    except ViewError:
        return None


@pytest.mark.parametrize("text", SNEAKY)
def test_hostile_constants_match_nothing(con: duckdb.DuckDBPyConnection, text: str) -> None:
    view = {"resource": "Patient", "constant": [{"name": "c", "valueString": text}],
            "select": [{"column": [{"name": "id", "path": "id"}, {"name": "echo", "path": "%c"}]}],
            "where": [{"path": "gender = %c"}]}
    assert _run(con, view) == []
    _still_intact(con)


@pytest.mark.parametrize("text", SNEAKY)
def test_hostile_string_literals_stay_strings(con: duckdb.DuckDBPyConnection, text: str) -> None:
    literal = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    view = {"resource": "Patient", "select": [{"column": [{"name": "echo", "path": literal}]}]}
    assert _run(con, view) == [{"echo": text}]
    _still_intact(con)


@pytest.mark.parametrize("text", SNEAKY)
@pytest.mark.parametrize("where", ["name", "path", "forEach", "resource", "constant", "type"])
def test_hostile_structure_is_rejected(con: duckdb.DuckDBPyConnection, text: str, where: str) -> None:
    column = {"name": "id", "path": "id"}
    select: dict = {"column": [column]}
    view: dict = {"resource": "Patient", "select": [select]}
    if where in ("name", "path", "type"):
        column[where] = text
    elif where == "forEach":
        select["forEach"] = text
    elif where == "resource":
        view["resource"] = text
    else:
        view["constant"] = [{"name": text, "valueString": "v"}]
    if where == "type":
        # The declared type only picks a cast; unknown names fall back to VARCHAR and are never spliced in.
        plain = {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}
        assert compile_view(view, "res") == compile_view(plain, "res")
        assert _run(con, view) == [{"id": "p1"}]
    else:
        with pytest.raises(ViewError):
            compile_view(view, "res")
    _still_intact(con)
