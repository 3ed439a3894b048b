"""The formula the app copies is the one the add-in reads: clipboard → add-in → ``lithotse serve`` →
the same number ``lithotse derive show`` prints."""

from __future__ import annotations

import json

import pytest
import requests
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from lithotse_desktop.excel import xlwings_addin as addin
from lithotse_desktop.excel.formula import VALUE_FUNCTION, parse_formula
from lithotse_desktop.serve.token import workspace_token
from tests.cache.helpers import free_port
from tests.conftest import run_lithotse
from tests.gui.helpers import demo_workspace
from tests.support.serving import lithotse_serve

FROM, TO = "2024-02-01", "2024-04-30"


def _copied_formula(qtbot, page, measure: str, dim: str, value: str) -> str:
    page.measure.setCurrentText(measure)
    page.dimension.setCurrentText(dim)
    page.dim_value.setCurrentText(value)
    page.from_edit.clear()
    page.to_edit.clear()
    qtbot.keyClicks(page.from_edit, FROM)
    qtbot.keyClicks(page.to_edit, TO)
    QApplication.clipboard().clear()
    qtbot.mouseClick(page.copy_formula, Qt.MouseButton.LeftButton)
    return QApplication.clipboard().text()


def _derive_show(workspace, measure: str, dim: str, value: str):
    """The independent answer: ``lithotse derive show --json`` rows for the range, added up."""
    proc = run_lithotse("derive", "show", "visits_by_grp", "--from", FROM, "--to", TO, "--json",
                        env={"LITHOTSE_WORKSPACE": str(workspace.root)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [r for r in json.loads(proc.stdout)["rows"] if r[dim] == value]
    assert len(rows) == 3, "three months in the range"
    if any(r["suppressed"] for r in rows):
        return "suppressed"
    return sum(r[measure] for r in rows)


@pytest.mark.parametrize("measure, value", [("visits", "b"), ("total", "a"), ("visits", "c")])
def test_a_copied_formula_answers_what_derive_show_says(qtbot, window, workspace, tmp_path, measure, value):
    demo_workspace(workspace, tmp_path / "in")
    port = free_port()
    workspace.config["serve"] = {"port": port}
    workspace.save()
    page = window.show_page("spreadsheets")
    page.reload()
    qtbot.waitUntil(lambda: not page.busy and page.derivative.count() == 1, timeout=10000)

    text = _copied_formula(qtbot, page, measure, "grp", value)
    assert text == f'=LITHOTSE_VALUE("visits_by_grp","{measure}","{FROM}","{TO}","grp","{value}")'
    assert str(port) in page.url.text() and f"port {port}" in page.formula_note.text()
    formula = parse_formula(text)
    assert formula.function == VALUE_FUNCTION

    expected = _derive_show(workspace, measure, "grp", value)
    assert (expected == "suppressed") == (value == "c"), "c is a rare group"
    with lithotse_serve(workspace.root, port):  # no --port: it listens on [serve] port
        assert addin.LITHOTSE_VALUE(*formula.args) == expected
        answer = requests.get(f"http://127.0.0.1:{port}/api/v1/derivatives/visits_by_grp/value",
                              params={"measure": measure, "from": FROM, "to": TO, "grp": value},
                              headers={"Authorization": f"Bearer {workspace_token(workspace)}"}, timeout=10)
        assert answer.json()["value"] == (None if expected == "suppressed" else expected)
    assert addin.LITHOTSE_VALUE(*formula.args) == (f"error: Lithotse is not serving on 127.0.0.1:{port} — "
                                                   "open the desktop app or run lithotse serve")
