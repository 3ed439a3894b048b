"""The README's first command: the generated demo imports, builds and renders without ../shared,
prints figures the newcomer check (scripts/newcomer_check.py) accepts, and the next steps; a demo
that fails leaves nothing behind, and the demo runs from an installed wheel."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_lithotse

DEMO_DERIVATIVES = {"visits_by_department", "diagnoses_by_quarter", "encounters", "encounters_by_class_month",
                    "admissions_by_age_band", "lab_results_by_test", "conditions", "diagnoses_by_icd10"}
VIEWS = {"encounters", "conditions"}


def load_newcomer_check():
    """scripts/newcomer_check.py, which is a script rather than a package module."""
    if "newcomer_check" in sys.modules:
        return sys.modules["newcomer_check"]
    spec = importlib.util.spec_from_file_location("newcomer_check", REPO / "scripts" / "newcomer_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["newcomer_check"] = module
    spec.loader.exec_module(module)
    return module


def test_demo_imports_builds_and_renders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "demo-workspace"
    first = run_lithotse("demo", "--headless", "--workspace", "demo-workspace",
                         env={"QT_QPA_PLATFORM": "offscreen"}, timeout=600, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    for source in ("ehr", "fhir", "hl7"):
        assert f"imported {source}:" in first.stdout
    derivatives = json.loads(run_lithotse("derive", "list", "--json", "--workspace", str(target)).stdout)
    assert {d["name"] for d in derivatives} == DEMO_DERIVATIVES
    assert all(d["rows"] > 0 for d in derivatives)
    for name in DEMO_DERIVATIVES - VIEWS:
        table = json.loads(run_lithotse("derive", "show", name, "--json", "--workspace", str(target)).stdout)
        hidden = sum(1 for row in table["rows"] if row.get("suppressed"))
        assert hidden <= len(table["rows"]) * 0.05, f"{name}: {hidden} of {len(table['rows'])} rows suppressed"
    shots = sorted(p.name for p in (target / "screenshots").glob("*.png"))
    assert {"sources.png", "raw.png", "derivatives.png", "spreadsheets.png"} <= set(shots)
    landings = json.loads(run_lithotse("raw", "ls", "--json", "--workspace", str(target)).stdout)
    assert {m["source"] for m in landings} == {"ehr", "fhir", "hl7"}
    assert all("/shared/" not in m["original_name"] for m in landings)
    assert (target / "sample-data" / "hl7v2" / "adt-2020.hl7").exists()
    assert not (target / ".demo-incomplete").exists()
    again = run_lithotse("demo", "--headless", "--workspace", "demo-workspace",
                         env={"QT_QPA_PLATFORM": "offscreen"}, timeout=600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "imported ehr: nothing new" in again.stdout
    check_printed_figures_and_next_steps(first.stdout + first.stderr, target)


def check_printed_figures_and_next_steps(output: str, target: Path) -> None:
    """What CI's newcomer check asserts on a fresh clone, here on the test's own run."""
    from lithotse_desktop.cache.lookup import lookup
    from lithotse_desktop.workspace import Workspace

    check = load_newcomer_check()
    specs = check.demo_specs(REPO)
    tables = {name: json.loads(run_lithotse("derive", "show", name, "--json", "--workspace", str(target)).stdout)
              for name in specs}
    report = check.check_figures(specs, check.parse_demo_output(output), tables)
    assert sorted(line.split(":")[0] for line in report) == sorted(specs)
    assert "  open the desktop app:" in output and "serve --workspace demo-workspace\n" in output
    # run from this checkout's .venv, the demo names its commands by full path; a clone's demo.sh
    # run names them .venv/bin/…, which is what the newcomer check looks for
    name, query = check.example_query(output.replace(str(Path(sys.executable).parent), ".venv/bin"))
    want, suppressed = check.expected_value(specs[name], tables[name], query)
    assert not suppressed and isinstance(want, int) and want > 0
    dims = {k: v for k, v in query.items() if k not in ("measure", "from", "to")}
    cell = lookup(Workspace.open(target), name, query["measure"], query.get("from"), query.get("to"), **dims)
    assert (cell.value, cell.suppressed) == (want, False)
    token = run_lithotse("token", "--workspace", str(target)).stdout.strip()
    assert token and token not in output


@pytest.fixture
def small_demo(monkeypatch):
    """The demo's generator with fewer patients, for tests that run the demo in-process."""
    import functools

    from lithotse_desktop.demo import synth

    monkeypatch.setattr(synth, "generate", functools.partial(synth.generate, patients=300))


def test_a_failed_demo_leaves_nothing_and_says_why(tmp_path, monkeypatch, small_demo):
    """An import that fails half-way (the HL7 source, after the others landed and built) removes
    the new workspace and the secrets its builds made; the next run starts afresh and succeeds."""
    from lithotse_desktop import demo
    from lithotse_desktop.errors import InputError
    from lithotse_desktop.secrets import SecretMissing, load_secret, secret_ref
    from lithotse_desktop.workspace import Workspace

    target = tmp_path / "demo-workspace"
    real = demo.import_and_build
    seen: dict[str, str] = {}

    def failing(ws, source, **kwargs):
        seen["id"] = ws.id
        if source == "hl7":
            raise InputError("sample-data/hl7v2/adt-2020.hl7, message 3", "segment 'PID' before MSH")
        return real(ws, source, **kwargs)

    monkeypatch.setattr(demo, "import_and_build", failing)
    lines: list[str] = []
    with pytest.raises(demo.DemoFailed) as failed:
        demo.run_demo(target, echo=lines.append)
    assert "adt-2020.hl7, message 3: segment 'PID' before MSH" in str(failed.value)
    assert "was removed" in str(failed.value)
    assert not target.exists()
    with pytest.raises(SecretMissing):
        load_secret(secret_ref(seen["id"], "hmac-key"))

    monkeypatch.setattr(demo, "import_and_build", real)
    ws = demo.run_demo(target, echo=lines.append)
    assert isinstance(ws, Workspace) and (target / "lithotse.toml").exists()
    assert not (target / demo.INCOMPLETE).exists()


def test_a_killed_demo_is_cleared_by_the_next_run_and_a_foreign_folder_is_refused(tmp_path, small_demo):
    from lithotse_desktop import demo

    target = tmp_path / "demo-workspace"
    (target / "data").mkdir(parents=True)
    (target / "lithotse.toml").write_text("[workspace]\n")
    (target / demo.INCOMPLETE).write_text("")
    lines: list[str] = []
    demo.run_demo(target, echo=lines.append)
    assert any("stopped before it was complete" in line for line in lines)
    assert not (target / demo.INCOMPLETE).exists()

    foreign = tmp_path / "reports"
    foreign.mkdir()
    (foreign / "q1.xlsx").write_bytes(b"keep me")
    with pytest.raises(demo.DemoFailed, match="already holds files and is not a Lithotse workspace"):
        demo.run_demo(foreign, echo=lines.append)
    assert [p.name for p in foreign.iterdir()] == ["q1.xlsx"]


def test_the_generator_is_deterministic_and_every_shape_names_its_patients(tmp_path):
    """Same seed, same bytes; CSV rows and HL7 PID-3 carry the patient id; every month of every
    department rests on more than 11 distinct patients (readable after k=11, counting people)."""
    import csv
    import hashlib
    from collections import defaultdict

    from lithotse_desktop.demo import synth

    def digest(folder: Path) -> dict[str, str]:
        return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    first = synth.generate(tmp_path / "a")
    synth.generate(tmp_path / "b")
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert first.patients == synth.PATIENTS and first.encounters > 20_000
    people: dict[tuple[str, str], set[str]] = defaultdict(set)
    with open(tmp_path / "a" / "csv" / "encounters.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            assert row["patient_id"].startswith("P")
            people[(row["admit_date"][:7], row["department"])].add(row["patient_id"])
    assert len(people) == 60 * len(synth.DEPARTMENTS)
    assert min(len(p) for p in people.values()) > 11
    adt = (tmp_path / "a" / "hl7v2" / "adt-2022.hl7").read_bytes().decode()
    pid = next(line for line in adt.splitlines() if line.startswith("PID|"))
    assert pid.split("|")[3].split("^")[0].startswith("P")


@pytest.mark.slow
def test_demo_runs_from_an_installed_wheel(tmp_path):
    """The issue's failure: `lithotse demo` from site-packages found no demo data. The wheel,
    installed into a folder of its own, runs the whole demo from an unrelated working folder."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(wheels), str(REPO)], check=True, timeout=600)
    site = tmp_path / "site"
    wheel = next(wheels.glob("lithotse_desktop-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, timeout=600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "QT_QPA_PLATFORM": "offscreen"}
    where = subprocess.run([sys.executable, "-c", "import lithotse_desktop; print(lithotse_desktop.__file__)"],
                           capture_output=True, text=True, env=env, cwd=elsewhere, check=True)
    assert where.stdout.strip().startswith(str(site)), "the installed copy is the one imported"
    run = subprocess.run([sys.executable, "-m", "lithotse_desktop", "demo", "--headless", "--workspace", "demo"],
                         capture_output=True, text=True, env=env, cwd=elsewhere, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "derivative visits_by_department (version" in run.stdout
    assert (elsewhere / "demo" / "sample-data" / "fhir" / "Encounter.ndjson").exists()
