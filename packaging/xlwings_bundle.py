"""What the frozen app carries of xlwings: its open-source part, on the platforms where Excel runs.

xlwings is a dependency of Lithotse on Windows and macOS only (see pyproject.toml), so the
Linux app never contains it. Its ``pro`` and ``server`` parts are not open source and are
never bundled. Imported by ``lithotse.spec``; plain functions, so tests can check the rules.
"""

from __future__ import annotations

import importlib.util
import sys

EXCEL_PLATFORMS = ("win32", "darwin")
NOT_SHIPPED = ("pro", "server")  # subpackages of xlwings outside its open-source licence


def excel_runs_on(platform: str = sys.platform) -> bool:
    return platform in EXCEL_PLATFORMS


def open_source_module(name: str) -> bool:
    """Whether an xlwings module (a dotted name) belongs to its open-source part."""
    parts = name.split(".")
    return not (parts[0] == "xlwings" and len(parts) > 1 and parts[1] in NOT_SHIPPED)


def xlwings_parts(platform: str = sys.platform) -> tuple[list[str], list, list]:
    """``(hiddenimports, datas, binaries)`` for xlwings; empty where Excel does not run."""
    if not excel_runs_on(platform):
        return [], [], []
    if importlib.util.find_spec("xlwings") is None:
        raise SystemExit("xlwings is a dependency of Lithotse on Windows and macOS but is not installed "
                         "in the Python building the app; run: bash scripts/setup.sh (or pip install -e .)")
    from PyInstaller.utils.hooks import collect_data_files, collect_dynamic_libs, collect_submodules, copy_metadata

    hidden = collect_submodules("xlwings", filter=open_source_module)
    datas = collect_data_files("xlwings", excludes=["pro", "pro/**", "**/pro/**"]) + copy_metadata("xlwings")
    binaries = collect_dynamic_libs("xlwings")
    return hidden, datas, binaries
