from __future__ import annotations

import datetime as dt
import re

import pytest

from lithotse_desktop.excel import xlwings_addin as addin
from lithotse_desktop.excel.addin import install_addin
from lithotse_desktop.excel.workbook import Binding
from lithotse_desktop.derive.service import add_spec
from tests.cache.helpers import VISITS, build_sample, sample_rows
from tests.conftest import REPO


def test_udf_value_answers_like_the_cache(workspace, lines):
    build_sample(workspace, lines)
    assert addin.udf_value("visits", "n", "2024-01-01", dt.date(2024, 2, 29), "grp=a", ws=workspace) == 30
    assert addin.udf_value("visits", "n", 45292.0, None, ws=workspace) == 81  # Excel serial for 2024-01-01
    assert addin.udf_value("visits", "avg", dt.datetime(2024, 1, 1), "2024-01-01", ("grp=b",),
                           ws=workspace) == pytest.approx(6.5)
    assert addin.udf_value("visits", "nope", ws=workspace).startswith("error: visits: no measure 'nope'")
    assert "give dimensions as name=value" in addin.udf_value("visits", "n", None, None, "a", ws=workspace)


def test_udf_value_and_table_show_suppression(workspace, lines):
    add_spec(workspace, {**VISITS, "suppress_below": 13})
    build_sample(workspace, lines, rows=sample_rows(per_group={"a": 15, "b": 12, "c": 20}))
    assert addin.udf_value("visits", "n", None, None, "grp=b", ws=workspace) == "suppressed"
    rows = addin.udf_table("visits", "2024-01-01", "2024-01-31", "grp,n,suppressed", ws=workspace)
    assert rows == [["grp", "n", "suppressed"], ["a", "suppressed", True], ["b", "suppressed", True],
                    ["c", 20, False]]


def test_udf_table_spills_header_and_rows(workspace, lines):
    build_sample(workspace, lines)
    rows = addin.udf_table("visits", dt.date(2024, 3, 1), None, ws=workspace)
    assert rows[0] == ["period", "grp", "n", "total", "avg", "ids", "suppressed"]
    assert rows[1][:3] == [dt.date(2024, 3, 1), "a", 15]
    assert addin.udf_table("ghost", ws=workspace)[0][0].startswith("error: no derivative named 'ghost'")


def test_plain_helpers():
    assert addin.to_date(None) is None and addin.to_date("") is None
    assert addin.to_date(45351) == "2024-02-29"
    with pytest.raises(Exception, match="not a date"):
        addin.to_date("someday")
    assert addin.parse_dims(["grp=a", None, [" sex = F "]]) == {"grp": "a", "sex": "F"}
    bindings = [Binding("lithotse_visits", "visits", "S", "A1", "2024-01-01", None, ["grp"])]
    assert addin.bindings_from_rows(addin.bindings_to_rows(bindings)) == bindings
    moved = addin.with_range(bindings, dt.date(2024, 2, 1), "2024-03-31")
    assert (moved[0].from_, moved[0].to, moved[0].columns) == ("2024-02-01", "2024-03-31", ["grp"])
    with pytest.raises(Exception, match="after"):
        addin.with_range(bindings, "2024-05-01", "2024-01-01")
    assert addin.new_binding("visits", "S", "$B$2", bindings).table == "lithotse_visits_2"
    assert addin.new_binding("visits", "S", "$B$2", bindings).cell == "B2"


def test_refresh_plan_uses_the_core(workspace, lines):
    build_sample(workspace, lines)
    [(binding, version, rows)] = addin.refresh_plan(
        workspace, [Binding("t", "visits", "S", "A1", "2024-03-01", None, ["grp", "n"])])
    assert rows == [["grp", "n"], ["a", 15], ["b", 12]] and len(version) == 20


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
