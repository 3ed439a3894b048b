"""The main window as a whole: pages, plugins, settings, screenshots, accessibility, --version."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QCalendarWidget, QComboBox, QMessageBox, QWidget

from lithotse_desktop.gui import app
from lithotse_desktop.hookspecs import hookimpl
from lithotse_desktop.pathtext import display_path
from lithotse_desktop.workspace import Workspace
from tests.gui.helpers import demo_workspace


class BrokenPlugin:
    @hookimpl
    def lithotse_register_connectors(self):
        raise RuntimeError("cannot find its schema files")


def plugin_rows(page) -> dict[str, list[str]]:
    table = page.table
    return {table.item(r, 0).text(): [table.item(r, c).text() for c in range(table.columnCount())]
            for r in range(table.rowCount())}


def test_plugins_page_lists_a_failing_plugin_with_its_error(qtbot, window, test_plugins):
    test_plugins.register(BrokenPlugin(), "broken-test")
    page = window.show_page("plugins")
    qtbot.mouseClick(page.reload_button, Qt.MouseButton.LeftButton)
    rows = plugin_rows(page)
    assert rows["lines-test"][3] == "lines" and rows["lines-test"][5] == "ok"
    assert rows["broken-test"][5] == ("error: hook lithotse_register_connectors raised "
                                      "RuntimeError: cannot find its schema files")
    page.table.setCurrentCell(page.row_of("broken-test"), 0)
    assert "cannot find its schema files" in page.details.toPlainText()
    assert not page.remove_button.isEnabled(), "in-process plugins have no distribution to remove"


@pytest.fixture
def redis_disabled(monkeypatch):
    """Set before the window's plugins load."""
    monkeypatch.setenv("LITHOTSE_DISABLE_PLUGINS", "redis")


def test_plugins_page_shows_a_disabled_plugin_and_why(qtbot, redis_disabled, window):
    page = window.show_page("plugins")
    assert plugin_rows(page)["redis"][5] == "disabled"
    page.table.setCurrentCell(page.row_of("redis"), 0)
    assert "Status: disabled" in page.details.toPlainText()
    assert "disabled by LITHOTSE_DISABLE_PLUGINS" in page.details.toPlainText()


def test_settings_page_shows_tiers_and_saves_suppression(qtbot, window, workspace):
    page = window.show_page("settings")
    assert page.path.text() == display_path(workspace.root)
    tiers = [[page.stores.item(r, c).text() for c in range(3)] for r in range(page.stores.rowCount())]
    assert tiers == [["Raw (L1)", "local", "data"], ["Derived (L2)", "local", "data"],
                     ["Cache (L3)", "local", "data"]]
    assert page.suppress.value() == 11
    assert page.secrets.text().startswith(f"The secrets file {os.environ['LITHOTSE_SECRETS_DIR']}")
    page.suppress.setFocus()
    page.suppress.selectAll()
    qtbot.keyClicks(page.suppress, "5")
    qtbot.mouseClick(page.save_button, Qt.MouseButton.LeftButton)
    assert Workspace.open(workspace.root).suppress_below == 5
    assert "Saved" in page.saved.text()


def test_ctrl_number_switches_pages(qtbot, window):
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    for number, key in enumerate(["sources", "raw", "derivatives", "spreadsheets", "plugins", "settings"], 1):
        qtbot.keyClick(window.sidebar, Qt.Key(Qt.Key.Key_0 + number), Qt.KeyboardModifier.ControlModifier)
        assert window.stack.currentWidget() is window.pages[key]
    window.sidebar.setFocus()
    qtbot.keyClick(window.sidebar, Qt.Key.Key_Up)
    assert window.stack.currentWidget() is window.pages["plugins"]


INTERNAL_PARENTS = (QCalendarWidget, QAbstractSpinBox, QComboBox)


def unnamed_controls(root: QWidget) -> list[str]:
    """Focusable widgets we created that a screen reader could not name."""
    missing = []
    for widget in [root, *root.findChildren(QWidget)]:
        if not widget.focusPolicy() & Qt.FocusPolicy.TabFocus:
            continue
        parent, internal = widget.parentWidget(), False
        while parent is not None and parent is not root:
            internal = internal or isinstance(parent, INTERNAL_PARENTS)
            parent = parent.parentWidget()
        if not internal and not widget.accessibleName():
            missing.append(f"{type(widget).__name__} {widget.objectName()!r} "
                           f"{getattr(widget, 'text', lambda: '')()!r}")
    return missing


def test_every_control_has_an_accessible_name(qtbot, window):
    assert unnamed_controls(window) == []
    dialog = window.sources.open_add_dialog()
    dialog.select_connector("lines")
    assert unnamed_controls(dialog) == []
    dialog.reject()
    form = window.derivatives.open_aggregate_form()
    for rows in (form.group_rows, form.measure_rows, form.filter_rows):
        qtbot.mouseClick(rows.add_button, Qt.MouseButton.LeftButton)
    assert unnamed_controls(form) == []
    form.reject()
    editor = window.derivatives.open_view_editor()
    assert unnamed_controls(editor) == []
    editor.reject()


def distinct_colours(path) -> int:
    image = QImage(str(path))
    assert not image.isNull()
    step = 7
    return len({image.pixel(x, y) for x in range(0, image.width(), step)
                for y in range(0, image.height(), step)})


def lightness(path) -> float:
    image = QImage(str(path))
    step = 11
    samples = [QColor(image.pixel(x, y)).lightness() for x in range(0, image.width(), step)
               for y in range(0, image.height(), step)]
    return sum(samples) / len(samples)


PICTURES = ["derivative-form.png", "derivatives.png", "plugins.png", "raw.png", "settings.png",
            "sources.png", "spreadsheets.png", "view-editor.png"]


def test_screenshot_option_renders_every_page_light_and_dark_at_two_sizes(qtbot, workspace, test_plugins,
                                                                          tmp_path, capsys):
    demo_workspace(workspace, tmp_path / "in")
    out = tmp_path / "shots"
    assert app.main(["--workspace", str(workspace.root), "--screenshot", str(out)]) == 0
    assert "cut off" not in capsys.readouterr().err, "every text fits"
    folders = {"": ("light", 1280, 720), "dark-1280x720": ("dark", 1280, 720),
               "light-2560x1440": ("light", 2560, 1440), "dark-2560x1440": ("dark", 2560, 1440)}
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(f for f in folders if f)
    for folder, (theme, width, height) in folders.items():
        where = out / folder
        assert sorted(p.name for p in where.glob("*.png")) == PICTURES
        for name in PICTURES:
            assert distinct_colours(where / name) > 1, (folder, name)
            image = QImage(str(where / name))
            if name not in ("derivative-form.png", "view-editor.png"):
                assert (image.width(), image.height()) == (width, height), (folder, name)
            assert (lightness(where / name) < 110) == (theme == "dark"), (folder, name)


def test_version_needs_no_display():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run([sys.executable, "-m", "lithotse_desktop.gui", "--version"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "lithotse-desktop 0.1.0"


def test_opening_another_workspace_switches_every_page(qtbot, window, tmp_path):
    other = tmp_path / "fresh"
    assert window.open_workspace(other)
    assert (other / "lithotse.toml").exists()
    assert window.settings.path.text() == display_path(other.resolve())
    assert window.sources.list.count() == 0
    qtbot.waitUntil(lambda: not window.raw.busy)
    assert window.raw.model.rowCount() == 0


def test_opening_a_folder_that_is_not_a_workspace_explains_why(qtbot, window, tmp_path):
    other = tmp_path / "stuff"
    other.mkdir()
    (other / "notes.txt").write_text("hello")
    assert not window.open_workspace(other)
    box = next(w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible())
    assert "not a Lithotse workspace" in box.text()
    box.accept()


def test_every_page_fits_a_1280x720_screen(qtbot, window):
    window.resize(1280, 720)
    for key in window.pages:
        window.show_page(key)
        hint = window.minimumSizeHint()
        assert hint.width() <= 1280 and hint.height() <= 720, (key, hint)
        assert window.size().width() == 1280 and window.size().height() == 720, key
