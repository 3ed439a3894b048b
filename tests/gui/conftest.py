"""GUI test setup: Qt offscreen, in-process test connectors, a main window per test."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import pytest

from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
from tests.gui import slow_connector
from tests.support import lines_connector


@pytest.fixture(autouse=True)
def _desktop_look(qapp, tmp_path_factory):
    """Each GUI test starts as the app does: Fusion, the light palette, preferences in a private folder."""
    from PySide6.QtCore import QSettings

    from lithotse_desktop.gui.theme import apply_theme

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                      str(tmp_path_factory.mktemp("desktop-settings")))
    apply_theme("light", qapp)
    yield
    apply_theme("light", qapp)


@pytest.fixture
def test_plugins():
    """Only the in-process test connectors: ``lines`` and the endless ``slow`` one."""
    reset_plugin_manager()
    manager = get_plugin_manager()
    manager.register(lines_connector, "lines-test")
    manager.register(slow_connector, "slow-test")
    yield manager
    reset_plugin_manager()


@pytest.fixture
def window(qtbot, workspace, test_plugins):
    from PySide6.QtWidgets import QApplication

    from lithotse_desktop.gui import jobs
    from lithotse_desktop.gui.window import MainWindow

    win = MainWindow(workspace)
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    qtbot.waitUntil(lambda: not win.raw.busy, timeout=10000)
    yield win
    for page in (win.sources, win.plugins):
        if getattr(page, "job", None) is not None and hasattr(page.job, "cancel"):
            page.job.cancel()
    assert jobs.wait_for_jobs(60000)
    QApplication.processEvents()
    for widget in QApplication.topLevelWidgets():
        if widget.objectName() == "errorBox" or widget.isWindow() and widget is not win:
            widget.close()
