"""The user's whole path at 200k / 1M / 5M records, as processes, beside hand-written DuckDB.

For each size, in a temp folder that is removed afterwards, with data generated
deterministically by DuckDB (hash-based, no RNG state; one record in ten is a second,
newer version of another, so deduplication has work to do):

- ``import``: ``lithotse import fhir --no-build`` (copy, sha256, validate, commit) on a fresh
  workspace, beside a DuckDB process reading the same NDJSON with ``read_ndjson`` into Arrow
  batches;
- ``view build``: ``lithotse derive build encounters`` (a 4-column ViewDefinition, newest
  version per id), beside a DuckDB process doing the same work: JSON extraction of the same
  columns, newest-version dedupe with ``QUALIFY row_number()``, a zstd Parquet file, and the
  file's sha256 checked against the one it was landed with on a thread meanwhile, as the build
  checks every raw object it reads (the build also writes its record index, for incremental
  rebuilds, from the same read: that work is its own);
- ``aggregate build``: ``lithotse derive build by_month`` from the landed CSV (count, distinct
  patients, mean by department and month), beside DuckDB reading the CSV, aggregating and
  writing zstd Parquet, and checking the file's sha256 on a thread meanwhile (the build checks
  every raw object it reads, as for the view);
- ``+1% records``: 1% new Encounters appended (a new file of the stream) and ``lithotse
  import`` run as a user does, which rebuilds the view and a monthly count of Encounters; its
  "duckdb" columns hold that run's full builds of those two instead, so the ratio is the share
  of the full builds' time the update took (the issue's target: under 0.05);
- ``fixed cost`` (with the aggregate step): the same aggregate build and hand-written query over a
  10-row CSV, what each process pays whatever the data; printed after the table with each size's
  aggregate build above it on both sides (the part that grows with the data).

The project's modules (and its bundled plugins') are byte-compiled first, where Python looks for
them, as installing a package does: a checkout run with ``PYTHONDONTWRITEBYTECODE`` would
otherwise compile every module again in every process measured (about 0.1 s each), time the
hand-written side, whose DuckDB was compiled when it was installed, never spends.

Every step is a fresh process; its time is wall clock and its peak RSS is the OS's
``ru_maxrss`` of that process (``os.wait4``), as ``/usr/bin/time`` reports it (this process
never loads DuckDB, so it hands its children no peak of its own). Steps run
``--runs`` times (fresh workspace each run for import) and medians are printed in one table
with the ratios. Run: ``.venv/bin/python bench/scale.py [--sizes 200000,1000000,5000000] [--steps view]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
LITHOTSE = [PYTHON, "-m", "lithotse_desktop"]

VIEW = {"name": "encounters", "kind": "view", "input": {"source": "fhir", "stream": "Encounter"},
        "view": {"resourceType": "ViewDefinition", "resource": "Encounter", "status": "active",
                 "select": [{"column": [{"name": "id", "path": "getResourceKey()"},
                                        {"name": "status", "path": "status"},
                                        {"name": "class_code", "path": "class.code"},
                                        {"name": "period_start", "path": "period.start"}]}]}}
AGGREGATE = {"name": "by_month", "kind": "aggregate", "input": {"source": "ehr", "stream": "visits"},
             "date_field": "admit_date", "grain": "month", "group_by": ["department"], "suppress_below": 0,
             "measures": [{"fn": "count", "as": "visits"},
                          {"fn": "count_distinct", "column": "patient_id", "as": "patients"},
                          {"fn": "mean", "column": "length_of_stay_days", "as": "mean_los"}]}

FHIR_AGGREGATE = {"name": "encounters_by_month", "kind": "aggregate",
                  "input": {"source": "fhir", "stream": "Encounter"}, "date_field": "date", "grain": "month",
                  "suppress_below": 0, "measures": [{"fn": "count", "as": "encounters"}]}

IMPORT_BASELINE = """
import duckdb, sys
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
reader = con.sql(f"SELECT * FROM read_ndjson('{sys.argv[1]}')").to_arrow_reader(32_768)
print(sum(batch.num_rows for batch in reader))
"""
HASHING = """
import duckdb, hashlib, sys, threading
digest = hashlib.sha256()
def verify():
    with open(sys.argv[1], 'rb') as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
hashing = threading.Thread(target=verify)
hashing.start()
"""
"""Start of a baseline script: the file ``argv[1]`` hashed on a thread while DuckDB works, as the
build checks every raw object it reads against its landed sha256 (``argv[3]``)."""
CHECKED = """
hashing.join()
if digest.hexdigest() != sys.argv[3]:
    raise SystemExit(f"{sys.argv[1]} does not match its sha256")
"""
VIEW_BASELINE = HASHING + """
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute(f'''COPY (
    SELECT j[1] AS id, j[2] AS status, j[3] AS class_code, j[4] AS period_start
    FROM (SELECT json_extract_string(json, ['$.id', '$.status', '$.class.code', '$.period.start',
                                            '$.meta.versionId', '$.meta.lastUpdated']) AS j
          FROM read_ndjson_objects('{sys.argv[1]}'))
    QUALIFY row_number() OVER (PARTITION BY j[1] ORDER BY TRY_CAST(j[5] AS BIGINT) DESC NULLS LAST,
                                                        TRY_CAST(j[6] AS TIMESTAMPTZ) DESC NULLS LAST) = 1
) TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION zstd)''')
""" + CHECKED + """
print(con.sql(f"SELECT count(*) FROM '{sys.argv[2]}'").fetchall()[0][0])
"""
AGGREGATE_BASELINE = HASHING + """
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute(f'''COPY (
    SELECT CAST(date_trunc('month', admit_date) AS DATE) AS period, department, count(*) AS visits,
           count(DISTINCT patient_id) AS patients, avg(length_of_stay_days) AS mean_los
    FROM read_csv('{sys.argv[1]}', header = true) GROUP BY ALL
) TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION zstd)''')
""" + CHECKED + """
print(con.sql(f"SELECT count(*) FROM '{sys.argv[2]}'").fetchall()[0][0])
"""


def run_duckdb(sql: str) -> None:
    """Generate data in a DuckDB child process: this process stays small, because Linux hands a
    child the parent's peak RSS across exec and that would inflate every figure measured."""
    script = ("import duckdb, sys; con = duckdb.connect(); con.execute('SET enable_progress_bar = false'); "
              "con.execute(sys.argv[1])")
    subprocess.run([PYTHON, "-c", script, sql], check=True)


def generate_fhir(path: Path, n: int, first: int = 0) -> None:
    """n Encounter lines: ids 0..0.9n, the last tenth are version 2 of the first ids; with
    ``first``, n new Encounters (version 1) numbered from there instead."""
    unique = n - n // 10 if not first else first + n
    run_duckdb(f"""
        CREATE MACRO pick(x, k) AS 1 + CAST(hash(x) % k AS BIGINT);
        CREATE MACRO minutes_from(day, x, k) AS CAST(day AS TIMESTAMP) + to_minutes(CAST(hash(x) % k AS BIGINT));
        COPY (SELECT 'Encounter' AS "resourceType", 'enc-' || lpad(CAST(i % {unique} AS VARCHAR), 9, '0') AS id,
                     {{'versionId': CAST(1 + i // {unique} AS VARCHAR),
                       'lastUpdated': strftime(minutes_from('2013-01-01', i * 3, 5000000),
                                               '%Y-%m-%dT%H:%M:%S.000Z')}} AS meta,
                     ['finished', 'finished', 'cancelled', 'in-progress'][pick(i * 5, 4)] AS status,
                     {{'system': 'http://terminology.hl7.org/CodeSystem/v3-ActCode',
                       'code': ['AMB', 'IMP', 'EMER', 'VR', 'HH'][pick(i * 7, 5)]}} AS class,
                     [{{'coding': [{{'system': 'http://snomed.info/sct',
                                     'code': ['185349003', '185347001', '390906007'][pick(i * 17, 3)],
                                     'display': 'Check up'}}], 'text': 'Encounter for check up'}}] AS type,
                     {{'reference': 'Patient/pat-' || CAST(hash(i * 11) % 50000 AS VARCHAR)}} AS subject,
                     {{'start': strftime(minutes_from('2012-01-01', i * 13, 6000000),
                                         '%Y-%m-%dT%H:%M:%S+00:00'),
                       'end': strftime(minutes_from('2012-01-01', i * 13, 6000000) + INTERVAL 45 MINUTE,
                                       '%Y-%m-%dT%H:%M:%S+00:00')}} AS period,
                     {{'reference': 'Organization/org-' || CAST(hash(i * 19) % 300 AS VARCHAR)}} AS "serviceProvider"
              FROM range({first}, {first + n}) t(i) ORDER BY i)
        TO '{path}' (FORMAT json)""")


def generate_csv(path: Path, n: int, first: int = 0) -> None:
    run_duckdb(f"""
        COPY (SELECT 'E' || i AS encounter_id, 'P' || (hash(i * 7) % 400000) AS patient_id,
                     'dept_' || lpad(CAST(hash(i * 13) % 24 AS VARCHAR), 2, '0') AS department,
                     DATE '2019-01-01' + CAST(hash(i * 31) % 2190 AS INTEGER) AS admit_date,
                     round((hash(i * 17) % 2000) / 100.0, 2) AS length_of_stay_days
              FROM range({first}, {first + n}) t(i))
        TO '{path}' (HEADER, DELIMITER ',')""")


def sha256_of(path: Path) -> str:
    """What a landing records of the file (the view baseline checks the file against it)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def measure(args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(seconds, peak RSS in bytes, stdout) of one process; fails loudly when it fails."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{err.decode(errors='replace')}")
    return seconds, usage.ru_maxrss * 1024, out.decode()


def lithotse(ws: Path, *args: str, env: dict[str, str]) -> tuple[float, int, str]:
    return measure([*LITHOTSE, "--workspace", str(ws), *args], env)


def fresh_workspace(root: Path, fhir: Path, csv: Path, memory: str, env: dict[str, str]) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    measure([*LITHOTSE, "init", str(root)], env)
    config = root / "lithotse.toml"
    config.write_text(config.read_text("utf-8") + f'\n[limits]\nmemory = "{memory}"\n', "utf-8")
    lithotse(root, "source", "add", "fhir", "--connector", "fhir-files", "--set", f"path={fhir}",
             "--set", "resource_types=Encounter", env=env)
    lithotse(root, "source", "add", "ehr", "--connector", "csv", "--set", f"path={csv}",
             "--set", "date_column=admit_date", env=env)
    return root


def compile_sources(root: Path) -> None:
    """Byte-compile the project and its bundled plugins into their ``__pycache__`` folders (see
    the module notes); files already compiled are left as they are."""
    import compileall

    for folder in [root / "lithotse_desktop", *sorted((root / "plugins").glob("*/lithotse_*"))]:
        if not compileall.compile_dir(folder, quiet=2):
            raise SystemExit(f"could not byte-compile {folder}")


def median_of(samples: list[tuple[float, int]]) -> tuple[float, int]:
    return statistics.median(s for s, _ in samples), int(statistics.median(r for _, r in samples))


STEPS = {"import": "import", "view": "view build", "aggregate": "aggregate build", "update": "+1% records"}


def run_size(n: int, runs: int, memory: str, tmp: Path, env: dict[str, str],
             steps: frozenset[str] = frozenset(STEPS)) -> list[dict]:
    """The table's rows for one size, of the ``steps`` named (keys of :data:`STEPS`; the import
    runs anyway, as the others read what it lands, and ``update`` builds the view first)."""
    fhir, csv = tmp / "fhir", tmp / "csv"
    fhir.mkdir()
    csv.mkdir()
    ndjson, visits = fhir / "Encounter.000.ndjson", csv / "visits.csv"
    generate_fhir(ndjson, n)
    generate_csv(visits, n)
    ndjson_sha256, visits_sha256 = sha256_of(ndjson), sha256_of(visits)
    print(f"# {n:,} records: {ndjson.stat().st_size / 1e6:.0f} MB NDJSON, {visits.stat().st_size / 1e6:.0f} MB CSV",
          file=sys.stderr, flush=True)  # on stderr: --json prints the table alone on stdout
    expected_view = n - n // 10
    rows: dict[str, dict[str, list[tuple[float, int]]]] = {
        step: {"lithotse": [], "duckdb": []} for step in ("import", "view build", "aggregate build",
                                                          "+1% records")}
    ws = tmp / "ws"
    for _ in range(runs):
        fresh_workspace(ws, fhir, csv, memory, env)
        seconds, rss, _ = lithotse(ws, "import", "fhir", "--no-build", env=env)
        if "import" in steps:
            rows["import"]["lithotse"].append((seconds, rss))
            seconds, rss, out = measure([PYTHON, "-c", IMPORT_BASELINE, str(ndjson)], env)
            assert int(out) == n, out
            rows["import"]["duckdb"].append((seconds, rss))
        if "aggregate" in steps:
            lithotse(ws, "import", "ehr", "--no-build", env=env)
        for spec in (VIEW, AGGREGATE, FHIR_AGGREGATE):
            spec_file = tmp / f"{spec['name']}.json"
            spec_file.write_text(json.dumps(spec), "utf-8")
            lithotse(ws, "derive", "add", "--file", str(spec_file), env=env)
        if steps & {"view", "update"}:
            seconds, rss, out = lithotse(ws, "derive", "build", "encounters", "--full", "--json", env=env)
            built = json.loads(out)
            built = built[0] if isinstance(built, list) else built
            assert built["rows"] == expected_view, built
            rows["view build"]["lithotse"].append((seconds, rss))
            seconds, rss, out = measure([PYTHON, "-c", VIEW_BASELINE, str(ndjson), str(tmp / "view.parquet"),
                                         ndjson_sha256], env)
            assert int(out) == expected_view, out
            rows["view build"]["duckdb"].append((seconds, rss))
        if "aggregate" in steps:
            seconds, rss, out = lithotse(ws, "derive", "build", "by_month", "--full", "--json", env=env)
            rows["aggregate build"]["lithotse"].append((seconds, rss))
            seconds, rss, out = measure([PYTHON, "-c", AGGREGATE_BASELINE, str(visits), str(tmp / "agg.parquet"),
                                         visits_sha256], env)
            rows["aggregate build"]["duckdb"].append((seconds, rss))
        if "update" in steps:
            incremental(ws, fhir, n, rows, env)
    shutil.rmtree(fhir)
    shutil.rmtree(csv)
    shutil.rmtree(ws, ignore_errors=True)
    table = []
    for step, sides in rows.items():
        if not sides["lithotse"]:
            continue
        (ours, ours_rss), (theirs, theirs_rss) = median_of(sides["lithotse"]), median_of(sides["duckdb"])
        table.append({"size": n, "step": step, "lithotse_s": ours, "lithotse_rss": ours_rss, "duckdb_s": theirs,
                      "duckdb_rss": theirs_rss, "time_ratio": ours / theirs, "rss_ratio": ours_rss / theirs_rss})
    return table


def incremental(ws: Path, fhir: Path, n: int, rows: dict, env: dict[str, str]) -> None:
    """Append 1% new Encounters (a new file of the stream) and import them as a user does: the
    import rebuilds every derivative reading the stream (the view and a monthly count). Its
    "duckdb" columns hold the full builds of those two in this run instead, so the ratio is the
    share of a full build's time the update took."""
    extra = max(1, n // 100)
    seconds_full, rss_full, _ = lithotse(ws, "derive", "build", "encounters_by_month", "--full", "--json", env=env)
    full = (rows["view build"]["lithotse"][-1][0] + seconds_full, max(rows["view build"]["lithotse"][-1][1], rss_full))
    added = fhir / "Encounter.001.ndjson"
    generate_fhir(added, extra, first=n)
    try:
        seconds, rss, out = lithotse(ws, "import", "fhir", "--json", env=env)
    finally:
        added.unlink()
    builds = {b["name"]: b for b in json.loads(out)["builds"]}
    assert set(builds) == {"encounters", "encounters_by_month"}, out
    assert builds["encounters"]["rows"] == n - n // 10 + extra, builds
    rows["+1% records"]["lithotse"].append((seconds, rss))
    rows["+1% records"]["duckdb"].append(full)


FIXED_ROWS = 10


def fixed_cost(runs: int, memory: str, tmp: Path, env: dict[str, str]) -> dict:
    """The aggregate build and its hand-written query over a CSV of :data:`FIXED_ROWS` rows, each
    a process as in the table: what either pays whatever the data (starting Python, importing its
    libraries, opening DuckDB, writing and syncing its files), medians of ``runs``. The part of
    each size's time above it is what grows with the data."""
    csv, fhir = tmp / "csv", tmp / "fhir"
    csv.mkdir()
    fhir.mkdir()
    visits = csv / "visits.csv"
    generate_csv(visits, FIXED_ROWS)
    ws = fresh_workspace(tmp / "ws", fhir, csv, memory, env)
    lithotse(ws, "import", "ehr", "--no-build", env=env)
    spec_file = tmp / "by_month.json"
    spec_file.write_text(json.dumps(AGGREGATE), "utf-8")
    lithotse(ws, "derive", "add", "--file", str(spec_file), env=env)
    ours, theirs = [], []
    baseline = [PYTHON, "-c", AGGREGATE_BASELINE, str(visits), str(tmp / "agg.parquet"), sha256_of(visits)]
    for _ in range(runs):
        ours.append(lithotse(ws, "derive", "build", "by_month", "--full", "--json", env=env)[:2])
        theirs.append(measure(baseline, env)[:2])
    (ours_s, ours_rss), (theirs_s, theirs_rss) = median_of(ours), median_of(theirs)
    return {"size": FIXED_ROWS, "step": "fixed cost", "lithotse_s": ours_s, "lithotse_rss": ours_rss,
            "duckdb_s": theirs_s, "duckdb_rss": theirs_rss, "time_ratio": ours_s / theirs_s,
            "rss_ratio": ours_rss / theirs_rss}


def print_fixed(fixed: dict, table: list[dict]) -> None:
    """The fixed cost, and each size's aggregate build above it on both sides."""
    print(f"aggregate build over {fixed['size']} rows (what a process pays whatever the data): Lithotse "
          f"{fixed['lithotse_s']:.2f} s {fixed['lithotse_rss'] / 1e6:.0f} MB, hand-written "
          f"{fixed['duckdb_s']:.2f} s {fixed['duckdb_rss'] / 1e6:.0f} MB")
    for r in table:
        if r["step"] != "aggregate build":
            continue
        ours, theirs = r["lithotse_s"] - fixed["lithotse_s"], r["duckdb_s"] - fixed["duckdb_s"]
        ratio = f"{ours / theirs:.2f}" if theirs > 0 else "-"
        print(f"aggregate build at {r['size']:,} above it: Lithotse {ours:.2f} s, hand-written {theirs:.2f} s, "
              f"time x {ratio}")


def print_table(table: list[dict], memory: str) -> None:
    print(f"{'size':>10}  {'step':<16} {'lithotse s':>10} {'RSS MB':>7} {'duckdb s':>9} {'RSS MB':>7} "
          f"{'time x':>7} {'RSS x':>6}")
    for r in table:
        print(f"{r['size']:>10,}  {r['step']:<16} {r['lithotse_s']:>10.2f} {r['lithotse_rss'] / 1e6:>7.0f} "
              f"{r['duckdb_s']:>9.2f} {r['duckdb_rss'] / 1e6:>7.0f} {r['time_ratio']:>7.2f} {r['rss_ratio']:>6.2f}")
    by_step: dict[str, list[dict]] = {}
    for r in table:
        by_step.setdefault(r["step"], []).append(r)
    for step, items in by_step.items():
        if len(items) > 1:
            peaks = [r["lithotse_rss"] for r in items]
            print(f"{step}: Lithotse peak RSS from smallest to largest size x{max(peaks) / min(peaks):.2f}")
    from lithotse_desktop.engine import parse_size  # the benchmark reads the setting as a workspace does

    limit = parse_size(memory, "--memory")
    # the "duckdb" side of +1% records is Lithotse's own full builds
    ours = [(r["step"], r["size"], r["lithotse_rss"]) for r in table] + [
        ("full builds", r["size"], r["duckdb_rss"]) for r in table if r["step"] == "+1% records"]
    over = [f"{step} at {size:,} ({rss / 1e6:.0f} MB)" for step, size, rss in ours if rss > limit]
    print(f"[limits] memory = {memory}: " + (f"over it: {', '.join(over)}" if over else "every step stayed under it"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="200000",
                        help="comma-separated record counts (default 200000; the issue's are 200000,1000000,5000000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per step; medians are printed (default 3)")
    parser.add_argument("--memory", default="1GB", help="[limits] memory of the workspace (default 1GB)")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help=f"comma-separated steps to measure, of {', '.join(STEPS)} (default all)")
    parser.add_argument("--json", action="store_true", help="print the table as JSON instead")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    steps = frozenset(s.strip() for s in args.steps.split(",") if s.strip())
    if not steps or steps - set(STEPS):
        parser.error(f"--steps: expected some of {', '.join(STEPS)}, not {args.steps!r}")
    root = Path(__file__).resolve().parent.parent
    compile_sources(root)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    table: list[dict] = []
    fixed: dict | None = None
    with tempfile.TemporaryDirectory(prefix="lithotse-scale-") as folder:
        env.setdefault("LITHOTSE_SECRETS_STORE", "file")
        env.setdefault("LITHOTSE_SECRETS_DIR", str(Path(folder) / "secrets"))
        if "aggregate" in steps:
            tmp = Path(folder) / "fixed"
            tmp.mkdir()
            fixed = fixed_cost(args.runs, args.memory, tmp, env)
            shutil.rmtree(tmp, ignore_errors=True)
        for n in sizes:
            tmp = Path(folder) / str(n)
            tmp.mkdir()
            table += run_size(n, args.runs, args.memory, tmp, env, steps)
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(table if fixed is None else [*table, fixed], indent=2))
    else:
        print_table(table, args.memory)
        if fixed is not None:
            print_fixed(fixed, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
