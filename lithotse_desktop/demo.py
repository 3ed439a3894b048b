"""The README's first command: a workspace with the bundled synthetic data, imported and built.

This is the core half of ``lithotse demo``; the command itself (in :mod:`.cli`) then opens the
desktop app or, without a display, renders its pages, so nothing here imports the GUI.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from .derive.catalog import Catalog
from .derive.service import add_spec, read_table
from .derive.spec import dimension_alias
from .derive.suppress import FLAG
from .jobs import import_and_build
from .pathtext import relative_to_cwd
from .progress import Progress
from .resources import resources_dir
from .workspace import CONFIG_NAME, Workspace

DEFAULT_TARGET = Path("demo-workspace")
API_PORT = 8765  # the default of ``lithotse serve --port``

DEMO_SOURCES = {
    "ehr": ("csv", {"path": "csv", "date_column": "START"}),
    "fhir": ("fhir-files", {"path": "fhir"}),
    "hl7": ("hl7v2", {"path": "hl7v2"}),
}


def demo_workspace(target: Path | None) -> Workspace:
    """Open the demo workspace, creating it with sources and derivatives the first time."""
    target = Path(target or DEFAULT_TARGET).resolve()
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


def run_demo(target: Path | None, *, echo: Callable[[str], None],
             progress: Progress | None = None) -> Workspace:
    """Import every demo source, build what they feed and print each derivative's figures."""
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
        rows = table.to_pylist()
        shown = [row for row in rows if not row.get(FLAG)]
        hidden = ""
        if FLAG in table.column_names and len(shown) < len(rows):
            hidden = ", all suppressed" if not shown else f", {len(rows) - len(shown)} suppressed"
        echo(f"\nderivative {name} (version {current.version}, {table.num_rows} rows{hidden})")
        for row in (shown or rows)[:8]:
            echo("  " + ", ".join(f"{k}={v}" for k, v in row.items()))
    return ws


def next_steps(ws: Workspace, given: Path) -> str:
    """What a newcomer types next, with the workspace as they named it; never the token itself."""
    where = shlex.quote(str(given))
    cli, desktop = (shlex.quote(_command(name)) for name in ("lithotse", "lithotse-desktop"))
    lines = ["next steps:",
             f"  open the desktop app:  {desktop} --workspace {where}",
             f"  start the local API:   {cli} serve --workspace {where}",
             "  (the desktop app serves the same API while it is open)"]
    example = example_cell(ws)
    if example is not None:
        name, query, about = example
        url = f"http://127.0.0.1:{API_PORT}/api/v1/derivatives/{name}/value?{urlencode(query)}"
        lines += [f"  then fetch one value ({about}):",
                  f'    curl -H "Authorization: Bearer $({cli} token --workspace {where})" \\',
                  f"      {shlex.quote(url)}"]
    return "\n".join(lines)


def example_cell(ws: Workspace) -> tuple[str, dict[str, str], str] | None:
    """A derivative, value query and description for a cell the demo holds unsuppressed:
    the newest period of the first aggregate that has one, so the curl example answers a number."""
    catalog = Catalog(ws)
    for name in catalog.names():
        spec = catalog.spec(name)
        if spec.get("kind") != "aggregate" or catalog.current(name) is None:
            continue
        measure = spec["measures"][0]["as"]
        dims = [dimension_alias(d) for d in spec.get("group_by", [])]
        _version, table = read_table(ws, name)
        rows = [r for r in table.to_pylist() if not r.get(FLAG) and r.get(measure) is not None
                and all(r.get(d) is not None for d in dims)]
        if not rows:
            continue
        row = max(rows, key=lambda r: str(r.get("period") or ""))
        query = {"measure": measure}
        about = [f"{name}.{measure}"]
        if isinstance(row.get("period"), dt.date):
            start = row["period"]
            query.update({"from": start.isoformat(), "to": _period_end(start, spec.get("grain")).isoformat()})
            about.append(f"from {query['from']} to {query['to']}")
        for dim in dims:
            query[dim] = _text(row[dim])
            about.append(f"{dim} = {query[dim]}")
        return name, query, ", ".join(about)
    return None


def _period_end(start: dt.date, grain: str | None) -> dt.date:
    months = {"month": 1, "quarter": 3, "year": 12}.get(grain or "")
    if months:
        total = start.month - 1 + months
        return dt.date(start.year + total // 12, total % 12 + 1, 1) - dt.timedelta(days=1)
    return start + dt.timedelta(days=6 if grain == "week" else 0)


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def _command(name: str) -> str:
    """How to call one of Lithotse's commands from here: the script beside this Python (relative
    when under the current folder, as ``.venv/bin/lithotse``), else the bare name on PATH."""
    folder = Path(sys.executable).parent
    for candidate in (folder / name, folder / f"{name}.exe"):
        if candidate.is_file():
            return relative_to_cwd(candidate) or str(candidate)
    return name

