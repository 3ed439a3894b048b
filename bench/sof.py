"""Benchmark: compiled SQL-on-FHIR view vs a hand-written DuckDB query vs row-by-row fhirpathpy.

Generates N synthetic Encounter resources (deterministic) as NDJSON in a temporary directory, then times
(a) the EncounterFlat ViewDefinition compiled by lithotse_desktop.derive.sof, (b) a hand-written DuckDB
JSON query producing the same columns, (c) fhirpathpy evaluating the view one resource at a time on a
sample, extrapolated to N. Targets: (a) at least 20x faster than (c), at most 2x slower than (b).

Run: .venv/bin/python bench/sof.py [--n N] [--repeat R] [--sample S]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "derive" / "sof"))

from lithotse_desktop.derive.sof import compile_view  # noqa: E402

from sof_reference import evaluate_view  # noqa: E402

VIEW_PATH = ROOT / "tests" / "data" / "fhir" / "viewdefinitions-pathling-benchmark" / "EncounterFlat.json"

HAND_WRITTEN = """
SELECT id, status, patient_id, service_org_id, period_start, period_end, "EpisodeOfCareId",
       json_extract_string(tc, '$.system') AS type_sys,
       json_extract_string(tc, '$.code') AS type_code,
       NULLIF(regexp_extract(json_extract_string(p, '$.individual.reference'), '^Practitioner/([^/]+)$', 1), '')
           AS practitioner_id,
       NULLIF(regexp_extract(json_extract_string(l, '$.location.reference'), '^Location/([^/]+)$', 1), '')
           AS location_id
FROM (SELECT *, unnest(CASE WHEN len(ls) = 0 THEN [NULL::JSON] ELSE ls END) AS l FROM (
  SELECT *, unnest(CASE WHEN len(ps) = 0 THEN [NULL::JSON] ELSE ps END) AS p FROM (
    SELECT *, unnest(CASE WHEN len(tcs) = 0 THEN [NULL::JSON] ELSE tcs END) AS tc FROM (
      SELECT json_extract_string(r, '$.id') AS id,
             json_extract_string(r, '$.status') AS status,
             NULLIF(regexp_extract(json_extract_string(r, '$.subject.reference'), '^Patient/([^/]+)$', 1), '')
                 AS patient_id,
             NULLIF(regexp_extract(json_extract_string(r, '$.serviceProvider.reference'),
                                   '^Organization/([^/]+)$', 1), '') AS service_org_id,
             json_extract_string(r, '$.period.start') AS period_start,
             json_extract_string(r, '$.period.end') AS period_end,
             NULLIF(regexp_extract(json_extract_string(r, '$.episodeOfCare[0].reference'),
                                   '^EpisodeOfCare/([^/]+)$', 1), '') AS "EpisodeOfCareId",
             json_extract(r, '$.type[*].coding[*]') AS tcs,
             json_extract(r, '$.participant[*]') AS ps,
             json_extract(r, '$.location[*]') AS ls
      FROM (SELECT json AS r FROM read_ndjson_objects($1)) AS src
      WHERE json_extract_string(r, '$.resourceType') = 'Encounter'))))
"""

TYPES = [("http://snomed.info/sct", "185349003", "Encounter for check up"),
         ("http://snomed.info/sct", "50849002", "Emergency room admission"),
         ("http://snomed.info/sct", "162673000", "General examination of patient"),
         ("http://snomed.info/sct", "410620009", "Well child visit")]


def make_encounter(rng: random.Random, n: int) -> dict:
    """One Synthea-like Encounter; optional parts vary so forEachOrNull sees empty and repeated items."""
    start = 1_400_000_000 + rng.randrange(300_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(start))
    end = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(start + rng.randrange(600, 7200)))
    system, code, display = TYPES[rng.randrange(len(TYPES))]
    enc: dict = {
        "resourceType": "Encounter",
        "id": f"enc-{n:08d}",
        "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-encounter"]},
        "identifier": [{"use": "official", "system": "https://github.com/synthetichealth/synthea",
                        "value": f"enc-{n:08d}"}],
        "status": rng.choice(["finished", "finished", "finished", "in-progress", "cancelled"]),
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [{"coding": [{"system": system, "code": code, "display": display}], "text": display}],
        "subject": {"reference": f"Patient/pat-{rng.randrange(20_000):06d}", "display": "Synthetic Patient"},
        "participant": [{"type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                               "code": "PPRF", "display": "primary performer"}]}],
                         "period": {"start": stamp, "end": end},
                         "individual": {"reference": f"Practitioner/prac-{rng.randrange(500):04d}"}}
                        for _ in range(rng.choice([0, 1, 1, 1, 2]))],
        "period": {"start": stamp, "end": end},
    }
    if rng.random() < 0.9:
        enc["serviceProvider"] = {"reference": f"Organization/org-{rng.randrange(100):03d}"}
    if rng.random() < 0.7:
        enc["location"] = [{"location": {"reference": f"Location/loc-{rng.randrange(200):03d}"}}]
    if rng.random() < 0.2:
        enc["episodeOfCare"] = [{"reference": f"EpisodeOfCare/eoc-{rng.randrange(5000):05d}"}]
    if rng.random() < 0.5:
        enc["type"][0]["coding"].append({"system": "http://example.org/local", "code": f"L{rng.randrange(50)}"})
    return enc


def generate(directory: Path, n: int) -> Path:
    rng = random.Random(20240613)
    path = directory / "Encounter.ndjson"
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            out.write(json.dumps(make_encounter(rng, i), separators=(",", ":")))
            out.write("\n")
    return path


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="Encounter resources to generate")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per timing (median reported)")
    parser.add_argument("--sample", type=int, default=5_000, help="resources for the fhirpathpy baseline")
    args = parser.parse_args(argv)

    view = json.loads(VIEW_PATH.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="lithotse-sof-bench-") as tmp:
        t0 = time.perf_counter()
        data = generate(Path(tmp), args.n)
        print(f"generated {args.n:,} Encounters ({data.stat().st_size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - t0:.1f}s")

        con = duckdb.connect()
        source = f"(SELECT json AS resource FROM read_ndjson_objects({_literal(str(data))}))"
        sql, params = compile_view(view, source)

        def run_compiled() -> int:
            con.execute(f"CREATE OR REPLACE TEMP TABLE compiled AS {sql}", params)
            return con.execute("SELECT count(*) FROM compiled").fetchone()[0]

        def run_hand() -> int:
            con.execute(f"CREATE OR REPLACE TEMP TABLE hand AS {HAND_WRITTEN}", [str(data)])
            return con.execute("SELECT count(*) FROM hand").fetchone()[0]

        t_compiled, rows_compiled = timed(run_compiled, args.repeat)
        t_hand, rows_hand = timed(run_hand, args.repeat)
        differ = con.execute(
            "SELECT count(*) FROM ((SELECT * FROM compiled EXCEPT ALL SELECT * FROM hand) "
            "UNION ALL (SELECT * FROM hand EXCEPT ALL SELECT * FROM compiled))").fetchone()[0]
        con.close()

        sample_n = min(args.sample, args.n)

        def run_reference() -> int:
            with data.open(encoding="utf-8") as lines:
                resources = [json.loads(next(lines)) for _ in range(sample_n)]
            return len(evaluate_view(view, resources))

        t_sample, rows_sample = timed(run_reference, 1)
        t_reference = t_sample * args.n / sample_n

    print(f"(a) compiled view        : {t_compiled:8.3f}s  {rows_compiled:,} rows (median of {args.repeat})")
    print(f"(b) hand-written DuckDB  : {t_hand:8.3f}s  {rows_hand:,} rows (median of {args.repeat})")
    print(f"(c) fhirpathpy row-by-row: {t_reference:8.3f}s  extrapolated from {sample_n:,} resources "
          f"({t_sample:.2f}s, {rows_sample:,} rows)")
    print(f"rows differing between (a) and (b): {differ}")
    speedup = t_reference / t_compiled
    overhead = t_compiled / t_hand
    print(f"speed-up vs row-by-row fhirpathpy: {speedup:.1f}x (target >= 20x)")
    print(f"compiled / hand-written time     : {overhead:.2f}x (target <= 2x)")
    ok = speedup >= 20 and overhead <= 2 and differ == 0 and rows_compiled == rows_hand
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


if __name__ == "__main__":
    sys.exit(main())
