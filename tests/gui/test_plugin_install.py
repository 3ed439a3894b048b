"""Installing a plugin from a wheel built here, seeing it listed, then removing it (runs pip: slow)."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox

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


def build_wheel(folder: Path) -> Path:
    """Write a pure-Python wheel by hand (zip + dist-info + RECORD), so no build backend is needed."""
    info = f"{MODULE_NAME}-{VERSION}.dist-info"
    files = {
        f"{MODULE_NAME}.py": MODULE.encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {VERSION}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: lithotse-tests\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
        f"{info}/entry_points.txt": f"[lithotse]\nguitest = {MODULE_NAME}\n".encode(),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    path = folder / f"{MODULE_NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


@pytest.fixture
def wheel(tmp_path):
    yield build_wheel(tmp_path)
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
