"""How far a derivative's name travels: ``lithotse derive build NAME`` up to its Parquet write.

Runs the real command in-process on a small CSV (through the csv plugin) for one derivative
of each kind and, with a profile hook, records every Lithotse function called from the
command until the first ``pyarrow.parquet.write_table``:

- ``functions``: distinct named Lithotse functions called on the way (comprehensions,
  lambdas and generator expressions are part of the function they are written in);
- ``calls``: how many calls of those there were;
- ``files``: the distinct source files they are in;
- ``name stops``: the calls that were handed the derivative's name as an argument;
- ``depth``: the Lithotse frames on the stack at the write (the chain that makes it).

The numbers are a measure of the code path, not of time; run before and after a refactoring.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from _common import scratch_workspace

PACKAGE_DIR = str(Path(__file__).resolve().parent.parent / "lithotse_desktop")

SPECS = {
    "aggregate": {"name": "by_month", "kind": "aggregate", "input": {"source": "ehr", "stream": "visits"},
                  "date_field": "day", "grain": "month", "group_by": ["dept"],
                  "measures": [{"fn": "count", "as": "n"}], "suppress_below": 0},
    "view": {"name": "as_view", "kind": "view", "input": {"source": "fhir", "stream": "Encounter"},
             "view": {"resourceType": "ViewDefinition", "resource": "Encounter", "status": "active",
                      "select": [{"column": [{"name": "id", "path": "getResourceKey()"},
                                             {"name": "status", "path": "status"}]}]}},
    "sql": {"name": "as_sql", "kind": "sql", "inputs": {"visits": {"source": "ehr", "stream": "visits"}},
            "sql": "SELECT dept, count(*) AS n FROM visits GROUP BY dept"},
}


def write_input(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["day,dept"] + [f"2024-0{1 + i % 3}-{1 + i % 28:02d},d{i % 4}" for i in range(60)]
    (folder / "visits.csv").write_text("\n".join(rows) + "\n")
    fhir = folder.parent / "fhir"
    fhir.mkdir(exist_ok=True)
    encounters = [json.dumps({"resourceType": "Encounter", "id": f"e{i}", "status": "finished",
                              "period": {"start": f"2024-01-{1 + i:02d}"}}) for i in range(20)]
    (fhir / "Encounter.ndjson").write_text("\n".join(encounters) + "\n")


def trace_build(workspace: Path, name: str) -> dict:
    """Run ``lithotse derive build NAME`` and describe the path to its first Parquet write."""
    from lithotse_desktop.cli import main as cli_main

    called: set[tuple[str, str]] = set()
    counts = {"calls": 0, "name_stops": 0}
    found: dict = {}

    def profile(frame, event, _arg):
        if event != "call" or found:
            return
        code = frame.f_code
        if code.co_name == "write_table" and code.co_filename.endswith("parquet/core.py"):
            chain, f = [], frame.f_back
            while f is not None:
                if f.f_code.co_filename.startswith(PACKAGE_DIR):
                    chain.append(f"{Path(f.f_code.co_filename).name}:{f.f_code.co_name}")
                f = f.f_back
            found["chain"] = list(reversed(chain))
            return
        if code.co_filename.startswith(PACKAGE_DIR) and not code.co_name.startswith("<"):
            args = [frame.f_locals.get(v) for v in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]]
            called.add((code.co_filename, code.co_qualname))
            counts["calls"] += 1
            counts["name_stops"] += any(a == name or (isinstance(a, list) and name in a)
                                        for a in args if isinstance(a, (str, list)))

    sys.setprofile(profile)
    try:
        cli_main(["--workspace", str(workspace), "derive", "build", name], standalone_mode=False)
    finally:
        sys.setprofile(None)
    if not found:
        raise SystemExit(f"{name}: no Parquet write seen")
    return {"functions": len(called), "files": len({f for f, _ in called}), **counts,
            "depth": len(found["chain"]), "chain": found["chain"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chain", action="store_true", help="also print the chain of frames at the write")
    args = parser.parse_args()
    tmp, ws = scratch_workspace("lithotse-bench-path-")
    try:
        from lithotse_desktop.derive.service import add_spec
        from lithotse_desktop.jobs import import_and_build

        write_input(tmp / "in")
        ws.add_source("ehr", "csv", {"path": str(tmp / "in"), "date_column": "day"}, {})
        ws.add_source("fhir", "fhir-files", {"path": str(tmp / "fhir")}, {})
        import_and_build(ws, "ehr", build=False)
        import_and_build(ws, "fhir", build=False)
        for kind, spec in SPECS.items():
            add_spec(ws, spec)
            result = trace_build(ws.root, spec["name"])
            print(f"{kind:<10} functions {result['functions']:>3}  calls {result['calls']:>4}  "
                  f"files {result['files']:>2}  name stops {result['name_stops']:>2}  "
                  f"depth at write {result['depth']:>2}")
            if args.chain:
                print("    " + "\n    ".join(result["chain"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
