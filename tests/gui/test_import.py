"""Sources & Import, acting as a user: add a source, pick dates, import, cancel, see errors."""

from __future__ import annotations

import datetime as dt

import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLineEdit

from lithotse_desktop.gui.pages.sources import AddSourceDialog
from lithotse_desktop.raw import run_import
from lithotse_desktop.secrets import load_secret
from tests.gui.helpers import click_date, open_message_box


def add_source_by_typing(qtbot, window, name: str, connector: str, fields: dict[str, str]) -> AddSourceDialog:
    page = window.show_page("sources")
    qtbot.mouseClick(page.add_button, Qt.MouseButton.LeftButton)
    dialog = next(w for w in QApplication.topLevelWidgets() if isinstance(w, AddSourceDialog))
    qtbot.waitExposed(dialog)
    qtbot.keyClicks(dialog.name_edit, name)
    dialog.select_connector(connector)
    for field, text in fields.items():
        qtbot.keyClicks(dialog.form.editor(field), text)
    qtbot.mouseClick(dialog.ok, Qt.MouseButton.LeftButton)
    return dialog


def landings_shown(window) -> list[dict]:
    model = window.raw.model
    return [m.to_json() for m in model.rows]


def test_add_source_pick_range_import_and_see_landing(qtbot, window, workspace, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("2024-01-01,1\n2024-01-15,2\n2024-02-01,3\n2023-12-31,4\n")
    dialog = add_source_by_typing(qtbot, window, "vals", "lines",
                                  {"path": str(folder), "token": "s3cret"})
    qtbot.waitUntil(lambda: not shiboken6.isValid(dialog) or not dialog.isVisible(), timeout=10000)
    src = workspace.source("vals")
    assert src.settings == {"path": str(folder)}
    assert load_secret(src.secrets["token"]) == "s3cret"
    assert "s3cret" not in (workspace.root / "lithotse.toml").read_text()

    page = window.sources
    assert page.selected_source() == "vals"
    qtbot.waitUntil(lambda: page.streams.count() == 1)
    assert page.streams.item(0).text() == "values"
    click_date(qtbot, page.picker.calendar, dt.date(2024, 1, 1))
    click_date(qtbot, page.picker.calendar, dt.date(2024, 1, 31))
    qtbot.mouseClick(page.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.job is None and "Imported" in page.strip.status.text(), timeout=20000)
    assert page.strip.status.text() == ("Imported 2 new records from vals dated between 1 Jan and 31 Jan 2024 "
                                        "(2 more records outside 1 Jan 2024 to 31 Jan 2024 stored, not counted).")
    assert not page.strip.bar.isVisible()
    assert not page.summary.isVisible(), "the technical lines are folded away"
    qtbot.mouseClick(page.details_button, Qt.MouseButton.LeftButton)
    assert page.summary.isVisible()
    assert page.summary.toPlainText().startswith("values ← a.txt: 4 records (2 in the range, 2 outside), 52 bytes")
    qtbot.waitUntil(lambda: "· 4 records" in page.list.item(0).text(), timeout=5000)
    assert page.list.item(0).text().endswith("· 4 records\nbetween 31 Dec 2023 and 1 Feb 2024")

    window.show_page("raw")
    qtbot.waitUntil(lambda: len(landings_shown(window)) == 1, timeout=10000)
    [row] = landings_shown(window)
    assert (row["source"], row["stream"], row["original_name"]) == ("vals", "values", "a.txt")
    assert (row["records"], row["records_in_range"], row["records_out_of_range"]) == (4, 2, 2)
    table = window.raw.table
    cells = [table.model().index(0, c).data() for c in range(table.model().columnCount())]
    assert cells[1:] == ["vals", "values", "a.txt", "4", "2", "2023-12-31", "2024-02-01", "52 bytes"]
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton,
                     pos=table.visualRect(table.model().index(0, 3)).center())
    sheet = {key: label.text() for key, label in window.raw.sheet.items()}
    assert sheet["file"] == "a.txt" and sheet["stream"] == "values"
    assert sheet["records"] == "4 records; 2 dated within 1 Jan 2024 to 31 Jan 2024, 2 outside (stored, not counted)"
    assert sheet["dates"] == "Between 31 Dec 2023 and 1 Feb 2024"
    assert sheet["imported"].endswith(f"by {row['user']} on {row['host']}")
    assert not window.raw.manifest_view.isVisible(), "the manifest waits behind Technical details"
    qtbot.mouseClick(window.raw.technical, Qt.MouseButton.LeftButton)
    assert f'"id": "{row["id"]}"' in window.raw.manifest_view.toPlainText()

    qtbot.mouseClick(page.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.job is None and "Nothing new" in page.strip.status.text(), timeout=20000)


def test_add_source_dialog_explains_a_missing_required_field(qtbot, window, workspace):
    dialog = add_source_by_typing(qtbot, window, "vals", "lines", {})
    assert dialog.isVisible()
    assert "setting path is required" in dialog.error.text()
    dialog.name_edit.clear()
    qtbot.keyClicks(dialog.name_edit, "9bad")
    qtbot.keyClicks(dialog.form.editor("path"), "/tmp")
    qtbot.mouseClick(dialog.ok, Qt.MouseButton.LeftButton)
    assert "use a letter first" in dialog.error.text()
    assert workspace.sources() == []
    dialog.reject()


def test_cancel_a_long_import(qtbot, window, workspace):
    workspace.add_source("slowsrc", "slow", {}, {})
    page = window.sources
    page.reload(select="slowsrc")
    qtbot.mouseClick(page.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "records read" in page.strip.status.text(), timeout=10000)
    assert page.strip.cancel.isEnabled()
    assert not page.import_button.isEnabled()
    qtbot.mouseClick(page.strip.cancel, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.job is None, timeout=10000)
    assert page.strip.status.text() == "Import cancelled."
    assert page.import_button.isEnabled()
    assert list(workspace.store("raw").list("")) == []


def test_cancel_during_the_builds_after_an_import_keeps_the_import_and_says_so(qtbot, window, workspace, tmp_path):
    """Import, then Cancel while a derivative the import rebuilds runs a long query: the import
    and the build before it stay, and the page says what was kept (not "nothing was written")."""
    from lithotse_desktop.derive.catalog import Catalog
    from lithotse_desktop.derive.service import add_spec
    from tests.gui.helpers import SLOW_SPEC, VISITS_SPEC, demo_workspace

    demo_workspace(workspace, tmp_path / "in", build_it=False)
    add_spec(workspace, VISITS_SPEC)
    Catalog(workspace).save_spec(SLOW_SPEC)  # unchecked: checking it would run it
    (tmp_path / "in" / "late.txt").write_text("2024-03-05,4,a,late-1\n")
    page = window.sources
    page.reload(select="clinic")
    click_date(qtbot, page.picker.calendar, dt.date(2024, 1, 1))
    click_date(qtbot, page.picker.calendar, dt.date(2024, 12, 31))
    qtbot.mouseClick(page.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "computing visits_slow" in page.strip.status.text(), timeout=30000)
    qtbot.wait(300)
    qtbot.mouseClick(page.strip.cancel, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.job is None, timeout=30000)
    built = Catalog(workspace).current("visits_by_grp")
    assert built is not None and Catalog(workspace).current("visits_slow") is None
    assert page.strip.status.text() == (f"Cancelled after the import of 1 object(s) from clinic; the build of "
                                        f"visits_by_grp (version {built.version}).")
    assert "The builds after it were cancelled" in page.summary.toPlainText()
    qtbot.waitUntil(lambda: len(landings_shown(window)) == 2, timeout=10000)  # the raw page shows the new landing


def test_import_error_shows_readable_message_with_details(qtbot, window, workspace, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "b.txt").write_text("2024-03-01,4\nnot a line\n")
    workspace.add_source("bad", "lines", {"path": str(folder)}, {})
    page = window.sources
    page.reload(select="bad")
    qtbot.mouseClick(page.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: open_message_box() is not None, timeout=20000)
    box = open_message_box()
    assert box.windowTitle() == "Import failed"
    assert box.text().startswith("b.txt, line 2: expected DATE,INTEGER")
    assert "Traceback" not in box.text()
    assert "Where: b.txt, line 2" in box.detailedText()
    assert "Traceback" in box.detailedText()
    box.accept()
    qtbot.waitUntil(lambda: open_message_box() is None)
    assert page.strip.status.text().startswith("Import failed: b.txt, line 2")
    assert not page.strip.bar.isVisible(), "no full progress bar after a failure"
    assert list(workspace.store("raw").list("")) == []

    other = tmp_path / "good"
    other.mkdir()
    workspace.add_source("good", "lines", {"path": str(other)}, {})
    page.reload(select="bad")
    item = next(page.list.item(i) for i in range(page.list.count()) if page.list.item(i).text().startswith("good"))
    qtbot.mouseClick(page.list.viewport(), Qt.MouseButton.LeftButton, pos=page.list.visualItemRect(item).center())
    assert page.selected_source() == "good"
    assert "failed" not in page.strip.status.text(), "the previous source's message is gone"


def test_a_missing_folder_is_refused_in_red_and_a_source_can_be_edited(qtbot, window, workspace, tmp_path):
    dialog = add_source_by_typing(qtbot, window, "vals", "lines", {"path": str(tmp_path / "nowhere")})
    qtbot.waitUntil(lambda: dialog.error.isVisible(), timeout=10000)
    assert dialog.error.text() == f"Folder: {tmp_path / 'nowhere'} does not exist"
    assert dialog.error.palette().color(dialog.error.foregroundRole()).red() > 100
    assert workspace.sources() == []
    (tmp_path / "nowhere").mkdir()
    qtbot.mouseClick(dialog.ok, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(workspace.sources()) == 1, timeout=10000)
    assert workspace.source("vals").settings == {"path": str(tmp_path / "nowhere")}

    page = window.sources
    qtbot.mouseClick(page.edit_button, Qt.MouseButton.LeftButton)
    edit = next(w for w in QApplication.topLevelWidgets() if isinstance(w, AddSourceDialog) and w.isVisible())
    assert edit.name_edit.isReadOnly() and edit.form.editor("path").text() == str(tmp_path / "nowhere")
    (tmp_path / "elsewhere").mkdir()
    edit.form.editor("path").clear()
    qtbot.keyClicks(edit.form.editor("path"), str(tmp_path / "elsewhere"))
    qtbot.mouseClick(edit.ok, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "elsewhere" in str(workspace.source("vals").settings), timeout=10000)
    assert workspace.source("vals").settings == {"path": str(tmp_path / "elsewhere")}


def test_secret_field_is_a_password_box(qtbot, window):
    page = window.show_page("sources")
    dialog = page.open_add_dialog()
    dialog.select_connector("lines")
    token = dialog.form.editor("token")
    assert isinstance(token, QLineEdit)
    assert token.echoMode() == QLineEdit.EchoMode.Password
    dialog.reject()


def test_source_whose_connector_is_missing_says_why(qtbot, window, workspace):
    # a source whose plugin was removed after it was configured
    workspace.config.setdefault("sources", {})["gone"] = {"connector": "nosuch", "settings": {}, "secrets": {}}
    workspace.save()
    page = window.sources
    page.reload(select="gone")
    qtbot.waitUntil(lambda: not page.streams_loading)
    assert "Cannot open this source: no connector named 'nosuch'" in page.details.text()
    assert page.streams.count() == 0


def test_raw_page_filter_narrows_the_table(qtbot, window, workspace, tmp_path):
    for name in ("north", "south"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"{name}.txt").write_text("2024-01-01,1\n")
        workspace.add_source(name, "lines", {"path": str(folder)}, {})
        run_import(workspace, name)
    page = window.show_page("raw")
    qtbot.mouseClick(page.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.proxy.rowCount() == 2)
    qtbot.keyClicks(page.filter, "sou")
    assert page.proxy.rowCount() == 1
    assert page.proxy.index(0, 1).data() == "south"
    page.table.selectRow(0)
    assert '"source": "south"' in page.manifest_view.toPlainText()


def test_closing_a_half_filled_source_asks_first(qtbot, window, workspace, tmp_path):
    from PySide6.QtWidgets import QMessageBox

    page = window.show_page("sources")
    qtbot.mouseClick(page.add_button, Qt.MouseButton.LeftButton)
    dialog = next(w for w in QApplication.topLevelWidgets() if isinstance(w, AddSourceDialog) and w.isVisible())
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not shiboken6.isValid(dialog) or not dialog.isVisible(), timeout=3000)

    qtbot.mouseClick(page.add_button, Qt.MouseButton.LeftButton)
    dialog = next(w for w in QApplication.topLevelWidgets() if isinstance(w, AddSourceDialog) and w.isVisible())
    qtbot.keyClicks(dialog.name_edit, "clinic")
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    box = next(w for w in QApplication.topLevelWidgets() if w.objectName() == "confirmDiscard" and w.isVisible())
    assert box.text() == "Discard this new source?"
    qtbot.mouseClick(box.button(QMessageBox.StandardButton.Cancel), Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and dialog.name_edit.text() == "clinic"
    qtbot.mouseClick(dialog.buttons.button(dialog.buttons.StandardButton.Cancel), Qt.MouseButton.LeftButton)
    box = next(w for w in QApplication.topLevelWidgets() if w.objectName() == "confirmDiscard" and w.isVisible())
    qtbot.mouseClick(box.button(QMessageBox.StandardButton.Discard), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not shiboken6.isValid(dialog) or not dialog.isVisible(), timeout=3000)
    assert workspace.sources() == []


def test_raw_page_shows_every_column_on_a_1280x720_screen(qtbot, window, workspace, tmp_path):
    folder = tmp_path / "clinic"
    folder.mkdir()
    (folder / "observations-2024.txt").write_text("".join(f"2024-01-{d:02d},{d}\n" for d in range(1, 29)) * 400)
    workspace.add_source("clinic", "lines", {"path": str(folder)}, {})
    run_import(workspace, "clinic")
    window.resize(1280, 720)
    page = window.show_page("raw")
    qtbot.mouseClick(page.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.proxy.rowCount() == 1)
    page.table.selectRow(0)
    qtbot.wait(50)
    assert page.table.horizontalScrollBar().maximum() == 0, "the table needs scrolling sideways at 1280x720"
