"""An export landed again whole, day after day: does an update cost the same on the tenth day?

A keyed CSV of synthetic encounters (``bench/privacy.py``'s data) is exported again whole with
0.2% more rows each day, as EHR extracts are, and imported as a user does; every landing stays
in the raw tier as it landed. Three workspaces build three aggregates of it (monthly by
department, yearly by department, and the monthly emergencies by department, a filtered subset
whose differences from the first are counted):

- ``suppressed``: ``suppress_below 11``, so the three are decided together and, with counted
  differences, read one shared table of the input;
- ``suppressed, no subset``: the same without the filtered subset (monthly by class instead),
  so nothing is counted twice and each keeps its input beside its version (``recordindex.py``);
- ``plain``: ``suppress_below 0``, each keeping its input.

For each workspace and day it prints the update's time (import, then the incremental builds), as
a share of that workspace's full build in the same run (issue 11's target: under 0.05 for 1%
more records) and against its first update (an update that stays flat reads about 1.0x on the
last day). Run: ``.venv/bin/python bench/landings.py [--rows 1000000] [--days 6]``.
"""

from __future__ import annotations

import argparse
import shutil
import time

from privacy import generate, source_settings, specs

from _common import scratch_workspace

SETS = {"suppressed": (11, ["month_0", "year_0", "month_emergencies"]),
        "suppressed, no subset": (11, ["month_0", "year_0", "month_1"]),
        "plain": (0, ["month_0", "year_0", "month_emergencies"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=6)
    args = parser.parse_args()

    from lithotse_desktop.derive.build import build_all
    from lithotse_desktop.derive.service import add_spec
    from lithotse_desktop.raw import run_import
    from lithotse_desktop.workspace import Workspace

    tmp, _ = scratch_workspace("lithotse-bench-landings-")
    try:
        data = tmp / "in"
        data.mkdir()
        export = data / "encounters.csv"
        generate(export, args.rows)
        print(f"{args.rows:,} encounters, {export.stat().st_size / 1e6:.0f} MB CSV, exported again whole "
              f"each day with {args.rows // 500:,} more")
        workspaces, full = {}, {}
        for label, (threshold, names) in SETS.items():
            ws = Workspace.create(tmp / label.replace(" ", "_").replace(",", ""))
            ws.add_source("ehr", "csv", source_settings(data, True), {})
            run_import(ws, "ehr")
            for spec in specs(threshold):
                if spec["name"] in names:
                    add_spec(ws, spec)
            started = time.perf_counter()
            build_all(ws)
            full[label] = time.perf_counter() - started
            workspaces[label] = ws
        first: dict[str, float] = {}
        for day in range(args.days):
            more = tmp / "more.csv"
            generate(more, args.rows // 500, first=args.rows + day * (args.rows // 500), days=(2130, 2190))
            with export.open("a") as out, more.open() as added:
                next(added)  # its header
                shutil.copyfileobj(added, out)
            for label, ws in workspaces.items():
                started = time.perf_counter()
                run_import(ws, "ehr")
                results = build_all(ws)
                seconds = time.perf_counter() - started
                assert {r.status for r in results} <= {"incremental", "built"}, results
                first.setdefault(label, seconds)
                print(f"day {day + 1} ({day + 2} landings) {label + ':':<23} {seconds:6.2f}s  "
                      f"{seconds / full[label]:.2f} of the full build ({full[label]:.2f}s)  "
                      f"{seconds / first[label]:.2f}x the first update", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
