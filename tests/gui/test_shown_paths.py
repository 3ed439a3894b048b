"""The pages the README's screenshots show carry no absolute folder of the machine that rendered
them: a demo-like workspace under tmp_path, opened from there, shows its paths relative."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QTextEdit,
    QWidget,
)


@pytest.fixture
def demo_like(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The demo's sources and derivatives over a smaller generated health system, all under
    tmp_path, started from tmp_path (as ``bash scripts/demo.sh`` starts from the clone)."""
    from lithotse_desktop import demo
    from lithotse_desktop.demo import synth
    from lithotse_desktop.jobs import import_and_build
    from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager

    monkeypatch.setattr(synth, "generate", functools.partial(synth.generate, patients=300))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    reset_plugin_manager()
    assert {"csv", "fhir-files", "hl7v2"} <= set(get_plugin_manager().connectors())
    ws = demo.demo_workspace(Path("demo-workspace"))
    for source in demo.DEMO_SOURCES:
        import_and_build(ws, source)
    yield ws
    reset_plugin_manager()


def visible_texts(root: QWidget) -> list[str]:
    """Every text a person can read on the widget tree: labels, fields, lists, tables and headers."""
    texts = [root.windowTitle()]
    for widget in [root, *root.findChildren(QWidget)]:
        if isinstance(widget, (QLabel, QLineEdit)):
            texts.append(widget.text())
        elif isinstance(widget, (QPlainTextEdit, QTextEdit)):
            texts.append(widget.toPlainText())
        elif isinstance(widget, QComboBox):
            texts += [widget.itemText(i) for i in range(widget.count())]
        elif isinstance(widget, QListWidget):
            texts += [widget.item(i).text() for i in range(widget.count())]
        elif isinstance(widget, QAbstractItemView) and widget.model() is not None:
            model = widget.model()
            for orientation, count in ((Qt.Orientation.Horizontal, model.columnCount()),
                                       (Qt.Orientation.Vertical, model.rowCount())):
                texts += [str(model.headerData(i, orientation) or "") for i in range(count)]
            texts += [str(model.index(r, c).data() or "") for r in range(model.rowCount())
                      for c in range(model.columnCount())]
    return texts


def test_screenshot_pages_show_paths_as_typed_not_as_this_machine_has_them(qtbot, demo_like, tmp_path):
    from lithotse_desktop.gui import jobs
    from lithotse_desktop.gui.window import MainWindow

    win = MainWindow(demo_like)
    qtbot.addWidget(win)
    shots = tmp_path / "shots"
    assert win.save_screenshots(shots)
    assert {"sources.png", "raw.png", "derivatives.png", "spreadsheets.png", "settings.png"} <= {
        p.name for p in shots.glob("*.png")}
    assert {where: problems for where, problems in win.cut_off.items() if problems} == {}, \
        "no text is cut off on any page, light or dark, at 1280x720 or 2560x1440 (200%)"
    assert len(win.cut_off) == 4 * 8
    win.show()
    texts = []
    for key in win.visible_pages():
        win.show_page(key)
        jobs.wait_for_jobs(10000)
        texts += visible_texts(win)
    texts.append(win.statusBar().currentMessage())
    leaks = sorted({t for t in texts if str(tmp_path) in t})
    assert leaks == []
    joined = "\n".join(texts)
    assert "path = demo-workspace/sample-data/csv" in joined, "the Sources page shows the csv folder as typed"
    assert '"demo-workspace/sample-data/hl7v2/' in joined, "the Raw page's cursor names files relative"
    assert win.settings.path.text() == "demo-workspace", "Settings shows the folder as given"
