"""Landed objects an engine reads itself (``Connector.native_read``), with what makes reading
them exactly as their connectors do hard; shared by the DuckDB and Spark engines' tests, which
compare the engine's rows with the connector's (:func:`connector_rows`)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa

from lithotse_desktop.dates import DateRange
from lithotse_desktop.jobs import import_and_build
from lithotse_desktop.raw.reader import read_stream
from lithotse_desktop.workspace import Workspace

TRICKY_CSV = (
    "id,name,amount,when,stamp,note\n"
    '1,"Smith, ""Jo""",  12 ,2024-01-05,2024-01-05T10:00Z,plain\n'
    '2,"two\nlines",3.5,2024-02-10,2024-02-10T23:30:00-05:00,"quoted"\r\n'
    "3,,\u00a07\u00a0,2024-03-01,2024-03-01 08:00+01:00,\r\n"
    "\r\n"
    '4,x,-1e2,2024-04-01,2024-04-01T00:00:00Z,"last, quoted"\n'
    "\n"
    "5,y,.5,2024-06-30,2024-06-30T12:00:00+0130,trail  \n"
    "6,\"\",+4,2024-07-01,2024-07-01T01:02:03.250+02:00,x\n"
    "Total,,100,,,\n"
)


def resource(kind: str, rid: str, **fields) -> str:
    return json.dumps({"resourceType": kind, "id": rid, **fields})


TRICKY_NDJSON = "".join([
    resource("Encounter", "e1", meta={"versionId": "1", "lastUpdated": "2024-01-05"},
              period={"start": "2024-01-05T23:30:00-04:00", "end": "2024-01-06"},
              subject={"reference": "Patient/p1"}) + "\n",
    "\n",
    "  " + resource("Encounter", "e2", period={"start": "2024"},
                     subject={"reference": "https://x.org/fhir/Patient/p2/_history/3"}) + " \r\n",
    "\t\n",
    resource("Patient", "p9") + "\n",
    resource("Encounter", "e3", meta={"versionId": "2", "lastUpdated": "2024-03-01T10:00:00.123+01:00"},
              period={"start": "2024-03"}, subject={"reference": "urn:uuid:p3"}, note="caf\u00e9 \"q\"") + "\r\n",
    resource("Encounter", "e1", meta={"versionId": "2", "lastUpdated": "2024-06-01T00:00:00Z"},
              period={"start": "2024-06-30T12:00:00Z"}, subject={"reference": "Group/g1"}) + "\n",
    resource("Encounter", "e4") + "\n",
])


def landed_csv(tmp_path: Path, text: str = TRICKY_CSV, prefix: bytes = b"") -> Workspace:
    """``text`` (after ``prefix`` bytes, e.g. a byte-order mark) landed three times by the csv
    connector: for two overlapping ranges of one object, then changed, for a third."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "visits.csv").write_bytes(prefix + text.encode("utf-8"))
    ws = Workspace.create(tmp_path / "ws", name="native")
    ws.add_source("ehr", "csv", {"path": str(folder), "date_column": "when"}, {})
    import_and_build(ws, "ehr", DateRange(None, dt.date(2024, 3, 1)), build=False)
    import_and_build(ws, "ehr", DateRange(dt.date(2024, 2, 1), dt.date(2024, 6, 30)), build=False)
    (folder / "visits.csv").write_bytes(prefix + text.replace("-1e2", "-2e2").encode("utf-8"))
    import_and_build(ws, "ehr", DateRange(dt.date(2024, 4, 1), None), build=False)
    return ws


def landed_fhir(tmp_path: Path, text: str = TRICKY_NDJSON) -> Workspace:
    """``text`` landed by the fhir-files connector for two overlapping ranges (the second a
    ``--full`` import: the same object again)."""
    folder = tmp_path / "fhir"
    folder.mkdir()
    (folder / "mixed.ndjson").write_bytes(text.encode("utf-8"))
    ws = Workspace.create(tmp_path / "ws", name="native-fhir")
    ws.add_source("fhir", "fhir-files", {"path": str(folder)}, {})
    import_and_build(ws, "fhir", DateRange(None, dt.date(2024, 3, 31)), build=False)
    import_and_build(ws, "fhir", DateRange(dt.date(2024, 1, 1), None), build=False, full=True)
    return ws


def connector_rows(ws: Workspace, source: str, stream: str) -> pa.Table:
    """Every landed row as the connector reads it, with provenance, by landing and position."""
    table = pa.Table.from_batches(list(read_stream(ws, source, stream, provenance=True)))
    return table.sort_by([("_landing_id", "ascending"), ("_row", "ascending")])


def same_rows(expected: pa.Table, got: pa.Table) -> None:
    assert got.column_names == expected.column_names
    assert got.num_rows == expected.num_rows
    for column in expected.column_names:
        assert got.column(column).to_pylist() == expected.column(column).to_pylist(), column
