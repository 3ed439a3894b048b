"""Running the READMEs' ``lithotse …`` commands, in README order, against one test workspace.

Each documented line is expanded into the commands it stands for (optional parts with and
without, every alternative; see :mod:`tests.docs.shell_doc`); example values are mapped to real
fixtures by the tables below; every command must exit 0 and, where the README says what comes
out, it must come out. A command this harness has no runner for fails the test, so a new README
command gets covered (or goes on :data:`NOT_RUN`, with its reason).
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.metadata as md
import importlib.util
import json
import re
import shlex
import shutil
import socket
import sys
import tomllib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result

from lithotse_desktop.cli import main
from lithotse_desktop.connectors import Connector
from lithotse_desktop.secrets import secret_ref
from lithotse_desktop.workspace import Workspace
from tests.conftest import REPO
from tests.docs.shell_doc import Command, ShellLine, code_blocks, expand, shell_lines
from tests.plugins.fhir.fhir_server import FhirTestServer
from tests.support.admissions import NAMES as ADMISSION_NAMES
from tests.support.admissions import admission_rows, write_admissions
from tests.support.serving import lithotse_serve
from tests.support.wheels import build_plugin_wheel

README = REPO / "README.md"
PLUGIN_READMES = sorted(REPO.glob("plugins/*/README.md"))
SPREADSHEET_README = REPO / "plugins" / "lithotse-spreadsheet" / "README.md"
ADMISSIONS_ROWS = 120
LABS = [["Sample #", "Drawn on", "Test", "Result (mmol/L)", "% Haemolysed", "Método"],
        *[[f"S{i:03d}", f"2024-02-{1 + i % 28:02d}", "K+", f"{3.5 + i % 10 / 10:.1f}", f"{i % 7}", "ISE"]
          for i in range(24)],
        ["", "", "", "", "", ""], ["Total", "", "", "", "", ""]]

# Commands that cannot run here, each with the reason. Keep it short.
NOT_RUN: dict[str, str] = {}

PLACEHOLDER = re.compile(r"…|^[A-Z][A-Z_]*$|=[A-Z][A-Z_]*$|example\.(org|com)|^s3://bucket/|\.\./shared|^~")
FHIR_TOKEN = "readme-fhir-token-7f3a"
FOO_MODULE = '''
from lithotse_desktop.connectors import Connector, StreamInfo
from lithotse_desktop.hookspecs import hookimpl


class FooConnector(Connector):
    name = "foo"
    version = "1.0"
    title = "README example plugin"

    def streams(self):
        return [StreamInfo("things")]


@hookimpl
def lithotse_register_connectors():
    return [FooConnector]
'''

# --- the EHR export the README's aggregate reads ------------------------------------------
DEPARTMENTS = {"Cardiology": 14, "Oncology": 12, "Dermatology": 2, "Neurology": 3}


def ehr_rows() -> list[dict[str, Any]]:
    """Six months of encounters: two common departments, two rare ones (suppressed), and
    inpatient stays the README's filter leaves out."""
    rows = []
    for month in range(1, 7):
        for dept, count in DEPARTMENTS.items():
            for n in range(1, count + 4):
                klass = ("AMB", "EMER")[n % 2] if n <= count else "IMP"
                rows.append({"encounter_id": f"e{month}-{dept[:3]}-{n}",
                             "admit_date": dt.date(2024, month, n).isoformat(), "department": dept,
                             "class": klass, "patient_id": f"{dept[:3]}-{n % 13}",
                             "length_of_stay_days": (n * month) % 7})
    return rows


def expected_cells(spec: dict, start: str | None = None, end: str | None = None) -> dict[tuple, dict]:
    """The aggregate computed here, without DuckDB: per (month, department) of kept rows."""
    kept = [r for r in ehr_rows() if r["class"] in spec["filters"][0]["value"]
            and spec["from"] <= r["admit_date"] <= spec["to"]]
    groups: dict[tuple, list] = defaultdict(list)
    for r in kept:
        groups[(r["admit_date"][:8] + "01", r["department"])].append(r)
    out = {}
    for (period, dept), rows in groups.items():
        if (start and period < start) or (end and period > end):
            continue
        out[(period, dept)] = {"visits": len(rows), "patients": len({r["patient_id"] for r in rows}),
                               "mean_los": sum(r["length_of_stay_days"] for r in rows) / len(rows)}
    return out


def admissions_spec() -> dict:
    specs = [json.loads(b) for b in code_blocks(SPREADSHEET_README, "json")]
    return next(s for s in specs if s.get("name") == "los_by_ward")


def expected_los_by_ward() -> dict[str, dict]:
    """The spreadsheet README's aggregate over the admissions rows, without DuckDB."""
    limit = admissions_spec()["filters"][0]["value"]
    groups: dict[str, list] = defaultdict(list)
    for row in admission_rows(ADMISSIONS_ROWS):
        record = dict(zip(ADMISSION_NAMES, row, strict=True))
        if record["% Readmit"] < limit:
            groups[record["Ward/Bed"]].append(record)
    return {ward: {"mean_los": sum(r["LOS (days)"] for r in rows) / len(rows),
                   "cost": sum(r["Cost ($)"] for r in rows)} for ward, rows in groups.items()}


# --- the session: one workspace, the fixtures, every output --------------------------------
@dataclass
class Session:
    cwd: Path
    monkeypatch: pytest.MonkeyPatch
    seaweed: Any
    fhir: FhirTestServer
    port: int
    remote: str
    workspace: Path | None = None
    outputs: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    last_token: str = ""
    shown: dict = field(default_factory=dict)

    # example values → fixtures ---------------------------------------------------------
    def option_values(self) -> dict[tuple[str, str], Any]:
        return {("--source", "S"): "ehr", ("--stream", "S"): "encounters", ("--limit", "N"): "5",
                ("--from", "…"): "2024-01-01", ("--to", "…"): "2024-03-31",
                ("--as-of", "2024-06-30"): dt.datetime.now(dt.UTC).date().isoformat(),
                ("--port", "8765"): str(self.port)}

    def exact_values(self) -> dict[str, Any]:
        suite = str(self.cwd / "sof-suite")
        return {"~/lithotse-work": str(self.cwd / "lithotse-work"),
                "../shared/conformance/sql-on-fhir-v2": suite, "tests/data/sql-on-fhir-v2": suite,
                "s3://bucket/prefix": self.remote, "20241127T101500": self.landing_refs}

    def substrings(self) -> dict[str, str]:
        return {"/exports/ehr": str(self.cwd / "exports" / "ehr"), "https://fhir.example.org/r4": self.fhir.base_url,
                "/data/hl7": str(self.cwd / "data" / "hl7"), "127.0.0.1:8765": f"127.0.0.1:{self.port}",
                "/data/admissions.xlsx": str(self.cwd / "data" / "admissions.xlsx"),
                "/data/labs": str(self.cwd / "data" / "labs")}

    def landing_refs(self) -> list[str]:
        """A landing id, an id prefix and a sha256 prefix (the README's three forms), of a landing
        whose bytes landed once (the same bytes landed twice make a sha256 prefix ambiguous)."""
        rows = json.loads(self.cli(["raw", "ls", "--json"]).stdout)
        shas = [r["sha256"] for r in rows]
        self.shown = next(r for r in rows if shas.count(r["sha256"]) == 1)
        return [self.shown["id"], self.shown["id"][:18], self.shown["sha256"][:12]]

    def concrete(self, command: Command, where: str) -> list[list[str]]:
        variants: list[list[str]] = [[]]
        options, exact, subs = self.option_values(), self.exact_values(), self.substrings()
        words = command.words[1:]
        for pos, word in enumerate(words):
            previous = words[pos - 1] if pos else ""
            value: Any = options.get((previous, word), exact.get(word, word))
            if callable(value):
                value = value()
            if isinstance(value, str):
                for old, new in subs.items():
                    value = value.replace(old, new)
            choices = value if isinstance(value, list) else [value]
            variants = [v + [c] for v in variants for c in choices]
        for args in variants:
            left = [w for w in args if PLACEHOLDER.search(w)]
            assert not left, (f"{where}: no fixture for {left} in `lithotse {' '.join(command.words[1:])}`; "
                              "map it in tests/docs/readme_runner.py")
        return variants

    # running ---------------------------------------------------------------------------
    def cli(self, args: list[str], stdin: str | None = None) -> Result:
        result = CliRunner().invoke(main, args, input=stdin, catch_exceptions=False)
        self.outputs.append(result.output)
        assert result.exit_code == 0, f"lithotse {' '.join(args)} exited {result.exit_code}:\n{result.output}"
        return result

    def ws(self) -> Workspace:
        return Workspace.open(self.workspace)

    def token(self) -> str:
        return self.cli(["token"]).stdout.strip()


Check = Callable[[Session, list[str], Result], None]


def _json(result: Result) -> Any:
    return json.loads(result.stdout)


# --- what each command's documented output is ----------------------------------------------
def check_init(s: Session, args: list[str], result: Result) -> None:
    s.workspace = Path(args[1])
    assert "created workspace" in result.stdout and (s.workspace / "lithotse.toml").is_file()
    ws = s.ws()
    creds = s.seaweed.store_options("client", keyring_ref=secret_ref(ws.id, "sync"))
    ws.config["serve"] = {"port": s.port}
    ws.config["sync"] = {"remote": s.remote, **creds}
    ws.save()


def check_plugins_list(s: Session, args: list[str], result: Result) -> None:
    if "--json" not in args:
        assert "csv" in result.stdout and "[ok]" in result.stdout
        return
    rows = _json(result)
    documented = [k.strip() for k in readme_comment("lithotse plugins list").split(",")]
    for row in rows:
        assert set(documented) <= set(row), (documented, row)
    assert {"csv", "fhir", "hl7v2", "spreadsheet"} <= {r["name"] for r in rows}


def check_plugins_install(s: Session, args: list[str], result: Result) -> None:
    from lithotse_desktop.plugins import get_plugin_manager

    assert result.stdout.startswith(f"installed {args[2]}")
    info = get_plugin_manager().plugins["foo"]
    assert info.error is None and info.distribution == "lithotse-foo"
    assert "foo" in get_plugin_manager().connectors()


def check_plugins_remove(s: Session, args: list[str], result: Result) -> None:
    assert result.stdout.strip() == "removed lithotse-foo"
    with pytest.raises(md.PackageNotFoundError):
        md.distribution("lithotse-foo")


def check_plugins_new(s: Session, args: list[str], result: Result) -> None:
    """The folder holds a project whose entry point names a module that registers the connector."""
    folder = s.cwd / args[2]
    assert result.stdout.startswith(f"created {args[2]}: connector plugin my-plugin"), result.stdout
    project = tomllib.loads((folder / "pyproject.toml").read_text())
    assert project["project"]["name"] == "lithotse-my-plugin"
    assert project["project"]["entry-points"]["lithotse"] == {"my-plugin": "lithotse_my_plugin"}
    assert (folder / "tests" / "test_my_plugin.py").is_file()
    spec = importlib.util.spec_from_file_location("readme_my_plugin", folder / "lithotse_my_plugin" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    [connector] = module.lithotse_register_connectors()
    assert issubclass(connector, Connector) and connector.name == "my-plugin"
    assert [info.name for info in connector({"path": str(folder)}).streams()] == ["readings"]


def check_source_add(s: Session, args: list[str], result: Result) -> None:
    name = args[2]
    assert f"source {name} (" in result.stdout
    config = (s.workspace / "lithotse.toml").read_text()
    assert f"[sources.{name}]" in config and FHIR_TOKEN not in config
    if name == "fhirsrv":  # the token read from stdin is in the secrets store and opens the server
        assert re.search(r"; secrets in .+: token$", result.stdout.strip()), result.stdout
        s.cli(["import", "fhirsrv", "--stream", "Patient", "--no-build"])
        assert any(r["stream"] == "Patient" for r in _json(s.cli(["raw", "ls", "--json", "--source", "fhirsrv"])))


def check_source_list(s: Session, args: list[str], result: Result) -> None:
    if "--json" in args:
        rows = {r["name"]: r for r in _json(result)}
        assert set(rows) == {"ehr", "fhirsrv"} and rows["fhirsrv"]["secrets"] == ["token"]
    else:
        assert "ehr" in result.stdout and "secrets: token" in result.stdout


def check_source_streams(s: Session, args: list[str], result: Result) -> None:
    if "--json" in args:
        assert [(r["name"], r["date_field"], r["key"]) for r in _json(result)] == \
            [("encounters", "admit_date", ["encounter_id"])]
    else:
        assert "date field: admit_date" in result.stdout


def check_import(s: Session, args: list[str], result: Result) -> None:
    if args[1] == "ehr":
        assert f"ehr/encounters encounters.csv: {len(ehr_rows())} records" in result.stdout
    elif args[1] == "adm":  # the spreadsheet README's workbook, as it comes
        n = ADMISSIONS_ROWS
        assert (f"adm/Admissions admissions.xlsx: {n} records ({n} in range, 0 outside), "
                "2 rows left out (1 total, 1 blank)") in result.stdout, result.stdout
        assert ("adm/Notes: skipped: admissions.xlsx, sheet 'Notes': has no row 3 to take column names "
                "from") in result.stdout
    elif args[1] == "labs":
        n = len(LABS) - 3
        assert (f"labs/labs labs.csv: {n} records ({n} in range, 0 outside), 2 rows left out "
                "(1 total, 1 blank)") in result.stdout, result.stdout
        [info] = _json(s.cli(["source", "streams", "labs", "--json"]))
        assert (info["date_field"], info["key"]) == ("Drawn on", ["Sample #"])
    else:
        assert re.search(rf"^{args[1]}/\w+ .*: \d+ records", result.stdout, re.M), result.stdout


def check_raw_ls(s: Session, args: list[str], result: Result) -> None:
    if "--json" not in args:
        assert "ehr/encounters" in result.stdout
        return
    rows = _json(result)
    assert rows and all({"id", "source", "stream", "records", "sha256"} <= set(r) for r in rows)
    if "--source" in args:
        assert {r["source"] for r in rows} == {"ehr"}
    if "--stream" in args:
        assert {r["stream"] for r in rows} == {"encounters"}


def check_raw_show(s: Session, args: list[str], result: Result) -> None:
    for key in ("id", "source", "stream", "sha256"):
        assert re.search(rf"^{key}\s+{re.escape(str(s.shown[key]))}$", result.stdout, re.M), (key, result.stdout)


def check_raw_reindex(s: Session, args: list[str], result: Result) -> None:
    assert result.stdout.strip() == f"indexed {len(_json(s.cli(['raw', 'ls', '--json'])))} manifests"


def check_raw_verify(s: Session, args: list[str], result: Result) -> None:
    """Every object the README's imports landed re-hashes to its name; nothing is reported."""
    landed = _json(s.cli(["raw", "ls", "--json"]))
    if "--source" in args:
        landed = [m for m in landed if m["source"] == args[args.index("--source") + 1]]
    objects = len({(m["source"], m["sha256"]) for m in landed})  # raw/<source>/<sha256>
    if "--json" not in args:
        assert f"checked {objects} object(s)" in result.stdout and f"{objects} ok, 0 corrupted" in result.stdout
        return
    report = _json(result)
    assert report["problems"] == [] and report["summary"]["corrupted"] == 0
    assert report["summary"]["objects"] == report["summary"]["ok"] == objects


def check_doctor(s: Session, args: list[str], result: Result) -> None:
    """The documented keys, this workspace's own store and port, and the secrets store in use."""
    if "--json" not in args:
        for word in ("secrets", "serve", "libreoffice", "display"):
            assert word in result.stdout.lower(), (word, result.stdout)
        return
    report = _json(result)
    keys = readme_paragraph("The `--json` keys").split("The `--json` keys", 1)[1].split("and the fields")[0]
    documented = re.findall(r"`(\w+)`", keys)
    assert len(documented) >= 10 and set(documented) <= set(report), (documented, sorted(report))
    assert report["secrets"]["store"] == "file" and report["secrets"]["error"] is None
    if s.workspace is None:  # the README shows doctor before `lithotse init`
        assert report["workspace"]["found"] is False and "lithotse init" in report["workspace"]["hint"]
    else:
        assert report["workspace"]["found"] and report["serve"]["port"] == s.port


def check_derive_add(s: Session, args: list[str], result: Result) -> None:
    name = json.loads((s.cwd / args[args.index("--file") + 1]).read_text())["name"]
    assert f"derivative {name} (aggregate) saved" in result.stdout


def check_derive_list(s: Session, args: list[str], result: Result) -> None:
    if "--json" in args:
        [row] = _json(result)
        assert row["name"] == "visits_by_dept" and row["version"] and row["rows"]
    else:
        assert "visits_by_dept" in result.stdout and "version" in result.stdout


def check_los_by_ward(s: Session, args: list[str], result: Result) -> None:
    expected = expected_los_by_ward()
    if "--json" not in args:
        assert "los_by_ward version" in result.stdout and all(ward in result.stdout for ward in expected)
        return
    rows = _json(result)["rows"]
    assert {r["Ward/Bed"] for r in rows} == set(expected)
    for row in rows:
        want = expected[row["Ward/Bed"]]
        assert not row["suppressed"], row
        assert (row["mean_los"], row["cost"]) == pytest.approx((want["mean_los"], want["cost"])), row


def check_derive_show(s: Session, args: list[str], result: Result) -> None:
    if args[2] == "los_by_ward":
        check_los_by_ward(s, args, result)
        return
    if "--json" not in args:
        assert "visits_by_dept version" in result.stdout and "Cardiology" in result.stdout
        return
    ranged = "--from" in args
    expected = expected_cells(readme_spec(), *(("2024-01-01", "2024-03-31") if ranged else ()))
    rows = _json(result)["rows"]
    assert {(r["period"], r["department"]) for r in rows} == set(expected)
    for row in rows:
        want = expected[(row["period"], row["department"])]
        if want["patients"] < readme_spec()["suppress_below"]:  # suppression counts people
            assert row["suppressed"] and row["visits"] is None, row
        elif not row["suppressed"]:
            assert (row["visits"], row["patients"]) == (want["visits"], want["patients"]), row
            assert row["mean_los"] == pytest.approx(want["mean_los"]), row
    assert any(r["department"] == "Cardiology" and not r["suppressed"] for r in rows)


def check_derive_preview(s: Session, args: list[str], result: Result) -> None:
    assert result.stdout.splitlines()[0].split()[:2] == ["period", "department"]
    assert len(result.stdout.splitlines()) <= 1 + int(args[args.index("--rows") + 1]) + 1


def check_derive_lineage(s: Session, args: list[str], result: Result) -> None:
    if "--json" in args:
        data = _json(result)
        assert len(data["spec_hash"]) == 64 and data["inputs"]["input"]["objects"], data
        assert (data["counts"], data["person_key"]) == ("people", ["patient_id"]), "patient_id is detected"
    else:
        assert "spec sha256" in result.stdout and "encounters.csv" in result.stdout
        assert "suppression counts people (distinct patient_id per cell)" in result.stdout


def check_privacy_audit(s: Session, args: list[str], result: Result) -> None:
    if "--json" in args:
        data = _json(result)
        assert data["ok"] is True and data["findings"] == [], data
        assert [g["derivatives"] for g in data["groups"]] == [["visits_by_dept"]]
    else:
        assert "ok: no hidden cell can be recovered" in result.stdout


def check_derive_export(s: Session, args: list[str], result: Result) -> None:
    from openpyxl import load_workbook

    path = s.cwd / args[args.index("-o") + 1]
    rows = list(load_workbook(path, read_only=True).worksheets[0].values)
    assert result.stdout.strip() == f"wrote {len(rows) - 1} rows to {args[args.index('-o') + 1]}"
    assert len(rows) - 1 == len(expected_cells(readme_spec(), *(("2024-01-01", "2024-03-31")
                                                                  if "--from" in args else ())))


def check_derive_rm(s: Session, args: list[str], result: Result) -> None:
    assert result.stdout.strip() == "derivative visits_by_dept removed"
    assert _json(s.cli(["derive", "list", "--json"])) == []
    s.cli(["derive", "add", "--file", "visits_by_dept.json", "--build"])  # later sections use it


def check_sof_test(s: Session, args: list[str], result: Result) -> None:
    assert result.stdout.startswith("2 passed, 0 failed")
    report = json.loads((s.cwd / args[args.index("--report") + 1]).read_text())
    assert [t["result"]["passed"] for t in report["readme.json"]["tests"]] == [True, True]


def check_token(s: Session, args: list[str], result: Result) -> None:
    token = result.stdout.strip()
    assert len(token) >= 32 and "\n" not in token
    if "--rotate" in args:
        assert token != s.last_token, "a new token"
    s.last_token = token


def check_excel_bind(s: Session, args: list[str], result: Result) -> None:
    from openpyxl import load_workbook

    table = load_workbook(s.cwd / args[2])["Visits"].tables["lithotse_visits_by_dept"]
    assert table.ref.startswith("B3:"), table.ref
    assert "table lithotse_visits_by_dept at Visits!B3" in result.stdout


def check_excel_refresh(s: Session, args: list[str], result: Result) -> None:
    assert result.stdout.startswith("lithotse_visits_by_dept: ")


def check_install_addin(s: Session, args: list[str], result: Result) -> None:
    folder = s.cwd / "xdg-data" / "lithotse" / "excel-addin"
    assert (folder / "Lithotse.bas").is_file() and (folder / "customUI14.xml").is_file()
    assert "Excel does not run on this system" in result.stdout


def check_addin_manifest(s: Session, args: list[str], result: Result) -> None:
    text = (s.cwd / args[args.index("-o") + 1]).read_text() if "-o" in args else result.stdout
    assert "<bt:String id=\"Functions.Namespace\" DefaultValue=\"LITHOTSE\"/>" in text
    assert "https://localhost:8766/addin/taskpane.html" in text


def check_trust_cert(s: Session, args: list[str], result: Result) -> None:
    out = _json(result) if "--json" in args else {"text": result.stdout}
    assert "lithotse-ca.pem" in json.dumps(out)


def check_sync(s: Session, args: list[str], result: Result) -> None:
    if "--json" in args:
        assert _json(result)["remote"].rstrip("/") == s.remote.rstrip("/")
    if args[1] == "push":
        assert list(s.seaweed.store(s.remote, "admin").list("manifests/")), "the landings reached S3"


def check_audit(s: Session, args: list[str], result: Result) -> None:
    if "--json" not in args:
        return
    rows = _json(result)
    if "--limit" in args:
        assert len(rows) <= int(args[args.index("--limit") + 1])
    if "--action" in args:
        action = args[args.index("--action") + 1]
        assert rows and all(r["action"] == action for r in rows), f"{action} records after the README's {action}s"
    assert all({"who", "host", "action", "at", "objects"} <= set(r) for r in rows)


def no_check(s: Session, args: list[str], result: Result) -> None:
    """Exit 0 is what these promise (their effect is checked by the commands after them)."""


RUNNERS: dict[str, Check] = {
    "init": check_init, "plugins list": check_plugins_list, "plugins install": check_plugins_install,
    "plugins remove": check_plugins_remove, "plugins new": check_plugins_new, "source add": check_source_add,
    "source list": check_source_list, "source streams": check_source_streams, "import": check_import,
    "raw ls": check_raw_ls, "raw show": check_raw_show, "raw reindex": check_raw_reindex,
    "derive add": check_derive_add, "derive list": check_derive_list, "derive build": no_check,
    "derive show": check_derive_show, "derive preview": check_derive_preview,
    "derive lineage": check_derive_lineage, "derive export": check_derive_export,
    "derive rm": check_derive_rm, "sof-test": check_sof_test, "token": check_token,
    "excel bind": check_excel_bind, "excel refresh": check_excel_refresh,
    "excel install-addin": check_install_addin, "excel addin-manifest": check_addin_manifest,
    "excel trust-cert": check_trust_cert, "sync push": check_sync, "sync pull": check_sync,
    "sync status": check_sync, "audit": check_audit, "raw verify": check_raw_verify,
    "doctor": check_doctor, "privacy audit": check_privacy_audit,
}
BACKGROUND = {"serve"}


def command_path(args: list[str]) -> str:
    command = main.commands.get(args[0])
    return f"{args[0]} {args[1]}" if hasattr(command, "commands") and len(args) > 1 else args[0]


def readme_comment(prefix: str) -> str:
    return next(line.comment for line in shell_lines(README) if line.text.startswith(prefix))


def readme_paragraph(phrase: str) -> str:
    """The README paragraph (text between blank lines) that contains ``phrase``."""
    paragraphs = README.read_text("utf-8").split("\n\n")
    return next(p for p in paragraphs if phrase in p)


def readme_spec() -> dict:
    specs = [json.loads(b) for b in code_blocks(README, "json")]
    return next(s for s in specs if s.get("name") == "visits_by_dept")


# --- running a README ------------------------------------------------------------------------
def run_serve(s: Session, args: list[str], line: ShellLine) -> None:
    """``lithotse serve`` in the background: it answers with the workspace's derivatives, then stops."""
    extra = []
    if "--https" in args and "--https-port" not in args:  # the default 8766 may be taken on this machine
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            extra = ["--https-port", str(probe.getsockname()[1])]
    with lithotse_serve(s.workspace, s.port, *args[1:], *extra, cwd=s.cwd):
        answer = requests.get(f"http://127.0.0.1:{s.port}/api/v1/derivatives",
                              headers={"Authorization": f"Bearer {s.token()}"}, timeout=10)
        assert answer.status_code == 200, f"{line.where}: {answer.text}"
        assert [d["name"] for d in answer.json()["derivatives"]] == ["visits_by_dept"]
        assert requests.get(f"http://127.0.0.1:{s.port}/api/v1/derivatives", timeout=10).status_code == 401
    s.ran.append(" ".join(args))


def run_curl(s: Session, line: ShellLine) -> None:
    """The documented request, sent as curl would send it, to a running ``lithotse serve``."""
    words = shlex.split(line.text.replace("$(lithotse token)", s.token()))
    header = words[words.index("-H") + 1]
    [url] = [w for w in words if w.startswith("http")]
    for old, new in s.substrings().items():
        url = url.replace(old, new)
    name, value = header.split(": ", 1)
    with lithotse_serve(s.workspace, s.port, cwd=s.cwd):
        answer = requests.get(url, headers={name: value}, timeout=10)
    assert answer.status_code == 200, f"{line.where}: {answer.status_code} {answer.text}"
    cells = expected_cells(readme_spec(), "2024-01-01", "2024-03-31")
    want = sum(c["visits"] for (period, dept), c in cells.items() if dept == "Cardiology")
    assert answer.json()["value"] == want and answer.json()["suppressed"] is False
    s.ran.append("curl")


def run_lines(s: Session, lines: list[ShellLine]) -> None:
    for line in lines:
        if line.text.startswith("export "):
            name, _, value = line.text[len("export "):].partition("=")
            s.monkeypatch.setenv(name, str(s.exact_values().get(value, value)))
            continue
        if line.text.startswith("curl "):
            run_curl(s, line)
            continue
        if not line.text.startswith("lithotse "):
            continue  # setup.sh, pip: not Lithotse commands
        for command in expand(line.text):
            path = command_path(command.words[1:])
            if path in NOT_RUN:
                continue
            assert path in RUNNERS or path in BACKGROUND, (
                f"{line.where}: the README documents `lithotse {path}`, which tests/docs/readme_runner.py "
                "does not know how to run: add a runner to RUNNERS (or a reasoned NOT_RUN entry)")
            for args in s.concrete(command, line.where):
                if path in BACKGROUND:
                    run_serve(s, args, line)
                    continue
                stdin = (s.cwd / command.stdin).read_text() if command.stdin else None
                result = s.cli(args, stdin)
                RUNNERS[path](s, args, result)
                s.ran.append(" ".join(args))


def assert_no_secret_shown(s: Session) -> None:
    for secret in s.secrets:
        for output in s.outputs:
            assert secret not in output
        for path in (s.workspace or s.cwd).rglob("*.toml"):
            assert secret not in path.read_text()


# --- fixtures -----------------------------------------------------------------------------------
def write_fixtures(cwd: Path) -> None:
    """What the README's commands read: the EHR export, token.txt, the spec, a plugin wheel,
    an SQL-on-FHIR suite, HL7 files."""
    ehr = cwd / "exports" / "ehr"
    ehr.mkdir(parents=True)
    rows = ehr_rows()
    lines = [",".join(rows[0])] + [",".join(str(v) for v in r.values()) for r in rows]
    (ehr / "encounters.csv").write_text("\n".join(lines) + "\n")
    (cwd / "token.txt").write_text(FHIR_TOKEN + "\n")
    (cwd / "visits_by_dept.json").write_text(json.dumps(readme_spec()))
    for folder in (cwd / "wheels", cwd / "dist"):
        build_plugin_wheel(folder, "lithotse-foo", "lithotse_foo", "1.0", "foo", FOO_MODULE)
    suite = cwd / "sof-suite"
    suite.mkdir()
    patients = [{"resourceType": "Patient", "id": "p1", "active": True},
                {"resourceType": "Patient", "id": "p2", "active": False}]
    column = [{"name": "id", "path": "id", "type": "id"}]
    (suite / "readme.json").write_text(json.dumps({"title": "readme", "resources": patients, "tests": [
        {"title": "ids", "view": {"resource": "Patient", "select": [{"column": column}]},
         "expect": [{"id": "p1"}, {"id": "p2"}]},
        {"title": "active only", "view": {"resource": "Patient", "select": [{"column": column}],
                                          "where": [{"path": "active"}]},
         "expect": [{"id": "p1"}]}]}))
    (cwd / "data").mkdir()
    write_admissions(cwd / "data" / "admissions.xlsx", ADMISSIONS_ROWS)
    (cwd / "los_by_ward.json").write_text(json.dumps(admissions_spec(), ensure_ascii=False))
    (cwd / "data" / "labs").mkdir()
    with open(cwd / "data" / "labs" / "labs.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(LABS)
    hl7 = cwd / "data" / "hl7"
    hl7.mkdir(parents=True)
    for name in ("linuxforhealth-sample_unix.hl7", "linuxforhealth-ORU-multiline-short.hl7"):
        shutil.copy(REPO / "tests" / "data" / "hl7v2" / name, hl7 / name)
