"""Tested as an adversary would: every door a spreadsheet could get a name, a birth date, an MRN,
an address or a count of 1 to 10 people through, and the refusal each one gives, naming its rule.

The data are generated Patients with a planted identifier in every FHIR type that carries one
(see tests/derive/test_deidentify.py), their Encounters, and a CSV of admissions as the issue
describes them. The doors: views, ``sql``, joins, derivative inputs, exports (the command line
and the desktop app's), workbook bind and refresh, the local API, the add-in's worksheet
functions, the L3 cache, and a sync push to a store managers read.

People are counted independently here, from the generated resources.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest
import requests
from openpyxl import load_workbook

from lithotse_desktop.cache import lookup, table_of
from lithotse_desktop.derive.build import build
from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.deidentify import COMPUTED_RULE
from lithotse_desktop.derive.disclosure import DEIDENTIFIED_PICK_RULE, IdentifierRefused, Restricted
from lithotse_desktop.derive.kinds.sql import SHAPE_RULE
from lithotse_desktop.derive.service import add_spec, read_table
from lithotse_desktop.derive.spec import SpecError
from lithotse_desktop.errors import ConfigError, LithotseError
from lithotse_desktop.excel.ops import bind_workbook, export_derivative, refresh_workbook
from lithotse_desktop.excel.xlwings_addin import udf_table, udf_value
from lithotse_desktop.raw import run_import
from lithotse_desktop.serve import start_server_thread, workspace_token
from lithotse_desktop.serve.client import ApiClient
from lithotse_desktop.sync import push
from lithotse_desktop.workspace import Workspace
from tests.derive.test_deidentify import planted, planted_values

ROW_RULE = "rule: row-level data stays restricted"
CELL_RULE = "rule: a published cell never carries an identifier"
K = 11
PATIENTS = 40

PATIENT_VIEW = {"name": "patients", "kind": "view", "input": {"source": "fhir", "stream": "Patient"},
                "view": {"resource": "Patient", "select": [{"column": [
                    {"name": "pid", "path": "getResourceKey()"},
                    {"name": "family", "path": "name.family.first()"},
                    {"name": "birth", "path": "birthDate"},
                    {"name": "mrn", "path": "identifier.where(type.coding.code = 'MR').value.first()"},
                    {"name": "street", "path": "address.line.first()"},
                    {"name": "zip", "path": "address.postalCode.first()"},
                    {"name": "gender", "path": "gender"}]}]}}
ENCOUNTER_VIEW = {"name": "encounters", "kind": "view", "input": {"source": "fhir", "stream": "Encounter"},
                  "view": {"resource": "Encounter", "select": [{"column": [
                      {"name": "eid", "path": "getResourceKey()"},
                      {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                      {"name": "cls", "path": "class.code"},
                      {"name": "start", "path": "period.start"}]}]}}
BY_CLASS = {"name": "by_class", "kind": "aggregate", "input": {"derivative": "encounters"},
            "group_by": ["cls"], "measures": [{"fn": "count", "as": "visits"},
                                             {"fn": "count_distinct", "column": "patient", "as": "people"}]}
SAFE = {**PATIENT_VIEW, "name": "patients_safe", "deidentify": "safe-harbor"}
ISSUE_SQL = {"name": "issue_sql", "kind": "sql", "inputs": {"enc": {"source": "ehr", "stream": "admissions"}},
             "sql": "SELECT patient_id, admit_date, department, count(*) AS n FROM enc GROUP BY ALL"}
# sql cells are decided alone (no other table of cells may count their rows): a second copy of the
# encounters, read from its own source, so that by_class and people_cells each publish their own
ENCOUNTER_COPY = {**ENCOUNTER_VIEW, "name": "encounters_copy", "input": {"source": "fhir_copy", "stream": "Encounter"}}
PEOPLE_CELLS = {"name": "people_cells", "kind": "sql", "inputs": {"e": {"derivative": "encounters_copy"}},
                "sql": "SELECT cls, count(*) AS visits, count(DISTINCT patient) AS people FROM e GROUP BY cls "
                       "ORDER BY cls",
                "count_column": "visits", "people_column": "people"}
ROW_LEVEL = ("patients", "encounters", "issue_sql")


def patients() -> list[dict]:
    return [planted(i) for i in range(PATIENTS)]


def encounters() -> list[dict]:
    """Every patient has a few ambulatory visits, twenty have one inpatient stay, and two patients
    have eight emergency visits each (16 visits: enough records, too few people)."""
    out = []
    for i in range(PATIENTS):
        visits = [("AMB", f"2024-0{1 + j % 6}-1{j}") for j in range(3)]
        if i < 2:
            visits += [("EMER", f"2024-02-{10 + j:02d}") for j in range(8)]
        if 10 <= i < 30:
            visits.append(("IMP", "2024-04-01"))
        for j, (cls, day) in enumerate(visits):
            out.append({"resourceType": "Encounter", "id": f"e{i}-{j}", "status": "finished", "class": {"code": cls},
                        "subject": {"reference": f"Patient/planted-{i}"}, "period": {"start": day}})
    return out


def people_by_class() -> dict[str, set[str]]:
    """Who each class of encounter counts, from the generated resources themselves."""
    out: dict[str, set[str]] = defaultdict(set)
    for e in encounters():
        out[e["class"]["code"]].add(e["subject"]["reference"].split("/")[1])
    return out


def admissions_csv(folder: Path) -> None:
    rows = ["patient_id,admit_date,department,mrn"]
    for i in range(PATIENTS):
        row = f"pat-{i:03d},2024-03-{1 + i % 20:02d},{'cardio' if i % 2 else 'ortho'},MRN-{i:06d}"
        rows += [row, row]
    (folder / "admissions.csv").write_text("\n".join(rows) + "\n")


def setup_clinic(ws: Workspace, folder: Path) -> None:
    fhir = folder / "fhir"
    fhir.mkdir(parents=True)
    (fhir / "Patient.ndjson").write_text("".join(json.dumps(p) + "\n" for p in patients()))
    (fhir / "Encounter.ndjson").write_text("".join(json.dumps(e) + "\n" for e in encounters()))
    ws.add_source("fhir", "fhir-files", {"path": str(fhir)}, {})
    ws.add_source("fhir_copy", "fhir-files", {"path": str(fhir)}, {})
    ehr = folder / "ehr"
    ehr.mkdir()
    admissions_csv(ehr)
    ws.add_source("ehr", "csv", {"path": str(ehr), "date_column": "admit_date"}, {})
    run_import(ws, "fhir")
    run_import(ws, "fhir_copy")
    run_import(ws, "ehr")
    for spec in (PATIENT_VIEW, ENCOUNTER_VIEW, ENCOUNTER_COPY, BY_CLASS, SAFE, ISSUE_SQL, PEOPLE_CELLS):
        add_spec(ws, spec)
        build(ws, spec["name"])


@pytest.fixture(scope="module")
def clinic(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("clinic")
    ws = Workspace.create(root / "ws")
    setup_clinic(ws, root / "in")
    return Workspace.open(ws.root)


@pytest.fixture(scope="module")
def served(clinic):
    server = start_server_thread(clinic, 0)
    yield server
    server.stop()


def identifiers() -> set[str]:
    """Every planted identifier, and the CSV's patient ids and MRNs."""
    found = set().union(*(planted_values(p) for p in patients()))
    found |= {f"pat-{i:03d}" for i in range(PATIENTS)} | {f"MRN-{i:06d}" for i in range(PATIENTS)}
    return found


def assert_no_identifier(text: str) -> None:
    leaked = sorted(v for v in identifiers() if v in text)
    assert not leaked, leaked[:5]


# --- the derivatives are classified, and row-level data are kept apart ---------------------------------
def test_row_level_derivatives_live_in_the_restricted_store_only(clinic):
    catalog = Catalog(clinic)
    for name in ROW_LEVEL:
        assert catalog.disclosure(name).kind == "row-level"
        assert catalog.current(name).area == "restricted"
        assert not list(clinic.store("derived").list(f"derived/{name}/"))
    for name in ("by_class", "patients_safe", "people_cells"):
        assert catalog.disclosure(name).published and catalog.current(name).area == "derived"


def test_the_analyst_still_reads_row_level_data_for_their_own_work(clinic, cli):
    shown = cli("--workspace", str(clinic.root), "derive", "show", "patients", "--json")
    assert "Zyx0family" in shown.output, "row-level data are restricted, not lost"


# --- exports ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ROW_LEVEL)
@pytest.mark.parametrize("fmt", ["xlsx", "csv", "parquet"])
def test_export_refuses_row_level_derivatives(clinic, cli, tmp_path, name, fmt):
    out = tmp_path / f"x.{fmt}"
    result = cli("--workspace", str(clinic.root), "derive", "export", name, "--format", fmt, "-o", str(out),
                 expect=1)
    assert f"derivative {name!r} is row-level" in result.output and ROW_RULE in result.output
    assert not out.exists()


def test_the_desktop_apps_export_refuses_too(clinic, tmp_path):
    with pytest.raises(Restricted, match=ROW_RULE):
        export_derivative(clinic, "patients", "xlsx", tmp_path / "p.xlsx")
    assert not (tmp_path / "p.xlsx").exists()


def test_published_exports_hold_no_identifier(clinic, tmp_path):
    for name in ("by_class", "patients_safe", "people_cells"):
        path, rows = export_derivative(clinic, name, "csv", tmp_path / f"{name}.csv")
        assert rows > 0
        assert_no_identifier(path.read_text())


# --- workbooks ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ROW_LEVEL)
def test_workbook_bind_refuses_row_level_derivatives(clinic, cli, tmp_path, name):
    book = tmp_path / "book.xlsx"
    result = cli("--workspace", str(clinic.root), "excel", "bind", str(book), name, expect=1)
    assert ROW_RULE in result.output
    assert not book.exists()


def test_refresh_refuses_a_binding_whose_derivative_became_row_level(tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    setup_clinic(ws, tmp_path / "in")
    over = {"name": "over", "kind": "sql", "inputs": {"c": {"derivative": "by_class"}},
            "sql": "SELECT cls, visits FROM c"}
    add_spec(ws, over)
    build(ws, "over")
    book = tmp_path / "book.xlsx"
    bind_workbook(ws, book, "over")
    before = book.read_bytes()
    add_spec(ws, {**over, "inputs": {"c": {"derivative": "patients"}}, "sql": "SELECT family, birth FROM c"},
             replace=True)
    build(ws, "over")
    assert not list(ws.store("derived").list("derived/over/")), "the published copy is withdrawn"
    with pytest.raises(Restricted, match=ROW_RULE):
        refresh_workbook(ws, book)
    assert book.read_bytes() == before
    assert_no_identifier(json.dumps([[c.value for c in row] for s in load_workbook(book) for row in s.iter_rows()],
                                    default=str))


# --- the local API, the add-in and the cache ------------------------------------------------------------
def test_the_api_lists_row_level_derivatives_as_restricted_and_serves_nothing_of_them(clinic, served):
    headers = {"Authorization": f"Bearer {workspace_token(clinic)}"}
    base = served.url + "/api/v1"
    listed = {d["name"]: d for d in requests.get(base + "/derivatives", headers=headers, timeout=10).json()
              ["derivatives"]}
    for name in ROW_LEVEL:
        assert listed[name]["restricted"] is True and listed[name]["columns"] == []
        assert listed[name]["version"] is None
        for path, params in (("table", {"format": "csv"}), ("table", {}), ("value", {"measure": "n"})):
            answer = requests.get(f"{base}/derivatives/{name}/{path}", params=params, headers=headers, timeout=10)
            assert answer.status_code == 403 and ROW_RULE in answer.json()["error"]
    many = requests.post(base + "/values", headers=headers, timeout=10,
                         json={"lookups": [{"derivative": "patients", "measure": "zip"}]}).json()["results"]
    assert ROW_RULE in many[0]["error"]
    assert listed["by_class"]["restricted"] is False and listed["by_class"]["class"] == "aggregate"
    published = requests.get(base + "/derivatives/patients_safe/table", params={"format": "csv"}, headers=headers,
                             timeout=10)
    assert published.status_code == 200
    assert_no_identifier(published.text)


def test_the_add_in_functions_get_the_refusal(clinic, served):
    client = ApiClient(served.port, workspace_token(clinic))
    cell = udf_value("patients", "zip", client=client)
    assert cell.startswith("error: ") and ROW_RULE in cell
    [[table]] = udf_table("issue_sql", client=client)
    assert table.startswith("error: ") and ROW_RULE in table
    assert_no_identifier(json.dumps(udf_table("patients_safe", client=client), default=str))


def test_the_cache_never_holds_a_row_level_derivative(clinic):
    for name in ROW_LEVEL:
        with pytest.raises(Restricted, match=ROW_RULE):
            table_of(clinic, name)
        with pytest.raises(Restricted, match=ROW_RULE):
            lookup(clinic, name, "n")


# --- views, sql, joins and derivative inputs that try to make cells out of identifiers --------------------
@pytest.mark.parametrize(("spec", "what"), [
    ({"name": "by_family", "kind": "aggregate", "input": {"derivative": "encounters"},
      "join": {"input": {"derivative": "patients"}, "on": {"left": "patient", "right": "pid"}, "columns": ["family"]},
      "group_by": ["family"], "measures": [{"fn": "count", "as": "n"}]}, "'family' is a name"),
    ({"name": "by_birth", "kind": "aggregate", "input": {"derivative": "encounters"},
      "join": {"input": {"derivative": "patients"}, "on": {"left": "patient", "right": "pid"}, "columns": ["birth"]},
      "group_by": ["birth"], "measures": [{"fn": "count", "as": "n"}]}, "'birth' is a birth date"),
    ({"name": "oldest", "kind": "aggregate", "input": {"derivative": "encounters"},
      "join": {"input": {"derivative": "patients"}, "on": {"left": "patient", "right": "pid"}, "columns": ["birth"]},
      "group_by": ["cls"], "measures": [{"fn": "min", "column": "birth", "as": "first_birth"}]},
     "min of column 'birth'"),
    ({"name": "by_street", "kind": "aggregate", "input": {"derivative": "patients"},
      "group_by": ["street"], "measures": [{"fn": "count", "as": "n"}]}, "'street' is a street address"),
    ({"name": "by_patient", "kind": "aggregate", "input": {"derivative": "encounters"},
      "group_by": ["patient"], "measures": [{"fn": "count", "as": "n"}]}, "'patient' is a person's key"),
    ({"name": "by_mrn", "kind": "aggregate", "input": {"source": "ehr", "stream": "admissions"},
      "group_by": ["mrn"], "measures": [{"fn": "count", "as": "n"}]}, "'mrn' is a medical record number"),
    ({"name": "by_resource", "kind": "aggregate", "input": {"source": "fhir", "stream": "Patient"},
      "group_by": ["resource"], "measures": [{"fn": "count", "as": "n"}]}, "'resource' is a whole FHIR resource"),
])
def test_aggregates_may_not_be_split_by_identifiers(clinic, spec, what):
    with pytest.raises(IdentifierRefused, match=f"{what}.*{CELL_RULE}"):
        add_spec(clinic, spec)
    assert spec["name"] not in Catalog(clinic).names()


@pytest.mark.parametrize(("spec", "what"), [
    ({**ISSUE_SQL, "name": "issue_cells", "count_column": "n", "people_column": "p",
      "sql": "SELECT patient_id, admit_date, department, count(*) AS n, count(DISTINCT patient_id) AS p FROM enc "
             "GROUP BY ALL"},
     "output column 'patient_id' carries values of input column 'enc.patient_id', which is a person's key"),
    ({"name": "names_cells", "kind": "sql", "inputs": {"p": {"derivative": "patients"}},
      "sql": "SELECT upper(family) AS dept, count(*) AS n, count(DISTINCT pid) AS people FROM p GROUP BY 1",
      "count_column": "n", "people_column": "people"},
     "output column 'dept' carries values of input column 'p.family', which is a name"),
    ({"name": "mrn_cells", "kind": "sql", "inputs": {"a": {"source": "ehr", "stream": "admissions"}},
      "sql": "SELECT department || ':' || mrn AS department, count(*) AS n, count(DISTINCT patient_id) AS people "
             "FROM a GROUP BY 1", "count_column": "n", "people_column": "people"},
     "input column 'a.mrn', which is a medical record number"),
    ({"name": "street_cells", "kind": "sql", "inputs": {"p": {"derivative": "patients"}},
      "sql": "SELECT [street] AS streets, count(*) AS n, count(DISTINCT pid) AS people FROM p GROUP BY 1",
      "count_column": "n", "people_column": "people"},
     "input column 'p.street', which is a street address"),
])
def test_sql_cells_read_identifiers_as_tokens_and_may_not_publish_them(clinic, spec, what):
    add_spec(clinic, spec)
    try:
        with pytest.raises(IdentifierRefused, match=f"{what}.*{CELL_RULE}"):
            build(clinic, spec["name"])
        assert Catalog(clinic).current(spec["name"]) is None
    finally:
        Catalog(clinic).remove(spec["name"])


def test_sql_cells_cannot_read_the_unmasked_input_by_its_name(clinic):
    # saved while its derivative input had no schema, so nothing could check it then; the plain
    # input it names was kept as "a__plain" beside the masked view, and read
    later = {"name": "later", "kind": "aggregate", "input": {"source": "ehr", "stream": "admissions"},
             "measures": [{"fn": "count", "as": "n"}], "suppress_below": 0}
    spec = {"name": "plain_cells", "kind": "sql",
            "inputs": {"a": {"source": "ehr", "stream": "admissions"}, "d": {"derivative": "later"}},
            "sql": "SELECT department, count(*) AS n, count(DISTINCT patient_id) AS p FROM a "
                   "WHERE mrn IN (SELECT mrn FROM a__plain WHERE mrn LIKE 'M1%') GROUP BY 1",
            "count_column": "n", "people_column": "p", "suppress_below": 0}
    add_spec(clinic, later)
    with pytest.raises(SpecError, match="reads 'a__plain'.*rule: a sql query reads only its named inputs"):
        add_spec(clinic, spec)
    # saved unchecked (as a sync or another analyst's copy brings it): its build refuses it
    Catalog(clinic).save_spec(spec)
    try:
        build(clinic, "later")
        with pytest.raises(LithotseError, match="a__plain"):
            build(clinic, "plain_cells")
        assert Catalog(clinic).current("plain_cells") is None
    finally:
        Catalog(clinic).remove("plain_cells")
        Catalog(clinic).remove("later")


def test_sql_cells_publish_nothing_computed_over_a_cells_rows_but_their_counts(clinic):
    # a text aggregate of a cell's rows, or its count cast to text, was kept beside the nulled
    # counts of a suppressed cell as if it were a dimension
    spec = {"name": "texts", "kind": "sql", "inputs": {"a": {"source": "ehr", "stream": "admissions"}},
            "sql": "SELECT department, count(*) AS n, count(DISTINCT patient_id) AS people, "
                   "string_agg(CAST(admit_date AS VARCHAR), ',') AS days, "
                   "CAST(count(DISTINCT patient_id) AS VARCHAR) AS people_txt "
                   "FROM a WHERE admit_date = DATE '2024-03-01' GROUP BY ALL",
            "count_column": "n", "people_column": "people"}
    with pytest.raises(SpecError, match=f"output column 'days' is string_agg.*rule: {re.escape(SHAPE_RULE)}"):
        add_spec(clinic, spec)
    Catalog(clinic).save_spec(spec)
    try:
        with pytest.raises(SpecError, match=re.escape(SHAPE_RULE)):
            build(clinic, "texts")
        assert Catalog(clinic).current("texts") is None
    finally:
        Catalog(clinic).remove("texts")


def test_sql_cells_see_birth_dates_as_their_year_only(clinic):
    spec = {"name": "births", "kind": "sql", "inputs": {"p": {"derivative": "patients"}},
            "sql": "SELECT CAST(birth AS DATE) AS birth, count(*) AS n, count(DISTINCT pid) AS people FROM p "
                   "GROUP BY 1 ORDER BY 1", "count_column": "n", "people_column": "people", "suppress_below": 0}
    add_spec(clinic, spec)
    try:
        build(clinic, "births")
        days = {str(r["birth"]) for r in read_table(clinic, "births")[1].to_pylist()}
        assert days and all(d.endswith("-01-01") for d in days), days
    finally:
        Catalog(clinic).remove("births")


def test_sql_over_row_level_inputs_without_a_count_column_stays_row_level(clinic, tmp_path):
    spec = {"name": "copy", "kind": "sql", "inputs": {"p": {"derivative": "patients_safe"},
                                                      "q": {"derivative": "patients"}},
            "sql": "SELECT q.family FROM p JOIN q ON p.pid = q.pid"}
    add_spec(clinic, spec)
    try:
        build(clinic, "copy")
        assert Catalog(clinic).disclosure("copy").kind == "row-level"
        with pytest.raises(Restricted, match=ROW_RULE):
            export_derivative(clinic, "copy", "csv", tmp_path / "copy.csv")
    finally:
        Catalog(clinic).remove("copy")


# --- counts of 1 to 10 people --------------------------------------------------------------------------
def test_sql_cells_suppress_rows_counting_fewer_than_k_people(clinic):
    truth = people_by_class()
    assert len(truth["EMER"]) < K <= 16, "the emergency cell counts 16 visits of 2 people"
    rows = {r["cls"]: r for r in read_table(clinic, "people_cells")[1].to_pylist()}
    assert set(rows) < set(truth), "suppressed sql cells are left out, keys and all"
    for cls, who in truth.items():
        if len(who) < K:
            assert cls not in rows
            cell = lookup(clinic, "people_cells", "people", cls=cls)
            assert cell.suppressed and cell.value is None, "an absent key reads as suppressed, not as 0"
    assert not any(r["suppressed"] for r in rows.values())
    assert rows["AMB"]["people"] == PATIENTS, "the large cell is published"
    assert "IMP" not in rows, "the smallest other cell hides the emergency one from the total"


def test_no_published_aggregate_cell_counts_fewer_than_k_people(clinic, tmp_path):
    truth = people_by_class()
    path, _rows = export_derivative(clinic, "by_class", "csv", tmp_path / "by_class.csv")
    import csv

    for row in csv.DictReader(path.read_text().splitlines()):
        if row["suppressed"].lower() != "true":
            assert len(truth[row["cls"]]) >= K, row


# --- a store managers read --------------------------------------------------------------------------------
def test_a_push_to_the_store_managers_read_carries_no_row_level_or_raw_data(tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    ws.config["stores"]["managers"] = {"url": str(tmp_path / "managers-bucket")}
    ws.config["tiers"]["derived"] = "managers"
    ws.save()
    ws = Workspace.open(ws.root)
    setup_clinic(ws, tmp_path / "in")
    result = push(ws, "managers")
    withheld = set(result.withheld)
    assert {k for k in withheld if k.startswith("restricted/patients/")} and \
        {k for k in withheld if k.startswith("raw/")} and {k for k in withheld if k.startswith("audit/")}
    assert "row-level data stays restricted" in result.summary()
    keys = [info.key for info in ws.store("derived").list("")]
    assert keys and all(k.startswith(("specs/", "derived/")) for k in keys), \
        sorted({k.split("/")[0] for k in keys})
    assert not [k for k in keys if k.startswith("derived/patients/")]
    for info in ws.store("derived").list("derived/"):
        if info.key.endswith(".parquet"):
            import io

            import pyarrow.parquet as pq

            assert_no_identifier(json.dumps(pq.read_table(io.BytesIO(ws.store("derived").get_bytes(info.key)))
                                            .to_pylist(), default=str))


@pytest.mark.parametrize("spelled", ["through ..", "through a link", "beside the audit tier"])
def test_the_store_managers_read_is_known_however_it_is_reached(tmp_path, spelled):
    """The thirty-fourth review: the remote written as ``…/ws/../managers-bucket`` or through a
    symbolic link was compared with the derived tier's store as text, taken for another store,
    and sent raw objects and row-level versions; with the audit tier in the managers' store
    (they append to it) nothing was withheld either."""
    bucket = tmp_path / "managers-bucket"
    ws = Workspace.create(tmp_path / "ws")
    ws.config["stores"]["managers"] = {"url": str(bucket)}
    ws.config["tiers"]["derived"] = "managers"
    if spelled == "beside the audit tier":
        ws.config["tiers"]["audit"] = "managers"
    ws.save()
    ws = Workspace.open(ws.root)
    setup_clinic(ws, tmp_path / "in")
    if spelled == "through ..":
        remote = str(tmp_path / "ws" / ".." / "managers-bucket")
    elif spelled == "through a link":
        (tmp_path / "link").symlink_to(bucket)
        remote = str(tmp_path / "link")
    else:
        remote = "managers"
    result = push(ws, remote)
    assert {k for k in result.withheld if k.startswith("raw/")}
    assert {k for k in result.withheld if k.startswith("restricted/patients/")}
    keys = [info.key for info in ws.store("derived").list("")]
    assert keys and not [k for k in keys if k.startswith(("raw/", "manifests/", "restricted/"))], \
        sorted({k.split("/")[0] for k in keys})


def test_the_restricted_tier_may_not_be_a_store_managers_read(tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    ws.config["stores"]["managers"] = {"url": str(tmp_path / "managers-bucket")}
    ws.config["tiers"].update(derived="managers", restricted="managers")
    ws.save()
    with pytest.raises(ConfigError, match="restricted uses the store of the derived tier.*rule: row-level data "
                                          "stays in a store only analysts read"):
        Workspace.open(ws.root)


# --- identifiers renamed or computed in sql, and filters on them ------------------------------------------
FILTER_RULE = "rule: a filter may not single out people by an identifier"
RENAMED = {"name": "renamed", "kind": "sql", "inputs": {"enc": {"source": "ehr", "stream": "admissions"}},
           "sql": "SELECT patient_id AS pt, admit_date, department FROM enc"}


def _published(ws: Workspace, name: str) -> bool:
    return name in Catalog(ws).names() and Catalog(ws).current(name) is not None


def test_a_renamed_identifier_keeps_its_role_down_a_chain_of_derivatives(clinic):
    chained = {"name": "chained", "kind": "sql", "inputs": {"r": {"derivative": "renamed"}},
               "sql": "SELECT upper(pt) AS who, department FROM r"}
    by_pt = {"name": "by_pt", "kind": "aggregate", "input": {"derivative": "renamed"}, "date_field": "admit_date",
             "grain": "year", "group_by": ["pt"], "measures": [{"fn": "count", "as": "visits"}]}
    by_who = {"name": "by_who", "kind": "aggregate", "input": {"derivative": "chained"}, "group_by": ["who"],
              "measures": [{"fn": "count", "as": "visits"}]}
    cells = {"name": "pt_cells", "kind": "sql", "inputs": {"r": {"derivative": "renamed"}},
             "sql": "SELECT pt, department, count(*) AS n, count(DISTINCT pt) AS people FROM r GROUP BY ALL",
             "count_column": "n", "people_column": "people", "suppress_below": 0}
    try:
        for spec in (RENAMED, chained):
            add_spec(clinic, spec)
            build(clinic, spec["name"])
        for spec, column in ((by_pt, "pt"), (by_who, "who")):
            with pytest.raises(IdentifierRefused, match=f"'{column}' is a person's key.*{CELL_RULE}"):
                add_spec(clinic, spec)
            assert not _published(clinic, spec["name"])
        add_spec(clinic, cells)
        with pytest.raises(IdentifierRefused, match=f"output column 'pt' carries values of input column 'r.pt', "
                                                    f"which is a person's key.*{CELL_RULE}"):
            build(clinic, "pt_cells")
        assert not _published(clinic, "pt_cells")
    finally:
        for name in ("pt_cells", "chained", "renamed"):
            if name in Catalog(clinic).names():
                Catalog(clinic).remove(name)


def test_a_sql_version_published_before_its_roles_followed_the_sql_is_rebuilt_first(clinic, monkeypatch):
    # an upgrade: "renamed" was published when its pt column got no role (roles version 1)
    from lithotse_desktop.derive import build as build_module
    from lithotse_desktop.derive import disclosure

    by_department = {"name": "by_department", "kind": "aggregate", "input": {"derivative": "renamed"},
                     "group_by": ["department"], "measures": [{"fn": "count", "as": "visits"}]}
    try:
        with monkeypatch.context() as old:
            old.setattr(disclosure, "ROLES_VERSION", 1)
            old.setattr(build_module, "ROLES_VERSION", 1)
            add_spec(clinic, RENAMED)
            build(clinic, "renamed")
        assert Catalog(clinic).current("renamed").privacy["roles"] == 1
        with pytest.raises(Restricted, match="'renamed' was published before .*run: lithotse derive build renamed"):
            add_spec(clinic, by_department)
        assert build(clinic, "renamed").status != "up to date", "the older version is rebuilt"
        assert Catalog(clinic).current("renamed").privacy["columns"]["pt"] == "person_key"
        add_spec(clinic, by_department)
        build(clinic, "by_department")
    finally:
        for name in ("by_department", "renamed"):
            if name in Catalog(clinic).names():
                Catalog(clinic).remove(name)

@pytest.mark.parametrize("sql", [
    # the unmasked rows by a name the build gives them, or any relation the build holds
    "SELECT department, count(*) AS n, count(DISTINCT patient_id) AS people, "
    "(SELECT string_agg(x.mrn, ',') FROM query_table('a__landed') x) AS who FROM a GROUP BY ALL",
    "SELECT department, count(*) AS n, count(DISTINCT patient_id) AS people, "
    "(SELECT string_agg(y.mrn, ',') FROM query('SELECT mrn FROM a__landed') y) AS who FROM a GROUP BY ALL",
    "SELECT table_name AS department, 20 AS n, 20 AS people FROM duckdb_tables()",
])
def test_sql_reads_nothing_but_its_inputs(clinic, sql):
    spec = {"name": "reader", "kind": "sql", "inputs": {"a": {"source": "ehr", "stream": "admissions"}},
            "sql": sql, "count_column": "n", "people_column": "people"}
    with pytest.raises(SpecError, match="rule: a sql query reads only its named inputs"):
        add_spec(clinic, spec)
    assert "reader" not in Catalog(clinic).names()


@pytest.mark.parametrize("sql", [
    # a count over a join with a range of days is the birth date, a matched character code a name
    "SELECT p.pid, count(*) AS bd_days FROM p JOIN range(DATE '1900-01-01', DATE '2030-01-01', INTERVAL 1 DAY) "
    "g(d) ON g.d < CAST(p.birth AS DATE) GROUP BY p.pid",
    "SELECT (SELECT c.j FROM range(0, 200) c(j) WHERE c.j = unicode(p.family)) AS letter FROM p",
    "SELECT gender, row_number() OVER (ORDER BY birth) AS place FROM p",
])
def test_a_de_identified_sql_computes_each_row_from_one_row(clinic, sql):
    spec = {"name": "encoded", "kind": "sql", "inputs": {"p": {"derivative": "patients"}},
            "deidentify": "safe-harbor", "sql": sql}
    with pytest.raises(SpecError, match="rule: a de-identified sql query computes each row from one input row"):
        add_spec(clinic, spec)
    assert "encoded" not in Catalog(clinic).names()

def test_safe_harbor_removes_identifiers_computed_in_sql(clinic):
    spec = {"name": "computed", "kind": "sql", "inputs": {"p": {"derivative": "patients"}},
            "deidentify": "safe-harbor", "columns": {"gender": "code"},
            "sql": "SELECT CAST(substr(mrn, 5) AS INTEGER) AS pnum, gender FROM p"}
    add_spec(clinic, spec)
    try:
        build(clinic, "computed")
        table = read_table(clinic, "computed")[1]
        assert table.column_names == ["gender"]
        assert_no_identifier(json.dumps(table.to_pylist(), default=str))
    finally:
        Catalog(clinic).remove("computed")


@pytest.mark.parametrize(("column", "expression"), [
    ("born", "CAST(strftime(CAST(birth AS DATE), '%Y%m%d') AS INTEGER)"),
    ("born_us", "CAST(strftime(CAST(birth AS DATE), '%m%d%Y') AS BIGINT)"),
    ("young", "CAST(birth AS DATE) > DATE '1990-01-01'"),
    # pass 35: each reads as a year, so the year a profile keeps was the birth month, day, or a mirror
    ("month_as_year", "2000 + month(CAST(birth AS DATE))"),
    ("day_as_year", "2000 + day(CAST(birth AS DATE))"),
    ("mirrored", "4000 - year(CAST(birth AS DATE))"),
])
def test_safe_harbor_refuses_a_birth_date_computed_in_sql(clinic, column, expression):
    """A value computed from a birth date can take any form: one that reads as a year (the
    profile keeps years) was the birth month or day (pass 35: 1929-05-02 back in three columns)."""
    spec = {"name": "late_born", "kind": "sql", "inputs": {"p": {"derivative": "patients"}},
            "deidentify": "safe-harbor", "sql": f"SELECT {expression} AS {column} FROM p"}
    with pytest.raises(LithotseError, match=f"'{column}' is computed from a birth date.*{COMPUTED_RULE}"):
        add_spec(clinic, spec)
    assert "late_born" not in Catalog(clinic).names()


@pytest.mark.parametrize(("columns", "expression", "what"), [
    ({}, "0 - age", "an age"),
    ({"zip": "zip"}, "substr(CAST(zip AS VARCHAR), 3, 3) || '00'", "a ZIP code"),
    ({"zip": "zip"}, "'1' || substr(CAST(zip AS VARCHAR), 2)", "a ZIP code"),
])
def test_safe_harbor_refuses_ages_and_zip_codes_computed_in_sql(workspace, tmp_path, columns, expression, what):
    """Pass 35: ``0 - age`` published -94 (only ages above 89 were capped), and the last three
    digits of a ZIP code passed as the first three of another (941 and 110: 94110)."""
    ws = workspace
    (tmp_path / "people").mkdir()
    csv = tmp_path / "people" / "people.csv"
    csv.write_text("patient_id,age,zip,visit_date\np1,94,94110,2024-01-02\np2,40,88401,2024-01-03\n", "utf-8")
    ws.add_source("people", "csv", {"path": str(csv.parent), "date_column": "visit_date"}, {})
    run_import(ws, "people")
    spec = {"name": "shaped", "kind": "sql", "inputs": {"p": {"source": "people", "stream": "people"}},
            "deidentify": "safe-harbor", "columns": columns, "sql": f"SELECT {expression} AS shaped FROM p"}
    with pytest.raises(LithotseError, match=f"'shaped' is computed from {what}.*{COMPUTED_RULE}"):
        add_spec(ws, spec)


def people_source(ws: Workspace, folder: Path) -> None:
    folder.mkdir()
    rows = ["patient_id,age,zip,dob,visit_date"] + [
        f"p{i},{40 + 5 * i},{94110 + i},19{30 + i}-09-0{1 + i % 9},2024-01-0{1 + i % 9}" for i in range(12)]
    (folder / "people.csv").write_text("\n".join(rows) + "\n", "utf-8")
    ws.add_source("people", "csv", {"path": str(folder), "date_column": "visit_date"}, {})
    run_import(ws, "people")


def test_a_count_beside_an_age_is_still_an_age(workspace, tmp_path):
    """Pass 36: a row-level window count ``n`` (a count's role outranks an age's) made ``age + 0 *
    n`` and ``zip || substr(n, 1, 0)`` counts, which the profile keeps: 31 exact ages over 89 and
    300 full ZIP codes. A computed column is judged by every role it reads."""
    people_source(workspace, tmp_path / "people")
    add_spec(workspace, {"name": "counted", "kind": "sql", "inputs": {"p": {"source": "people", "stream": "people"}},
                         "sql": "SELECT *, count(*) OVER () AS n FROM p"})
    build(workspace, "counted")
    for expression, what in [("age + 0 * n", "an age"), ("CAST(zip AS VARCHAR) || substr(CAST(n AS VARCHAR), 1, 0)",
                                                         "a ZIP code")]:
        spec = {"name": "laundered", "kind": "sql", "inputs": {"w": {"derivative": "counted"}},
                "deidentify": "safe-harbor", "columns": {"zip": "zip"},
                "sql": f"SELECT {expression} AS shaped FROM w"}
        with pytest.raises(LithotseError, match=f"'shaped' is computed from {what}.*{COMPUTED_RULE}"):
            add_spec(workspace, spec)


def test_rows_a_sql_chooses_by_an_identifier_are_not_de_identified(workspace, tmp_path):
    """Pass 36: ``SELECT patient_id, 9 AS birth_month FROM p WHERE month(dob) = 9`` published the
    pseudonyms of everyone born in September under safe-harbor."""
    people_source(workspace, tmp_path / "people")
    spec = {"name": "september", "kind": "sql", "inputs": {"p": {"source": "people", "stream": "people"}},
            "deidentify": "safe-harbor", "sql": "SELECT patient_id, 9 AS birth_month FROM p WHERE month(dob) = 9"}
    with pytest.raises(LithotseError, match=re.escape(DEIDENTIFIED_PICK_RULE)):
        add_spec(workspace, spec)
    assert "september" not in Catalog(workspace).names()


@pytest.mark.parametrize(("column", "value", "what"), [
    ("family", "Zyx3family", "'family' is a name"),
    ("birth", "1936-12-31", "'birth' is a birth date"),
    ("patient", "planted-3", "'patient' is a person's key"),
])
def test_a_filter_may_not_single_out_people_by_an_identifier(clinic, column, value, what):
    spec = {"name": "her_visits", "kind": "aggregate", "input": {"derivative": "encounters"},
            "join": {"input": {"derivative": "patients"}, "on": {"left": "patient", "right": "pid"},
                     "columns": ["family", "birth"]},
            "filters": [{"column": column, "op": "=", "value": value}],
            "group_by": ["cls"], "measures": [{"fn": "count", "as": "n"}]}
    with pytest.raises(IdentifierRefused, match=f"filters\\[0\\]: column {what}.*{FILTER_RULE}"):
        add_spec(clinic, spec)
    assert "her_visits" not in Catalog(clinic).names()


def test_a_filter_may_still_ask_whether_an_identifier_is_there(clinic):
    spec = {"name": "known_family", "kind": "aggregate", "input": {"derivative": "encounters"},
            "join": {"input": {"derivative": "patients"}, "on": {"left": "patient", "right": "pid"},
                     "columns": ["family"]},
            "filters": [{"column": "family", "op": "is not null"}, {"column": "cls", "op": "=", "value": "AMB"}],
            "group_by": ["cls"], "measures": [{"fn": "count", "as": "n"}]}
    add_spec(clinic, spec)
    Catalog(clinic).remove("known_family")


def test_a_query_the_lineage_cannot_follow_is_refused_under_a_profile_saying_why(workspace, tmp_path):
    """Pass 36: ``SELECT patient_id, COLUMNS('^dob$') FROM p`` was refused as "column 'patient_id'
    is computed from a birth date" (every column was taken to read everything). The refusal now
    says what could not be followed, and what to write instead."""
    people_source(workspace, tmp_path / "people")
    spec = {"name": "cols", "kind": "sql", "inputs": {"p": {"source": "people", "stream": "people"}},
            "deidentify": "safe-harbor", "sql": "SELECT patient_id, COLUMNS('^dob$') FROM p"}
    with pytest.raises(LithotseError, match=r"COLUMNS\(…\) cannot be followed .*name the columns instead"):
        add_spec(workspace, spec)
    add_spec(workspace, {**spec, "sql": "SELECT patient_id, dob FROM p"})
    build(workspace, "cols")
    table = read_table(workspace, "cols")[1]
    assert table.column_names == ["patient_id", "dob"]
    assert all(isinstance(year, int) for year in table.column("dob").to_pylist())


@pytest.mark.parametrize(("expression", "says"), [
    ("CAST(patient_id AS INTEGER)", "Could not convert string '…' to INT32"),
    # pass 39: a date format's message, a second line, a message that is the value
    ("CAST(patient_id AS DATE)", "invalid date field format: \"…\""),
    ("CAST(CAST(dob AS VARCHAR) || patient_id AS TIMESTAMP)", "Conversion Error"),
    ("strptime(patient_id, '%Y')", "Could not parse string \"…\""),
    ("error(patient_id)", "Invalid Input Error: …"),
])
def test_a_failed_build_does_not_quote_the_row_it_failed_on(workspace, tmp_path, expression, says):
    """Pass 38: a cast that failed showed a patient id in the build's error (the CLI's and the
    desktop app's "Build failed" dialog): DuckDB quotes the value it could not convert."""
    people_source(workspace, tmp_path / "people")
    add_spec(workspace, {"name": "bad_cast", "kind": "sql", "inputs": {"p": {"source": "people", "stream": "people"}},
                         "sql": f"SELECT {expression} AS pid FROM p"})
    with pytest.raises(LithotseError) as failed:
        build(workspace, "bad_cast")
    message = str(failed.value)
    assert says in message, message
    assert not re.search(r"\bp\d+\b|19\d\d-", message), message


def test_a_de_identified_query_does_not_order_its_rows(workspace, tmp_path):
    """Pass 37: ``ORDER BY strftime(dob, '%m-%d')`` published rows in birthday order: a row's
    place put 276 of 300 patients within a week of their birthday."""
    people_source(workspace, tmp_path / "people")
    spec = {"name": "ordered", "kind": "sql", "inputs": {"p": {"source": "people", "stream": "people"}},
            "deidentify": "safe-harbor", "sql": "SELECT patient_id FROM p ORDER BY strftime(dob, '%m-%d')"}
    with pytest.raises(LithotseError, match=r"its query order_by; rule: .*ordering"):
        add_spec(workspace, spec)
