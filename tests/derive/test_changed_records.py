"""An export landed again whole, with a few records more and one corrected: an incremental build
recomputes only the periods a changed record was or is in, and publishes what a full build does."""

from __future__ import annotations

import datetime as dt
import random
import types
from collections import Counter, defaultdict

import duckdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lithotse_desktop.derive import build, inputs
from lithotse_desktop.derive.build import build_all
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.recordindex import _drop_unchanged
from lithotse_desktop.derive.rowstream import KEY_HASH, key_hash
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.raw import landing, run_import
from lithotse_desktop.workspace import Workspace

ENCOUNTERS = {"source": "ehr", "stream": "encounters"}
MEASURES = [{"fn": "count", "as": "visits"}, {"fn": "count_distinct", "column": "patient_id", "as": "patients"}]
SPECS = [{"name": name, "kind": "aggregate", "input": ENCOUNTERS, "date_field": "admit_date", "grain": grain,
          "group_by": dims, "measures": MEASURES, "suppress_below": 5}
         for name, grain, dims in [("by_dept", "month", ["department"]),
                                   ("by_class_quarter", "quarter", ["class"]),
                                   ("by_month", "month", [])]]
EMERGENCIES = {**SPECS[0], "name": "emergencies_by_dept",
               "filters": [{"column": "class", "op": "=", "value": "EMER"}]}
"""A filtered subset of by_dept: by_dept is then the outer of counted differences, so the group
reads one shared table of the input instead of each table its kept input."""
HEADER = "encounter_id,patient_id,admit_date,department,class\n"


def encounters(seed: int, count: int, first: dt.date, days: int, prefix: str) -> list[list[str]]:
    draw = random.Random(seed)
    return [[f"{prefix}{n}", f"P{draw.randrange(150)}", (first + dt.timedelta(days=draw.randrange(days))).isoformat(),
             draw.choice(["Cardiology", "Emergency", "General"]), draw.choice(["AMB", "EMER"])]
            for n in range(count)]


def export(path, rows: list[list[str]]) -> None:
    path.write_text(HEADER + "".join(",".join(row) + "\n" for row in rows))


def keyed_export(tmp, seed: int, count: int, specs: list[dict]) -> tuple[Workspace, object, list[list[str]]]:
    """A workspace whose source is a keyed export of ``count`` encounters from January to June,
    with ``specs`` added; the export's path and rows, to land it again changed."""
    workspace = Workspace.create(tmp / "ws")
    folder = tmp / "ehr"
    folder.mkdir()
    csv = folder / "encounters.csv"
    rows = encounters(seed, count, dt.date(2024, 1, 1), 181, "E")
    export(csv, rows)
    workspace.add_source("ehr", "csv", {"path": str(folder), "date_column": "admit_date", "key": "encounter_id"}, {})
    for spec in specs:
        add_spec(workspace, spec)
    return workspace, csv, rows


def revised(rows: list[list[str]], draw: random.Random, moved: int, edited: int, added: int,
            late: int, prefix: str) -> list[list[str]]:
    """The export's rows with ``moved`` records given another day, ``edited`` another department
    and ``added`` late June records (drawn from the seed ``late``)."""
    rows = list(rows)
    for i in draw.sample(range(len(rows)), moved):
        day = dt.date(2024, 1, 1) + dt.timedelta(days=draw.randrange(181))
        rows[i] = [*rows[i][:2], day.isoformat(), *rows[i][3:]]
    for i in draw.sample(range(len(rows)), edited):
        rows[i] = [*rows[i][:3], draw.choice(["Cardiology", "Emergency", "General"]), rows[i][4]]
    return rows + encounters(late, added, dt.date(2024, 6, 1), 30, prefix)


def reader_narrows(shown: list[dict[str, dict[tuple, int | None]]], real: list[dict[str, dict[tuple, tuple[int, int]]]],
                   k: int) -> list[str]:
    """What a reader holding every moment's published SPECS narrows below ``k``, written apart
    from the product: each cell's visits at each moment an unknown at least 0, the departments
    of a month adding up to it and the classes of a quarter to its months at every moment, each
    published value fixed (a row absent then: 0), and each value at least the one before where
    it really did not fall (the reader who guesses right which counts did not fall). ``shown``:
    per moment and table, each key's published visits (None: hidden); ``real``: its visits and
    people. Judged: each hidden cell of 1 to k-1 people, then or now, and each cell hidden now
    whose visits moved by 1 to k-1 since a moment that showed it (unless its real value or
    change is 0)."""
    import highspy

    keys = {name: sorted({key for moment in real for key in moment[name]}) for name in real[0]}
    number: dict[tuple, int] = {}
    for t in range(len(real)):
        for name, listed in keys.items():
            for key in listed:
                number[(t, name, key)] = len(number)
    model = highspy.Highs()
    model.setOptionValue("output_flag", False)
    for _ in number:
        model.addVar(0, highspy.kHighsInf)

    def row(low: float, high: float, terms: dict[int, float]) -> None:
        model.addRow(low, high, len(terms), np.array(list(terms), dtype=np.int32),
                     np.array(list(terms.values()), dtype=np.float64))

    for t, moment in enumerate(shown):
        for name, listed in keys.items():
            for key in listed:
                value = moment[name].get(key, 0)
                if value is not None:
                    row(value, value, {number[(t, name, key)]: 1.0})
        for month, in keys["by_month"]:
            row(0, 0, {**{number[(t, "by_dept", key)]: 1.0 for key in keys["by_dept"] if key[0] == month},
                       number[(t, "by_month", (month,))]: -1.0})
        for quarter in {key[0] for key in keys["by_class_quarter"]}:
            months = [(m,) for m, in keys["by_month"]
                      if m.year == quarter.year and m.month - quarter.month in (0, 1, 2)]
            row(0, 0, {**{number[(t, "by_class_quarter", key)]: 1.0 for key in keys["by_class_quarter"]
                          if key[0] == quarter}, **{number[(t, "by_month", m)]: -1.0 for m in months}})
        if t:
            for name, listed in keys.items():
                for key in listed:
                    if real[t][name].get(key, (0, 0))[0] >= real[t - 1][name].get(key, (0, 0))[0]:
                        row(0, highspy.kHighsInf, {number[(t, name, key)]: 1.0, number[(t - 1, name, key)]: -1.0})

    model.run()
    assert model.getModelStatus() == highspy.HighsModelStatus.kOptimal, "the real values hold every row"

    def spread(terms: dict[int, float]) -> float:
        ends = []
        for sense in (highspy.ObjSense.kMinimize, highspy.ObjSense.kMaximize):
            model.changeColsCost(len(number), np.arange(len(number), dtype=np.int32), np.zeros(len(number)))
            model.changeColsCost(len(terms), np.array(list(terms), dtype=np.int32), np.array(list(terms.values())))
            model.changeObjectiveSense(sense)
            model.run()
            if model.getModelStatus() == highspy.HighsModelStatus.kUnknown:  # a warm start gave up
                model.clearSolver()
                model.run()
            status = model.getModelStatus()
            if status in (highspy.HighsModelStatus.kUnbounded, highspy.HighsModelStatus.kUnboundedOrInfeasible):
                return np.inf  # feasible, as checked above
            assert status == highspy.HighsModelStatus.kOptimal, model.modelStatusToString(status)
            ends.append(model.getInfo().objective_function_value)
        return ends[1] - ends[0]

    narrowed = []
    for t, moment in enumerate(shown):
        for name, listed in keys.items():
            for key in listed:
                if moment[name].get(key, 0) is not None:
                    continue
                visits, people = real[t][name].get(key, (0, 0))
                if 0 < people < k and spread({number[(t, name, key)]: 1.0}) < k - 1e-6:
                    narrowed.append(f"{name} {key} at moment {t}")
                for s in range(t):
                    before = shown[s][name].get(key)
                    if before is not None and 0 < abs(visits - before) < k and \
                            spread({number[(t, name, key)]: 1.0, number[(s, name, key)]: -1.0}) < k - 1e-6:
                        narrowed.append(f"{name} {key}'s change from moment {s} to {t}")
    return narrowed


def published(catalog: Catalog, specs: list[dict]) -> dict[str, list[dict]]:
    return {s["name"]: catalog.read(catalog.current(s["name"])).to_pylist() for s in specs}


def coordinates(spec: dict, row: dict) -> tuple:
    return (row["period"], *(row[d] for d in spec["group_by"]))


def moment_of(catalog: Catalog) -> dict[str, dict[tuple, int | None]]:
    """What SPECS publish now: each cell's visits, None where hidden."""
    return {name: {coordinates(spec, r): None if r["suppressed"] else r["visits"] for r in table}
            for spec in SPECS for name, table in published(catalog, [spec]).items()}


def counted(rows: list[list[str]]) -> dict[str, dict[tuple, tuple[int, int]]]:
    """SPECS' cells counted from the export's rows: each one's visits and people."""
    def start(day: str, grain: str) -> dt.date:
        month = int(day[5:7])
        return dt.date(int(day[:4]), month if grain == "month" else 3 * ((month - 1) // 3) + 1, 1)

    out: dict[str, dict[tuple, tuple[int, int]]] = {}
    for spec in SPECS:
        people: dict[tuple, set[str]] = defaultdict(set)
        visits: Counter[tuple] = Counter()
        for row in rows:
            key = (start(row[2], spec["grain"]),
                   *({"department": row[3], "class": row[4]}[d] for d in spec["group_by"]))
            visits[key] += 1
            people[key].add(row[1])
        out[spec["name"]] = {key: (visits[key], len(people[key])) for key in visits}
    return out


@pytest.mark.parametrize("shared", [False, True], ids=["kept input", "shared table"])
def test_an_export_landed_again_recomputes_only_the_periods_of_its_changed_records(workspace, tmp_path, monkeypatch,
                                                                                     shared):
    specs = [*SPECS, EMERGENCIES] if shared else SPECS
    asked: list[list[str]] = []
    original = inputs.changed_records
    monkeypatch.setattr(inputs, "changed_records", lambda con, alias, resolved, fresh_ids, table: (
        asked.append(fresh_ids), original(con, alias, resolved, fresh_ids, table))[1])
    folder = tmp_path / "ehr"
    folder.mkdir()
    csv = folder / "encounters.csv"
    rows = encounters(1, 900, dt.date(2024, 1, 1), 181, "E")  # January to June
    export(csv, rows)
    workspace.add_source("ehr", "csv", {"path": str(folder), "date_column": "admit_date", "key": "encounter_id"}, {})
    for spec in specs:
        add_spec(workspace, spec)
    run_import(workspace, "ehr")
    assert all(r.status == "built" for r in build_all(workspace))

    corrected = next(i for i, row in enumerate(rows) if row[2].startswith("2024-02"))
    rows[corrected] = [rows[corrected][0], rows[corrected][1], "2024-04-10", "Emergency", rows[corrected][4]]
    rows += encounters(2, 30, dt.date(2024, 6, 1), 30, "N")  # late June records
    export(csv, rows)  # the whole export again: every record lands a second time
    run_import(workspace, "ehr")
    results = {r.name: r for r in build_all(workspace)}
    assert {r.status for r in results.values()} == {"incremental"}
    catalog = Catalog(workspace)
    recomputed = {s["name"]: catalog.current(s["name"]).stats["recomputed_periods"] for s in specs}
    assert asked == [], "what changed is found against the kept input, not every landing read again"
    kept = [s["name"] for s in specs if "input_index" in catalog.current(s["name"]).stats]
    assert kept, "the shared table is kept beside the first version that reads it"
    assert sorted(recomputed["by_dept"]) == sorted(recomputed["by_month"]) == ["2024-02-01", "2024-04-01",
                                                                                 "2024-06-01"]
    assert sorted(recomputed["by_class_quarter"]) == ["2024-01-01", "2024-04-01"]
    incremental = published(catalog, specs)

    visits = Counter((row[2][:7], row[3]) for row in rows)  # by month and department, counted apart
    shown = [r for r in incremental["by_dept"] if not r["suppressed"]]
    assert len(shown) > 10 and any(r["period"] == dt.date(2024, 6, 1) for r in shown)
    assert all(r["visits"] == visits[(r["period"].isoformat()[:7], r["department"])] for r in shown)
    months = Counter(row[2][:7] for row in rows)
    assert all(r["visits"] == months[r["period"].isoformat()[:7]] for r in incremental["by_month"]
               if not r["suppressed"])

    assert all(r.status == "built" for r in build_all(workspace, full=True))
    assert published(catalog, specs) == incremental


@pytest.mark.parametrize("shared", [False, True], ids=["kept input", "shared table"])
@settings(max_examples=6, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**16), moved=st.integers(0, 6), edited=st.integers(0, 6), added=st.integers(0, 40))
def test_exports_landed_again_with_random_changes_compute_what_a_full_build_does(tmp_path_factory, shared, seed,
                                                                                 moved, edited, added):
    """Records moved to another month, edited in place (another department) or added, the
    export landed again whole each time, twice: the incremental builds publish what a full build
    does. Nothing is suppressed (deciding is not what this checks: revised records are, see
    docs/privacy.md); ``shared``: the tables, built together, read one table of the input, kept
    beside the first one's version; else each is built alone and keeps its own input."""
    specs = [{**s, "suppress_below": 0} for s in SPECS]
    workspace, csv, rows = keyed_export(tmp_path_factory.mktemp("changes"), seed, 400, specs)
    draw = random.Random(seed)
    catalog = Catalog(workspace)

    def build_them() -> set[str]:
        if shared:
            return {r.status for r in build_all(workspace)}
        return {r.status for s in specs for r in build_all(workspace, [s["name"]])}

    run_import(workspace, "ehr")
    build_them()
    for step in range(2):
        rows = revised(rows, draw, moved, edited, added, seed + 1 + step, f"N{step}-")
        export(csv, rows)
        run_import(workspace, "ehr")
        assert build_them() <= {"incremental", "up to date"}
    kept = [s["name"] for s in specs if "input_index" in catalog.current(s["name"]).stats]
    assert kept == (["by_class_quarter"] if shared else [s["name"] for s in specs])
    incremental = published(catalog, specs)
    build_all(workspace, full=True)
    assert published(catalog, specs) == incremental
    months = Counter(row[2][:7] for row in rows)
    assert {r["period"].isoformat()[:7]: r["visits"] for r in incremental["by_month"]} == dict(months)


@settings(max_examples=8, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**16), moved=st.integers(1, 6), edited=st.integers(0, 6), added=st.integers(0, 20))
def test_a_source_revising_records_publishes_its_revisions_suppressed(tmp_path_factory, seed, moved, edited, added):
    """Records moved to another month or department make cells fall, which the audits against
    earlier versions once took as impossible: a cell that lost a record was bounded to no change
    at all and the build refused ("between 0 and 0"). Now each landing of the revised export is
    published, its shown cells are the file's counts, and the published set passes the audit: no
    hidden cell narrowed, and no shown cell revised by 1 to k-1 but those a build warned of (a
    month's people moved by one where its departments' cells, unchanged and shown, give its
    visits anyway: the documented release of a held cell)."""
    from lithotse_desktop.derive.privacy import audit_published

    workspace, csv, rows = keyed_export(tmp_path_factory.mktemp("revised"), seed, 600, SPECS)
    draw = random.Random(seed)
    catalog = Catalog(workspace)
    run_import(workspace, "ehr")
    build_all(workspace)
    moments, real = [moment_of(catalog)], [counted(rows)]
    warned: set[str] = set()
    for step in range(2):
        rows = revised(rows, draw, moved, edited, added, seed + 1 + step, f"N{step}-")
        export(csv, rows)
        run_import(workspace, "ehr")
        results = build_all(workspace)
        assert [r.error for r in results if r.status not in ("incremental", "up to date")] == []
        warned |= {r.name for r in results if r.revised}
        moments.append(moment_of(catalog))
        real.append(counted(rows))
        visits = Counter((row[2][:7], row[3]) for row in rows)
        shown = [r for r in published(catalog, SPECS[:1])["by_dept"] if not r["suppressed"]]
        assert all(r["visits"] == visits[(r["period"].isoformat()[:7], r["department"])] for r in shown)
    report = audit_published(workspace)
    assert report["findings"] == report["refusals"] == []
    assert {revision["derivative"] for revision in report["revisions"]} <= warned
    assert reader_narrows(moments, real, 5) == []


def test_a_complement_no_hiding_can_protect_is_shown_not_refused(workspace, tmp_path):
    """One Emergency visit moved from January to April and another from May to January: the
    first quarter's Emergency visits stay 152 but lose a patient, so the cell is held; January,
    February, March and the quarter's ambulatory visits are unchanged and stay shown, and give
    the 152 anyway. Released, it was hidden again as the complement of the second quarter's held
    Emergency cell (the two quarters are a line of their table) and the build refused, naming
    it. It is shown now, its revision counted, and nothing hidden is narrowed."""
    from lithotse_desktop.derive.privacy import audit_published

    folder = tmp_path / "ehr"
    folder.mkdir()
    csv = folder / "encounters.csv"
    rows = encounters(145, 600, dt.date(2024, 1, 1), 181, "E")
    export(csv, rows)
    workspace.add_source("ehr", "csv", {"path": str(folder), "date_column": "admit_date", "key": "encounter_id"}, {})
    for spec in SPECS:
        add_spec(workspace, spec)
    run_import(workspace, "ehr")
    build_all(workspace)
    catalog = Catalog(workspace)
    quarter = {r["class"]: r for r in published(catalog, SPECS)["by_class_quarter"] if r["period"].month == 1}
    assert quarter["EMER"]["visits"] == 152 and not quarter["EMER"]["suppressed"]

    moves = {"E432": "2024-04-22", "E535": "2024-01-07"}
    assert [(r[2][:7], r[4]) for r in rows if r[0] in moves] == [("2024-01", "EMER"), ("2024-05", "EMER")]
    late = encounters(146, 1, dt.date(2024, 6, 1), 30, "N")
    rows = [[r[0], r[1], moves.get(r[0], r[2]), *r[3:]] for r in rows] + late
    export(csv, rows)
    run_import(workspace, "ehr")
    results = {r.name: r for r in build_all(workspace)}
    assert {r.status for r in results.values()} == {"incremental"}, [r.error for r in results.values()]
    quarter = {r["class"]: r for r in published(catalog, SPECS)["by_class_quarter"] if r["period"].month == 1}
    emergency = [r for r in rows if r[2] < "2024-04" and r[4] == "EMER"]
    assert not quarter["EMER"]["suppressed"]
    people = len({r[1] for r in emergency})
    assert (quarter["EMER"]["visits"], quarter["EMER"]["patients"]) == (152, people) == (152, 90)
    assert results["by_class_quarter"].revised >= 1, "the people it lost are a revision, counted"
    report = audit_published(workspace)
    assert report["findings"] == report["refusals"] == []


def test_an_export_landed_again_whole_keeps_its_unchanged_records_where_they_lie(tmp_path):
    """An update writes what changed, not the whole export again: the records landed again as
    they were stay in their first landing's file (kept as it is when none of them changed) and the
    new landing's file holds only the new ones. A record the export holds twice is counted by its
    later row, as a full build counts it, whichever of the two is the version kept before."""
    specs = [{**SPECS[2], "suppress_below": 0}]
    workspace, csv, rows = keyed_export(tmp_path, 7, 300, specs)
    catalog = Catalog(workspace)

    def files() -> dict[str, tuple[str, int]]:
        return {f["landing"]: (f["key"], f["rows"]) for f in catalog.current("by_month").stats["input_index"]}

    def months(counted: list[list[str]]) -> dict[str, int]:
        newest = {row[0]: row for row in counted}  # the later row of a record
        return dict(Counter(row[2][:7] for row in newest.values()))

    def update(exported: list[list[str]]) -> dict[str, tuple[str, int]]:
        export(csv, exported)
        run_import(workspace, "ehr")
        assert [r.status for r in build_all(workspace)] == ["incremental"]
        incremental = published(catalog, specs)["by_month"]
        assert {r["period"].isoformat()[:7]: r["visits"] for r in incremental} == months(exported)
        return files()

    run_import(workspace, "ehr")
    build_all(workspace)
    (first_landing, first_file), = files().items()
    assert first_file[1] == 300

    extra = ["extra", "P1", "2024-06-01", "General", "AMB"]
    second = update(rows + [extra])
    assert second[first_landing] == first_file, "the first landing's file is kept as it is"
    assert sorted(n for _, n in second.values()) == [1, 300]

    corrected = next(i for i, row in enumerate(rows) if row[2].startswith("2024-02"))
    moved = [*rows[corrected][:2], "2024-05-15", *rows[corrected][3:]]
    third = update([moved, *rows, extra])  # corrected, then as it was: the later row wins
    assert third[first_landing][1] == 299 and sorted(n for _, n in third.values()) == [1, 1, 299]
    fourth = update([*rows, extra, moved])  # as it was, then corrected
    assert sorted(n for _, n in fourth.values()) == [1, 1, 299]
    assert months([*rows, moved]) != months(rows)
    incremental = published(catalog, specs)["by_month"]
    build_all(workspace, full=True)
    assert published(catalog, specs)["by_month"] == incremental


def test_a_landing_ranked_before_one_already_read_is_read_with_everything(tmp_path, monkeypatch):
    """A landing stamped earlier than one a version read (a clock set back, or a landing of another
    machine pulled by sync) may outrank a kept row that stayed in its first landing because it
    landed again as it was: that build reads every object, and publishes what a full build does."""
    class Clock(dt.datetime):
        at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

        @classmethod
        def now(cls, tz=None):
            return cls.at

    monkeypatch.setattr(landing, "dt", types.SimpleNamespace(**{**vars(dt), "datetime": Clock}))
    specs = [{**SPECS[2], "suppress_below": 0}]
    workspace, csv, rows = keyed_export(tmp_path, 7, 50, specs)
    catalog = Catalog(workspace)

    def land(hours: int, exported: list[list[str]]) -> str:
        export(csv, exported)
        Clock.at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=hours)
        run_import(workspace, "ehr")
        (result,) = build_all(workspace)
        return result.status

    assert land(0, rows) == "built"
    assert land(2, rows + [["extra", "P1", "2024-06-01", "General", "AMB"]]) == "incremental"
    corrected = next(i for i, row in enumerate(rows) if row[2].startswith("2024-02"))
    moved = [*rows[corrected][:2], "2024-05-15", *rows[corrected][3:]]
    # between the first two: a full build counts the second landing's version, as it was
    assert land(1, [moved, *rows[:corrected], *rows[corrected + 1:]]) == "built"
    incremental = published(catalog, specs)["by_month"]
    assert {r["period"].isoformat()[:7]: r["visits"] for r in incremental} == \
        dict(Counter(row[2][:7] for row in rows + [["extra", "P1", "2024-06-01", "General", "AMB"]]))
    build_all(workspace, full=True)
    assert published(catalog, specs)["by_month"] == incremental


@pytest.mark.parametrize(("old", "new", "taken"), [
    ("'7'", "'7'", True),
    ("'007'", "7", False),  # a column whose type changed: SQL would cast '007' to 7
    ("-0.0::DOUBLE", "0.0::DOUBLE", False),  # equal in SQL, yet min and max tell them apart
    ("NULL::VARCHAR", "NULL::VARCHAR", True),
])
def test_a_record_is_taken_out_of_the_new_rows_only_when_it_is_the_same_value_of_the_same_type(old, new, taken):
    con = duckdb.connect()
    con.execute(f"CREATE TABLE __old_input AS SELECT 'E1' AS id, {old} AS v, 'L0' AS _landing_id, "
                f"'2026' AS _landed_at, 0 AS _row, {key_hash(['id'])} AS {KEY_HASH}")
    con.execute(f"CREATE TABLE __new_input AS SELECT 'E1' AS id, {new} AS v, 'L1' AS _landing_id, "
                "'2027' AS _landed_at, 0 AS _row")
    _drop_unchanged(con, ["id"], ["id", "v", "_landing_id", "_landed_at", "_row"])
    assert con.execute("SELECT count(*) FROM __new_input").fetchone() == ((0,) if taken else (1,))


def test_tables_reading_one_shared_table_read_only_what_landed_since_day_after_day(tmp_path, monkeypatch):
    """An export landed again whole each day, read by tables that suppress together and count
    differences (so they read one shared table): each update reads the new landing and the input
    kept beside the last version, not every landing again (which grew with every day landed),
    recomputes only the periods of the records that changed, and publishes the export's own
    counts in its shown cells; the last update publishes what a full build does."""
    from lithotse_desktop.derive import recordindex

    specs = [*SPECS, EMERGENCIES]
    workspace, csv, rows = keyed_export(tmp_path, 7, 700, specs)
    read: list[int] = []
    original = inputs.landed_objects

    def landed(con, ws, resolved, progress, checks, name, *, unused=(), skip=frozenset(), typed=False):
        read.append(sum(1 for stored in resolved.objects(ws) if stored.sha256 not in skip))
        return original(con, ws, resolved, progress, checks, name, unused=unused, skip=skip, typed=typed)

    for module in (inputs, recordindex):  # every read of a stream's objects goes through one of them
        monkeypatch.setattr(module, "landed_objects", landed)
    run_import(workspace, "ehr")
    assert {r.status for r in build_all(workspace)} == {"built"}
    catalog = Catalog(workspace)
    draw = random.Random(7)
    for day in range(3):
        rows = revised(rows, draw, 0, 2, 12, 100 + day, f"D{day}-")
        export(csv, rows)
        run_import(workspace, "ehr")
        read.clear()
        results = build_all(workspace)
        assert {r.status for r in results} == {"incremental"}, [(r.name, r.status, r.error) for r in results]
        assert read and all(n == 1 for n in read), f"day {day + 1}: objects read {read}, not only the new one"
        recomputed = catalog.current("by_month").stats["recomputed_periods"]
        assert recomputed is not None and len(recomputed) < 6, recomputed
        real = counted(rows)
        for spec in SPECS:
            for r in published(catalog, [spec])[spec["name"]]:
                if not r["suppressed"]:
                    assert r["visits"] == real[spec["name"]][coordinates(spec, r)][0], (day, spec["name"], r)
    incremental = published(catalog, specs)
    assert {r.status for r in build_all(workspace, full=True)} == {"built"}
    assert published(catalog, specs) == incremental


def test_a_unit_of_tables_that_suppress_nothing_builds_what_they_join_first_and_fails_alone(tmp_path):
    """Tables that suppress nothing are built in one unit, but one that joins a derivative is
    built on its own after it: a join whose derivative fails skips that table alone (its sibling
    is built), and a join on a derivative that reads a sibling sees the sibling's new version in
    the same run (found by a second reader: the unit was built before what it read)."""
    from lithotse_desktop.derive.build import BuildsFailed

    workspace, _, _ = keyed_export(tmp_path / "one", 3, 100, [])
    regions = tmp_path / "regions"
    regions.mkdir()
    (regions / "reg.csv").write_text("department,region\nCardiology,north\nEmergency,south\nGeneral,east\n")
    workspace.add_source("reg", "csv", {"path": str(regions)}, {})
    run_import(workspace, "ehr")
    run_import(workspace, "reg")
    base = {"kind": "aggregate", "input": ENCOUNTERS, "date_field": "admit_date", "grain": "month",
            "measures": [{"fn": "count", "as": "visits"}], "suppress_below": 0}
    Catalog(workspace).save_spec({"name": "regions", "kind": "sql", "inputs": {"r": {"source": "reg", "stream": "reg"}},
                                  "sql": "SELECT department, no_such_column AS region FROM r"})
    Catalog(workspace).save_spec({**base, "name": "a_joined", "group_by": ["region"],
                                  "join": {"input": {"derivative": "regions"},
                                           "on": {"left": "department", "right": "department"},
                                           "columns": ["region"]}})
    add_spec(workspace, {**base, "name": "b_plain", "group_by": ["class"]})
    with pytest.raises(BuildsFailed) as failed:
        build_all(workspace)
    statuses = {r.name: r.status for r in failed.value.results}
    assert statuses == {"regions": "failed", "a_joined": "skipped", "b_plain": "built"}, statuses

    workspace, _, _ = keyed_export(tmp_path / "two", 3, 100, [])
    run_import(workspace, "ehr")
    add_spec(workspace, {**base, "name": "c_src", "group_by": ["department"]})
    add_spec(workspace, {**base, "name": "d_src", "group_by": ["class"]})
    build_all(workspace)
    add_spec(workspace, {"name": "peaks", "kind": "sql", "inputs": {"c": {"derivative": "c_src"}},
                         "sql": "SELECT department, lower(department) AS ward FROM c GROUP BY department"})
    build_all(workspace, ["peaks"])
    add_spec(workspace, {**base, "name": "a_joined", "group_by": ["ward"],
                         "join": {"input": {"derivative": "peaks"}, "on": {"left": "department", "right": "department"},
                                  "columns": ["ward"]}})
    build_all(workspace)
    add_spec(workspace, {**base, "name": "c_src", "group_by": ["department"], "grain": "quarter"}, replace=True)
    statuses = {r.name: r.status for r in build_all(workspace)}
    assert statuses["c_src"] == statuses["peaks"] == statuses["a_joined"] == "built", statuses
    assert {r.status for r in build_all(workspace)} == {"up to date"}


def test_a_table_the_failed_try_of_its_unit_published_is_reported_built(tmp_path, monkeypatch):
    """Tables that suppress nothing built in one unit, which fails while publishing the second:
    the retry one by one finds the first up to date, published by the failed try, and reports it
    built (this run built it); the second, built by the retry, is built too, and each shows the
    same cells as a build that did not fail."""
    from lithotse_desktop.errors import LithotseError

    specs = [{**SPECS[2], "name": name, "suppress_below": 0} for name in ("a", "b")]
    workspace, _, _ = keyed_export(tmp_path, 7, 100, specs)
    run_import(workspace, "ehr")
    publish = build._publish
    calls: list[str] = []

    def failing_once(ws, catalog, work, hidden):
        calls.append(work.name)
        if len(calls) == 2:
            raise LithotseError("the store refused the write")
        return publish(ws, catalog, work, hidden)

    monkeypatch.setattr(build, "_publish", failing_once)
    results = build_all(workspace)
    assert calls == ["a", "b", "b"], calls  # the retry finds a up to date
    assert {r.name: r.status for r in results} == {"a": "built", "b": "built"}
    assert {r.status for r in build_all(workspace)} == {"up to date"}
    monkeypatch.setattr(build, "_publish", publish)
    again, _, _ = keyed_export(tmp_path / "again", 7, 100, specs)
    run_import(again, "ehr")
    build_all(again)
    for name in ("a", "b"):
        shown = [sorted(Catalog(w).read(Catalog(w).current(name)).to_pylist(), key=repr) for w in (workspace, again)]
        assert shown[0] == shown[1] and shown[0], name


def test_an_import_committed_while_a_unit_resolves_its_tables_reaches_every_one_of_them(tmp_path, monkeypatch):
    """The tables of a unit resolve each stream once, so they read, and their versions record, the
    same landings though an import commits meanwhile (simulated: an import right after the first
    one resolves). Found by a second reader: the second table's version named a landing it had
    not read, and it stayed up to date without it."""
    specs = [{**SPECS[2], "name": name, "suppress_below": 0} for name in ("a", "b")]
    workspace, csv, rows = keyed_export(tmp_path, 5, 100, specs)
    run_import(workspace, "ehr")
    build_all(workspace)
    rows = rows + encounters(8, 10, dt.date(2024, 5, 1), 20, "M")
    export(csv, rows)
    run_import(workspace, "ehr")
    later = rows + encounters(9, 50, dt.date(2024, 6, 1), 20, "N")
    resolve = build._resolve

    def resolving(ws, catalog, spec, streams):
        work = resolve(ws, catalog, spec, streams)
        if spec["name"] == "a":
            export(csv, later)
            run_import(ws, "ehr")
        return work

    monkeypatch.setattr(build, "_resolve", resolving)
    build_all(workspace)
    monkeypatch.setattr(build, "_resolve", resolve)
    build_all(workspace)
    catalog = Catalog(workspace)
    for name in ("a", "b"):
        assert sum(r["visits"] for r in catalog.read(catalog.current(name)).to_pylist()) == len(later), name


def test_a_build_cancelled_while_it_decides_publishes_nothing_and_builds_afterwards(tmp_path, monkeypatch):
    """Deciding which cells to hide can take minutes where most cells are small: the build says
    so, and a cancel then stops it between two solves with nothing published, so the next build
    starts as the first would have."""
    from lithotse_desktop.derive import bounds
    from lithotse_desktop.derive.privacy import audit_published
    from lithotse_desktop.errors import Cancelled
    from lithotse_desktop.progress import Progress

    specs = [{**spec, "suppress_below": 20} for spec in (*SPECS, EMERGENCIES)]  # enough hidden to need solves
    workspace, _csv, _rows = keyed_export(tmp_path, 151, 600, specs)
    run_import(workspace, "ehr")
    messages: list[str] = []
    progress = Progress(lambda state: messages.append(state.message))
    solve = bounds.BoundModel._run
    solves: list[int] = []

    def cancelled_at_the_first_solve(self, *args):
        solves.append(1)
        progress.cancel()
        return solve(self, *args)

    monkeypatch.setattr(bounds.BoundModel, "_run", cancelled_at_the_first_solve)
    with pytest.raises(Cancelled):
        build_all(workspace, progress=progress)
    assert solves == [1], "stopped at the first solve"
    assert any(m.startswith("deciding which cells to hide in ") for m in messages), messages
    catalog = Catalog(workspace)
    assert all(catalog.current(s["name"]) is None for s in specs)

    monkeypatch.setattr(bounds.BoundModel, "_run", solve)
    results = build_all(workspace)
    assert {r.status for r in results} == {"built"}, [r.error for r in results]
    report = audit_published(workspace)
    assert report["findings"] == report["refusals"] == []


def test_ctrl_c_while_the_command_decides_cancels_it_with_nothing_published(tmp_path, monkeypatch, cli):
    """Ctrl-C at the terminal while ``lithotse derive build --all`` decides which cells to hide
    (minutes at scale): the build runs in a worker thread, so the interrupt cancels it (before, a
    KeyboardInterrupt waited for the solve under way, up to two minutes, and left a traceback). The
    command says it was cancelled with nothing committed and exits 130; the next build publishes
    as the first would, and the audit is clean."""
    import _thread
    import threading
    import time

    from lithotse_desktop.derive import bounds
    from lithotse_desktop.derive.privacy import audit_published

    specs = [{**spec, "suppress_below": 20} for spec in (*SPECS, EMERGENCIES)]  # enough hidden to need solves
    workspace, _csv, _rows = keyed_export(tmp_path, 151, 600, specs)
    run_import(workspace, "ehr")
    solve = bounds.BoundModel._run
    solving_in: list[str] = []

    def interrupted_at_the_first_solve(self, *args):
        if not solving_in:
            solving_in.append(threading.current_thread().name)
            _thread.interrupt_main()  # what Ctrl-C does to the command's thread
            check = bounds._stop_check.get()
            assert check is not None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # until the cancel reaches the build's check
                check()
                time.sleep(0.01)
        return solve(self, *args)

    monkeypatch.setattr(bounds.BoundModel, "_run", interrupted_at_the_first_solve)
    result = cli("--workspace", str(workspace.root), "derive", "build", "--all", expect=130)
    assert solving_in and solving_in[0] != threading.main_thread().name, "the build ran beside the command's thread"
    output = result.output + (getattr(result, "stderr", "") or "")
    assert "cancelling: stopping at the next safe point" in output, output
    assert "cancelled: nothing the command had started was committed" in output, output
    assert "Traceback" not in output
    catalog = Catalog(workspace)
    assert all(catalog.current(s["name"]) is None for s in specs)

    monkeypatch.setattr(bounds.BoundModel, "_run", solve)
    cli("--workspace", str(workspace.root), "derive", "build", "--all")
    assert all(catalog.current(s["name"]) is not None for s in specs)
    report = audit_published(workspace)
    assert report["findings"] == report["refusals"] == []
