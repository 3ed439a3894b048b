"""The README's first command: a workspace with the bundled synthetic data, imported and built."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable

from .derive.catalog import Catalog
from .derive.service import add_spec, read_table
from .jobs import import_and_build
from .progress import Progress
from .resources import resources_dir
from .workspace import CONFIG_NAME, Workspace

DEMO_SOURCES = {
    "ehr": ("csv", {"path": "csv", "date_column": "START"}),
    "fhir": ("fhir-files", {"path": "fhir"}),
    "hl7": ("hl7v2", {"path": "hl7v2"}),
}


def demo_workspace(target: Path | None) -> Workspace:
    """Open the demo workspace, creating it with sources and derivatives the first time."""
    target = Path(target or "demo-workspace").resolve()
    if (target / CONFIG_NAME).exists():
        return Workspace.open(target)
    ws = Workspace.create(target, name="Lithotse demo")
    demo = resources_dir() / "demo"
    for name, (connector, settings) in DEMO_SOURCES.items():
        resolved = {k: (str(demo / v) if k == "path" else v) for k, v in settings.items()}
        ws.add_source(name, connector, resolved, {})
    for spec_file in sorted((demo / "derivatives").glob("*.json")):
        add_spec(ws, json.loads(spec_file.read_text("utf-8")))
    return ws


def has_display() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_demo(target: Path | None, *, headless: bool, echo: Callable[[str], None],
             progress: Progress | None = None) -> Workspace:
    ws = demo_workspace(target)
    echo(f"workspace: {ws.root}")
    for source in DEMO_SOURCES:
        outcome = import_and_build(ws, source, progress=progress)
        landed = outcome.imported.landings
        records = sum(item.manifest.records for item in landed)
        echo(f"imported {source}: {len(landed)} new landing(s), {records} records"
             if landed else f"imported {source}: nothing new")
        for line in outcome.build_lines():
            echo(f"  {line}")
    catalog = Catalog(ws)
    for name in catalog.names():
        current = catalog.current(name)
        if current is None:
            echo(f"derivative {name}: not built")
            continue
        _version, table = read_table(ws, name)
        echo(f"\nderivative {name} (version {current.version}, {table.num_rows} rows)")
        for row in table.slice(0, 8).to_pylist():
            echo("  " + ", ".join(f"{k}={v}" for k, v in row.items()))
    if headless or not has_display():
        shots = ws.root / "screenshots"
        echo("\nno display: rendering the desktop app's pages to "
             f"{shots} instead" if not headless else f"\nrendering screenshots to {shots}")
        _screenshots(ws, shots, echo)
    else:
        from .gui.app import main as gui_main

        gui_main(["--workspace", str(ws.root)])
    return ws


def _screenshots(ws: Workspace, shots: Path, echo: Callable[[str], None]) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        from .gui.app import main as gui_main
    except ImportError as exc:
        echo(f"the desktop app cannot start here ({exc}); the command line works as shown above")
        return
    code = gui_main(["--workspace", str(ws.root), "--screenshot", str(shots)])
    if code:
        echo(f"rendering screenshots failed (exit {code})")
    else:
        echo("wrote " + ", ".join(sorted(p.name for p in shots.glob("*.png"))))
