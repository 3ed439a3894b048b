"""Pieces every command module shares: --workspace, progress lines, JSON output, error display.

Kept apart from :mod:`lithotse_desktop.cli` so subsystem command groups (sync, excel, serve)
can import them without importing the main command.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any, Callable

import click

from .errors import LithotseError
from .progress import Progress, ProgressState
from .workspace import Workspace, default_workspace_dir


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def workspace_option(func: Callable) -> Callable:
    """``--workspace DIR`` on every command (also accepted before the command name)."""

    @click.option("--workspace", "workspace_dir", type=click.Path(file_okay=False, path_type=Path),
                  default=None, help="Workspace folder (default: $LITHOTSE_WORKSPACE or the "
                  "user data folder).")
    @functools.wraps(func)
    def wrapper(*args: Any, workspace_dir: Path | None = None, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        chosen = workspace_dir or ctx.find_root().params.get("workspace_dir")
        ctx.meta["workspace_dir"] = chosen
        return func(*args, **kwargs)

    return wrapper


def current_workspace() -> Workspace:
    return Workspace.open(click.get_current_context().meta.get("workspace_dir") or default_workspace_dir())


def cli_progress(quiet: bool = False) -> Progress:
    """Progress lines on stderr, at most a few a second, so long jobs show they are alive."""
    last = {"t": 0.0, "msg": ""}

    def report(state: ProgressState) -> None:
        now = time.monotonic()
        if quiet or (state.message == last["msg"] and now - last["t"] < 0.5):
            return
        last.update(t=now, msg=state.message)
        count = f" ({state.records} records)" if state.records else ""
        total = f" [{state.done}/{state.total}]" if state.total else ""
        click.echo(f"… {state.message}{total}{count}", err=True)

    return Progress(report)


class LithotseGroup(click.Group):
    """Prints a LithotseError as one line on stderr and exits 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LithotseError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
