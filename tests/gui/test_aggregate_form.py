"""The aggregate form as an analyst fills it in: inputs that hold data with their sizes, date
fields that hold dates, no group-by chosen for you, age bands and code systems built in the form,
a live preview that matches an independent count, and a question before edits are thrown away."""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from lithotse_desktop.derive.catalog import Catalog
from tests.gui.helpers import VISITS_SPEC, demo_workspace, visit_records


def items(combo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def pick(combo, text: str) -> None:
    index = combo.findText(text)
    assert index >= 0, (text, items(combo))
    combo.setCurrentIndex(index)


def preview_rows(dialog) -> list[dict]:
    model = dialog.preview_model
    return model.table.to_pylist()


def wait_preview(qtbot, dialog) -> str:
    with qtbot.waitSignal(dialog.previewed, timeout=10000) as blocker:
        pass
    return blocker.args[0]


def open_form(qtbot, page):
    qtbot.mouseClick(page.new_aggregate, Qt.MouseButton.LeftButton)
    dialog = page.dialog
    qtbot.waitExposed(dialog)
    qtbot.waitUntil(lambda: dialog.schema_known, timeout=20000)
    return dialog


def test_inputs_with_data_only_a_live_preview_and_no_group_by_chosen_for_you(qtbot, window, workspace, tmp_path):
    demo_workspace(workspace, tmp_path / "in", build_it=False)
    (tmp_path / "empty").mkdir()
    workspace.add_source("later", "lines", {"path": str(tmp_path / "empty")}, {})
    Catalog(workspace).save_spec({**VISITS_SPEC, "name": "unbuilt"})
    page = window.show_page("derivatives")
    dialog = open_form(qtbot, page)
    assert items(dialog.input_box) == [f"clinic › values ({visit_records(tmp_path / 'in')} records)"], \
        "a source without data and a derivative never built are not offered"
    wait_preview(qtbot, dialog)
    lines = (tmp_path / "in" / "visits.txt").read_text().split()
    assert [r["n"] for r in preview_rows(dialog)] == [
        sum(1 for line in lines if line.startswith(f"2024-{m:02d}")) for m in range(1, 7)], "monthly totals first"

    qtbot.keyClicks(dialog.name_edit, "visits")
    qtbot.mouseClick(dialog.group_rows.add_button, Qt.MouseButton.LeftButton)
    [group] = dialog.group_rows.rows
    assert group.column.currentText() == "(choose a column)"
    assert "Choose a column for group-by 1" in (wait_preview(qtbot, dialog) or dialog.preview_note.text())
    pick(group.column, "grp")
    wait_preview(qtbot, dialog)
    shown = {(r["period"], r["grp"]): (r["n"], r["suppressed"]) for r in preview_rows(dialog)}
    counted = Counter((dt.date.fromisoformat(line.split(",")[0]).replace(day=1), line.split(",")[2]) for line in lines)
    assert len(shown) == len(counted) == 24
    for key, n in counted.items():
        assert shown[key] == ((None, True) if n < 11 else (n, False)), key
    total = visit_records(tmp_path / "in")
    assert f"First 24 row(s) of the result over all {total} records" in dialog.preview_note.text()

    dialog.to_edit.setText("2024-13-01")
    problem = wait_preview(qtbot, dialog)
    assert "2024-13-01" in problem and dialog.preview_error.isVisible()
    dialog.to_edit.clear()
    assert wait_preview(qtbot, dialog) == ""


def test_escape_asks_before_discarding_edits(qtbot, window, workspace, tmp_path):
    demo_workspace(workspace, tmp_path / "in", build_it=False)
    page = window.show_page("derivatives")
    dialog = open_form(qtbot, page)
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: page.dialog is None, timeout=3000)

    dialog = open_form(qtbot, page)
    qtbot.keyClicks(dialog.name_edit, "half_done")
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    box = next(w for w in QApplication.topLevelWidgets() if w.objectName() == "confirmDiscard" and w.isVisible())
    assert "Discard the changes" in box.text()
    qtbot.mouseClick(box.button(QMessageBox.StandardButton.Cancel), Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and dialog.name_edit.text() == "half_done"
    qtbot.mouseClick(dialog.buttons.button(dialog.buttons.StandardButton.Cancel), Qt.MouseButton.LeftButton)
    box = next(w for w in QApplication.topLevelWidgets() if w.objectName() == "confirmDiscard" and w.isVisible())
    qtbot.mouseClick(box.button(QMessageBox.StandardButton.Discard), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.dialog is None, timeout=3000)
    assert Catalog(workspace).names() == []


@pytest.fixture
def health_system(qtbot, workspace, tmp_path, monkeypatch):
    """A small generated health system (real csv, fhir-files and hl7v2 plugins), with the demo's
    conditions view built, in a main window."""
    from lithotse_desktop.demo import demo_specs, synth
    from lithotse_desktop.derive.build import build
    from lithotse_desktop.derive.service import add_spec
    from lithotse_desktop.gui import jobs
    from lithotse_desktop.gui.window import MainWindow
    from lithotse_desktop.plugins import reset_plugin_manager
    from lithotse_desktop.raw import run_import

    reset_plugin_manager()
    data = tmp_path / "data"
    functools.partial(synth.generate, patients=300)(data)
    workspace.add_source("hl7", "hl7v2", {"path": str(data / "hl7v2")}, {})
    workspace.add_source("fhir", "fhir-files", {"path": str(data / "fhir"), "resource_types": "Condition"}, {})
    run_import(workspace, "hl7", streams=["adt"])
    run_import(workspace, "fhir")
    add_spec(workspace, next(s for s in demo_specs() if s["name"] == "conditions"))
    build(workspace, "conditions")
    win = MainWindow(workspace)
    qtbot.addWidget(win)
    win.resize(1280, 720)
    win.show()
    yield win
    win.close()
    assert jobs.wait_for_jobs(30000)
    reset_plugin_manager()


def test_age_bands_and_code_systems_are_built_in_the_form(qtbot, health_system, workspace):
    page = health_system.show_page("derivatives")
    dialog = open_form(qtbot, page)
    offered = items(dialog.input_box)
    rows = {o.label.split(" (")[0]: o.rows for o in dialog.options}
    assert offered == [f"fhir › Condition ({rows['fhir › Condition']:,} records)",
                       f"hl7 › adt ({rows['hl7 › adt']:,} records)",
                       f"derivative conditions ({rows['derivative conditions']:,} rows)"]
    assert not any("Observation" in text or "messages" in text for text in offered), "only streams with data"

    pick(dialog.input_box, offered[1])
    qtbot.waitUntil(lambda: dialog.schema_known and dialog.sample is not None
                    and "birth_date" in dialog.sample.date_columns, timeout=20000)
    dates = items(dialog.date_field)
    assert "effective_datetime" in dates and "birth_date" in dates
    assert not {"message_control_id", "sex", "patient_id"} & set(dates), "no text columns offered as dates"
    pick(dialog.date_field, "effective_datetime")
    dialog.grain.setCurrentIndex(dialog.grain.findData("year"))
    qtbot.keyClicks(dialog.name_edit, "admissions_by_band")
    qtbot.mouseClick(dialog.group_rows.add_button, Qt.MouseButton.LeftButton)
    [band] = dialog.group_rows.rows
    pick(band.kind, "Age band")
    pick(band.birth, "birth_date")
    band.bands.clear()
    qtbot.keyClicks(band.bands, "0, 18, 65")
    assert band.alias.text() == "age_band"
    qtbot.mouseClick(dialog.filter_rows.add_button, Qt.MouseButton.LeftButton)
    [only] = dialog.filter_rows.rows
    pick(only.column, "event_type")
    qtbot.keyClicks(only.value_edit, "A01")
    qtbot.waitUntil(lambda: {"age_band", "n"} <= set(dialog.preview_model.table.column_names)
                    and dialog.preview_job is None, timeout=10000)

    sample = dialog.sample.table.to_pylist()
    expected: Counter = Counter()
    for row in sample:
        when, born = row["effective_datetime"].date(), row["birth_date"]
        if row["event_type"] != "A01" or born is None:
            continue
        age = when.year - born.year - ((when.month, when.day) < (born.month, born.day))
        expected[(when.replace(month=1, day=1), "0-17" if age < 18 else "18-64" if age < 65 else "65+")] += 1
    shown = {(r["period"], r["age_band"]): r for r in preview_rows(dialog)}
    assert set(shown) == set(expected)
    for key, n in expected.items():
        assert shown[key]["n"] == (None if shown[key]["suppressed"] else n), key
    assert any(not r["suppressed"] for r in shown.values())

    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.dialog is None, timeout=20000)
    spec = Catalog(workspace).spec("admissions_by_band")
    assert spec["group_by"] == [{"as": "age_band", "age_band": {"birth_date": "birth_date", "bands": [0, 18, 65]}}]
    qtbot.waitUntil(lambda: page.job is None, timeout=30000)

    dialog = open_form(qtbot, page)
    pick(dialog.input_box, next(t for t in items(dialog.input_box) if t.startswith("derivative conditions")))
    qtbot.waitUntil(lambda: dialog.sample is not None and dialog.sample.code_columns == ["code"], timeout=20000)
    assert items(dialog.date_field) == ["(none)", "onset"]
    qtbot.keyClicks(dialog.name_edit, "by_icd10")
    qtbot.mouseClick(dialog.group_rows.add_button, Qt.MouseButton.LeftButton)
    [code] = dialog.group_rows.rows
    pick(code.kind, "Code")
    assert code.code_column.currentText() == "code"
    systems = items(code.system)
    assert systems[:2] == ["SNOMED CT (http://snomed.info/sct)", "ICD-10 (http://hl7.org/fhir/sid/icd-10)"], \
        "the systems found in the data come first"
    pick(code.system, systems[1])
    assert code.alias.text() == "icd_10"
    qtbot.waitUntil(lambda: "icd_10" in dialog.preview_model.table.column_names and dialog.preview_job is None,
                    timeout=10000)
    codes = {r["icd_10"] for r in preview_rows(dialog)}
    assert codes and codes <= {"I10", "E11.9", "I25.10", "J45.909", "J11.1", "J20.9", "H66.90", "S52.90XA", "M17.9",
                               "N39.0", "Z34.90", "C50.919", None}
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.dialog is None, timeout=20000)
    assert Catalog(workspace).spec("by_icd10")["group_by"] == [
        {"as": "icd_10", "code": {"column": "code", "system": "http://hl7.org/fhir/sid/icd-10"}}]
    qtbot.waitUntil(lambda: page.job is None, timeout=30000)


def test_an_existing_age_band_is_edited_in_place(qtbot, window, workspace, tmp_path):
    """A spec written by hand with an age band opens with the band's fields filled in."""
    from lithotse_desktop.gui.specform import AggregateDialog

    demo_workspace(workspace, tmp_path / "in", build_it=False)
    spec = {**VISITS_SPEC, "group_by": [{"as": "band", "age_band": {"birth_date": "day", "bands": [0, 40]}}, "grp"]}
    dialog = AggregateDialog(workspace, window, spec)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.schema_known, timeout=10000)
    band, grp = dialog.group_rows.rows
    assert (band.kind.currentText(), band.birth.currentText(), band.bands.text(), band.alias.text()) == (
        "Age band", "day", "0, 40", "band")
    assert grp.value() == "grp"
    assert dialog.spec()["group_by"] == spec["group_by"]
    assert not dialog.has_changes()
    dialog.reject()


def test_a_landed_csv_stays_an_input_after_its_folder_is_gone(qtbot, window, workspace, tmp_path):
    """The export folder is emptied after import: the form still offers the landed stream with its
    date column, previews it and saves and builds an aggregate of it, counted as imported."""
    import shutil

    folder = tmp_path / "export"
    folder.mkdir()
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(90)]
    (folder / "visits.csv").write_text("admit_date,ward,patient\n" + "".join(
        f"{d.isoformat()},w{i % 2},p{i}\n" for i, d in enumerate(days)))
    workspace.add_source("ehr", "csv", {"path": str(folder)}, {})
    from lithotse_desktop.raw import run_import

    run_import(workspace, "ehr")
    shutil.rmtree(folder)

    page = window.show_page("derivatives")
    dialog = open_form(qtbot, page)
    assert items(dialog.input_box) == ["ehr › visits (90 records)"]
    assert dialog.date_field.currentText() == "admit_date"
    wait_preview(qtbot, dialog)
    assert [r["n"] for r in preview_rows(dialog)] == [31, 29, 30], "monthly totals of the landed rows"
    qtbot.keyClicks(dialog.name_edit, "after_export")
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.dialog is None, timeout=20000)
    qtbot.waitUntil(lambda: page.job is None and "Built" in page.strip.status.text(), timeout=30000)
    catalog = Catalog(workspace)
    assert [r["n"] for r in catalog.read(catalog.current("after_export")).to_pylist()] == [31, 29, 30]


def test_the_preview_refuses_what_saving_refuses(qtbot, health_system, workspace):
    """Pass 38: the form previewed ``min(patient_id)`` per department and year, patient ids in
    unsuppressed cells, though saving that spec is refused (a published cell never carries an
    identifier). The preview runs every check saving runs, first."""
    from lithotse_desktop.derive.disclosure import Restricted
    from lithotse_desktop.gui.preview import preview_aggregate

    page = health_system.show_page("derivatives")
    dialog = open_form(qtbot, page)
    pick(dialog.input_box, items(dialog.input_box)[1])
    qtbot.waitUntil(lambda: dialog.schema_known and dialog.sample is not None, timeout=20000)
    spec = {"name": "first_patients", "kind": "aggregate", "input": {"source": "hl7", "stream": "adt"},
            "date_field": "effective_datetime", "grain": "year", "group_by": ["patient_class"],
            "measures": [{"fn": "count", "as": "n"}, {"fn": "min", "column": "patient_id", "as": "first_patient"}]}
    with pytest.raises(Restricted, match="patient_id"):
        preview_aggregate(workspace, spec, dialog.sample)
    allowed = {**spec, "measures": spec["measures"][:1]}
    assert preview_aggregate(workspace, allowed, dialog.sample).column_names[:2] == ["period", "patient_class"]
