"""Connectors that read streams get remote landings streamed from the store, not copied first."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pytest

from lithotse_csv import CsvConnector
from lithotse_desktop.connectors import FetchRequest, RawObject
from lithotse_desktop.dates import DateRange
from lithotse_desktop.derive.build import build
from lithotse_desktop.derive.service import add_spec, read_table
from lithotse_desktop.errors import ConfigError
from lithotse_desktop.plugins import reset_plugin_manager
from lithotse_desktop.raw import read_stream, run_import
from lithotse_desktop.workspace import Workspace
from tests.conftest import TEST_DATA

SYNTHEA = TEST_DATA / "csv" / "synthea-conditions.csv"
SPEC = {"name": "by_month", "kind": "aggregate", "input": {"source": "ehr", "stream": "synthea-conditions"},
        "date_field": "START", "grain": "month", "measures": [{"fn": "count", "as": "n"}]}


def _landed(path: Path) -> tuple[CsvConnector, RawObject]:
    conn = CsvConnector({"path": str(path)})
    [payload] = conn.fetch(FetchRequest("t", [i.name for i in conn.streams()], DateRange(), {}))
    return conn, RawObject(payload.path, payload.stream, payload.name, payload.media_type,
                           payload.meta, validated=True)


def _rows(conn: CsvConnector, obj: RawObject) -> list[dict]:
    return [row for batch in conn.read(obj) for row in batch.to_pylist()]


@pytest.mark.parametrize("name, data", [
    ("plain.csv", b"date,n\n2024-01-01,1\n2024-01-02,2\n"),
    ("unterminated.csv", b"date,n\r\n2024-01-01,1\r\n2024-01-02,2"),
    ("header-only.csv", b"date,n"),
    ("cp1252.csv", "date;name\n2024-01-01;Müller\n".encode("cp1252")),
    ("utf16.csv", "date\tname\n2024-01-01\tÅse\n".encode("utf-16")),
    ("long.csv", ("date,note\n" + "2024-01-01,a\n" * 20_000 + '2024-01-02,"' + "x\n" * 400_000
                  + '"\n2024-01-03,b\n').encode()),
])
def test_a_stream_reads_back_the_same_rows_as_the_file(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    conn, from_file = _landed(path)
    opened: list[int] = []

    def opener():
        opened.append(1)
        return io.BytesIO(path.read_bytes())

    streamed = RawObject(None, from_file.stream, from_file.name, from_file.media_type,
                         from_file.meta, validated=True, open=opener)
    assert _rows(conn, streamed) == _rows(conn, from_file)
    assert opened, "the rows came from the stream"


def test_an_object_without_path_or_fetch_says_so():
    obj = RawObject(None, "s", "a.csv", "text/csv")
    with pytest.raises(ConfigError, match="a.csv: this object has no local copy"):
        obj.local_file()


def _csv_workspace(root: Path, raw_store: dict | None) -> Workspace:
    ws = Workspace.create(root)
    if raw_store is not None:
        ws.config["stores"]["bucket"] = raw_store
        ws.config["tiers"]["raw"] = "bucket"
    ws.config["workspace"]["suppress_below"] = 0
    ws.save()
    ws = Workspace.open(root)
    ws.add_source("ehr", "csv", {"path": str(SYNTHEA)}, {})
    run_import(ws, "ehr")
    add_spec(ws, SPEC)
    build(ws, "by_month")
    return ws


def test_a_build_over_an_s3_raw_store_streams_csv(seaweed, tmp_path):
    reset_plugin_manager()
    try:
        local = _csv_workspace(tmp_path / "local", None)
        remote = _csv_workspace(tmp_path / "remote",
                                {"url": seaweed.new_prefix(), **seaweed.store_options("client")})
        assert read_table(remote, "by_month")[1] == read_table(local, "by_month")[1]
        assert sum(b.num_rows for b in read_stream(remote, "ehr", "synthea-conditions")) == \
            sum(b.num_rows for b in read_stream(local, "ehr", "synthea-conditions"))
        cache = remote.local_dir / "object-cache"
        assert not cache.exists() or not any(cache.iterdir()), "nothing was copied locally"
    finally:
        reset_plugin_manager()


def test_hl7_streams_from_s3_too(seaweed, tmp_path):
    from tests.conftest import TEST_DATA

    reset_plugin_manager()
    try:
        rows = {}
        for label, store in (("local", None), ("remote", {"url": seaweed.new_prefix(),
                                                          **seaweed.store_options("client")})):
            ws = Workspace.create(tmp_path / label)
            if store is not None:
                ws.config["stores"]["bucket"] = store
                ws.config["tiers"]["raw"] = "bucket"
                ws.save()
                ws = Workspace.open(ws.root)
            folder = tmp_path / f"{label}-in"
            folder.mkdir()
            for name in ("python-hl7-sample_batch1.hl7", "linuxforhealth-ORU-multiline-short.hl7"):
                (folder / name).write_bytes((TEST_DATA / "hl7v2" / name).read_bytes())
            ws.add_source("ward", "hl7v2", {"path": str(folder)}, {})
            run_import(ws, "ward")
            rows[label] = sorted(str(r) for stream in ("messages", "oru")
                                 for b in read_stream(ws, "ward", stream) for r in b.to_pylist())
            if store is not None:
                cache = ws.local_dir / "object-cache"
                assert not cache.exists() or not any(cache.iterdir()), "nothing was copied locally"
        assert rows["remote"] == rows["local"] and rows["local"]
    finally:
        reset_plugin_manager()


def test_fhir_ndjson_streams_from_s3_and_matches_a_local_read(seaweed, tmp_path):
    import gzip

    from tests.conftest import TEST_DATA

    reset_plugin_manager()
    try:
        source = tmp_path / "in"
        source.mkdir()
        bulk = TEST_DATA / "fhir" / "bulk-ndjson-smart-10-patients"
        (source / "Encounter.000.ndjson").write_bytes((bulk / "Encounter.000.ndjson").read_bytes())
        (source / "Patient.000.ndjson.gz").write_bytes(gzip.compress((bulk / "Patient.000.ndjson").read_bytes()))
        tables = {}
        for label, store in (("local", None), ("remote", {"url": seaweed.new_prefix(),
                                                          **seaweed.store_options("client")})):
            ws = Workspace.create(tmp_path / label)
            if store is not None:
                ws.config["stores"]["bucket"] = store
                ws.config["tiers"]["raw"] = "bucket"
                ws.save()
                ws = Workspace.open(ws.root)
            ws.add_source("fhir", "fhir-files", {"path": str(source)}, {})
            run_import(ws, "fhir")
            tables[label] = {s: pa.Table.from_batches(list(read_stream(ws, "fhir", s))).sort_by("id")
                             for s in ("Encounter", "Patient")}
            if store is not None:
                cache = ws.local_dir / "object-cache"
                assert not cache.exists() or not any(cache.iterdir()), "nothing was copied locally"
        for stream in ("Encounter", "Patient"):
            assert tables["remote"][stream].num_rows > 0
            assert tables["remote"][stream].equals(tables["local"][stream]), stream
    finally:
        reset_plugin_manager()
