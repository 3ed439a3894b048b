from __future__ import annotations

import datetime as dt
import re

import pytest

from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.service import add_spec
from lithotse_desktop.excel import xlwings_addin as addin
from lithotse_desktop.excel.addin import install_addin
from lithotse_desktop.excel.workbook import Binding
from lithotse_desktop.serve.token import workspace_token
from tests.cache.helpers import VISITS, build_sample, free_port, sample_rows
from tests.conftest import REPO


def test_udf_value_answers_like_the_cache(workspace, lines, served):
    build_sample(workspace, lines)
    api = served()
    assert addin.udf_value("visits", "n", "2024-01-01", dt.date(2024, 2, 29), "grp", "a", client=api) == 30
    assert addin.udf_value("visits", "n", 45292.0, None, client=api) == 81  # Excel serial for 2024-01-01
    assert addin.udf_value("visits", "avg", dt.datetime(2024, 1, 1), "2024-01-01", ("grp", "b"),
                           client=api) == pytest.approx(6.5)
    assert addin.udf_value("visits", "n", None, None, "grp=a", client=api) == 45, "the older single form"
    assert addin.udf_value("visits", "nope", client=api).startswith("error: visits: no measure 'nope'")
    assert addin.udf_value("visits", "n", None, None, "grp", client=api) == \
        'error: dimension \'grp\' has no value: give dimensions as pairs, e.g. "grp","b"'
    assert addin.udf_value("ghost", "n", client=api).startswith("error: no derivative named 'ghost'")


def test_udf_value_and_table_show_suppression(workspace, lines, served):
    add_spec(workspace, {**VISITS, "suppress_below": 13})
    build_sample(workspace, lines, rows=sample_rows(per_group={"a": 15, "b": 12, "c": 20}))
    api = served()
    assert addin.udf_value("visits", "n", None, None, "grp", "b", client=api) == "suppressed"
    rows = addin.udf_table("visits", "2024-01-01", "2024-01-31", "grp,n,suppressed", client=api)
    assert rows == [["grp", "n", "suppressed"], ["a", "suppressed", True], ["b", "suppressed", True],
                    ["c", 20, False]]


def test_udf_table_spills_header_and_rows(workspace, lines, served):
    build_sample(workspace, lines)
    api = served()
    rows = addin.udf_table("visits", dt.date(2024, 3, 1), None, client=api)
    assert rows[0] == ["period", "grp", "n", "total", "avg", "ids", "suppressed"]
    assert rows[1][:3] == [dt.date(2024, 3, 1), "a", 15]
    assert addin.udf_table("ghost", client=api)[0][0].startswith("error: no derivative named 'ghost'")


def test_cells_read_the_workspace_port_and_token_and_say_when_nothing_serves(workspace, lines, served):
    build_sample(workspace, lines)
    port = free_port()
    workspace.config["serve"] = {"port": port}
    workspace.save()
    assert addin.udf_value("visits", "n") == (f"error: Lithotse is not serving on 127.0.0.1:{port} — "
                                               "open the desktop app or run lithotse serve")
    assert addin.udf_table("visits") == [[addin.udf_value("visits", "n")]]
    served(port)
    assert addin.udf_value("visits", "n", None, None, "grp", "a") == 45
    served.stop()
    rotated = workspace_token(workspace, rotate=True)
    served(port, token=rotated)
    assert addin.udf_value("visits", "n", None, None, "grp", "b") == 36, "a rotated token is read again"
    served.stop()
    moved = free_port()
    workspace.config["serve"] = {"port": moved}
    workspace.save()
    served(moved, token=rotated)
    assert addin.udf_value("visits", "n", None, None, "grp", "b") == 36, "a changed port is read again"


def test_plain_helpers():
    assert addin.to_date(None) is None and addin.to_date("") is None
    assert addin.to_date(45351) == "2024-02-29"
    with pytest.raises(Exception, match="not a date"):
        addin.to_date("someday")
    bindings = [Binding("lithotse_visits", "visits", "S", "A1", "2024-01-01", None, ["grp"])]
    assert addin.bindings_from_rows(addin.bindings_to_rows(bindings)) == bindings
    moved = addin.with_range(bindings, dt.date(2024, 2, 1), "2024-03-31")
    assert (moved[0].from_, moved[0].to, moved[0].columns) == ("2024-02-01", "2024-03-31", ["grp"])
    with pytest.raises(Exception, match="after"):
        addin.with_range(bindings, "2024-05-01", "2024-01-01")
    assert addin.new_binding("visits", "S", "$B$2", bindings).table == "lithotse_visits_2"
    assert addin.new_binding("visits", "S", "$B$2", bindings).cell == "B2"


def test_refresh_plan_reads_the_api(workspace, lines, served):
    build_sample(workspace, lines)
    [(binding, version, rows)] = addin.refresh_plan(
        [Binding("t", "visits", "S", "A1", "2024-03-01", None, ["grp", "n"])], served())
    assert rows == [["grp", "n"], ["a", 15], ["b", 12]]
    assert version == Catalog(workspace).current("visits").version


@pytest.mark.parametrize("platform", ["win32", "darwin", "linux"])
def test_install_addin_copies_sources_and_says_what_is_left(tmp_path, platform, monkeypatch):
    monkeypatch.setenv("APPDATA", str(tmp_path / "appdata"))
    report = install_addin(tmp_path / "addin", run_xlwings=False, platform=platform)
    assert sorted(p.name for p in report.copied) == ["Lithotse.bas", "customUI14.xml"]
    assert 'RunPython "import lithotse_desktop.excel.xlwings_addin' in (tmp_path / "addin" / "Lithotse.bas").read_text()
    text = report.text()
    if platform == "linux":
        assert "Excel does not run on this system" in text and "lithotse excel refresh" in text
    else:
        assert "Lithotse.xlam" in text and "lithotse_desktop.excel.xlwings_addin" in text
        assert ("XLSTART" in text) == (platform == "win32")
        assert ("Import Functions" in text) == (platform == "win32")


def test_ribbon_callbacks_exist_in_the_vba_module():
    xml = (REPO / "lithotse_desktop/excel/addin/customUI14.xml").read_text()
    vba = (REPO / "lithotse_desktop/excel/addin/Lithotse.bas").read_text()
    for callback in re.findall(r'onAction="(\w+)"', xml):
        assert f"Sub {callback}(control As IRibbonControl)" in vba
    for function in re.findall(r"a\.(\w+)\(\)", vba):
        assert callable(getattr(addin, function))


def test_no_xlwings_pro_or_licence_anywhere():
    """Only open-source xlwings: no pro/server modules, no licence key, in any shipped or test file."""
    banned = [re.compile(p) for p in (r"xlwings\s*\.\s*" + "pro", r"xlwings\s*\.\s*" + "server",
                                      r"from\s+xlwings\s+import\s+(pro|server)\b",
                                      "LICENSE" + "_KEY", "LICENCE" + "_KEY")]
    suffixes = {".py", ".bas", ".xml", ".toml", ".cfg", ".conf", ".md", ".txt", ".sh", ".json"}
    offenders = []
    for path in REPO.rglob("*"):
        parts = set(path.relative_to(REPO).parts)
        if path.suffix not in suffixes or parts & {".git", ".venv", "node_modules", "build", "__pycache__"}:
            continue
        text = path.read_text("utf-8", errors="ignore")
        offenders += [f"{path}: {p.pattern}" for p in banned if p.search(text)]
    assert offenders == []


def test_install_addin_runs_xlwings_in_process_where_excel_runs(tmp_path, monkeypatch):
    """The frozen app has no ``xlwings`` command, so its CLI runs in this process."""
    import sys
    import types

    seen = []
    fake = types.ModuleType("xlwings")
    fake.cli = types.SimpleNamespace(main=lambda: (seen.append(list(sys.argv)),
                                                   print("Successfully installed the xlwings add-in!")))
    monkeypatch.setitem(sys.modules, "xlwings", fake)
    monkeypatch.setenv("APPDATA", str(tmp_path / "appdata"))
    report = install_addin(tmp_path / "addin", platform="win32")
    assert seen == [["xlwings", "addin", "install"]] and sys.argv[0] != "xlwings"
    assert report.xlwings == "ran 'xlwings addin install': Successfully installed the xlwings add-in!"

    def refuse():
        raise SystemExit("Error: The '--glob' option is only supported on Windows.")

    fake.cli = types.SimpleNamespace(main=refuse)
    assert install_addin(tmp_path / "addin", platform="darwin").xlwings.startswith(
        "'xlwings addin install' failed: ")


def test_install_addin_without_xlwings_says_to_reinstall_not_to_pip_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "xlwings", None)
    report = install_addin(tmp_path / "addin", platform="win32")
    assert "part of Lithotse on Windows and macOS" in report.xlwings and "pip" not in report.text()
