"""The same derivative built by DuckDB, by Spark (local Spark Connect) and by Sail, side by side.

Part 1, the aggregate of bench/derive.py (visits, distinct patients and mean length of stay by
department and month) over N synthetic encounters, built through ``lithotse derive build``'s
path with ``--engine``: for each engine the time to its first result (a Spark engine's includes
starting its server and session) and the median of the warm builds after it, and a check that
every engine published the same table. Part 2, the EncounterFlat ViewDefinition of bench/sof.py
over Encounter NDJSON, compiled for each engine (Spark and Sail need the SQL-on-FHIR compiler's
Spark dialect: ``compile_view(view, relation, dialect="spark")``).
Then a scaling table of the aggregate's warm build per engine and size, to see where Spark pays.

Run: .venv/bin/python bench/engines.py [--sizes 1000000,5000000,20000000] [--engines duckdb,spark,sail]
The default is one small size (200,000 rows) so a run takes minutes, not an hour.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
from derive import generate

from _common import REPO, median_time, scratch_workspace

SPEC = {"name": "visits_by_dept", "kind": "aggregate", "input": {"source": "ehr", "stream": "encounters"},
        "date_field": "admit_date", "grain": "month", "group_by": ["department"],
        "measures": [{"fn": "count", "as": "visits"},
                     {"fn": "count_distinct", "column": "patient_id", "as": "patients"},
                     {"fn": "mean", "column": "length_of_stay_days", "as": "mean_los"}]}
VIEW_PATH = REPO / "tests" / "data" / "fhir" / "viewdefinitions-pathling-benchmark" / "EncounterFlat.json"


def start_sail() -> tuple[Any, str]:
    """Sail's Spark Connect server in this process (its Python API), and its URL."""
    from pysail.spark import SparkConnectServer

    server = SparkConnectServer()
    server.start()
    _, port = server.listening_address
    return server, f"sc://127.0.0.1:{port}"


def engine_urls(engines: list[str], spark_url: str) -> tuple[dict[str, str | None], Any]:
    urls: dict[str, str | None] = {}
    sail_server = None
    for engine in engines:
        if engine == "duckdb":
            urls[engine] = None
        elif engine == "spark":
            urls[engine] = spark_url
        elif engine == "sail":
            sail_server, urls[engine] = start_sail()
        else:
            raise SystemExit(f"unknown engine {engine!r}: choose from duckdb, spark, sail")
    return urls, sail_server


def compare(expected: Any, got: Any) -> str | None:
    """Why two published tables differ (counts exactly, floats within 1e-9 relative), or None."""
    if expected.schema != got.schema or expected.num_rows != got.num_rows:
        return f"schema or row count ({expected.num_rows} vs {got.num_rows} rows)"
    for name in expected.column_names:
        want, have = expected.column(name).to_pylist(), got.column(name).to_pylist()
        if pa.types.is_floating(expected.schema.field(name).type):
            bad = [i for i, (a, b) in enumerate(zip(want, have, strict=True))
                   if (a is None) != (b is None) or (a is not None and not math.isclose(a, b, rel_tol=1e-9))]
        else:
            bad = [i for i, (a, b) in enumerate(zip(want, have, strict=True)) if a != b]
        if bad:
            return f"column {name}, row {bad[0]}: {want[bad[0]]!r} vs {have[bad[0]]!r}"
    return None


def aggregate_runs(rows: int, urls: dict[str, str | None], repeat: int) -> dict[str, tuple[float, float]]:
    """Per engine: (seconds to the first result, median warm build) for ``rows`` encounters."""
    from lithotse_desktop.derive.build import build
    from lithotse_desktop.derive.service import add_spec, read_table
    from lithotse_desktop.raw import run_import

    tmp, ws = scratch_workspace("lithotse-bench-engines-")
    try:
        data = tmp / "in"
        data.mkdir()
        generate(data / "encounters.csv", rows)
        ws.add_source("ehr", "csv", {"path": str(data), "date_column": "admit_date"}, {})
        run_import(ws, "ehr")
        add_spec(ws, SPEC)
        out: dict[str, tuple[float, float]] = {}
        tables = {}
        for engine, url in urls.items():
            ws.config["engine"] = {"kind": "duckdb", "spark": {"url": url}} if url else {"kind": "duckdb"}
            ws.save()
            chosen = "duckdb" if url is None else "spark"
            started = time.perf_counter()
            build(ws, SPEC["name"], full=True, engine=chosen)
            first = time.perf_counter() - started
            warm, _runs = median_time(lambda c=chosen: build(ws, SPEC["name"], full=True, engine=c), repeat)
            out[engine] = (first, warm)
            tables[engine] = read_table(ws, SPEC["name"])[1]
        first_engine = next(iter(tables))
        for engine, table in tables.items():
            difference = compare(tables[first_engine], table)
            if difference:
                raise SystemExit(f"{engine} published a different table than {first_engine}: {difference}")
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def view_runs(n: int, urls: dict[str, str | None], repeat: int) -> dict[str, tuple[float, float] | str]:
    """Per engine: (first, warm median) seconds of the EncounterFlat view over ``n`` Encounters,
    or why the engine could not run it."""
    import duckdb
    import sof

    from lithotse_desktop.derive.sof import compile_view

    view = json.loads(VIEW_PATH.read_text("utf-8"))
    out: dict[str, tuple[float, float] | str] = {}
    with tempfile.TemporaryDirectory(prefix="lithotse-bench-view-") as tmp:
        data = sof.generate(Path(tmp), n)
        for engine, url in urls.items():
            if url is None:
                source = f"(SELECT json AS resource FROM read_ndjson_objects('{data}'))"
                sql, params = compile_view(view, source)
                con = duckdb.connect()

                def flatten(sql: str = sql, params: list = params, con: Any = con) -> Any:
                    return con.sql(sql, params=params or None).to_arrow_table()

                started = time.perf_counter()
                flatten()
                first = time.perf_counter() - started
                warm, _ = median_time(flatten, repeat)
                out[engine] = (first, warm)
                continue
            from lithotse_desktop.derive.engines.spark import connect

            spark = connect(url)
            spark.read.text(str(data)).selectExpr("value AS resource").createOrReplaceTempView("encounter_json")
            sql, named = compile_view(view, "encounter_json", dialect="spark")
            args = named or None
            started = time.perf_counter()
            try:
                spark.sql(sql, args=args).toArrow()
            except Exception as exc:  # an engine without what the view's SQL needs (Sail: VARIANT)
                out[engine] = f"failed: {str(exc).splitlines()[0][:160]}"
                continue
            first = time.perf_counter() - started
            warm, _ = median_time(lambda sql=sql, args=args, spark=spark: spark.sql(sql, args=args).toArrow(), repeat)
            out[engine] = (first, warm)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200000", help="comma-separated row counts (e.g. 1000000,5000000,20000000)")
    parser.add_argument("--engines", default="duckdb,spark,sail")
    parser.add_argument("--spark-url", default="local[2]", help="the Spark engine's url (default: a local server)")
    parser.add_argument("--view-n", type=int, default=200_000, help="Encounter resources for the view")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]

    started = time.perf_counter()
    urls, sail_server = engine_urls(engines, args.spark_url)
    print(f"engines ready in {time.perf_counter() - started:.1f}s (Spark's server starts with its first build)")
    try:
        scaling: dict[int, dict[str, tuple[float, float]]] = {}
        for rows in sizes:
            scaling[rows] = aggregate_runs(rows, urls, args.repeat)
        largest = max(sizes)
        print(f"\naggregate (bench/derive.py's) over {largest:,} encounters; first result = the run's first build "
              f"on that engine ({sizes[0]:,} rows), with its server's start")
        print(f"{'engine':<8} {'first result':>13} {'warm (median)':>14} {'x DuckDB':>9}")
        base = scaling[largest].get("duckdb", (math.nan, math.nan))[1]
        for engine, (_first, warm) in scaling[largest].items():
            print(f"{engine:<8} {scaling[sizes[0]][engine][0]:>12.2f}s {warm:>13.2f}s {warm / base:>8.2f}x")

        print(f"\nEncounterFlat view (bench/sof.py's) over {args.view_n:,} Encounters")
        print(f"{'engine':<8} {'first result':>13} {'warm (median)':>14} {'x DuckDB':>9}")
        views = view_runs(args.view_n, urls, args.repeat)
        duck = views.get("duckdb")
        view_base = duck[1] if isinstance(duck, tuple) else math.nan
        for engine, result in views.items():
            if isinstance(result, str):
                print(f"{engine:<8} {result}")
            else:
                print(f"{engine:<8} {result[0]:>12.2f}s {result[1]:>13.2f}s {result[1] / view_base:>8.2f}x")

        print("\nscaling: warm aggregate build, seconds")
        print(f"{'rows':>12} " + " ".join(f"{e:>9}" for e in engines))
        for rows in sizes:
            print(f"{rows:>12,} " + " ".join(f"{scaling[rows][e][1]:>8.2f}s" for e in engines))
    finally:
        if sail_server is not None:
            from lithotse_desktop.derive.engines.spark import forget

            forget(urls["sail"])  # its client would retry cleanup calls on the stopped server at exit
            sail_server.stop()


if __name__ == "__main__":
    main()
