"""Property: any sequence of overlapping imports counts what one full import counts.

For CSV and spreadsheet sources (with and without a ``key``), FHIR NDJSON and HL7 v2 files,
random sequences of ranged imports, ``--full`` runs and re-imports, each followed by the
(incremental) builds an import triggers, must give the same daily ``count`` and
``count_distinct`` as a fresh workspace that imports everything once, on every day the
sequence's ranges covered; and both must match a count done in plain Python from the rows
written.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lithotse_desktop.dates import DateRange
from lithotse_desktop.derive.build import build_all
from lithotse_desktop.derive.service import add_spec, read_table
from lithotse_desktop.plugins import reset_plugin_manager
from lithotse_desktop.raw import run_import
from lithotse_desktop.workspace import Workspace
from tests.plugins.hl7v2.builders import adt

DAY0 = dt.date(2024, 1, 1)
DAYS = 100

# kind -> (connector, stream, date field, column counted distinct, keyed)
KINDS = {
    "csv": ("csv", "visits", "day", "patient", False),
    "csv-key": ("csv", "visits", "day", "patient", True),
    "xlsx": ("spreadsheet", "Visits", "day", "patient", False),
    "xlsx-key": ("spreadsheet", "Visits", "day", "patient", True),
    "fhir": ("fhir-files", "Encounter", "date", "id", True),
    "hl7": ("hl7v2", "adt", "effective_datetime", "patient_id", True),
}


def write_inputs(kind: str, folder: Path, files: list[list[tuple[int, str]]]) -> dict:
    """Write the rows (day offset, patient) in the kind's format; returns the source settings.

    Keyed kinds get a unique record id per row; keyless ones may repeat a row exactly, and
    such rows are still two records (two positions in the object).
    """
    folder.mkdir(parents=True)
    n = 0
    if kind in ("csv", "csv-key"):
        [rows] = files
        lines = ["visit,day,patient"] + [f"v{i},{DAY0 + dt.timedelta(days=d)},{p}" for i, (d, p) in enumerate(rows)]
        if kind == "csv":  # no id column at all: identity is the row's position
            lines = ["day,patient"] + [f"{DAY0 + dt.timedelta(days=d)},{p}" for d, p in rows]
        (folder / "visits.csv").write_text("\n".join(lines) + "\n")
        return {"path": str(folder), "date_column": "day", **({"key": "visit"} if kind == "csv-key" else {})}
    if kind in ("xlsx", "xlsx-key"):
        [rows] = files
        book = openpyxl.Workbook()
        sheet = book.active
        sheet.title = "Visits"
        sheet.append(["visit", "day", "patient"])
        for i, (d, p) in enumerate(rows):
            sheet.append([f"v{i}" if kind == "xlsx-key" else "same", DAY0 + dt.timedelta(days=d), p])
        book.save(folder / "visits.xlsx")
        return {"path": str(folder / "visits.xlsx"), "date_column": "day",
                **({"key": "visit"} if kind == "xlsx-key" else {})}
    if kind == "fhir":
        for f, rows in enumerate(files):
            lines = []
            for d, p in rows:
                n += 1
                lines.append(json.dumps({"resourceType": "Encounter", "id": f"e{n}", "status": "finished",
                                         "class": {"code": "AMB"}, "subject": {"reference": f"Patient/{p}"},
                                         "period": {"start": f"{DAY0 + dt.timedelta(days=d)}T10:00:00Z"}}))
            (folder / f"part{f}.ndjson").write_text("\n".join(lines) + "\n")
        return {"path": str(folder), "resource_types": "Encounter"}
    for f, rows in enumerate(files):
        messages = []
        for d, p in rows:
            n += 1
            messages.append(adt(f"M{n}", admit=f"{DAY0 + dt.timedelta(days=d):%Y%m%d}", patient=p))
        (folder / f"batch{f}.hl7").write_bytes("\n".join(m.replace("\r", "\n") for m in messages).encode())
    return {"path": str(folder)}


def daily(kind: str) -> dict:
    _connector, stream, date_field, distinct, _keyed = KINDS[kind]
    return {"name": "daily", "kind": "aggregate", "input": {"source": "src", "stream": stream},
            "date_field": date_field, "grain": "day", "suppress_below": 0,
            "measures": [{"fn": "count", "as": "n"}, {"fn": "count_distinct", "column": distinct, "as": "k"}]}


def results(ws: Workspace) -> dict[dt.date, tuple[int, int]]:
    return {r["period"]: (r["n"], r["k"]) for r in read_table(ws, "daily")[1].to_pylist()}


def day_range(start: int | None, end: int | None) -> DateRange:
    return DateRange(None if start is None else DAY0 + dt.timedelta(days=start),
                     None if end is None else DAY0 + dt.timedelta(days=end))


def covered(steps: list[tuple[int | None, int | None, bool, bool]]) -> set[int]:
    days: set[int] = set()
    for start, end, *_ in steps:
        days |= set(range(0 if start is None else start, DAYS if end is None else end + 1))
    return days


bound = st.one_of(st.none(), st.integers(0, DAYS - 1), st.integers(0, DAYS - 1))


@st.composite
def step_lists(draw) -> list[tuple[int | None, int | None, bool, bool]]:
    """3 to 6 imports: new overlapping ranges (open ends too), repeats of the previous one,
    ``--full`` runs; each followed by the builds an import triggers, or not (``--no-build``)."""
    steps: list[tuple[int | None, int | None, bool, bool]] = []
    count = draw(st.integers(3, 6))
    for i in range(count):
        full = draw(st.booleans())
        if steps and draw(st.integers(0, 3)) == 0:
            start, end = steps[-1][:2]
        else:
            start, end = draw(bound), draw(bound)
            if start is not None and end is not None and start > end:
                start, end = end, start
        steps.append((start, end, full, i == count - 1 or draw(st.booleans())))
    return steps


row = st.tuples(st.integers(0, DAYS - 1), st.sampled_from(["p1", "p2", "p3", "p4", "p5"]))


@pytest.fixture(scope="module", autouse=True)
def installed_plugins():
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(KINDS)), steps=step_lists(),
       files=st.lists(st.lists(row, min_size=1, max_size=25), min_size=1, max_size=2))
def test_any_sequence_of_overlapping_imports_equals_one_full_import(kind, steps, files):
    connector, _stream, *_ = KINDS[kind]
    if kind in ("csv", "csv-key", "xlsx", "xlsx-key"):
        files = [[r for rows in files for r in rows]]  # one file: a CSV file or a sheet is one stream
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings_ = write_inputs(kind, root / "in", files)
        seq = Workspace.create(root / "seq")
        seq.add_source("src", connector, settings_, {})
        for i, (start, end, full, rebuild) in enumerate(steps):
            run_import(seq, "src", day_range(start, end), full=full)
            if i == 0:
                add_spec(seq, daily(kind))
            if rebuild:
                build_all(seq)
        fresh = Workspace.create(root / "fresh")
        fresh.add_source("src", connector, settings_, {})
        run_import(fresh, "src")
        add_spec(fresh, daily(kind))
        build_all(fresh)
        got, once = results(seq), results(fresh)

    days = covered(steps)
    expected: dict[dt.date, tuple[int, set]] = defaultdict(lambda: (0, set()))
    for index, rows in enumerate(files):
        for number, (d, p) in enumerate(rows):
            if d in days:
                n, seen = expected[DAY0 + dt.timedelta(days=d)]
                distinct = p if KINDS[kind][3] != "id" else (index, number)
                expected[DAY0 + dt.timedelta(days=d)] = (n + 1, seen | {distinct})
    independent = {day: (n, len(seen)) for day, (n, seen) in expected.items()}
    once = {day: v for day, v in once.items() if (day - DAY0).days in days}
    assert got == once, (kind, steps)
    assert got == independent, (kind, steps)
