"""Installing a plugin from a wheel built here, seeing it listed, then removing it (runs pip: slow)."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox

from tests.support.wheels import SHARED_VENV, build_plugin_wheel

pytestmark = SHARED_VENV

DIST = "lithotse-guitest-plugin"
MODULE_NAME = "lithotse_guitest_plugin"
VERSION = "0.3.1"

MODULE = '''
from lithotse_desktop.connectors import Connector, StreamInfo
from lithotse_desktop.hookspecs import hookimpl

class GuiTestConnector(Connector):
    name = "guitest"
    version = "0.3.1"
    title = "GUI test connector"

    def streams(self):
        return [StreamInfo("things")]


@hookimpl
def lithotse_register_connectors():
    return [GuiTestConnector]
'''


def _installed() -> bool:
    try:
        md.distribution(DIST)
    except md.PackageNotFoundError:
        return False
    return True


@pytest.fixture
def wheel(tmp_path):
    yield build_plugin_wheel(tmp_path, DIST, MODULE_NAME, VERSION, "guitest", MODULE)
    if _installed():
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", DIST], capture_output=True)


@pytest.mark.slow
def test_install_from_wheel_then_remove(qtbot, window, wheel, monkeypatch):
    page = window.show_page("plugins")
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(wheel), "Python wheels (*.whl)")))
    qtbot.mouseClick(page.wheel_button, Qt.MouseButton.LeftButton)
    assert not page.wheel_button.isEnabled(), "buttons wait while pip runs"
    qtbot.waitUntil(lambda: page.job is None, timeout=120000)
    assert page.strip.status.text() == "Installed: guitest."
    row = page.row_of("guitest")
    assert row >= 0
    cells = [page.table.item(row, c).text() for c in range(page.table.columnCount())]
    assert cells[:4] == ["guitest", DIST, "0.3.1", "guitest"]
    assert cells[4].startswith("file://") and cells[4].endswith(".whl")
    assert cells[5] == "ok"

    dialog = window.sources.open_add_dialog()
    assert dialog.connector_box.findData("guitest") >= 0, "the new connector is offered at once"
    dialog.reject()

    page.table.setCurrentCell(row, 0)
    monkeypatch.setattr(QMessageBox, "question",
                        staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    qtbot.mouseClick(page.remove_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.job is None, timeout=120000)
    assert page.strip.status.text() == f"Removed {DIST}."
    assert page.row_of("guitest") == -1
    assert not _installed()
