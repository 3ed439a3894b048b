"""Derivatives, acting as a user: build an aggregate through the form, see rows and chart, fix errors."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette

from lithotse_desktop.derive.catalog import Catalog
from lithotse_desktop.derive.service import add_spec
from tests.gui.helpers import SLOW_SPEC, VISITS_SPEC, demo_workspace, visit_records


def combo_items(combo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def pick(combo, text: str) -> None:
    index = combo.findText(text)
    assert index >= 0, (text, combo_items(combo))
    combo.setCurrentIndex(index)


def open_form(qtbot, page):
    qtbot.mouseClick(page.new_aggregate, Qt.MouseButton.LeftButton)
    dialog = page.dialog
    qtbot.waitExposed(dialog)
    qtbot.waitUntil(lambda: dialog.schema_known, timeout=10000)
    return dialog


def test_create_an_aggregate_through_the_form_and_see_rows_and_chart(qtbot, window, workspace, tmp_path):
    demo_workspace(workspace, tmp_path / "in", build_it=False)
    page = window.show_page("derivatives")
    dialog = open_form(qtbot, page)
    assert combo_items(dialog.input_box) == [f"clinic › values ({visit_records(tmp_path / 'in')} records)"]
    assert dialog.schema_note.text() == "4 columns: id (text), day (date), value (number), grp (text)."
    assert dialog.date_field.currentText() == "day", "the stream's declared date field is preselected"
    assert combo_items(dialog.date_field) == ["(none)", "day"], "only columns that hold dates"

    qtbot.keyClicks(dialog.name_edit, "visits_by_grp")
    qtbot.mouseClick(dialog.group_rows.add_button, Qt.MouseButton.LeftButton)
    [group] = dialog.group_rows.rows
    assert combo_items(group.column) == ["(choose a column)", "id", "day", "value", "grp"], \
        "columns come from the real data, none chosen for you"
    assert group.value() is None
    pick(group.column, "grp")
    [count] = dialog.measure_rows.rows
    assert (count.fn.currentText(), count.column.currentText(), count.alias.text()) == ("count", "(all records)", "n")
    count.alias.clear()
    qtbot.keyClicks(count.alias, "visits")
    qtbot.mouseClick(dialog.measure_rows.add_button, Qt.MouseButton.LeftButton)
    total = dialog.measure_rows.rows[1]
    pick(total.fn, "sum")
    assert combo_items(total.column) == ["value"], "sum offers numeric columns only"
    assert total.alias.text() == "sum_value"
    assert dialog.suppress.value() == 11, "the workspace default"

    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.dialog is None, timeout=10000)
    qtbot.waitUntil(lambda: page.job is None and "Built" in page.strip.status.text(), timeout=20000)
    assert page.strip.status.text() == "Built visits_by_grp: 24 rows."
    spec = Catalog(workspace).spec("visits_by_grp")
    assert spec["group_by"] == ["grp"] and spec["measures"][1] == {"fn": "sum", "column": "value", "as": "sum_value"}

    qtbot.waitUntil(lambda: page.shown is not None and page.shown.table is not None, timeout=10000)
    assert page.table.item(0, 0).text() == "visits_by_grp"
    assert page.table.item(0, 3).text() == "24"
    model = page.model
    assert model.rowCount() == 24
    headers = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    assert headers == ["period", "grp", "visits", "sum_value", "suppressed"]
    rows = [[model.data(model.index(r, c)) for c in range(model.columnCount())] for r in range(3)]
    assert rows[0] == ["2024-01-01", "a", "28", "406", "no"]
    assert rows[2] == ["2024-01-01", "c", "suppressed", "suppressed", "yes"], "3 records < 11"
    assert "Suppression counts records: the input declares no person key." in page.preview_note.text()

    page.show_chart()
    assert page.chart.series_names() == ["a", "b", "c", "d"]
    assert "6 period(s) with suppressed cells, shaded" in page.chart.note.text()
    page.chart.measure.setCurrentText("sum_value")
    assert page.chart.lines[0].points[0] == (dt.date(2024, 1, 1), 406.0)

    qtbot.mouseClick(page.tabs.tabBar(), Qt.MouseButton.LeftButton,
                     pos=page.tabs.tabBar().tabRect(2).center())
    top = [page.lineage.topLevelItem(i).text(0) for i in range(page.lineage.topLevelItemCount())]
    assert top[:2] == ["name", "version"] and "inputs" in top
    counted = page.lineage.topLevelItem(top.index("suppression counts"))
    assert counted.text(1).startswith("Suppression counts records"), counted.text(1)


def test_a_bad_spec_shows_the_error_next_to_its_field(qtbot, window, workspace, tmp_path):
    demo_workspace(workspace, tmp_path / "in", build_it=False)
    page = window.show_page("derivatives")
    dialog = open_form(qtbot, page)
    qtbot.keyClicks(dialog.name_edit, "bad")
    [count] = dialog.measure_rows.rows
    count.alias.clear()
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: count.error.isVisible(), timeout=10000)
    assert "'' is not a valid output name" in count.error.text()
    assert dialog.isVisible() and Catalog(workspace).names() == []

    qtbot.keyClicks(count.alias, "n")
    qtbot.keyClicks(dialog.from_edit, "2024-13-01")
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.errors["from"].isVisible(), timeout=10000)
    assert not count.error.isVisible(), "errors of the previous attempt are cleared"
    assert "2024-13-01" in dialog.errors["from"].text()

    dialog.from_edit.clear()
    qtbot.mouseClick(dialog.filter_rows.add_button, Qt.MouseButton.LeftButton)
    [flt] = dialog.filter_rows.rows
    pick(flt.column, "grp")
    pick(flt.op, "in")
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: flt.error.isVisible(), timeout=10000)
    assert "needs a non-empty list" in flt.error.text()
    assert dialog.focusWidget() is flt.value_edit

    qtbot.keyClicks(flt.value_edit, "a, b")
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.dialog is None, timeout=10000)
    assert Catalog(workspace).spec("bad")["filters"] == [{"column": "grp", "op": "in", "value": ["a", "b"]}]
    qtbot.waitUntil(lambda: page.job is None, timeout=20000)


def test_editing_keeps_what_the_form_does_not_show(qtbot, window, workspace, tmp_path):
    demo_workspace(workspace, tmp_path / "in", build_it=False)
    from lithotse_desktop.derive.service import add_spec

    add_spec(workspace, {**VISITS_SPEC, "pseudonymize": ["grp"],
                         "filters": [{"column": "value", "op": ">", "value": 2}]})
    page = window.show_page("derivatives")
    qtbot.mouseClick(page.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.selected_name() == "visits_by_grp", timeout=10000)
    qtbot.mouseClick(page.edit_button, Qt.MouseButton.LeftButton)
    dialog = page.dialog
    qtbot.waitUntil(lambda: dialog.schema_known, timeout=10000)
    assert dialog.name_edit.isReadOnly()
    assert dialog.filter_rows.rows[0].value() == {"column": "value", "op": ">", "value": 2}, "typed as the column"
    assert [r.value() for r in dialog.group_rows.rows] == ["grp"]
    dialog.grain.setCurrentText("quarter")
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.dialog is None, timeout=10000)
    spec = Catalog(workspace).spec("visits_by_grp")
    assert spec["grain"] == "quarter" and spec["pseudonymize"] == ["grp"]
    qtbot.waitUntil(lambda: page.job is None, timeout=20000)


def wait_checked(qtbot, editor):
    with qtbot.waitSignal(editor.checked, timeout=3000) as blocker:
        pass
    return blocker.args[0]


def test_view_editor_flags_bad_json_and_bad_fhirpath_as_you_type(qtbot, window):
    editor = window.derivatives.open_view_editor()
    qtbot.waitExposed(editor)
    assert editor.status.text().startswith("✓")
    editor.editor.selectAll()
    qtbot.keyClicks(editor.editor, '{"resource": "Patient",')
    qtbot.keyClick(editor.editor, Qt.Key.Key_Return)
    qtbot.keyClicks(editor.editor, ' "select": [}')
    assert not editor.save_button.isEnabled(), "nothing is saved while a check is pending"
    problem = wait_checked(qtbot, editor)
    assert problem.startswith("JSON syntax error at line 2, column")
    assert "line 2" in editor.status.text()
    assert len(editor.editor.extraSelections()) == 1, "the bad line is highlighted"

    editor.editor.setPlainText(json.dumps({"resource": "Patient", "select": [
        {"column": [{"name": "id", "path": "getResourceKey()"}, {"name": "g", "path": "gender.where("}]}]}))
    problem = wait_checked(qtbot, editor)
    assert "select[0].column[1].path: cannot parse FHIRPath" in problem
    assert not editor.save_button.isEnabled()
    assert editor.editor.extraSelections() == []

    editor.editor.setPlainText(json.dumps({"resource": "Patient", "select": [{"column": [
        {"name": "id", "path": "getResourceKey()"}, {"name": "g", "path": "gender.nonsense()"}]}]}))
    assert "unknown FHIRPath function nonsense()" in wait_checked(qtbot, editor)
    editor.template.setCurrentIndex(editor.template.findText("PatientDemographics"))
    editor.template.activated.emit(editor.template.currentIndex())
    assert editor.problem == "" and editor.save_button.isEnabled()
    assert editor.name_edit.text() == "patient_demographics"
    editor.reject()


@pytest.fixture
def fhir_plugins():
    from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager

    reset_plugin_manager()
    manager = get_plugin_manager()
    assert "fhir-files" in manager.connectors(), "the lithotse-fhir plugin is installed by scripts/setup.sh"
    yield manager
    reset_plugin_manager()


def test_a_view_over_real_fhir_data_is_saved_built_and_previewed(qtbot, workspace, fhir_plugins):
    from lithotse_desktop.gui import jobs
    from lithotse_desktop.gui.window import MainWindow
    from lithotse_desktop.raw import run_import
    from tests.conftest import TEST_DATA

    folder = TEST_DATA / "fhir" / "ndjson-pathling-synthea-r4"
    workspace.add_source("ehr", "fhir-files", {"path": str(folder), "resource_types": "Patient"}, {})
    run_import(workspace, "ehr")
    win = MainWindow(workspace)
    qtbot.addWidget(win)
    win.show()
    page = win.show_page("derivatives")
    editor = page.open_view_editor()
    qtbot.waitUntil(lambda: editor.input_box.count() > 0, timeout=10000)
    assert editor.input_box.currentData() == {"source": "ehr", "stream": "Patient"}, "guessed from the resource"
    qtbot.keyClicks(editor.name_edit, "patients")
    qtbot.mouseClick(editor.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.dialog is None, timeout=20000)
    qtbot.waitUntil(lambda: page.job is None and page.shown is not None and page.shown.table is not None,
                    timeout=30000)
    table = page.shown.table
    assert table.column_names == ["id", "gender", "birth_date"]
    assert page.model.rowCount() == table.num_rows > 0
    genders = {page.model.data(page.model.index(r, 1)) for r in range(page.model.rowCount())}
    assert genders <= {"male", "female", "other", "unknown", ""} and "female" in genders
    assert "no time grain" in page.chart.note.text()
    win.close()
    assert jobs.wait_for_jobs(30000)


def test_build_failure_is_reported_and_the_list_says_not_built(qtbot, window, workspace, tmp_path):
    demo_workspace(workspace, tmp_path / "in", build_it=False)
    Catalog(workspace).save_spec({**VISITS_SPEC, "input": {"source": "clinic", "stream": "values"}})
    workspace.remove_source("clinic")
    page = window.show_page("derivatives")
    qtbot.mouseClick(page.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.selected_name() == "visits_by_grp", timeout=10000)
    assert page.table.item(0, 3).text() == "not built yet"
    qtbot.mouseClick(page.build_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.job is None and "Build failed" in page.strip.status.text(), timeout=20000)
    assert "clinic" in page.strip.status.text()
    assert page.build_button.isEnabled()


def test_chart_follows_a_dark_palette(qtbot, window, workspace, tmp_path):
    demo_workspace(workspace, tmp_path / "in")
    page = window.show_page("derivatives")
    qtbot.mouseClick(page.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.shown is not None and page.shown.table is not None, timeout=10000)
    assert not page.chart.dark
    dark = QPalette()
    for role in (QPalette.ColorRole.Window, QPalette.ColorRole.Base):
        dark.setColor(role, QColor(30, 30, 30))
    dark.setColor(QPalette.ColorRole.Text, QColor(230, 230, 230))
    page.chart.setPalette(dark)
    assert page.chart.dark
    assert page.chart.series_names() == ["a", "b", "c", "d"], "redrawn after the theme change"


def test_series_have_gaps_where_cells_are_suppressed():
    from lithotse_desktop.gui.chart import series_from_table

    days = [dt.date(2024, m, 1) for m in (1, 2, 3, 4)]
    table = pa.table({"period": pa.array(days * 2, pa.date32()),
                      "grp": ["a"] * 4 + ["b"] * 4,
                      "n": [5, None, 7, 8, 1, 2, 3, 4],
                      "suppressed": [False, True, False, False, False, False, False, False]})
    lines, total = series_from_table(table, "n", ["grp"], limit=1)
    assert total == 2 and [line.label for line in lines] == ["a"], "the largest line first"
    assert [[v for _d, v in seg] for seg in lines[0].segments()] == [[5.0], [7.0, 8.0]]
    lines, _ = series_from_table(table.slice(4), "n", ["grp"])
    assert lines[0].points[0] == (days[0], 1.0) and len(lines[0].segments()) == 1


def test_build_all_builds_the_others_when_one_cannot_be_built(qtbot, window, workspace, tmp_path):
    demo_workspace(workspace, tmp_path / "in", build_it=False)
    add_spec(workspace, VISITS_SPEC)
    Catalog(workspace).save_spec({**VISITS_SPEC, "name": "broken", "input": {"source": "clinic", "stream": "nope"}})
    page = window.show_page("derivatives")
    qtbot.mouseClick(page.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.build_all_button.isEnabled(), timeout=10000)
    qtbot.mouseClick(page.build_all_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.job is None and "not built" in page.strip.status.text(), timeout=30000)
    assert page.strip.status.text() == "1 rebuilt, broken not built (see Details)."
    qtbot.waitUntil(lambda: page.list_job is None, timeout=10000)  # the list is re-read after the build
    states = {page.table.item(r, 0).text(): page.table.item(r, 3).text() for r in range(page.table.rowCount())}
    assert states["broken"] == "not built yet" and states["visits_by_grp"] != "not built yet", states
    assert Catalog(workspace).current("visits_by_grp") is not None
    assert page.build_all_button.isEnabled()


def test_cancel_stops_a_long_query_and_keeps_what_was_built_before(qtbot, window, workspace, tmp_path):
    """Build all, then Cancel while a derivative's query runs (one that would take an hour): the
    build stops at once, the strip says what stays built, and the list shows it built."""
    demo_workspace(workspace, tmp_path / "in", build_it=False)
    add_spec(workspace, VISITS_SPEC)
    Catalog(workspace).save_spec(SLOW_SPEC)  # unchecked: checking it would run it
    page = window.show_page("derivatives")
    qtbot.mouseClick(page.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.build_all_button.isEnabled(), timeout=10000)
    qtbot.mouseClick(page.build_all_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "computing visits_slow" in page.strip.status.text(), timeout=30000)
    qtbot.wait(300)  # inside the query
    assert page.strip.cancel.isEnabled()
    qtbot.mouseClick(page.strip.cancel, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.job is None, timeout=30000)
    built = Catalog(workspace).current("visits_by_grp")
    assert built is not None and Catalog(workspace).current("visits_slow") is None
    assert page.strip.status.text() == (f"Build cancelled after the build of visits_by_grp (version {built.version}): "
                                        "the others are unchanged.")
    qtbot.waitUntil(lambda: page.list_job is None, timeout=10000)
    states = {page.table.item(r, 0).text(): page.table.item(r, 3).text() for r in range(page.table.rowCount())}
    assert states["visits_slow"] == "not built yet" and states["visits_by_grp"] != "not built yet", states
    assert page.build_all_button.isEnabled()
