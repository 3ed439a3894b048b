"""People, not rows, through the real pipeline: CSV files with a patient column, imported,
built as a published set of related aggregates, attacked with the published tables.

People per cell are counted here from the CSV rows with the standard library, independently of
the product's SQL; no published cell may show 1 to k-1 of them, and ``lithotse privacy audit``
must find nothing to recover.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
from collections import Counter, defaultdict

import pytest

from lithotse_desktop.derive.build import build_all
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.service import add_spec, lineage
from lithotse_desktop.errors import LithotseError
from lithotse_desktop.raw import run_import

K = 11
INPUT = {"source": "ehr", "stream": "visits"}


def write_visits(folder, seed: int = 7) -> list[dict]:
    """Visits: many by a few heavy users in rare departments (records ≫ people there)."""
    rng = random.Random(seed)
    rows = []
    for i in range(1500):
        dept = rng.choices(["cardio", "ortho", "derm", "rare"], [50, 30, 15, 5])[0]
        pool = 4 if dept == "rare" else 200
        day = dt.date(2023, 1, 1) + dt.timedelta(days=rng.randrange(730))
        rows.append({"visit_id": f"v{i}", "PATIENT": f"{dept[0]}{rng.randrange(pool)}", "START": day.isoformat(),
                     "dept": dept, "kind": rng.choice(["AMB", "EMER", "IMP"])})
    with open(folder / "visits.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


SPECS = [
    {"name": "by_month", "grain": "month", "group_by": ["dept", "kind"]},
    {"name": "by_quarter", "grain": "quarter", "group_by": ["dept"]},
    {"name": "by_year", "grain": "year", "group_by": ["dept", "kind"]},
    {"name": "emergencies", "grain": "year", "group_by": ["dept"],
     "filters": [{"column": "kind", "op": "=", "value": "EMER"}]},
    {"name": "since_2024", "grain": "month", "group_by": ["kind"], "from": "2024-01-01"},
]


def spec(entry: dict) -> dict:
    return {"kind": "aggregate", "input": INPUT, "date_field": "START",
            "measures": [{"fn": "count", "as": "visits"},
                         {"fn": "count_distinct", "column": "PATIENT", "as": "patients"}],
            **entry}


def people_per_cell(entry: dict, rows: list[dict]) -> dict[tuple, set[str]]:
    cells: dict[tuple, set[str]] = defaultdict(set)
    for row in rows:
        day = dt.date.fromisoformat(row["START"])
        if entry.get("from") and day < dt.date.fromisoformat(entry["from"]):
            continue
        if any(row[f["column"]] != f["value"] for f in entry.get("filters", [])):
            continue
        grain = entry["grain"]
        period = {"month": day.replace(day=1), "quarter": day.replace(month=3 * ((day.month - 1) // 3) + 1, day=1),
                  "year": day.replace(month=1, day=1)}[grain]
        cells[(period, *(row[d] for d in entry["group_by"]))].add(row["PATIENT"])
    return cells


def built_group(workspace, monkeypatch, entries: list[dict]):
    """Add ``entries`` as aggregates, build them all, and return the one group the build decided over."""
    from lithotse_desktop.derive import build as build_module

    for entry in entries:
        add_spec(workspace, spec(entry))
    groups = []
    decide = build_module.decide
    monkeypatch.setattr(build_module, "decide",
                        lambda group, zero, **kw: groups.append(group) or decide(group, zero, **kw))
    build_all(workspace)
    (group,) = groups
    return group


@pytest.fixture
def ehr(workspace, tmp_path):
    folder = tmp_path / "ehr"
    folder.mkdir()
    rows = write_visits(folder)
    workspace.add_source("ehr", "csv", {"path": str(folder), "date_column": "START"}, {})
    run_import(workspace, "ehr")
    return rows


def test_the_patient_column_is_found_and_counted(workspace, ehr):
    add_spec(workspace, spec(SPECS[0]))
    build_all(workspace)
    info = lineage(workspace, "by_month")
    assert (info["counts"], info["person_key"]) == ("people", ["PATIENT"])


def test_no_published_cell_shows_one_to_ten_people(workspace, ehr, cli):
    for entry in SPECS:
        add_spec(workspace, spec(entry))
    build_all(workspace)
    catalog = Catalog(workspace)
    heavy = 0
    for entry in SPECS:
        expected = people_per_cell(entry, ehr)
        table = catalog.read(catalog.current(entry["name"])).to_pylist()
        assert len(table) == len(expected)
        for row in table:
            key = (row["period"], *(row[d] for d in entry["group_by"]))
            people = len(expected[key])
            if row["suppressed"]:
                assert row["visits"] is None and row["patients"] is None
                continue
            assert people >= K, f"{entry['name']} {key}: {people} people published"
            assert row["patients"] == people
        heavy += sum(1 for key, who in expected.items() if len(who) < K <= sum(
            1 for r in ehr if r["dept"] == "rare") and key[1:2] == ("rare",))
    assert heavy, "the rare department has cells with many visits but few people"
    report = cli("privacy", "audit", "--json")
    data = json.loads(report.output)
    assert data["ok"] is True and data["findings"] == []
    assert data["groups"][0]["derivatives"] == sorted(e["name"] for e in SPECS)
    assert ["by_month", "by_year"] in data["groups"][0]["relations"]
    assert ["emergencies", "by_year"] in data["groups"][0]["relations"]


def test_a_table_that_suppresses_nothing_cannot_expose_a_sibling(workspace, ehr):
    add_spec(workspace, {**spec(SPECS[0]), "suppress_below": 0})
    add_spec(workspace, spec(SPECS[2]))
    with pytest.raises(LithotseError, match="by_month.*by_year|by_year.*by_month") as caught:
        build_all(workspace)
    assert "suppress_below 0" in str(caught.value)
    assert Catalog(workspace).current("by_year") is None, "nothing of the refused set is published"


def test_the_refusal_names_the_pair_not_a_table_that_only_lent_its_totals(workspace, ehr):
    # three tables lend totals to the bound; the pair named is the table that hides nothing and
    # the one whose cell it gives away, the third only lent its totals (it was named in the pair)
    add_spec(workspace, {**spec(SPECS[0]), "suppress_below": 0})
    add_spec(workspace, spec(SPECS[1]))
    add_spec(workspace, spec(SPECS[2]))
    with pytest.raises(LithotseError) as caught:
        build_all(workspace)
    message = str(caught.value)
    hidden_of = message.split("a hidden cell of ")[1].split(" (")[0]
    assert hidden_of in ("by_quarter", "by_year"), message
    assert message.startswith(f"publishing by_month and {hidden_of} would make"), message
    other = ({"by_quarter", "by_year"} - {hidden_of}).pop()
    assert other not in message.split(" would make")[0], message


def test_records_are_counted_where_the_input_names_no_person(workspace, tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "counts.csv").write_text("day,ward\n" + "".join(f"2024-01-{d:02d},w{d % 2}\n" for d in range(1, 29)))
    workspace.add_source("plain", "csv", {"path": str(folder), "date_column": "day"}, {})
    run_import(workspace, "plain")
    add_spec(workspace, {"name": "wards", "kind": "aggregate", "input": {"source": "plain", "stream": "counts"},
                         "group_by": ["ward"], "measures": [{"fn": "count", "as": "n"}]})
    build_all(workspace)
    info = lineage(workspace, "wards")
    assert (info["counts"], info["person_key"]) == ("records", None)
    rows = Catalog(workspace).read(Catalog(workspace).current("wards")).to_pylist()
    assert [(r["ward"], r["n"], r["suppressed"]) for r in rows] == [("w0", 14, False), ("w1", 14, False)]


def test_audit_reports_cells_published_under_a_lower_threshold(workspace, ehr, cli):
    """Raising ``suppress_below`` without rebuilding leaves hidden cells narrowed below the new
    threshold: the audit names them, bounds checked against the true counts, and exits 1."""
    for entry in SPECS[:3]:
        add_spec(workspace, spec(entry))
    build_all(workspace)
    assert json.loads(cli("privacy", "audit", "--json").output)["ok"] is True
    workspace.config["workspace"]["suppress_below"] = 60
    workspace.save()
    data = json.loads(cli("privacy", "audit", "--json", expect=1).output)
    assert data["ok"] is False and data["findings"]
    truth = {e["name"]: e for e in SPECS}
    checked = 0
    for finding in data["findings"]:
        assert finding["threshold"] == 60 and set(finding["via"]) <= set(truth), finding
        if "difference" in finding["cell"]:
            continue
        assert finding["upper"] - finding["lower"] < 60, finding
        entry = truth[finding["cell"]["derivative"]]
        key = (dt.date.fromisoformat(finding["cell"]["period"]), *(finding["cell"][d] for d in entry["group_by"]))
        visits = sum(1 for r in ehr if _in_cell(entry, r, key))
        assert finding["lower"] - 1e-6 <= visits <= finding["upper"] + 1e-6, (finding, visits)
        checked += 1
    assert checked, data["findings"]
    text = cli("privacy", "audit", expect=1).output
    assert "FOUND" in text and f"{len(data['findings'])} finding(s)" in text


def _in_cell(entry: dict, row: dict, key: tuple) -> bool:
    day = dt.date.fromisoformat(row["START"])
    period = {"month": day.replace(day=1), "quarter": day.replace(month=3 * ((day.month - 1) // 3) + 1, day=1),
              "year": day.replace(month=1, day=1)}[entry["grain"]]
    return (period, *(row[d] for d in entry["group_by"])) == key


def test_tables_splitting_a_column_are_decided_as_parts_of_the_whole(workspace, ehr, cli, monkeypatch):
    """Ambulatory and emergency visits (yearly, quarterly) split the quarterly table's rows on
    ``kind``, leaving inpatient visits as the remainder: the build counts it per margin cell
    (checked against the CSV), nothing published shows 1 to 10 people, and the audit lists the
    partition and finds nothing."""
    from lithotse_desktop.derive.relations import Partition

    entries = [SPECS[1],
               {"name": "ambulatory", "grain": "year", "group_by": ["dept"],
                "filters": [{"column": "kind", "op": "=", "value": "AMB"}]},
               {"name": "emergency", "grain": "quarter", "group_by": ["dept"],
                "filters": [{"column": "kind", "op": "=", "value": "EMER"}]}]
    group = built_group(workspace, monkeypatch, entries)
    assert [(p.outer, p.parts) for p in group.partitions] == [("by_quarter", ["ambulatory", "emergency"])]
    counted = {d.key: (d.records, d.people) for d in group.differences if isinstance(d.relation, Partition)}
    expected: dict[tuple, list[str]] = defaultdict(list)
    for row in ehr:
        if row["kind"] == "IMP":
            expected[(dt.date.fromisoformat(row["START"]).replace(month=1, day=1), row["dept"])].append(row["PATIENT"])
    assert counted == {key: (len(who), len(set(who))) for key, who in expected.items()}
    catalog = Catalog(workspace)
    for entry in entries:
        expected_people = people_per_cell(entry, ehr)
        for row in catalog.read(catalog.current(entry["name"])).to_pylist():
            if not row["suppressed"]:
                assert len(expected_people[(row["period"], row["dept"])]) >= K, (entry["name"], row)
    data = json.loads(cli("privacy", "audit", "--json").output)
    assert data["ok"] is True, data["findings"][:3]
    assert data["groups"][0]["partitions"] == [{"whole": "by_quarter", "parts": ["ambulatory", "emergency"]}]
    assert "1 partition(s)" in cli("privacy", "audit").output


def atoms_of(entries: list[dict], rows: list[dict]) -> dict[tuple, int]:
    """Each row's cell (or none) in every table, from the CSV rows: the classes no table tells
    apart, with the rows of each."""
    found: dict[tuple, int] = defaultdict(int)
    for row in rows:
        atom = []
        for entry in entries:
            cells = people_per_cell(entry, [row])
            atom.append(next(iter(cells), None))
        found[tuple(atom)] += 1
    return dict(found)


def test_the_build_and_the_audit_judge_over_the_rows_no_table_tells_apart(workspace, ehr, cli, monkeypatch):
    """The build counts the group's atoms from its input (checked against the CSV) and decides
    over them; ``privacy audit`` counts the same atoms and passes what the build published."""

    entries = SPECS[:4]
    group = built_group(workspace, monkeypatch, entries)
    names = [m.name for m in group.members]
    ordered = [next(e for e in entries if e["name"] == n) for n in names]
    expected = atoms_of(ordered, ehr)
    counted = {tuple(None if i < 0 else tuple(m.keys[i].values()) for m, i in zip(group.members, atom, strict=True)):
               records for atom, records in zip(group.atoms, group.atom_records, strict=True)}
    assert counted == expected
    data = json.loads(cli("privacy", "audit", "--json").output)
    assert data["ok"] is True and data["groups"][0]["atoms"] == len(expected)


def test_the_audit_says_when_it_cannot_read_the_input(workspace, ehr, cli):
    """Which cells share rows comes from the input: without it the audit refuses, naming the
    input, rather than judging with a weaker model."""
    for entry in SPECS[:2]:
        add_spec(workspace, spec(entry))
    build_all(workspace)
    raw = workspace.store("raw")
    for info in list(raw.list("raw/")):
        raw.delete(info.key)
    failed = cli("privacy", "audit", "--json", expect=1)
    assert "privacy audit of by_month, by_quarter needs to read their input ehr/visits" in failed.output


def test_a_group_reads_its_input_once_and_publishes_what_separate_reads_give(workspace, ehr, monkeypatch):
    """The aggregates of one input that query it more than once share one table of it: the raw
    objects are read and checked once for the group, and every published table is the one each
    build reading the input on its own gives."""
    from lithotse_desktop.derive import build as build_module
    from lithotse_desktop.derive import inputs

    for entry in SPECS:
        add_spec(workspace, spec(entry))
    loads = []
    load_stream = inputs.load_stream
    monkeypatch.setattr(inputs, "load_stream", lambda *a, **k: loads.append(a[2]) or load_stream(*a, **k))
    build_all(workspace, full=True)
    catalog = Catalog(workspace)
    shared = {e["name"]: catalog.read(catalog.current(e["name"])).to_pylist() for e in SPECS}
    assert loads == ["input"]
    monkeypatch.setattr(build_module, "_shares_input", lambda *args: False)
    loads.clear()
    build_all(workspace, full=True)
    assert len(loads) == len(SPECS)
    assert {e["name"]: catalog.read(catalog.current(e["name"])).to_pylist() for e in SPECS} == shared
    assert any(row["suppressed"] for rows in shared.values() for row in rows)


def test_the_audit_counts_the_differences_a_build_counted_from_the_atoms(workspace, ehr, cli, monkeypatch,
                                                                         tmp_path):
    """The published-set audit knows each difference's records from the atoms it reads, as the
    build knew them from its difference queries: the same records for every difference, so it
    judges the same ones. Once the input has changed since publishing it knows none."""
    from lithotse_desktop.derive import complementary
    from lithotse_desktop.derive.privacy import audit_published

    group = built_group(workspace, monkeypatch, SPECS)
    counted = {(tuple(d.relation.tables), d.key): d.records for d in group.differences}
    assert any(records >= 2 * K for records in counted.values())
    audited = []
    original = complementary.Group.count_differences

    def count(self):
        original(self)
        audited.append(self)

    monkeypatch.setattr(complementary.Group, "count_differences", count)
    assert json.loads(cli("privacy", "audit", "--json").output)["ok"] is True
    (seen,) = audited
    from_atoms = {(tuple(d.relation.tables), d.key): d.records for d in seen.differences}
    assert {key: from_atoms[key] for key in counted} == counted
    assert all(records == 0 for key, records in from_atoms.items() if key not in counted)

    with open(tmp_path / "ehr" / "visits.csv", "a", newline="") as fh:
        csv.DictWriter(fh, fieldnames=list(ehr[0])).writerow(dict(ehr[0], visit_id="v-late"))
    run_import(workspace, "ehr")
    audited.clear()
    audit_published(workspace)
    assert audited == []


def test_a_difference_several_tables_leave_out_is_counted_once_and_right(workspace, ehr, monkeypatch):
    """Two monthly tables by department (one counting visits only) leave out of the yearly
    emergencies the same rows per year and department: the group's shared table answers that
    query once, and every difference holds the records and people the CSV gives."""
    from lithotse_desktop.derive.engines import duckdb as engine

    runs = []
    run = engine.DuckDBSession.run

    def counted_run(self, sql, params, *args, **kwargs):
        runs.append((sql, tuple(params)))
        return run(self, sql, params, *args, **kwargs)

    monkeypatch.setattr(engine.DuckDBSession, "run", counted_run)
    entries = [SPECS[3], {"name": "by_month_dept", "grain": "month", "group_by": ["dept"]},
               {"name": "visits_by_month", "grain": "month", "group_by": ["dept"],
                "measures": [{"fn": "count", "as": "visits"}]}]
    group = built_group(workspace, monkeypatch, entries)
    assert len(runs) == len(set(runs))
    left_out: dict[tuple, list[str]] = defaultdict(list)
    for row in ehr:
        if row["kind"] != "EMER":
            left_out[(dt.date(int(row["START"][:4]), 1, 1), row["dept"])].append(row["PATIENT"])
    outers = defaultdict(int)
    for difference in group.differences:
        inner, outer = difference.relation.tables
        assert inner == "emergencies"
        outers[outer] += 1
        rows = left_out[difference.key]
        assert (difference.records, difference.people) == (len(rows), len(set(rows)))
    assert outers == {"by_month_dept": len(left_out), "visits_by_month": len(left_out)}


def test_a_table_rebuilt_for_some_periods_counts_with_all_its_published_periods(workspace, tmp_path, monkeypatch):
    """A table that suppresses nothing, rebuilt for the periods a new import touches, still
    publishes its other periods: the others' suppression is decided over every period of it, as a
    full build decides, and hides the same cells."""
    from lithotse_desktop.dates import DateRange
    from lithotse_desktop.derive import build as build_module

    folder = tmp_path / "clinic"
    folder.mkdir()
    write_visits(folder)
    workspace.add_source("clinic", "csv", {"path": str(folder), "date_column": "START"}, {})
    clinic = {"source": "clinic", "stream": "visits"}
    for entry in [SPECS[0], {"name": "open_by_year", "grain": "year", "group_by": ["dept"], "suppress_below": 0}]:
        add_spec(workspace, {**spec(entry), "input": clinic})
    run_import(workspace, "clinic", DateRange(None, dt.date(2023, 12, 31)))
    build_all(workspace)
    run_import(workspace, "clinic", DateRange(dt.date(2024, 1, 1), None))
    groups = []
    decide = build_module.decide
    monkeypatch.setattr(build_module, "decide",
                        lambda group, zero, **kw: groups.append(group) or decide(group, zero, **kw))
    built = {r.name: r for r in build_all(workspace)}
    assert built["open_by_year"].status == "incremental"
    assert (built["open_by_year"].partitions_written, built["open_by_year"].partitions_total) == (1, 2)
    (group,) = groups
    open_cells = group.by_name["open_by_year"]
    assert {key["period"] for key in open_cells.keys} == {dt.date(2023, 1, 1), dt.date(2024, 1, 1)}
    catalog = Catalog(workspace)
    incremental = catalog.read(catalog.current("by_month")).to_pylist()
    assert any(row["suppressed"] for row in incremental)
    build_all(workspace, full=True)
    assert catalog.read(catalog.current("by_month")).to_pylist() == incremental


def test_a_table_joining_another_input_is_decided_over_the_same_atoms(workspace, ehr, tmp_path, cli, monkeypatch):
    """A table of visits by the patient's sex (joined from a patients file) beside a table of the
    visits alone: a join keeps one patient per visit, so each visit still falls in one cell of
    each, and the decision and the audit count the atoms of both (as the CSV gives them)."""
    rng = random.Random(3)
    sex = {row["PATIENT"]: rng.choice(["F", "M"]) for row in ehr}
    (tmp_path / "registry").mkdir()
    with open(tmp_path / "registry" / "patients.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "sex"])
        writer.writeheader()
        writer.writerows({"id": patient, "sex": value} for patient, value in sorted(sex.items()))
    workspace.add_source("registry", "csv", {"path": str(tmp_path / "registry")}, {})
    run_import(workspace, "registry")
    joined = {"name": "by_sex", "grain": "year", "group_by": ["sex"],
              "join": {"input": {"source": "registry", "stream": "patients"}, "on": {"left": "PATIENT", "right": "id"},
                       "columns": ["sex"]}}
    group = built_group(workspace, monkeypatch, [SPECS[0], joined])
    assert group.atoms is not None
    expected: Counter = Counter()
    for row in ehr:
        day = dt.date.fromisoformat(row["START"])
        month, year = day.replace(day=1), day.replace(month=1, day=1)
        expected[((month, row["dept"], row["kind"]), (year, sex[row["PATIENT"]]))] += 1
    names = [m.name for m in group.members]
    counted = {tuple(tuple(group.members[j].keys[i].values()) for j, i in enumerate(atom)): records
               for atom, records in zip(group.atoms, group.atom_records, strict=True)}
    assert names == ["by_month", "by_sex"] and counted == dict(expected)
    data = json.loads(cli("privacy", "audit", "--json").output)
    assert data["ok"] is True and data["groups"][0]["atoms"] == len(expected)


REGISTRY = {"source": "registry", "stream": "patients"}
BY_SEX = {"name": "by_sex", "grain": "year", "group_by": ["sex"],
          "join": {"input": REGISTRY, "on": {"left": "PATIENT", "right": "id"}, "columns": ["sex"]}}
BY_SITE = {"name": "by_site", "grain": "quarter", "group_by": ["site"],
           "join": {"input": {"source": "registry", "stream": "departments"}, "on": {"left": "dept", "right": "code"},
                    "columns": ["site"]}}
SITES = {"cardio": "north", "ortho": "north", "tiny": "north", "derm": "south", "rare": "south"}


def write_registry(workspace, tmp_path, visits: list[dict], *, duplicated: bool = False) -> list[dict]:
    """The source ``registry``: a patients file (the sex of most patients) and a departments file
    (each one's site). ``duplicated``: some keys have a second row of another value (a patient's
    before or after the first; cardio's less than its first, derm's greater). The visits come
    back with the sex and site a join keeps: of a key's rows the one of least value, none where
    no row has the key."""
    rng = random.Random(5)
    patients = [{"id": p, "sex": rng.choice(["F", "M"])} for p in sorted({v["PATIENT"] for v in visits})
                if rng.random() < 0.9]
    departments = [{"code": code, "site": site} for code, site in SITES.items()]
    if duplicated:
        patients = _with_second_rows(rng, patients, "sex", ["F", "M", "U"])
        departments += [{"code": "cardio", "site": "east"}, {"code": "derm", "site": "west"}]
    folder = tmp_path / "registry"
    folder.mkdir()
    for name, rows in (("patients", patients), ("departments", departments)):
        with open(folder / f"{name}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    workspace.add_source("registry", "csv", {"path": str(folder)}, {})
    run_import(workspace, "registry")
    sex: dict[str, str] = {}
    for row in patients:
        sex[row["id"]] = min(sex.get(row["id"], row["sex"]), row["sex"])
    site: dict[str, str] = {}
    for row in departments:
        site[row["code"]] = min(site.get(row["code"], row["site"]), row["site"])
    return [{**v, "sex": sex.get(v["PATIENT"]), "site": site.get(v["dept"])} for v in visits]


def _with_second_rows(rng: random.Random, rows: list[dict], column: str, values: list[str]) -> list[dict]:
    out = []
    for row in rows:
        other = {**row, column: rng.choice([v for v in values if v != row[column]])}
        out += [row] if rng.random() < 0.4 else [other, row] if rng.random() < 0.5 else [row, other]
    return out


def cells_of(entry: dict, rows: list[dict]) -> dict[tuple, tuple[int, int]]:
    """Visits and people per cell of ``entry``, from the rows."""
    visits: Counter = Counter()
    for row in rows:
        visits.update(people_per_cell(entry, [row]).keys())
    return {key: (visits[key], len(who)) for key, who in people_per_cell(entry, rows).items()}


def assert_published_as_counted(workspace, entries: list[dict], rows: list[dict]) -> list[dict]:
    """Every table's cells are the rows' (each visible one with K people or more); its rows."""
    catalog = Catalog(workspace)
    published = []
    for entry in entries:
        expected = cells_of(entry, rows)
        table = catalog.read(catalog.current(entry["name"])).to_pylist()
        found = {(row["period"], *(row[d] for d in entry["group_by"])): row for row in table}
        assert set(found) == set(expected), entry["name"]
        for key, row in found.items():
            if not row["suppressed"]:
                assert (row["visits"], row["patients"]) == expected[key] and expected[key][1] >= K, (entry, row)
        published += table
    return published


def counted_atoms(group) -> dict[tuple, int]:
    """The build's atoms as each member's cell key (None: the member leaves the rows out)."""
    return {tuple(None if i < 0 else tuple(m.keys[i].values()) for m, i in zip(group.members, atom, strict=True)):
            records for atom, records in zip(group.atoms, group.atom_records, strict=True)}


def audited_atoms(cli, monkeypatch) -> tuple[dict, dict[tuple, int]]:
    """``privacy audit --json`` and the atoms it counted, as :func:`counted_atoms` gives them."""
    from lithotse_desktop.derive import privacy

    found = []
    read_atoms = privacy.read_atoms
    monkeypatch.setattr(privacy, "read_atoms", lambda specs, table: found.append(read_atoms(specs, table)) or found[-1])
    data = json.loads(cli("privacy", "audit", "--json").output)
    (atoms,) = found
    names = sorted(atoms.columns)
    return data, {tuple(keys.get(n) for n in names): records
                  for keys, records in zip(atoms.keys, atoms.records, strict=True)}


def test_tables_joining_different_inputs_are_decided_and_audited_over_every_join(workspace, ehr, tmp_path, cli,
                                                                                  monkeypatch):
    """Visits by month, by the patient's sex (joined from a patients file) and by the
    department's site (joined from a departments file): each join keeps one row per visit, so
    the atoms are counted over the visits joined to both at once, as the CSV files give them; the
    build hides cells, every published cell is the files' and the audit counts the same atoms and
    finds nothing."""
    rows = write_registry(workspace, tmp_path, ehr)
    entries = [SPECS[0], BY_SEX, BY_SITE]
    group = built_group(workspace, monkeypatch, entries)
    assert [m.name for m in group.members] == ["by_month", "by_sex", "by_site"]
    expected = atoms_of(entries, rows)
    assert any(key[1][1] is None for key in expected), "a patient the registry does not list"
    assert group.atoms is not None and counted_atoms(group) == expected
    published = assert_published_as_counted(workspace, entries, rows)
    assert any(row["suppressed"] for row in published)
    data, audited = audited_atoms(cli, monkeypatch)
    assert data["ok"] is True and data["findings"] == [] and data["groups"][0]["atoms"] == len(expected)
    assert audited == expected


def test_a_hidden_cell_cannot_be_recovered_through_another_tables_join(workspace, tmp_path, cli, monkeypatch):
    """The rare department (3 patients a year) is hidden by department; the south site is derm
    and rare, so publishing the south site and derm would give it away: only the departments
    join says so. The build, counting over every join, hides enough there, and the audit finds
    nothing."""
    folder = tmp_path / "clinic"
    folder.mkdir()
    sizes = {"cardio": (300, 150), "ortho": (200, 100), "tiny": (13, 12), "derm": (150, 80), "rare": (20, 3)}
    visits = [{"visit_id": f"{year}-{dept}-{i}", "PATIENT": f"{dept}{i % people}",
               "START": dt.date(year, 1 + i % 12, 1 + i % 28).isoformat(), "dept": dept, "kind": "AMB"}
              for year in (2023, 2024) for dept, (count, people) in sizes.items() for i in range(count)]
    with open(folder / "visits.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(visits[0]))
        writer.writeheader()
        writer.writerows(visits)
    workspace.add_source("clinic", "csv", {"path": str(folder), "date_column": "START"}, {})
    run_import(workspace, "clinic")
    rows = write_registry(workspace, tmp_path, visits)
    clinic = {"source": "clinic", "stream": "visits"}
    entries = [{"name": "by_dept", "grain": "year", "group_by": ["dept"]}, {**BY_SEX, "grain": "year"},
               {**BY_SITE, "grain": "year"}]
    for entry in entries:
        add_spec(workspace, {**spec(entry), "input": clinic})
    build_all(workspace)
    assert_published_as_counted(workspace, entries, rows)
    catalog = Catalog(workspace)
    by_dept = {(r["period"], r["dept"]): r["suppressed"] for r in catalog.read(catalog.current("by_dept")).to_pylist()}
    by_site = {(r["period"], r["site"]): r["suppressed"] for r in catalog.read(catalog.current("by_site")).to_pylist()}
    years = (dt.date(2023, 1, 1), dt.date(2024, 1, 1))
    assert all(by_dept[(year, "rare")] for year in years)
    hidden = {(year, site): [dept for dept, at in SITES.items() if at == site and by_dept[(year, dept)]]
              for year in years for site in ("north", "south")}
    assert [(cell, depts) for cell, depts in hidden.items() if not by_site[cell] and len(depts) == 1] == []
    data = json.loads(cli("privacy", "audit", "--json").output)
    assert data["ok"] is True and data["findings"] == []


def test_a_joined_key_of_several_rows_gives_the_same_row_on_every_build(workspace, ehr, tmp_path, cli, monkeypatch):
    """Patients and departments listed twice with other values (before or after the first row):
    each join keeps the row of least value, in the tables' cells and in the atoms, on every
    build and in the audit."""
    rows = write_registry(workspace, tmp_path, ehr, duplicated=True)
    entries = [SPECS[0], BY_SEX, BY_SITE]
    group = built_group(workspace, monkeypatch, entries)
    expected = atoms_of(entries, rows)
    assert {key[2][1] for key in expected} == {"east", "north", "south"}, "cardio's second row, derm's first"
    assert counted_atoms(group) == expected
    published = assert_published_as_counted(workspace, entries, rows)
    for _ in range(2):
        build_all(workspace, full=True)
        assert assert_published_as_counted(workspace, entries, rows) == published
    data, audited = audited_atoms(cli, monkeypatch)
    assert data["ok"] is True and audited == expected


def test_a_join_beside_a_plain_table_hides_no_more_than_without_it(workspace, ehr, tmp_path, cli, monkeypatch):
    """A table of emergencies by month joins the patients file for a column it does not use;
    the plain monthly table beside it is decided with the rows the emergencies leave out counted
    over both joins (they were not counted, and so taken as sensitive: most of the plain table's
    cells were hidden). The same cells are hidden with and without the join."""
    rows = write_registry(workspace, tmp_path, ehr)
    plain = {"name": "by_month", "grain": "month", "group_by": ["dept"]}
    emergencies = {"name": "emergencies", "grain": "month", "group_by": ["dept"],
                   "filters": [{"column": "kind", "op": "=", "value": "EMER"}]}
    joined = {**emergencies, "join": {"input": {"source": "registry", "stream": "patients"},
                                      "on": {"left": "PATIENT", "right": "id"}, "columns": ["sex"]}}

    def hidden() -> dict[str, set[tuple]]:
        catalog = Catalog(workspace)
        return {name: {(r["period"], r["dept"]) for r in catalog.read(catalog.current(name)).to_pylist()
                       if r["suppressed"]} for name in ("by_month", "emergencies")}

    add_spec(workspace, spec(plain))
    add_spec(workspace, spec(emergencies))
    build_all(workspace)
    without = hidden()
    add_spec(workspace, spec(joined), replace=True)
    build_all(workspace, full=True)
    assert hidden() == without and without["by_month"], (len(hidden()["by_month"]), len(without["by_month"]))
    assert_published_as_counted(workspace, [plain, emergencies], rows)
    data = json.loads(cli("privacy", "audit", "--json").output)
    assert data["ok"] is True and data["findings"] == []


def test_parts_of_a_table_that_join_otherwise_hide_no_more_than_without(workspace, ehr, tmp_path, cli):
    """Monthly visits by department beside its ambulatory and emergency parts, the emergencies
    joining the patients file for a column they do not use: the plain tables share one read of
    the input, which now holds the joined file too (it was locked down without it, and the build
    failed), and the rows no part keeps are counted as they are without the join. The same cells
    are hidden with and without the join."""
    rows = write_registry(workspace, tmp_path, ehr)
    entries = [{"name": "by_month", "grain": "month", "group_by": ["dept"]},
               *({"name": f"kind_{k}", "grain": "month", "group_by": ["dept"],
                  "filters": [{"column": "kind", "op": "=", "value": k}]} for k in ("AMB", "EMER"))]
    for entry in entries:
        add_spec(workspace, spec(entry))

    def hidden() -> dict[str, set[tuple]]:
        catalog = Catalog(workspace)
        return {e["name"]: {(r["period"], r["dept"]) for r in catalog.read(catalog.current(e["name"])).to_pylist()
                            if r["suppressed"]} for e in entries}

    build_all(workspace)
    without = hidden()
    joined = {**entries[2], "join": {"input": {"source": "registry", "stream": "patients"},
                                     "on": {"left": "PATIENT", "right": "id"}, "columns": ["sex"]}}
    add_spec(workspace, spec(joined), replace=True)
    build_all(workspace, full=True)
    assert hidden() == without and without["by_month"]
    assert_published_as_counted(workspace, entries, rows)
    data = json.loads(cli("privacy", "audit", "--json").output)
    assert data["ok"] is True and data["findings"] == []


def test_an_aggregate_over_a_sql_repeating_its_records_is_refused(workspace, ehr):
    """A row-level sql repeating every visit eleven times (a join with a range) makes each record
    several rows: cells over it would count a record more than once (and with a table of splits,
    in two cells whose difference is a hidden count), so the aggregate is refused, naming why."""
    add_spec(workspace, {"name": "repeated", "kind": "sql", "inputs": {"e": INPUT},
                         "sql": "SELECT e.PATIENT, e.START, e.dept FROM e, range(11) AS r(i)"})
    add_spec(workspace, {"name": "by_dept", "kind": "aggregate", "input": {"derivative": "repeated"},
                         "group_by": ["dept"], "measures": [{"fn": "count", "as": "rows"}]})
    with pytest.raises(LithotseError, match="by_dept: failed: derivative 'by_dept': input 'input' reads derivative "
                                            r"'repeated', whose rows may be several for one record \(the table "
                                            r"function r is joined to its rows on no equal columns\).*"
                                            r"rule: a table of cells counts"):
        build_all(workspace, ["repeated", "by_dept"])
    assert Catalog(workspace).current("repeated") is not None and Catalog(workspace).current("by_dept") is None


def test_an_aggregate_over_a_sql_joining_people_apart_is_refused(workspace, ehr):
    """A cross join puts the rare department's few patients beside every visit: counted by the
    key it carries first, every cell would show those few people, visits multiplied by them."""
    add_spec(workspace, {"name": "moved", "kind": "sql", "inputs": {"e": INPUT},
                         "sql": "SELECT o.PATIENT, e.START, e.dept FROM (SELECT DISTINCT PATIENT FROM e "
                                "WHERE dept = 'rare') AS o CROSS JOIN e"})
    add_spec(workspace, {"name": "by_dept", "kind": "aggregate", "input": {"derivative": "moved"},
                         "group_by": ["dept"], "measures": [{"fn": "count", "as": "rows"}]})
    with pytest.raises(LithotseError, match="by_dept: failed: derivative 'by_dept': input 'input' reads derivative "
                                            "'moved', which joins people not on their person keys "
                                            "\\(the subquery o joined with e\\).*rule: sql cells that join tables "
                                            "holding people"):
        build_all(workspace, ["moved", "by_dept"])
    assert Catalog(workspace).current("by_dept") is None
    add_spec(workspace, {"name": "moved", "kind": "sql", "inputs": {"e": INPUT},
                         "sql": "SELECT e.PATIENT, e.START, e.dept FROM (SELECT DISTINCT PATIENT FROM e "
                                "WHERE dept = 'rare') AS o JOIN e ON e.PATIENT = o.PATIENT"}, replace=True)
    build_all(workspace, ["moved", "by_dept"])
    assert Catalog(workspace).current("by_dept") is not None, "the rare department's patients' visits, by person"
