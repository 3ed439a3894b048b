"""xlwings is declared (open-source part only) where Excel runs, bundled there, and absent on Linux."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import tomllib

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO


def _bundle_module():
    spec = importlib.util.spec_from_file_location("xlwings_bundle", REPO / "packaging" / "xlwings_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _xlwings_requirements(lines: list[str]) -> list[Requirement]:
    return [r for r in map(Requirement, lines) if r.name.lower().startswith("xlwings")]


@pytest.mark.parametrize("platform, wanted", [("win32", True), ("darwin", True), ("linux", False)])
def test_the_core_declares_xlwings_only_where_excel_runs(platform, wanted):
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    [req] = _xlwings_requirements(declared)
    assert req.name == "xlwings" and not req.extras, "the open-source distribution, no extras"
    assert req.marker is not None
    assert req.marker.evaluate({"sys_platform": platform}) is wanted


def test_the_installed_metadata_carries_the_marker_and_linux_stays_without_xlwings():
    [req] = _xlwings_requirements(md.requires("lithotse-desktop") or [])
    assert req.marker is not None and not req.marker.evaluate({"sys_platform": "linux"})
    with pytest.raises(md.PackageNotFoundError):
        md.distribution("xlwings")


def test_the_frozen_app_bundles_the_open_source_part_where_excel_runs():
    bundle = _bundle_module()
    assert bundle.xlwings_parts("linux") == ([], [], [])
    assert [bundle.excel_runs_on(p) for p in ("win32", "darwin", "linux")] == [True, True, False]
    keep = bundle.open_source_module
    assert keep("xlwings") and keep("xlwings.main") and keep("xlwings.conversion.standard")
    assert sorted(bundle.NOT_SHIPPED) == ["pro", "server"]
    for part in bundle.NOT_SHIPPED:
        assert not keep(f"xlwings.{part}") and not keep(f"xlwings.{part}.module")
        assert keep(f"xlwings.{part}ish"), "only those subpackages themselves are left out"
    with pytest.raises(SystemExit, match="xlwings is a dependency of Lithotse on Windows and macOS"):
        bundle.xlwings_parts("win32")  # xlwings is (rightly) not installed on this Linux machine
    spec = (REPO / "packaging" / "lithotse.spec").read_text()
    assert "xlwings_parts()" in spec and "binaries=binaries" in spec
