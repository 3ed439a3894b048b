"""The README's first command: a workspace with a generated health system, imported and built.

This is the core half of ``lithotse demo``; the command itself (in :mod:`..cli`) then opens the
desktop app or, without a display, renders its pages, so nothing here imports the GUI.

The demo's data is made at run time by :mod:`.synth` (package code, so it is in every wheel
and frozen app) into ``<workspace>/sample-data``; the derivative specs ship beside this
module. A new demo workspace is made whole or not at all: a marker file stands in its folder
until the last build, any failure removes the folder (and the secrets it made) and says why,
and a folder still holding the marker (a run that was killed) is cleared by the next run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ..derive.catalog import Catalog
from ..derive.service import add_spec, read_table
from ..derive.spec import dimension_alias
from ..derive.suppress import FLAG
from ..errors import LithotseError
from ..jobs import import_and_build
from ..pathtext import display_path, relative_to_cwd
from ..progress import Progress
from ..secrets import delete_secret, secret_ref
from ..serve.token import PURPOSE as TOKEN_PURPOSE
from ..workspace import CONFIG_NAME, Workspace
from . import synth

DEFAULT_TARGET = Path("demo-workspace")
API_PORT = 8765  # the default of ``lithotse serve --port``
DATA_FOLDER = "sample-data"
INCOMPLETE = ".demo-incomplete"
SPECS = Path(__file__).resolve().parent / "derivatives"

DEMO_SOURCES = {
    "ehr": ("csv", {"path": "csv", "date_column": "admit_date,onset_date"}),
    "fhir": ("fhir-files", {"path": "fhir"}),
    "hl7": ("hl7v2", {"path": "hl7v2"}),
}


class DemoFailed(LithotseError):
    """The demo could not be made; its message says why and that nothing was left behind."""


def demo_specs() -> list[dict]:
    """The demo's derivative specs, in the order they are added (views before what reads them)."""
    return [json.loads(path.read_text("utf-8")) for path in sorted(SPECS.glob("*.json"))]


def demo_workspace(target: Path | None, echo: Callable[[str], None] = lambda _line: None) -> Workspace:
    """A new demo workspace in ``target``: generated source files, sources and derivative specs.

    ``target`` must not exist or be empty. The marker file :data:`INCOMPLETE` is left in it for
    :func:`run_demo` to remove once everything is imported and built.
    """
    target = Path(target or DEFAULT_TARGET).resolve()
    target.mkdir(parents=True, exist_ok=True)
    (target / INCOMPLETE).write_text("a demo workspace being made; removed when it is complete\n", "utf-8")
    data = target / DATA_FOLDER
    made = synth.generate(data)
    echo(f"generated {made.patients:,} patients, {made.encounters:,} encounters, "
         f"{made.conditions:,} diagnoses and {made.lab_results + made.clinic_observations:,} lab results "
         f"({synth.FIRST_DAY.year}-{synth.FIRST_DAY.year + synth.YEARS - 1}) in {display_path(data)}")
    ws = Workspace.create(target, name="Northwind General (demo)")
    for name, (connector, settings) in DEMO_SOURCES.items():
        resolved = {k: (str(data / v) if k == "path" else v) for k, v in settings.items()}
        ws.add_source(name, connector, resolved, {})
    for spec in demo_specs():
        add_spec(ws, spec)
    return ws


def _open_or_clear(target: Path, echo: Callable[[str], None]) -> Workspace | None:
    """The finished demo workspace in ``target``, or None when a new one is to be made there."""
    if (target / INCOMPLETE).exists():
        echo(f"removing {display_path(target)}: an earlier demo run stopped before it was complete")
        _remove(target)
        return None
    if (target / CONFIG_NAME).exists():
        return Workspace.open(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DemoFailed(f"{display_path(target)} already holds files and is not a Lithotse workspace; "
                         "give the demo an empty or new folder with --workspace")
    return None


def _remove(target: Path) -> None:
    """Delete a demo workspace this code made, with the secrets its builds stored."""
    config = target / CONFIG_NAME
    if config.exists():
        try:
            ws_id = Workspace.open(target).id
            for purpose in ("hmac-key", TOKEN_PURPOSE):
                delete_secret(secret_ref(ws_id, purpose))
        except LithotseError:
            pass
    shutil.rmtree(target, ignore_errors=True)


def has_display() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_demo(target: Path | None, *, echo: Callable[[str], None],
             progress: Progress | None = None) -> Workspace:
    """Make (or reopen) the demo workspace, import every source, build, print each derivative's figures.

    A demo workspace made by this call is removed again if anything fails, Ctrl+C included; an
    existing one is left as it was (an import adds nothing twice).
    """
    target = Path(target or DEFAULT_TARGET).resolve()
    ws = _open_or_clear(target, echo)
    fresh = ws is None
    try:
        if ws is None:
            ws = demo_workspace(target, echo)
        echo(f"workspace: {ws.root}")
        _import_and_show(ws, echo, progress)
    except BaseException as exc:
        if not fresh:
            raise
        _remove(target)
        reason = str(exc) if isinstance(exc, LithotseError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, KeyboardInterrupt):
            reason = "interrupted"
        raise DemoFailed(f"the demo stopped ({reason}); {display_path(target)} was removed, "
                         "so running it again starts afresh") from exc
    (target / INCOMPLETE).unlink(missing_ok=True)
    return ws


def _import_and_show(ws: Workspace, echo: Callable[[str], None], progress: Progress | None) -> None:
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
    the newest period of the first aggregate (in the demo's own order) that has one, so the curl
    example answers a number."""
    catalog = Catalog(ws)
    names = catalog.names()
    preferred = [spec["name"] for spec in demo_specs() if spec["name"] in names]
    for name in [*preferred, *(n for n in names if n not in preferred)]:
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

