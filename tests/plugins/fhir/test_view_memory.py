"""Building a view takes memory bounded by the setting, not by the stream: a stream five times
larger must not need much more peak memory (a ratio, so a loaded machine does not matter), and
the view holds exactly the newest version of every record, as a hand-written DuckDB query says."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.raw import run_import
from lithotse_desktop.workspace import Workspace

from .test_import_memory import cli_peak_rss

VIEW = {"name": "encounters", "kind": "view", "input": {"source": "fhir", "stream": "Encounter"},
        "view": {"resourceType": "ViewDefinition", "resource": "Encounter", "status": "active",
                 "select": [{"column": [{"name": "id", "path": "getResourceKey()"},
                                        {"name": "status", "path": "status"},
                                        {"name": "class_code", "path": "class.code"}]}]}}


def _encounters(path: Path, n: int) -> None:
    """n Encounter lines of ~560 bytes; the last fifth are version 2 (status ``cancelled``) of
    the first ids, so the build must drop their version 1."""
    unique = n - n // 5
    duckdb.connect().execute(f"""
        COPY (SELECT 'Encounter' AS "resourceType", 'enc-' || (i % {unique}) AS id,
                     {{'versionId': CAST(1 + i // {unique} AS VARCHAR),
                       'lastUpdated': '2024-01-02T03:04:05.000Z'}} AS meta,
                     CASE WHEN i >= {unique} THEN 'cancelled' ELSE 'finished' END AS status,
                     {{'code': 'AMB', 'display': repeat('x', 300)}} AS class,
                     {{'start': '2023-0' || (1 + i % 9) || '-1' || (i % 10) || 'T08:00:00+02:00'}} AS period
              FROM range({n}) t(i))
        TO '{path}' (FORMAT json)""")


def _peak_build_rss(tmp: Path, n: int) -> tuple[Workspace, Path, int]:
    """(workspace, NDJSON file, peak RSS in bytes of ``lithotse derive build`` as its own process)."""
    data = tmp / f"data{n}"
    data.mkdir()
    ndjson = data / "Encounter.ndjson"
    _encounters(ndjson, n)
    ws = Workspace.create(tmp / f"ws{n}")
    ws.config["limits"] = {"memory": "256MB"}
    ws.save()
    ws.add_source("fhir", "fhir-files", {"path": str(data), "resource_types": "Encounter"}, {})
    ws = Workspace.open(ws.root)
    run_import(ws, "fhir")
    Catalog(ws).save_spec(VIEW)
    out, peak = cli_peak_rss(tmp, str(n), ws, "derive", "build", "encounters", "--json")
    built = json.loads(out)
    built = built[0] if isinstance(built, list) else built
    assert built["rows"] == n - n // 5
    return ws, ndjson, peak


def test_view_build_memory_does_not_grow_with_the_stream(tmp_path: Path) -> None:
    _ws, _small, small_rss = _peak_build_rss(tmp_path, 60_000)
    ws, ndjson, large_rss = _peak_build_rss(tmp_path, 300_000)
    # the smaller file (30 MB) already fills the FHIR reader's buffers, as the larger one does.
    # Before, the newest versions were kept whole (resources included) and the result was one
    # Arrow table written through a buffer: 80 MB more input cost ~150 MB more memory
    assert large_rss < 1.2 * small_rss, (small_rss, large_rss)

    catalog = Catalog(ws)
    built = catalog.read(catalog.current("encounters")).to_pylist()
    expected = duckdb.connect().execute(f"""
        SELECT id, status, class.code AS class_code FROM read_json('{ndjson}')
        QUALIFY row_number() OVER (PARTITION BY id ORDER BY CAST(meta.versionId AS INTEGER) DESC) = 1
        ORDER BY id""").fetchall()
    assert sorted((r["id"], r["status"], r["class_code"]) for r in built) == expected
