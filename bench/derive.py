"""Aggregate build vs the same hand-written DuckDB query, on ≥5 million synthetic encounters.

Both sides read the same CSV file (Lithotse through its landed L1 copy and the CSV connector)
and compute visits, distinct patients and mean length of stay by department and month.
Lithotse also validates, deduplicates nothing (no key is declared, like the baseline),
applies suppression and writes versioned Parquet; the baseline writes its result as zstd
Parquet too. Target: ratio ≤ 1.3.
"""

from __future__ import annotations

import argparse
import shutil

import duckdb

from _common import median_time, scratch_workspace

QUERY = """
SELECT CAST(date_trunc('month', admit_date) AS DATE) AS period, department,
       count(*) AS visits, count(DISTINCT patient_id) AS patients, avg(length_of_stay_days) AS mean_los
FROM read_csv('{path}', header = true)
GROUP BY ALL ORDER BY ALL
"""
# the build writes its result as zstd Parquet, so the baseline does too
WRITE = "COPY ({query}) TO '{out}' (FORMAT parquet, COMPRESSION zstd)"


def generate(path, rows: int) -> None:
    """Deterministic synthetic encounters written by DuckDB (hash-based, no RNG state)."""
    duckdb.connect().execute(f"""
        COPY (SELECT 'E' || i AS encounter_id,
                     'P' || (hash(i * 7) % 400000) AS patient_id,
                     'dept_' || lpad(CAST(hash(i * 13) % 24 AS VARCHAR), 2, '0') AS department,
                     DATE '2019-01-01' + CAST(hash(i * 31) % 2190 AS INTEGER) AS admit_date,
                     round((hash(i * 17) % 2000) / 100.0, 2) AS length_of_stay_days
              FROM range({rows}) t(i))
        TO '{path}' (HEADER, DELIMITER ',')""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    tmp, ws = scratch_workspace("lithotse-bench-derive-")
    try:
        data = tmp / "in"
        data.mkdir()
        csv_path = data / "encounters.csv"
        generate(csv_path, args.rows)
        print(f"{args.rows:,} encounters, {csv_path.stat().st_size / 1e6:.0f} MB CSV")

        from lithotse_desktop.derive.build import build
        from lithotse_desktop.derive.service import add_spec
        from lithotse_desktop.raw import run_import

        ws.add_source("ehr", "csv", {"path": str(data), "date_column": "admit_date"}, {})
        run_import(ws, "ehr")
        add_spec(ws, {"name": "visits_by_dept", "kind": "aggregate",
                      "input": {"source": "ehr", "stream": "encounters"},
                      "date_field": "admit_date", "grain": "month", "group_by": ["department"],
                      "measures": [{"fn": "count", "as": "visits"},
                                   {"fn": "count_distinct", "column": "patient_id", "as": "patients"},
                                   {"fn": "mean", "column": "length_of_stay_days", "as": "mean_los"}]})
        con = duckdb.connect()
        baseline_sql = QUERY.format(path=csv_path)
        written = WRITE.format(query=baseline_sql, out=tmp / "baseline.parquet")
        hand, hand_all = median_time(lambda: con.execute(written), args.repeat)
        ours, ours_all = median_time(lambda: build(ws, "visits_by_dept", full=True), args.repeat)
        expected = con.sql(baseline_sql).to_arrow_table()
        from lithotse_desktop.derive.service import read_table

        got = read_table(ws, "visits_by_dept")[1]
        assert got.num_rows == expected.num_rows, (got.num_rows, expected.num_rows)
        assert got.column("visits").to_pylist() == expected.column("visits").to_pylist()
        print(f"hand-written DuckDB query: median {hand:.2f}s  runs {[round(t, 2) for t in hand_all]}")
        print(f"lithotse derive build:     median {ours:.2f}s  runs {[round(t, 2) for t in ours_all]}")
        ratio = ours / hand
        print(f"ratio {ratio:.2f}x (target ≤ 1.3x) {'OK' if ratio <= 1.3 else 'ABOVE TARGET'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
