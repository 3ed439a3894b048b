"""The first-run checklist: on a workspace opened empty, four steps from nothing to a figure in a
spreadsheet (add a source, import it, make an aggregate, put it in Excel), each ticked by what the
workspace holds rather than by the user, with a button that goes to where the step is done.

Whether the checklist is shown, and whether something has gone to a spreadsheet (a bind, an
export or a copied formula, URL or query leave nothing else behind), are kept in the workspace's
``desktop-checklist.json`` so they survive a restart; a workspace that already had sources when
first opened here never shows it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

from ..atomic import atomic_write_bytes
from ..workspace import Workspace
from .common import named

STATE_FILE = "desktop-checklist.json"


@dataclass(frozen=True)
class Step:
    key: str
    text: str
    button: str
    help: str


STEPS = [
    Step("source", "Add a source", "Add source…", "A folder of exports or a server's address"),
    Step("import", "Import its data", "Import…", "Choose the dates on Sources && Import and click Import"),
    Step("aggregate", "Make an aggregate", "New aggregate…", "Counts by period and group, built from the import"),
    Step("excel", "Put it in Excel", "Spreadsheets…", "Bind a workbook, export a file or copy a formula"),
]


def read_state(ws: Workspace) -> dict:
    try:
        data = json.loads((ws.root / STATE_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(ws: Workspace, state: dict) -> None:
    atomic_write_bytes(ws.root / STATE_FILE, json.dumps(state, indent=2, sort_keys=True).encode())


class FirstRunChecklist(QFrame):
    """A strip above the pages; ``stepRequested(key)`` asks the window to open where a step is done."""

    stepRequested = Signal(str)

    def __init__(self, ws: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("firstRunChecklist")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.ws = ws
        self.state: dict = {}
        self.available = True  # False where the credentials cannot import (no Sources page)
        self.done: dict[str, bool] = {step.key: False for step in STEPS}
        self.title = named(QLabel(), "Getting started")
        self.hide_button = named(QToolButton(), "Hide the checklist", "Hide these first steps for this workspace")
        self.hide_button.setText("Hide")
        self.hide_button.clicked.connect(self.dismiss)
        self.boxes: dict[str, QCheckBox] = {}
        self.buttons: dict[str, QPushButton] = {}

        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.hide_button)
        steps = QHBoxLayout()
        for number, step in enumerate(STEPS, 1):
            box = named(QCheckBox(f"{number}. {step.text}"), step.text, step.help.replace("&&", "&"))
            box.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)  # ticked by the workspace
            box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button = named(QPushButton(step.button), step.button.rstrip("…"), step.help.replace("&&", "&"))
            button.clicked.connect(lambda _checked=False, key=step.key: self.stepRequested.emit(key))
            self.boxes[step.key], self.buttons[step.key] = box, button
            cell = QVBoxLayout()
            cell.addWidget(box)
            cell.addWidget(button, 0, Qt.AlignmentFlag.AlignLeft)
            steps.addLayout(cell)
            steps.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 8)
        layout.addLayout(top)
        layout.addLayout(steps)
        self.set_workspace(ws)

    def set_workspace(self, ws: Workspace) -> None:
        """Show the checklist on a workspace that is empty now or was when the checklist began."""
        self.ws = ws
        self.state = read_state(ws)
        if not self.state and not ws.sources():
            self.state = {"started": True}
            write_state(ws, self.state)
        self.done = {step.key: False for step in STEPS}
        self.done["source"] = bool(ws.sources())
        self.done["excel"] = bool(self.state.get("excel"))
        self._show()

    @property
    def wanted(self) -> bool:
        return bool(self.state.get("started")) and not self.state.get("hidden")

    def tick(self, key: str, done: bool = True) -> None:
        """Record what the workspace now holds for one step (a step once done stays ticked only
        while its evidence lasts, except the spreadsheet step, which leaves none)."""
        if key == "excel" and done and not self.state.get("excel") and self.state:
            self.state["excel"] = True
            write_state(self.ws, self.state)
        self.done[key] = done or (key == "excel" and bool(self.state.get("excel")))
        self._show()

    def dismiss(self) -> None:
        self.state["hidden"] = True
        write_state(self.ws, self.state)
        self._show()

    def next_step(self) -> str | None:
        return next((step.key for step in STEPS if not self.done[step.key]), None)

    def _show(self) -> None:
        following = self.next_step()
        for step in STEPS:
            self.boxes[step.key].setChecked(self.done[step.key])
            button = self.buttons[step.key]
            button.setDefault(step.key == following)
            font = button.font()
            font.setBold(step.key == following)
            button.setFont(font)
        left = sum(1 for ok in self.done.values() if not ok)
        self.title.setText("<b>Getting started</b>: all four steps done. Refresh the workbook after each import."
                           if not left else
                           f"<b>Getting started</b>: {left} of {len(STEPS)} steps to a figure in a spreadsheet.")
        self.setVisible(self.wanted and self.available)
