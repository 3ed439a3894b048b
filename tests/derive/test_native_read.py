"""DuckDB reads landed objects itself where it lies (``Connector.native_read``): the rows, types,
provenance and row order its SQL gives are the connectors' (compared with the Python read of
the same landings), the versions built from them are byte for byte the ones built through the
connectors, and a damaged object still fails the build before anything is published."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pyarrow as pa
import pytest

from lithotse_desktop.dates import DateRange
from lithotse_desktop.derive import inputs, rowstream
from lithotse_desktop.derive.build import build
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.inputs import NATIVE, connect, load_stream, resolve_stream
from lithotse_desktop.derive.service import add_spec, read_table
from lithotse_desktop.errors import CorruptObject
from lithotse_desktop.jobs import import_and_build
from lithotse_desktop.progress import Progress
from lithotse_desktop.raw.verify import IntegrityChecks
from lithotse_desktop.workspace import Workspace
from tests.support.messages import Messages

from .native_cases import TRICKY_CSV, TRICKY_NDJSON, connector_rows, landed_csv, landed_fhir, resource, same_rows


def _landed_on_duckdb(ws: Workspace, source: str, stream: str, progress: Progress) -> pa.Table:
    """``input__landed`` of a DuckDB build's connection: every landed row with its provenance."""
    con = connect(ws)
    try:
        with IntegrityChecks() as checks:
            load_stream(con, ws, "input", resolve_stream(ws, source, stream), progress, checks, materialize=True)
            checks.finish()
        return con.sql("SELECT * FROM input__landed ORDER BY _landing_id, _row").to_arrow_table()
    finally:
        con.close()


@pytest.fixture
def through_connectors(monkeypatch):
    """Turn native reads off: every object is read by its connector, as before them."""

    def off() -> None:
        monkeypatch.setattr(inputs, "native_object", lambda *a, **k: None)
        monkeypatch.setattr(rowstream, "native_object", lambda *a, **k: None)

    return off


NO_TOTAL = TRICKY_CSV.replace("Total,,100,,,\n", "")


@pytest.mark.parametrize("variant", ["as landed", "byte-order mark", "CR line ends", "nothing under the data",
                                     "nothing under the data, byte-order mark", "blank lines above the header"])
def test_a_csv_object_read_by_duckdb_where_it_lies_gives_its_connectors_rows(tmp_path, variant):
    """Quotes, a field over two lines, CRLF and LF lines mixed (or CR only), blank lines, padded
    numbers, times with offsets, a total row under the data (or none: the reader leaves out the
    header itself, unless blank lines come first), a byte-order mark: DuckDB's rows, types,
    provenance and order are the connector's, over overlapping landings of one object and a
    changed file."""
    text = {"CR line ends": TRICKY_CSV.replace("\r\n", "\n").replace("\n", "\r"),
            "nothing under the data": NO_TOTAL, "nothing under the data, byte-order mark": NO_TOTAL,
            "blank lines above the header": "\n\r\n" + NO_TOTAL}.get(variant, TRICKY_CSV)
    ws = landed_csv(tmp_path, text, b"\xef\xbb\xbf" if "byte-order mark" in variant else b"")
    expected = connector_rows(ws, "ehr", "visits")
    assert len(set(expected.column("_landing_id").to_pylist())) == 3
    progress = Messages()
    got = _landed_on_duckdb(ws, "ehr", "visits", progress)
    assert len(progress.said(NATIVE)) == 2, progress.seen
    assert got.schema == expected.schema
    same_rows(expected, got)


def test_fhir_ndjson_read_by_duckdb_where_it_lies_gives_its_connectors_rows(tmp_path):
    """Blank and padded lines, CRLF lines, another type's lines in the file, partial dates, offsets,
    three spellings of a patient reference, a newer version of a resource, none of a date: DuckDB's
    rows, the resource text, types and provenance are the connector's, over overlapping landings."""
    ws = landed_fhir(tmp_path)
    for stream in ("Encounter", "Patient"):
        expected = connector_rows(ws, "fhir", stream)
        progress = Messages()
        got = _landed_on_duckdb(ws, "fhir", stream, progress)
        assert progress.said(f"fhir/{stream} mixed.ndjson: {NATIVE}"), progress.seen
        assert expected.num_rows == (4 if stream == "Encounter" else 1)
        assert got.schema == expected.schema
        same_rows(expected, got)


VIEW = {"name": "visits", "kind": "view", "input": {"source": "fhir", "stream": "Encounter"},
        "view": {"resourceType": "ViewDefinition", "resource": "Encounter", "status": "active",
                 "select": [{"column": [{"name": "id", "path": "getResourceKey()"},
                                        {"name": "note", "path": "note"},
                                        {"name": "start", "path": "period.start"}]}]}}
COUNT = {"name": "per_month", "kind": "aggregate", "input": {"source": "fhir", "stream": "Encounter"},
         "date_field": "date", "grain": "month", "suppress_below": 0, "measures": [{"fn": "count", "as": "n"}]}
MORE = "".join(resource("Encounter", f"n{i}", meta={"versionId": "3", "lastUpdated": "2024-07-01T00:00:00Z"},
                         period={"start": f"2024-07-{1 + i:02d}"}, note=f"new {i}") + "\n" for i in range(5))
NEWER_E3 = resource("Encounter", "e3", meta={"versionId": "7", "lastUpdated": "2024-08-01T00:00:00Z"},
                     period={"start": "2024-08-01"}, note="newer") + "\n"


def _builds(ws: Workspace, progress: Progress) -> list[tuple[str, str, str | None, list]]:
    """Build the view and the count, then again (incrementally) after a second file with new
    records and a newer version of one lands: each build's name, version id, the view part's
    sha256 and the published rows."""
    seen = []
    parts: list[str] = []
    original = rowstream.write_part

    def spy(*args, **kwargs):
        written = original(*args, **kwargs)
        parts.append(",".join(chunk.part.sha256 for chunk in written.chunks))
        return written

    rowstream.write_part = spy
    try:
        add_spec(ws, VIEW)
        add_spec(ws, COUNT)
        for step in range(2):
            if step:
                (ws.root.parent / "fhir" / "more.ndjson").write_text(MORE + NEWER_E3, "utf-8")
                import_and_build(ws, "fhir", DateRange(), build=False)
            for name in ("visits", "per_month"):
                parts.clear()
                result = build(ws, name, progress=progress)
                seen.append((name, result.version, parts[0] if parts else None, read_table(ws, name)[1].to_pylist()))
    finally:
        rowstream.write_part = original
    return seen


def test_versions_built_natively_are_the_ones_built_through_the_connectors(tmp_path, through_connectors):
    """The same landings in two workspaces, one read by DuckDB itself and one through the
    connectors: the same version ids, the same view part bytes and the same rows, for full builds
    and for the incremental builds after a second file lands."""
    (tmp_path / "native").mkdir()
    (tmp_path / "python").mkdir()
    read_natively, read_by_connectors = Messages(), Messages()
    native = _builds(landed_fhir(tmp_path / "native"), read_natively)
    through_connectors()
    python = _builds(landed_fhir(tmp_path / "python"), read_by_connectors)
    reads = read_natively.said("reading ")
    assert len(reads) >= 4 and all(NATIVE in m for m in reads), reads
    assert not read_by_connectors.said(NATIVE)
    assert [row[0] for row in native] == ["visits", "per_month"] * 2
    assert native == python
    view_rows = {r["id"]: r for r in native[2][3]}
    assert view_rows["e3"]["note"] == "newer" and {f"n{i}" for i in range(5)} <= set(view_rows)


CODED = resource("Encounter", "e5", meta={"versionId": "1", "lastUpdated": "2024-02-01T00:00:00Z"},
                 period={"start": "2024-02-01"}, type=[{"coding": [{"code": "a"}, {"code": "b"}]}, {"text": "none"}],
                 note="coded") + "\n"


@pytest.mark.parametrize("read", ["natively", "through connectors"])
def test_a_view_from_values_read_in_the_one_parse_is_the_view_over_whole_resources(
        tmp_path, through_connectors, monkeypatch, read):
    """A view's values extracted in the parse that reads each record's key and version (the view
    compiled over them) give the versions built by running the view over the resource text, as
    builds did before: same version ids, part bytes and rows, full and incremental, for plain
    columns and a forEach."""
    if read != "natively":
        through_connectors()
    fan_out = {**VIEW, "name": "visits", "view": {**VIEW["view"], "select": [
        {"column": [{"name": "id", "path": "getResourceKey()"}, {"name": "note", "path": "note"}]},
        {"forEachOrNull": "type.coding", "column": [{"name": "code", "path": "code"}]}]}}
    built = {}
    for mode in ("hoisted", "whole"):
        if mode == "whole":
            monkeypatch.setattr(rowstream, "hoisted_rows", lambda *a, **k: None)
        (tmp_path / mode).mkdir()
        ws = landed_fhir(tmp_path / mode, TRICKY_NDJSON + CODED)
        runs = []
        for step in range(2):
            if step:
                (ws.root.parent / "fhir" / "more.ndjson").write_text(MORE + NEWER_E3, "utf-8")
                import_and_build(ws, "fhir", DateRange(), build=False)
            for spec in (VIEW, {**fan_out, "name": "fan_out"}):
                if not step:
                    add_spec(ws, spec)
                result = build(ws, spec["name"], progress=Messages())
                version = Catalog(ws).current(spec["name"])
                runs.append((result.version, sorted(p["key"] for p in version.partitions.values()),
                             read_table(ws, spec["name"])[1].to_pylist()))
        built[mode] = runs
    assert built["hoisted"] == built["whole"]
    assert sorted(row["code"] for row in built["hoisted"][1][2] if row["id"] == "e5") == ["a", "b"]


def test_a_same_size_change_to_an_object_duckdb_reads_fails_the_build_and_publishes_nothing(tmp_path):
    """A character of a landed NDJSON object changed in place (still valid JSON, same size): the
    build that reads it natively fails naming the object, and the published version stays."""
    ws = landed_fhir(tmp_path)
    add_spec(ws, VIEW)
    add_spec(ws, COUNT)
    progress = Messages()
    build(ws, "visits", progress=progress)
    build(ws, "per_month")
    assert progress.said(NATIVE), progress.seen
    published = {name: Catalog(ws).current(name).version for name in ("visits", "per_month")}
    [key] = [i.key for i in ws.store("raw").list("raw/")]
    path = ws.store("raw").local_path(key)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"caf\\u00e9", b"caf\\u00e8"))
    assert path.stat().st_size == len(data) and path.read_bytes() != data
    for name in ("visits", "per_month"):
        with pytest.raises(CorruptObject, match=f"raw object {key}"):
            build(ws, name, full=True)
        assert Catalog(ws).current(name).version == published[name]


def test_numbers_and_dates_are_trimmed_of_the_white_space_the_csv_connector_trims():
    """The DuckDB dialect trims a typed field as pyarrow's utf8_trim_whitespace (the csv
    connector's rule) does, for every character of the Basic Multilingual Plane at either end."""
    import duckdb
    import pyarrow.compute as pc

    from lithotse_desktop.derive.compile import DUCKDB

    texts = [f"{chr(c)}5{chr(c)}" for c in range(1, 0x10000) if not 0xD800 <= c <= 0xDFFF]
    con = duckdb.connect()
    got = con.execute(f"SELECT [regexp_replace(t, {DUCKDB._TRIM}, '', 'g') FOR t IN $1]", [texts]).fetchone()[0]
    assert got == pc.utf8_trim_whitespace(pa.array(texts)).to_pylist()


def _plan(ws: Workspace, sql: str) -> str:
    """DuckDB's plan of ``sql`` over the stream ``ehr/visits`` as a build loads it (streamed)."""
    con = connect(ws)
    try:
        with IntegrityChecks() as checks:
            load_stream(con, ws, "input", resolve_stream(ws, "ehr", "visits"), Progress(), checks, readable=[])
            return "\n".join(row[1] for row in con.sql(f"EXPLAIN {sql}").fetchall())
    finally:
        con.close()


@pytest.mark.parametrize(("text", "numbered"), [(NO_TOTAL, False), (TRICKY_CSV, True), ("\n" + NO_TOTAL, True)],
                         ids=["nothing under the data", "a total row", "a blank first line"])
def test_a_query_of_a_csv_with_nothing_under_its_data_does_not_number_its_rows(tmp_path, text, numbered):
    """Numbering the records (to leave out the header and the rows under the data) reads the file
    in order on one thread; where nothing lies under the data and the header is the first line,
    DuckDB's reader leaves the header out itself and an aggregate reads the file on every thread."""
    ws = landed_csv(tmp_path, text)
    plan = _plan(ws, "SELECT name, count(*), avg(amount) FROM input GROUP BY name")
    assert ("WINDOW" in plan.upper()) == numbered, plan


@pytest.mark.slow
def test_an_aggregate_of_a_large_csv_read_on_every_thread_is_duckdbs_own_over_the_file(tmp_path):
    """400,000 records (many of DuckDB's blocks a thread reads; quoted notes over two lines and
    numbers padded with spaces or no-break spaces among them) with nothing under the data: the
    published cells are those DuckDB computes over the file itself, counts exactly, means within
    a rounding (a parallel sum adds in no fixed order), and rebuilding gives the same means to
    the last bit."""
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "visits.csv"
    con = duckdb.connect()
    con.execute(f"""COPY (SELECT 'P' || (hash(i * 7) % 40000) AS patient_id,
                                 'dept_' || (hash(i * 13) % 7) AS department,
                                 DATE '2021-01-01' + CAST(hash(i * 31) % 700 AS INTEGER) AS admit_date,
                                 CASE i % 50 WHEN 0 THEN ' ' || los || ' ' WHEN 1 THEN chr(160) || los
                                             ELSE CAST(los AS VARCHAR) END AS length_of_stay_days,
                                 CASE WHEN i % 997 = 0 THEN 'said "no",' || chr(10) || 'twice' ELSE 'ok' END AS note
                          FROM (SELECT i, round((hash(i * 17) % 2000) / 100.0, 2) AS los FROM range(400000) t(i)))
                    TO '{path}' (HEADER, DELIMITER ',')""")
    expected = con.sql(f"""SELECT CAST(date_trunc('month', admit_date) AS DATE) AS period, department,
                                  count(*) AS visits, count(DISTINCT patient_id) AS patients,
                                  avg(CAST(trim(length_of_stay_days, ' ' || chr(160)) AS DOUBLE)) AS mean_los
                           FROM read_csv('{path}', header = true, all_varchar = true,
                                         columns = {{'patient_id': 'VARCHAR', 'department': 'VARCHAR',
                                                     'admit_date': 'DATE', 'length_of_stay_days': 'VARCHAR',
                                                     'note': 'VARCHAR'}})
                           GROUP BY ALL ORDER BY ALL""").fetchall()
    con.close()
    ws = Workspace.create(tmp_path / "ws", name="large")
    ws.add_source("ehr", "csv", {"path": str(folder), "date_column": "admit_date"}, {})
    import_and_build(ws, "ehr", DateRange(), build=False)
    assert "WINDOW" not in _plan(ws, "SELECT department, count(*) FROM input GROUP BY ALL").upper()
    add_spec(ws, {"name": "by_month", "kind": "aggregate", "input": {"source": "ehr", "stream": "visits"},
                  "date_field": "admit_date", "grain": "month", "group_by": ["department"], "suppress_below": 0,
                  "measures": [{"fn": "count", "as": "visits"},
                               {"fn": "count_distinct", "column": "patient_id", "as": "patients"},
                               {"fn": "mean", "column": "length_of_stay_days", "as": "mean_los"}]})
    build(ws, "by_month")
    got = read_table(ws, "by_month")[1].to_pylist()
    assert len(got) == len(expected) == 24 * 7
    for row, (period, department, visits, patients, mean_los) in zip(got, expected, strict=True):
        assert (row["period"], row["department"], row["visits"], row["patients"], row["suppressed"]) == (
            period, department, visits, patients, False)
        assert row["mean_los"] == pytest.approx(mean_los, rel=1e-12)
    for _ in range(2):  # the threads add in another order each time; the compensated sum does not care
        build(ws, "by_month", full=True)
        assert read_table(ws, "by_month")[1].to_pylist() == got


@pytest.mark.parametrize(("threshold", "module"), [(2, "pandas"), (0, "pyarrow.compute")])
def test_building_an_aggregate_leaves_costly_modules_unimported(tmp_path, threshold, module):
    """pyarrow imports pandas (a third of a second) the first time it converts Python values, when
    pandas is installed: a CLI aggregate build, suppression and publishing included, converts none.
    pyarrow.compute wraps its ~290 kernels as it is imported (about 40 ms of each process): an
    aggregate build that suppresses nothing cuts its parts by slicing its period-ordered cells."""
    ws = landed_csv(tmp_path, NO_TOTAL)
    add_spec(ws, {"name": "by_month", "kind": "aggregate", "input": {"source": "ehr", "stream": "visits"},
                  "date_field": "when", "grain": "month", "suppress_below": threshold,
                  "measures": [{"fn": "count", "as": "n"}, {"fn": "mean", "column": "amount", "as": "mean"}]})
    code = ("import sys; from lithotse_desktop.cli import main; main(['--workspace', sys.argv[1], 'derive', "
            "'build', 'by_month', '--json'], standalone_mode=False); print(sys.argv[2] in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(ws.root), module], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False", done.stdout
    version, table = read_table(ws, "by_month")
    assert len(version.partitions) > 1 and table.num_rows


@pytest.mark.parametrize("kind", ["csv", "fhir"])
def test_a_spec_is_checked_against_the_columns_its_input_is_described_with_reading_no_record(
        tmp_path, monkeypatch, kind):
    """Adding a spec needs its input's columns only: a connector that describes its objects for a
    native read gives them without a record read (the 5M-row CSV's first 16 MB block took 1.1 s and
    500 MB), and they are the columns and types its own read gives."""
    ws = landed_csv(tmp_path, NO_TOTAL) if kind == "csv" else landed_fhir(tmp_path)
    source, stream = ("ehr", "visits") if kind == "csv" else ("fhir", "Encounter")
    resolved = resolve_stream(ws, source, stream, with_key=False)
    connector = inputs.make_connector(ws, source)
    with IntegrityChecks() as checks:
        for stored in resolved.objects(ws):
            read = next(inputs.read_object(ws, stored, connector, checks))
            assert inputs.described_schema(ws, stored, connector) == read.schema

    def no_reading(*_args, **_kwargs):
        raise AssertionError("a record was read to check a spec")

    monkeypatch.setattr(inputs, "read_object", no_reading)
    assert inputs.sample_schema(ws, Catalog(ws), {"source": source, "stream": stream}) == read.schema


@pytest.mark.parametrize("kind", ["csv", "fhir"])
def test_a_spec_over_an_input_whose_raw_object_is_gone_is_refused_naming_it(tmp_path, kind):
    """The columns on record are no reason to accept a spec over an object that is not there."""
    from lithotse_desktop.errors import LithotseError
    from lithotse_desktop.raw.reader import landing_object_store

    ws = landed_csv(tmp_path, NO_TOTAL) if kind == "csv" else landed_fhir(tmp_path)
    source, stream = ("ehr", "visits") if kind == "csv" else ("fhir", "Encounter")
    first = next(iter(resolve_stream(ws, source, stream, with_key=False).objects(ws))).reader
    landing_object_store(ws, first).local_path(first.object_key).unlink()
    spec = {"name": "n", "kind": "aggregate", "input": {"source": source, "stream": stream},
            "measures": [{"fn": "count", "as": "n"}]}
    with pytest.raises(LithotseError, match=f"raw object {first.object_key} of landing {first.id} is missing"):
        add_spec(ws, spec)
    assert Catalog(ws).names() == []


def test_adding_a_spec_leaves_costly_modules_unimported(tmp_path):
    """``derive add`` as a process: neither pandas (pyarrow's first conversion of Python values, or
    its ``Schema.empty_table``, a third of a second) nor pyarrow.compute is imported."""
    ws = landed_csv(tmp_path, NO_TOTAL)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "by_month", "kind": "aggregate", "input": {"source": "ehr", "stream": "visits"},
                                "date_field": "when", "grain": "month", "measures": [{"fn": "count", "as": "n"}]}))
    code = ("import sys; from lithotse_desktop.cli import main; main(['--workspace', sys.argv[1], 'derive', "
            "'add', '--file', sys.argv[2]], standalone_mode=False); "
            "print([m for m in ('pandas', 'pyarrow.compute') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code, str(ws.root), str(spec)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
    assert Catalog(ws).spec("by_month")["grain"] == "month"


TYPED_CASES = {
    "int64": ["12", " 12 ", "\u00a012", "+5", "-0", "1_000", "0x10", "1e3", "1.5", "12x", "", "9223372036854775808"],
    "float64": ["1.5", " 1.5\t", "\u00a02.5\u00a0", ".5", "1.", "-1e2", "inf", "NaN", "1,5", "1.5x", "0x10", "1e400",
                "2.5\u3000"],
    "date32": ["2024-01-05", " 2024-01-05 ", "2024-1-5", "2024-01-05Z", "2024-01-05 10:00", "2024-01-05T10:00:00Z",
               "2024-01-05x", "\u00a02024-01-05", "2024/01/05", "20240105", "02024-01-05", "2024-02-30", "infinity"],
    "timestamp": ["2024-01-05 10:00", "2024-01-05T10:00:00", "2024-01-05", "2024-01-05 10:00x", " 2024-01-05 10:00 ",
                  "2024-01-05T10:00:00.1234567", "2024-01-05 10"],
    "timestamptz": ["2024-01-05T10:00:00Z", "2024-01-05 10:00:00+02", "2024-01-05 10:00+0130", "2024-01-05",
                    "2024-01-05 10:00:00 UTC", "2024-01-05T10:00Zx", "\u00a02024-01-05T10:00Z"],
}


@pytest.mark.parametrize("parse", sorted(TYPED_CASES))
def test_a_value_duckdbs_csv_reader_types_itself_is_the_one_the_text_rule_gives(tmp_path, parse):
    """A field DuckDB's reader types (a typed read): each value it takes is the value the text
    rule gives; each it refuses fails with the typed read's own error, so the build reads the
    object as text. A date with anything after it (2024-01-05Z), which the reader would take
    without a date format, is refused, as the text rule refuses it."""
    from lithotse_desktop.connectors import NativeColumn, NativeRead
    from lithotse_desktop.derive.compile import DUCKDB

    read = NativeRead("csv", (NativeColumn("n", 0, "text"), NativeColumn("v", 1, parse)), 2, skip=1)
    assert DUCKDB.typed_fields(read) == {1: DUCKDB._TYPES[parse]}
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    taken = refused = 0
    for value in TYPED_CASES[parse]:
        path = tmp_path / "one.csv"
        path.write_text(f'n,v\n1,"{value}"\n', "utf-8")
        values = []
        for typed in (False, True):
            scan = DUCKDB.native_scan(read, str(path), 1 << 20, header=True, typed=typed)
            try:
                values.append(con.sql(f"SELECT {DUCKDB.native_column(read, read.columns[1], typed=typed)} "
                                      f"FROM {scan}").fetchall())
            except duckdb.Error as exc:
                values.append(exc)
        text, typed_value = values
        if isinstance(typed_value, Exception):
            assert inputs.typed_refusal(typed_value), (value, typed_value)
            refused += 1
        else:
            assert repr(typed_value) == repr(text), value  # repr: NaN is NaN
            taken += 1
    assert taken and refused
    if parse == "date32":
        path.write_text("n,v\n1,2024-01-05Z\n", "utf-8")
        with pytest.raises(duckdb.ConversionException) as failed:
            con.sql(f"SELECT * FROM {DUCKDB.native_scan(read, str(path), 1 << 20, header=True, typed=True)}").fetchall()
        assert inputs.typed_refusal(failed.value)


@pytest.mark.parametrize("padded", [False, True], ids=["typed", "a value the typed read refuses"])
def test_an_aggregate_over_a_typed_read_is_the_one_built_through_the_connector(tmp_path, through_connectors,
                                                                               monkeypatch, padded):
    """A CSV with nothing under its data read with its number and date fields typed by DuckDB's
    reader: the same version id, part bytes and cells as through the connector; a number padded
    with no-break spaces, which the reader refuses, makes the query run again over the object
    read as text (once), with the same outcome."""
    text = NO_TOTAL if padded else NO_TOTAL.replace("\u00a07\u00a0", "7")
    spec = {"name": "by_month", "kind": "aggregate", "input": {"source": "ehr", "stream": "visits"},
            "date_field": "when", "grain": "month", "suppress_below": 0,
            "measures": [{"fn": "count", "as": "n"}, {"fn": "mean", "column": "amount", "as": "mean"},
                         {"fn": "max", "column": "stamp", "as": "last"}]}
    typed, as_text = [], []
    native_object, read_as_text = inputs.native_object, inputs.read_as_text
    monkeypatch.setattr(inputs, "native_object", lambda *a, **k: typed.append(native_object(*a, **k)) or typed[-1])
    monkeypatch.setattr(inputs, "read_as_text",
                        lambda con, views: as_text.append(dict(views)) or read_as_text(con, views))
    built = []
    for mode in ("native", "python"):
        if mode == "python":
            through_connectors()
        (tmp_path / mode).mkdir()
        ws = landed_csv(tmp_path / mode, text)
        add_spec(ws, spec)
        result = build(ws, "by_month")
        version = Catalog(ws).current("by_month")
        built.append((result.version, sorted(p["key"] for p in version.partitions.values()),
                      read_table(ws, "by_month")[1].to_pylist()))
    assert built[0] == built[1]
    assert len(typed) == 2 and all(n.text_sql is not None for n in typed)
    assert len(as_text) == (1 if padded else 0)
    assert built[0][2]


def test_a_stream_partly_read_by_its_connector_is_read_as_text(tmp_path, through_connectors, monkeypatch):
    """One object DuckDB reads itself (a padded number its typed read would refuse) and, after the
    file changed, one its connector reads (Latin-1): the connector's batches cannot be read a second time, so nothing is
    a typed read, and the cells are those built through the connector."""
    spec = {"name": "per_month", "kind": "aggregate", "input": {"source": "ehr", "stream": "visits"},
            "date_field": "when", "grain": "month", "suppress_below": 0,
            "measures": [{"fn": "count", "as": "n"}, {"fn": "sum", "column": "amount", "as": "total"}]}
    as_text = []
    read_as_text = inputs.read_as_text
    monkeypatch.setattr(inputs, "read_as_text",
                        lambda con, views: as_text.append(dict(views)) or read_as_text(con, views))
    built, said = [], []
    for mode in ("native", "python"):
        if mode == "python":
            through_connectors()
        folder = tmp_path / mode / "data"
        folder.mkdir(parents=True)
        ws = Workspace.create(tmp_path / mode / "ws", name="mixed")
        ws.add_source("ehr", "csv", {"path": str(folder), "date_column": "when"}, {})
        (folder / "visits.csv").write_text("id,when,amount\n1,2024-01-05,\u00a07\u00a0\n2,2024-02-01,3\n", "utf-8")
        import_and_build(ws, "ehr", DateRange(), build=False)
        (folder / "visits.csv").write_bytes("id,when,amount\n3,2024-01-09,5\n4,2024-02-11,6\n5,2024-02-12,9\n"
                                            "caf\u00e9,2024-02-13,1\n".encode("latin-1"))
        import_and_build(ws, "ehr", DateRange(), build=False)
        add_spec(ws, spec)
        progress = Messages()
        result = build(ws, "per_month", progress=progress)
        said.append(progress.said(NATIVE))
        built.append((result.version, read_table(ws, "per_month")[1].to_pylist()))
    assert built[0] == built[1]
    assert [row["n"] for row in built[0][1]] == [2, 4]
    assert len(said[0]) == 1 and not said[1], said
    assert not as_text
