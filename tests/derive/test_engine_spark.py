"""The same derivatives built on DuckDB and on Spark (Spark Connect), compared cell by cell.

One local Spark Connect server serves the whole session (tests/support/spark.py). The data is
the demo's synthetic health system made from a fixed seed, about 100,000 records across CSV
exports, FHIR NDJSON and HL7 v2 ADT/ORU messages, imported once for this module; every aggregate
feature is built by both engines and the published tables must be the same (counts exactly,
floats within 1e-9), with the same version ids. Sail, a second Spark Connect server, builds from
the real SeaweedFS the S3 tests use.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv
import pytest

import lithotse_desktop
from lithotse_desktop.dates import DateRange
from lithotse_desktop.demo import DEMO_SOURCES, synth
from lithotse_desktop.derive.build import build_all
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.compile import SPARK, compile_aggregate
from lithotse_desktop.derive.engines.spark import SparkEngine
from lithotse_desktop.derive.inputs import resolve_stream
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.derive.spec import SpecError, spec_hash
from lithotse_desktop.errors import Cancelled, LithotseError, NotFound
from lithotse_desktop.jobs import import_and_build
from lithotse_desktop.progress import Progress
from lithotse_desktop.raw.verify import IntegrityChecks
from lithotse_desktop.workspace import Workspace
from tests.support.messages import Messages

from .native_cases import connector_rows, landed_csv, landed_fhir, same_rows

# one worker runs every test of a local Spark, so a parallel run starts its server once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("spark")]

PATIENTS = 1800
ENCOUNTERS = {"source": "ehr", "stream": "encounters"}
CONDITIONS = {"source": "ehr", "stream": "conditions"}
LOS = "length_of_stay_days"


def _every_measure(column: str) -> list[dict]:
    return [{"fn": "count", "as": "records"}, {"fn": "count", "column": column, "as": "known"},
            {"fn": "count_distinct", "column": "patient_id", "as": "patients"},
            {"fn": "sum", "column": column, "as": "total"}, {"fn": "mean", "column": column, "as": "mean"},
            {"fn": "min", "column": column, "as": "least"}, {"fn": "max", "column": column, "as": "most"},
            {"fn": "median", "column": column, "as": "median"},
            {"fn": "percentile", "column": column, "p": 0.9, "as": "p90"}]


SPECS = [
    # CSV: every measure, month and week grains, filters of several kinds; three aggregates of one
    # input, so suppression is decided over them and the rows one leaves out of another are counted
    {"name": "csv_month", "kind": "aggregate", "input": ENCOUNTERS, "date_field": "admit_date", "grain": "month",
     "group_by": ["department", "class"], "measures": _every_measure(LOS)},
    {"name": "csv_filtered_week", "kind": "aggregate", "input": ENCOUNTERS, "date_field": "admit_date",
     "grain": "week", "from": "2021-03-01", "to": "2023-06-30",
     "filters": [{"column": "class", "op": "in", "value": ["AMB", "EMER", "IMP"]},
                 {"column": LOS, "op": "between", "value": [0, 20]},
                 {"column": "department", "op": "!=", "value": "Oncology"},
                 {"column": "discharge_date", "op": "is not null"},
                 {"column": "department", "op": "contains", "value": "o"}],
     "group_by": ["department"], "measures": _every_measure(LOS)},
    {"name": "csv_day", "kind": "aggregate", "input": CONDITIONS, "date_field": "onset_date", "grain": "day",
     "suppress_below": 0, "measures": [{"fn": "count", "as": "diagnoses"}, {"fn": "max", "column": "icd10_code",
                                                                            "as": "last_code"}]},
    # a year held as an integer (as de-identification leaves a date) dates yearly cells: a length
    # of stay stands in for one here, years 1 to 30 and a null
    {"name": "csv_int_year", "kind": "aggregate", "input": ENCOUNTERS, "date_field": LOS, "grain": "year",
     "suppress_below": 0, "measures": [{"fn": "count", "as": "stays"}]},
    {"name": "csv_none", "kind": "aggregate", "input": CONDITIONS, "suppress_below": 0,
     "group_by": ["description"], "measures": _every_measure("snomed_code")},
    # a join (HL7 patients' birth dates onto CSV encounters) and age bands at the admission date
    {"name": "csv_join_age", "kind": "aggregate", "input": ENCOUNTERS, "date_field": "admit_date", "grain": "year",
     "join": {"input": {"source": "hl7", "stream": "adt"}, "on": {"left": "patient_id", "right": "patient_id"},
              "columns": ["birth_date", "sex"]},
     "group_by": ["sex", {"as": "age_band", "age_band": {"birth_date": "birth_date", "bands": [5, 18, 45, 65, 85]}}],
     "measures": [{"fn": "count", "as": "visits"}, {"fn": "median", "column": LOS, "as": "median"}]},
    # FHIR: newest version per resource id, tz-aware and plain dates, month and quarter grains
    {"name": "fhir_encounters", "kind": "aggregate", "input": {"source": "fhir", "stream": "Encounter"},
     "date_field": "date_time", "grain": "quarter",
     "measures": [{"fn": "count", "as": "encounters"}, {"fn": "count_distinct", "column": "patient_id", "as": "p"},
                  {"fn": "max", "column": "lastUpdated", "as": "newest"}]},
    {"name": "fhir_observations", "kind": "aggregate", "input": {"source": "fhir", "stream": "Observation"},
     "date_field": "date", "grain": "month", "suppress_below": 0,
     "measures": [{"fn": "count", "as": "observations"}, {"fn": "min", "column": "issued_date", "as": "first"}]},
    # HL7-derived streams: naive timestamps, a filter, age bands from the message's birth date
    {"name": "hl7_admissions", "kind": "aggregate", "input": {"source": "hl7", "stream": "adt"},
     "date_field": "effective_datetime", "grain": "quarter",
     "filters": [{"column": "event_type", "op": "=", "value": "A01"}],
     "group_by": [{"as": "age_band", "age_band": {"birth_date": "birth_date", "bands": [0, 18, 65]}}, "patient_class"],
     "measures": [{"fn": "count", "as": "admissions"}, {"fn": "count_distinct", "column": "patient_id", "as": "p"}]},
    {"name": "hl7_results", "kind": "aggregate", "input": {"source": "hl7", "stream": "oru"},
     "date_field": "effective_datetime", "grain": "month",
     "group_by": ["observation_text", "units"], "measures": _every_measure("value_numeric")},
    # a derivative as input (built on DuckDB: SQL in its dialect), with a date held as text and
    # the codes of two systems picked from a CodeableConcept
    {"name": "condition_codes", "kind": "sql", "inputs": {"c": {"source": "fhir", "stream": "Condition"}},
     "sql": "SELECT patient_id, CAST(onset_date AS VARCHAR) AS onset_text, "
            "CAST(json_extract(resource, '$.code') AS VARCHAR) AS code FROM c"},
    {"name": "codes_by_system", "kind": "aggregate", "input": {"derivative": "condition_codes"},
     "date_field": "onset_text", "grain": "year",
     "group_by": [{"as": "icd10", "code": {"column": "code", "system": "http://hl7.org/fhir/sid/icd-10"}},
                  {"as": "snomed", "code": {"column": "code", "system": "http://snomed.info/sct"}}],
     "measures": [{"fn": "count", "as": "diagnoses"}, {"fn": "count_distinct", "column": "patient_id", "as": "p"}]},
]
SPARK_SQL = {"name": "departments_spark", "kind": "sql", "engine": "spark",
             "inputs": {"enc": ENCOUNTERS},
             "sql": "SELECT `department`, count(*) AS visits, percentile(`length_of_stay_days`, 0.5) AS median_los "
                    "FROM enc GROUP BY `department`"}


def _assert_same(name: str, expected: pa.Table, got: pa.Table) -> None:
    """Same columns and types, same rows in the same order; floats within 1e-9 (relative)."""
    assert got.schema == expected.schema, (name, str(got.schema), str(expected.schema))
    assert got.num_rows == expected.num_rows, name
    for column in expected.column_names:
        want, have = expected.column(column).to_pylist(), got.column(column).to_pylist()
        if pa.types.is_floating(expected.schema.field(column).type):
            for i, (a, b) in enumerate(zip(want, have, strict=True)):
                assert (a is None) == (b is None), (name, column, i)
                if a is not None:
                    assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (name, column, i, a, b)
        else:
            assert want == have, (name, column)


NATIVE = "where it lies"


def _workspace(root, data, sources=DEMO_SOURCES) -> Workspace:
    ws = Workspace.create(root, name="engines")
    for name, (connector, settings) in sources.items():
        ws.add_source(name, connector, {k: (str(data / v) if k == "path" else v) for k, v in settings.items()}, {})
    return ws


@pytest.fixture(scope="module")
def health_system(tmp_path_factory):
    """The demo's health system (~100,000 records) imported into one workspace."""
    data = tmp_path_factory.mktemp("engines-data")
    made = synth.generate(data, patients=PATIENTS)
    ws = _workspace(tmp_path_factory.mktemp("engines-ws"), data)
    for source in DEMO_SOURCES:
        import_and_build(ws, source, DateRange())
    records = (made.encounters * 2 + made.conditions * 2 + made.lab_results + made.clinic_observations
               + made.patients + made.adt_messages + made.oru_messages)
    assert records > 90_000
    return ws, data


def test_every_aggregate_kind_measure_and_dimension_is_the_same_on_spark(health_system, spark_url):
    ws, _data = health_system
    ws.config["engine"] = {"kind": "duckdb", "spark": {"url": spark_url}}
    ws.save()
    for spec in SPECS:
        add_spec(ws, spec)
    catalog = Catalog(ws)
    names = [s["name"] for s in SPECS]
    on_duckdb = {r.name: r for r in build_all(ws, names)}
    expected = {n: catalog.read(catalog.current(n)) for n in names}
    assert all(expected[n].num_rows for n in names)
    assert any(expected["csv_month"].column("suppressed").to_pylist())  # suppression had work to do

    aggregates = [s["name"] for s in SPECS if s["kind"] == "aggregate"]  # a sql spec runs on its own engine
    progress = Messages()
    on_spark = {r.name: r for r in build_all(ws, aggregates, engine="spark", full=True, progress=progress)}
    # CSV and FHIR NDJSON objects are read by Spark where they lie; HL7 ones by their connector, staged
    assert progress.said(f"ehr/encounters encounters.csv {NATIVE}")
    assert progress.said("ehr/conditions conditions.csv " + NATIVE)
    assert progress.said("reading hl7/adt") and not progress.said(f"hl7/adt {NATIVE}")
    assert progress.said(f"fhir/Encounter Encounter.ndjson {NATIVE}")
    assert progress.said(f"fhir/Observation Observation.ndjson {NATIVE}")
    for name in aggregates:
        assert on_spark[name].version == on_duckdb[name].version, name
        _assert_same(name, expected[name], catalog.read(catalog.current(name)))

    # a sql derivative in Spark's dialect (backticks, percentile) is built on Spark by its spec
    add_spec(ws, SPARK_SQL)
    [built] = build_all(ws, ["departments_spark"])
    table = catalog.read(catalog.current("departments_spark")).sort_by("department")
    encounters = pyarrow.csv.read_csv(_data / "csv" / "encounters.csv")
    by_department = encounters.group_by("department").aggregate([("department", "count")]).sort_by("department")
    assert built.status == "built"
    assert table.column("department").to_pylist() == by_department.column("department").to_pylist()
    assert table.column("visits").to_pylist() == by_department.column("department_count").to_pylist()


def test_a_sql_cells_derivative_with_identifiers_as_tokens_is_the_same_on_spark(health_system, spark_url):
    """A ``sql`` derivative with a count_column reads its inputs with identifiers as tokens, on
    Spark as on DuckDB: the same suppressed cells."""
    ws, data = health_system
    ws.config["engine"] = {"kind": "duckdb", "spark": {"url": spark_url}}
    ws.save()
    # sql cells are decided alone: copies of the streams no published aggregate counts, and each
    # engine's table published in turn (two sql cells of the same rows are refused)
    for name in ("ehr", "hl7"):
        connector, settings = DEMO_SOURCES[name]
        ws.add_source(f"{name}_cells", connector, {k: (str(data / v) if k == "path" else v)
                                                   for k, v in settings.items()}, {})
        import_and_build(ws, f"{name}_cells", DateRange())
    sql = ("SELECT department, class, count(*) AS visits, count(DISTINCT patient_id) AS patients "
           "FROM enc GROUP BY department, class")
    base = {"kind": "sql", "inputs": {"enc": {"source": "ehr_cells", "stream": "encounters"}}, "sql": sql,
            "count_column": "visits", "people_column": "patients"}
    births = {"kind": "sql", "inputs": {"adt": {"source": "hl7_cells", "stream": "adt"}},
              "sql": "SELECT birth_date AS born, count(*) AS visits, count(DISTINCT patient_id) AS patients "
                     "FROM adt GROUP BY 1", "count_column": "visits", "people_column": "patients",
              "suppress_below": 0}
    # two reads of one input in each row: the count on the data holds a row's records together
    joined = {**base, "sql": "SELECT a.department, b.class, count(*) AS visits, count(DISTINCT a.patient_id) AS "
                             "patients FROM enc AS a JOIN enc AS b ON a.encounter_id = b.encounter_id AND "
                             "a.patient_id = b.patient_id GROUP BY ALL"}
    catalog = Catalog(ws)
    by_cell = [("department", "ascending"), ("class", "ascending")]
    for spec, order, check in ((base, by_cell, "patients"), (births, [("born", "ascending")], "born"),
                               (joined, by_cell, "patients")):
        add_spec(ws, {"name": "cells_duckdb", **spec})
        build_all(ws, ["cells_duckdb"])
        expected = catalog.read(catalog.current("cells_duckdb")).sort_by(order)
        catalog.remove("cells_duckdb")
        add_spec(ws, {"name": "cells_spark", **spec, "engine": "spark"})
        build_all(ws, ["cells_spark"])
        got = catalog.read(catalog.current("cells_spark")).sort_by(order)
        catalog.remove("cells_spark")
        assert expected.num_rows > 5
        if check == "patients":
            assert min(expected.column("patients").to_pylist()) > 1  # distinct tokens counted people
        else:
            assert {d.month * 100 + d.day for d in expected.column("born").to_pylist() if d} == {101}, "years only"
        _assert_same("cells_spark", expected, got)
    # an identifier in a published cell is refused on Spark too, naming the input column
    leaky = {**base, "name": "leaky_spark", "engine": "spark",
             "sql": "SELECT patient_id, count(*) AS visits, count(DISTINCT patient_id) AS patients FROM enc "
                    "GROUP BY patient_id"}
    add_spec(ws, leaky)
    with pytest.raises(LithotseError, match="carries values of input column 'enc.patient_id'"):
        build_all(ws, ["leaky_spark"])
    assert catalog.current("leaky_spark") is None
    # rows holding a record twice (two reads full-joined so that they match nothing), counted on
    # Spark in the run that computes the cells: refused as on DuckDB
    twice = {**base, "sql": "SELECT a.department, b.class, count(*) AS visits, count(DISTINCT a.patient_id) AS "
                            "patients FROM enc AS a FULL JOIN enc AS b ON a.encounter_id = b.encounter_id AND "
                            "a.patient_id = b.patient_id AND a.class <> b.class GROUP BY ALL"}
    for engine in ("duckdb", "spark"):
        add_spec(ws, {**twice, "name": f"twice_{engine}", "engine": engine})
        refused = (r"counted on the data, its [\d,]+ rows hold [\d,]+ of enc's records in more rows than their "
                   r"input, so a record is counted more than once")
        with pytest.raises(LithotseError, match=refused):
            build_all(ws, [f"twice_{engine}"])
        assert catalog.current(f"twice_{engine}") is None


def test_fhir_views_built_on_spark_equal_duckdbs(health_system, spark_url):
    """The example ViewDefinitions over the demo's FHIR streams, compiled to Spark SQL by the
    SQL-on-FHIR compiler and built on Spark: the same version ids and rows as on DuckDB."""
    ws, _data = health_system
    ws.config["engine"] = {"kind": "duckdb", "spark": {"url": spark_url}}
    ws.save()
    folder = Path(lithotse_desktop.__file__).parent / "gui" / "viewdefinitions"
    views = {"EncounterFlat": "Encounter", "ConditionFlat": "Condition"}
    for view, stream in views.items():
        add_spec(ws, {"name": f"spark_{view}", "kind": "view", "input": {"source": "fhir", "stream": stream},
                      "view": json.loads((folder / f"{view}.json").read_text())})
    names = [f"spark_{v}" for v in views]
    catalog = Catalog(ws)
    on_duckdb = {r.name: r for r in build_all(ws, names)}
    expected = {n: catalog.read(catalog.current(n)) for n in names}
    assert all(expected[n].num_rows > 100 for n in names), {n: expected[n].num_rows for n in names}
    on_spark = {r.name: r for r in build_all(ws, names, engine="spark", full=True)}
    for name in names:
        assert on_spark[name].version == on_duckdb[name].version, name
        got = catalog.read(catalog.current(name))
        order = [(c, "ascending") for c in expected[name].column_names]
        _assert_same(name, expected[name].sort_by(order), got.sort_by(order))


def test_an_incremental_rebuild_after_a_second_import_is_the_same_on_spark(tmp_path, spark_url):
    data = tmp_path / "data"
    synth.generate(data, patients=300)
    keyed = {"ehr": ("csv", {"path": "csv/encounters.csv", "date_column": "admit_date", "key": "encounter_id"})}
    spec = {"name": "stays", "kind": "aggregate", "input": ENCOUNTERS, "date_field": "admit_date", "grain": "month",
            "group_by": ["class"], "measures": _every_measure(LOS)}
    spaces = {}
    for engine in ("duckdb", "spark"):
        ws = _workspace(tmp_path / engine, data, keyed)
        ws.config["engine"] = {"kind": engine, "url": spark_url} if engine == "spark" else {"kind": "duckdb"}
        ws.save()
        import_and_build(ws, "ehr", DateRange(None, dt.date(2022, 6, 30)), build=False)
        add_spec(ws, spec)
        spaces[engine] = ws
    results = {}
    for step in ("first", "second"):
        if step == "second":
            for ws in spaces.values():  # the second half of the export, and the first again (same records)
                import_and_build(ws, "ehr", DateRange(dt.date(2022, 1, 1), None), build=False, full=True)
        progress = Messages()
        results[step] = {engine: build_all(ws, ["stays"], progress=progress)[0] for engine, ws in spaces.items()}
        # one object however often the unchanged file landed, read by Spark where it lies
        assert len(progress.said(f"ehr/encounters encounters.csv {NATIVE}")) == 1
        tables = {engine: Catalog(ws).read(Catalog(ws).current("stays")) for engine, ws in spaces.items()}
        assert results[step]["spark"].version == results[step]["duckdb"].version
        _assert_same(f"stays ({step})", tables["duckdb"], tables["spark"])
    assert {r.status for r in results["second"].values()} == {"incremental"}
    assert results["second"]["spark"].partitions_written < results["second"]["spark"].partitions_total


def test_an_unreachable_server_is_a_clear_error_naming_it_and_nothing_is_published(health_system, monkeypatch):
    ws, _data = health_system
    with socketless_port() as port:
        ws.config["engine"] = {"kind": "spark", "url": f"sc://127.0.0.1:{port}/;token=hush-secret-token"}
        ws.save()
        add_spec(ws, {"name": "unreachable", "kind": "aggregate", "input": ENCOUNTERS,
                      "measures": [{"fn": "count", "as": "n"}]})
        with pytest.raises(LithotseError) as raised:
            build_all(ws, ["unreachable"])
    message = str(raised.value)
    assert f"sc://127.0.0.1:{port}" in message and "unreachable" in message
    assert "hush-secret-token" not in message
    assert Catalog(ws).current("unreachable") is None


def test_engine_names_are_checked_and_the_unknown_refused_listing_the_known(health_system):
    ws, _data = health_system
    count = [{"fn": "count", "as": "n"}]
    with pytest.raises(SpecError, match="engine"):
        add_spec(ws, {"name": "bad_engine", "kind": "aggregate", "input": ENCOUNTERS, "engine": 3, "measures": count})
    with pytest.raises(SpecError, match="engine: no engine named 'hadoop'; installed: duckdb, spark"):
        add_spec(ws, {"name": "odd_engine", "kind": "aggregate", "input": ENCOUNTERS, "engine": "hadoop",
                      "measures": count})
    add_spec(ws, {"name": "any_engine", "kind": "aggregate", "input": ENCOUNTERS, "measures": count})
    with pytest.raises(NotFound, match="--engine: no engine named 'flink'; installed: duckdb, spark"):
        build_all(ws, ["any_engine"], engine="flink")
    ws.config["engine"] = {"kind": "hadoop"}
    ws.save()
    with pytest.raises(NotFound, match="\\[engine\\] kind: no engine named 'hadoop'; installed: duckdb, spark"):
        build_all(ws, ["any_engine"])
    assert Catalog(ws).current("any_engine") is None
    ws.config["engine"] = {"kind": "duckdb"}
    ws.save()


def test_the_engine_does_not_enter_the_version_id():
    spec = {"name": "a", "kind": "aggregate", "input": ENCOUNTERS, "measures": [{"fn": "count", "as": "n"}]}
    assert spec_hash(spec) == spec_hash({**spec, "engine": "spark"})
    sql = {"name": "s", "kind": "sql", "inputs": {"e": ENCOUNTERS}, "sql": "SELECT 1 AS x"}
    assert spec_hash(sql) != spec_hash({**sql, "engine": "spark"})  # its text is in that engine's dialect


def test_a_quantile_spark_cannot_compute_exactly_is_refused_naming_the_measure():
    schema = pa.schema([("d", pa.date32()), ("amount", pa.decimal128(10, 2))])
    spec = {"name": "a", "kind": "aggregate", "input": ENCOUNTERS, "date_field": "d", "grain": "month",
            "measures": [{"fn": "median", "column": "amount", "as": "median_amount"}]}
    compile_aggregate(spec, {"input": schema})  # DuckDB keeps the decimal
    with pytest.raises(SpecError, match="measures\\[0\\].column: median 'median_amount' of a decimal column"):
        compile_aggregate(spec, {"input": schema}, dialect=SPARK)
    mean = {**spec, "measures": [{"fn": "mean", "column": "amount", "as": "m"}]}
    assert "CAST(sum(l.`amount`) AS DOUBLE) / count(l.`amount`)" in compile_aggregate(mean, {"input": schema},
                                                                                 dialect=SPARK).sql


def test_cancel_interrupts_the_running_spark_job(health_system, spark_url):
    ws, _data = health_system
    progress = Progress()
    session = SparkEngine(ws, {"url": spark_url}).session(progress)
    timer = threading.Timer(3.0, progress.cancel)
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(Cancelled):
            session.run("SELECT count(*) FROM range(0, 50000000000) AS a", [], "a long job", progress)
    finally:
        timer.cancel()
        session.close()
    assert time.monotonic() - started < 60


def _build_on(ws: Workspace, url: str, name: str, progress: Progress | None = None):
    """Build ``name`` on the Spark engine at ``url``, leaving the workspace's settings as they were."""
    saved = dict(ws.config["engine"])
    ws.config["engine"] = {**saved, "spark": {"url": url}}
    ws.save()
    try:
        return build_all(ws, [name], engine="spark", progress=progress)
    finally:
        ws.config["engine"] = saved
        ws.save()


class socketless_port:  # noqa: N801 - used as a context manager, like a function
    """A loopback port nothing listens on (bound and closed again)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


def test_sail_builds_from_the_s3_raw_store_as_duckdb_does(tmp_path, seaweed, sail, spark_url):
    data = tmp_path / "data"
    synth.generate(data, patients=200)
    ws = Workspace.create(tmp_path / "ws", name="sail")
    ws.config["stores"]["lake"] = {"url": seaweed.new_prefix(), **seaweed.store_options("client")}
    ws.config["tiers"]["raw"] = "lake"
    ws.config["engine"] = {"kind": "duckdb", "spark": {"url": sail.url}}
    ws.save()
    ws = Workspace.open(ws.root)
    ws.add_source("ehr", "csv", {"path": str(data / "csv" / "encounters.csv"), "date_column": "admit_date"}, {})
    import_and_build(ws, "ehr", DateRange(), build=False)
    spec = {"name": "sail_month", "kind": "aggregate", "input": ENCOUNTERS, "date_field": "admit_date",
            "grain": "month", "group_by": ["class"],
            "measures": [{"fn": "count", "as": "visits"}, {"fn": "count_distinct", "column": "patient_id", "as": "p"},
                         {"fn": "sum", "column": LOS, "as": "days"}, {"fn": "mean", "column": LOS, "as": "mean"}]}
    add_spec(ws, spec)
    catalog = Catalog(ws)
    # pyspark's own server has no S3 filesystem: a clear error naming the server and the store
    progress = Messages()
    with pytest.raises(LithotseError, match="cannot read the staged input in s3://") as raised:
        _build_on(ws, spark_url, "sail_month", progress)
    assert "local[2]" in str(raised.value) or "sc://" in str(raised.value)
    [fallback] = progress.said("cannot read s3://")  # it tried the raw objects where they lie first
    assert "stages them instead" in fallback
    assert catalog.current("sail_month") is None
    assert list(ws.store("restricted").list("engine-staging/")) == []
    first = build_all(ws, ["sail_month"])[0]
    expected = catalog.read(catalog.current("sail_month"))
    progress = Messages()
    again = build_all(ws, ["sail_month"], engine="spark", full=True, progress=progress)[0]
    assert progress.said(f"ehr/encounters encounters.csv {NATIVE}") and not progress.said("for Spark")
    assert again.version == first.version
    _assert_same("sail_month", expected, catalog.read(catalog.current("sail_month")))
    staged = list(ws.store("restricted").list("engine-staging/"))
    assert staged == []  # Sail read the CSV object from the raw bucket: nothing was staged


def _processes_owned_by(pid: int) -> list[int]:
    """Processes started for a local Spark of process ``pid`` (their environment names it)."""
    owned = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"LITHOTSE_SPARK_OWNER={pid}".encode() in environ:
                owned.append(int(entry.name))
    return owned


def test_a_local_spark_stops_when_its_process_ends_without_cleanup(tmp_path):
    """A build process that is killed or leaves with os._exit runs no atexit handler; its local
    Spark server (a JVM of a gigabyte) must not outlive it."""
    script = tmp_path / "owner.py"
    script.write_text("import os\nfrom lithotse_desktop.derive.engines.spark import connect\n"
                      "print(os.getpid(), connect('local[1]').sql('SELECT 42 AS x').collect()[0].x, flush=True)\n"
                      "os._exit(0)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    pid, answer = done.stdout.split()
    assert answer == "42", done.stderr[-2000:]
    deadline = time.monotonic() + 30
    while _processes_owned_by(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_owned_by(int(pid)) == []


def _landed_on_spark(ws: Workspace, url: str, stream: str, progress: Progress, source: str = "ehr") -> pa.Table:
    """``input__landed`` of a Spark session: every landed row with its provenance, by object and row."""
    session = SparkEngine(ws, {"url": url}).session(progress)
    try:
        with IntegrityChecks() as checks:
            session.load_stream(ws, "input", resolve_stream(ws, source, stream), progress, checks)
        return session.run("SELECT * FROM input__landed ORDER BY _landing_id, _row", [], "landed")
    finally:
        session.close()


def test_a_csv_object_read_by_spark_where_it_lies_gives_its_connectors_rows(tmp_path, spark_url):
    """Quotes, a field over two lines, CRLF and LF lines mixed, blank lines, padded numbers, times
    with offsets and a total row under the data: Spark's rows, types and provenance are the ones
    the connector gives, over overlapping landings of one object and a changed file."""
    ws = landed_csv(tmp_path)
    expected = connector_rows(ws, "ehr", "visits")
    assert expected.column("amount").type == pa.float64() and expected.column("stamp").type.tz == "UTC"
    assert len(set(expected.column("_landing_id").to_pylist())) == 3
    progress = Messages()
    got = _landed_on_spark(ws, spark_url, "visits", progress)
    assert len(progress.said(NATIVE)) == 2, progress.seen
    assert not progress.said("for Spark")
    assert list(ws.store("restricted").list("engine-staging/")) == []
    same_rows(expected, got)


def test_fhir_ndjson_read_by_spark_where_it_lies_gives_its_connectors_rows(tmp_path, spark_url):
    """Blank and padded lines, CRLF lines, another type's lines in the file, partial dates, offsets,
    three spellings of a patient reference, a newer version of a resource, none of a date: Spark's
    rows, the resource text, types and provenance are the connector's, over overlapping landings."""
    ws = landed_fhir(tmp_path)
    for stream in ("Encounter", "Patient"):
        expected = connector_rows(ws, "fhir", stream)
        progress = Messages()
        got = _landed_on_spark(ws, spark_url, stream, progress, source="fhir")
        assert progress.said(f"fhir/{stream} mixed.ndjson {NATIVE}") and not progress.said("for Spark")
        assert expected.num_rows == (4 if stream == "Encounter" else 1)  # e4 has no date: in neither range
        same_rows(expected, got)
