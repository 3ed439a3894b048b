"""``[limits] memory``: parsed from lithotse.toml, put on every DuckDB connection, spilling in the workspace."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pytest
import tomli_w

from lithotse_desktop import engine
from lithotse_desktop.derive.inputs import connect
from lithotse_desktop.errors import ConfigError
from lithotse_desktop.workspace import Workspace


def _set_memory(ws: Workspace, value: object) -> Path:
    ws.config["limits"] = {"memory": value}
    path = ws.root / "lithotse.toml"
    path.write_text(tomli_w.dumps(ws.config), "utf-8")
    return path


def _duckdb_reading(text: str) -> str:
    """How DuckDB itself shows a memory limit written as ``text`` (its own unit rounding)."""
    con = duckdb.connect(config={"memory_limit": text})
    try:
        return con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    finally:
        con.close()


@pytest.mark.parametrize("text, expected", [("512MB", 512 * 10**6), ("2GB", 2 * 10**9), ("1.5 GiB", 3 * 2**29),
                                            ("600mb", 600 * 10**6)])
def test_sizes_parse(text: str, expected: int) -> None:
    assert engine.parse_size(text, "here") == expected


def test_default_is_one_gigabyte(workspace: Workspace) -> None:
    assert workspace.limits.memory_bytes == 10**9
    con = connect(workspace)
    try:
        # the setting bounds the process; DuckDB holds at most what the process leaves it
        share = 10**9 - engine.process_reserve()
        assert workspace.limits.duckdb_bytes == share
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == _duckdb_reading(f"{share}B")
    finally:
        con.close()


def test_setting_reaches_duckdb_of_builds_and_the_fhir_plugin(workspace: Workspace, tmp_path: Path) -> None:
    _set_memory(workspace, "512MB")
    ws = Workspace.open(workspace.root)
    con = connect(ws)
    try:
        limit, temp = con.execute("SELECT current_setting('memory_limit'), "
                                  "current_setting('temp_directory')").fetchone()
    finally:
        con.close()
    share = max(128 * 10**6, 512 * 10**6 - engine.process_reserve())
    assert limit == _duckdb_reading(f"{share}B")
    assert Path(temp) == ws.root / ".lithotse" / "tmp" / str(os.getpid())

    data = tmp_path / "fhir"
    data.mkdir()
    (data / "Patient.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": "p1"}) + "\n")
    ws.add_source("fhir", "fhir-files", {"path": str(data)}, {})
    from lithotse_desktop.raw import run_import
    from lithotse_fhir import reader

    run_import(ws, "fhir")
    plugin_con = reader.connect()
    try:
        assert (plugin_con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
                == _duckdb_reading(f"{share}B"))
    finally:
        plugin_con.close()


def test_spill_goes_to_the_workspace(workspace: Workspace) -> None:
    _set_memory(workspace, "512MB")
    ws = Workspace.open(workspace.root)
    spill = ws.limits.temp_dir
    con = connect(ws)
    try:
        con.execute("SET threads = 1")
        con.execute("SET memory_limit = '100MB'")
        # a sort of ~400 MB of strings cannot stay inside 100 MB: DuckDB must write temp files
        con.execute("CREATE TEMP TABLE big AS SELECT i, repeat(md5(CAST(i AS VARCHAR)), 4) AS s "
                    "FROM range(3000000) t(i)")
        spilled = con.execute("SELECT count(*) FROM duckdb_temporary_files()").fetchone()[0]
        ordered = con.execute("SELECT s FROM big ORDER BY s DESC LIMIT 1").fetchone()[0]
        assert ordered
        files = [p for p in spill.rglob("*") if p.is_file()]
        assert spilled > 0 and files, "nothing spilled to the workspace's temp folder"
        assert all(ws.root in p.parents for p in files)
    finally:
        con.close()


def test_stale_spill_folders_of_dead_processes_are_removed(workspace: Workspace) -> None:
    root = workspace.limits.temp_root
    stale = root / "999999999"
    stale.mkdir(parents=True)
    (stale / "duckdb_temp_storage-0.tmp").write_bytes(b"x")
    other = root / "leftover"
    other.mkdir()
    engine._cleaned.discard(root)
    connect(workspace).close()
    assert not stale.exists() and not other.exists()


@pytest.mark.parametrize("value", ["lots", "12XB", "-1GB", 1024, "10MB", "256MB"])
def test_bad_values_are_refused_naming_the_file(workspace: Workspace, value: object) -> None:
    path = _set_memory(workspace, value)
    with pytest.raises(ConfigError) as caught:
        Workspace.open(workspace.root)
    message = str(caught.value)
    assert str(path) in message and "[limits] memory" in message and repr(value) in message


def test_bad_value_is_a_clear_cli_error(workspace: Workspace, cli) -> None:
    _set_memory(workspace, "plenty")
    result = cli("--workspace", str(workspace.root), "source", "list", expect=None)
    assert result.exit_code != 0
    assert "lithotse.toml" in result.output and "'plenty' is not a size" in result.output


def test_duckdb_gets_what_the_process_leaves_of_the_setting() -> None:
    reserve = engine.process_reserve()
    # the libraries already loaded in this process, and the batches a build holds beside DuckDB
    assert reserve >= engine.LIBRARIES + engine.IN_FLIGHT
    limits = engine.Limits(2 * 10**9, Path("/nowhere"))
    assert limits.duckdb_bytes == 2 * 10**9 - reserve
    # a partitioned write flushes its rows before they outgrow DuckDB's share
    rows = int(limits.settings()["partitioned_write_flush_threshold"])
    assert 16_384 <= rows <= 524_288 and rows == min(524_288, limits.duckdb_bytes // 2048)
    small = engine.Limits(512 * 10**6, Path("/nowhere"))
    assert small.duckdb_bytes >= 128 * 10**6
    assert int(small.settings()["partitioned_write_flush_threshold"]) < 524_288


def test_running_out_of_memory_names_the_setting_not_duckdbs_advice() -> None:
    import click
    from click.testing import CliRunner

    from lithotse_desktop.cliutil import LithotseGroup
    from lithotse_desktop.errors import LithotseError

    @click.group(cls=LithotseGroup)
    def group() -> None:
        pass

    @group.command("raw")
    def raw() -> None:
        raise duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate data of size 2.0 MiB\n"
                                          "* Increasing the memory limit (SET memory_limit='...GB')")

    @group.command("wrapped")
    def wrapped() -> None:
        raise LithotseError("derivative x: Out of Memory Error: failed to allocate data of size 2.0 MiB\n\n"
                            "Possible solutions:\n* Increasing the memory limit (SET memory_limit='...GB')")

    engine.connect(engine.Limits(512 * 10**6, Path(os.environ.get("TMPDIR", "/tmp")) / "lithotse-oom")).close()
    for command in ("raw", "wrapped"):
        result = CliRunner().invoke(group, [command])
        assert result.exit_code == 1
        assert "raise [limits] memory in the workspace's lithotse.toml" in result.output
        assert "SET memory_limit" not in result.output and "Traceback" not in result.output
        assert "MB of 512MB)" in result.output and "failed to allocate data of size 2.0 MiB" in result.output
    # the desktop app says the same
    from lithotse_desktop.gui.common import error_text

    said = error_text(duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate\nSET memory_limit"))
    assert "raise [limits] memory" in said and "SET memory_limit" not in said


IMPORT_THEN_MEASURE = """
import csv, json, os, sys
from pathlib import Path
from lithotse_desktop import engine
from lithotse_desktop.raw import run_import
from lithotse_desktop.workspace import Workspace

root = Path(sys.argv[1])
(root / "in").mkdir()
with (root / "in" / "encounters.csv").open("w", newline="") as out:
    writer = csv.writer(out)
    writer.writerow(["encounter_id", "patient_id", "admit_date", "department"])
    writer.writerows([f"E{i}", f"P{i % 40000}", f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}", f"dept_{i % 24}"]
                     for i in range(300_000))
ws = Workspace.create(root / "ws")
ws.add_source("ehr", "csv", {"path": str(root / "in"), "date_column": "admit_date", "key": "encounter_id"}, {})
before = engine._resident_bytes()
run_import(ws, "ehr")
after = engine._resident_bytes()
print(json.dumps({"before": before, "after": after, "duckdb": engine.Limits(10**9, root).duckdb_bytes}))
"""


@pytest.mark.skipif(engine._resident_bytes() is None or engine._malloc_trim() is None,
                    reason="resident memory and malloc_trim are Linux's (glibc)")
def test_an_import_hands_back_what_it_freed_before_a_build_in_the_same_process(tmp_path: Path) -> None:
    """The app imports and builds in one process. Importing a 13 MB CSV left glibc holding 190 MB
    the import had freed (a 223 MB one, 700 MB); the first build then took it for the libraries'
    and left DuckDB less of ``[limits] memory`` (its least share after the 223 MB import, and a
    keyed 5M-row build ran out of memory)."""
    import subprocess
    import sys

    env = {**os.environ, "LITHOTSE_SECRETS_STORE": "file", "LITHOTSE_SECRETS_DIR": str(tmp_path / "secrets")}
    done = subprocess.run([sys.executable, "-c", IMPORT_THEN_MEASURE, str(tmp_path)], env=env, check=True,
                          capture_output=True, text=True)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["after"] - measured["before"] < 100 * 10**6, measured  # the csv plugin's modules, not data
    assert measured["duckdb"] >= 10**9 - engine.LIBRARIES - engine.IN_FLIGHT - 60 * 10**6, measured
