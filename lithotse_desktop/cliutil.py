"""Pieces every command module shares: --workspace, progress lines, JSON output, error display.

Kept apart from :mod:`lithotse_desktop.cli` so subsystem command groups (sync, excel, serve)
can import them without importing the main command.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import duckdb

from . import engine
from .errors import Cancelled, LithotseError
from .progress import Progress, ProgressState, run_job
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
    last: dict[str, Any] = {"t": 0.0, "msg": ""}

    def report(state: ProgressState) -> None:
        now = time.monotonic()
        if quiet or (state.message == last["msg"] and now - last["t"] < 0.5):
            return
        last.update(t=now, msg=state.message)
        count = f" ({state.records} records)" if state.records else ""
        total = f" [{state.done}/{state.total}]" if state.total else ""
        click.echo(f"… {state.message}{total}{count}", err=True)

    return Progress(report)


T = TypeVar("T")


def cancellable(job: Callable[[Progress], T], quiet: bool = False) -> T:
    """``job`` with a :func:`cli_progress`, run in a worker thread while this one waits, so that
    Ctrl-C cancels it: the job stops at its next check (between two blocks read, within one
    solver iteration while it decides which cells to hide), committing nothing more, and the
    command says what it had committed, if anything, and exits 130. A KeyboardInterrupt raised in the job's own thread
    stopped it only where Python next ran (the fifth daily update at 1M rows spends up to two
    minutes in one solve) and left a traceback. A DuckDB query under way is interrupted
    (:func:`.progress.run_job`). What the job had committed before (an import's landings,
    derivatives published before the one cancelled) stays and is named. A second Ctrl-C leaves
    at once (exit 130), for a job inside a plugin's long call that checks nothing: every write
    is atomic, so the state is the old one or the new one.

    Ctrl-C is taken by a SIGINT handler meanwhile, not as a KeyboardInterrupt: one arriving while
    this thread started the worker or looked at the event, outside any ``try``, ended the command
    with "Aborted!" (a CI run under load). Where SIGINT is ignored (a shell's background job) or
    this is not the main thread, nothing is installed."""
    progress = cli_progress(quiet)
    outcome: dict[str, Any] = {}
    context = contextvars.copy_context()
    done = threading.Event()

    def work() -> None:
        try:
            outcome["value"] = context.run(run_job, job, progress)
        except BaseException as exc:  # raised again in the command's thread
            outcome["error"] = exc
        finally:
            done.set()

    def interrupted(_signum: int, _frame: Any) -> None:
        if progress.cancelled:  # the job may be inside a long query: leave without waiting for it
            click.echo("left at once: what was committed stays, the rest is gone", err=True)
            _leave(130)
        progress.cancel()
        click.echo("cancelling: stopping at the next safe point (Ctrl-C again to leave at once)", err=True)

    previous = signal.getsignal(signal.SIGINT)
    installed = threading.current_thread() is threading.main_thread() and previous != signal.SIG_IGN
    if installed:
        signal.signal(signal.SIGINT, interrupted)
    try:
        threading.Thread(target=work, name="lithotse-cli-job", daemon=True).start()
        while not done.wait(0.2):  # waited with a timeout, so the handler runs while it waits
            pass
    finally:
        if installed:  # a handler not set from Python (None) goes back to Python's own
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _leave(code: int) -> None:
    """Exit now, the job's thread still running: no interpreter shutdown, which would run beside
    it (a daemon thread inside DuckDB or HiGHS)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


DEBUG_ENV = "LITHOTSE_DEBUG"


def debug_enabled(ctx: click.Context | None = None) -> bool:
    """``lithotse --debug`` or ``LITHOTSE_DEBUG=1``: show tracebacks behind one-line errors."""
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is not None and ctx.find_root().params.get("debug"):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _hides_traceback(exc: BaseException) -> bool:
    """True when the error stands for an unexpected exception (a plugin's bug) whose traceback
    the one-line message leaves out."""
    cause = exc.__cause__
    return getattr(exc, "debug_detail", None) is not None or (
        cause is not None and not isinstance(cause, LithotseError))


class LithotseGroup(click.Group):
    """Prints a LithotseError as one line on stderr and exits 1; with ``--debug`` (or
    ``LITHOTSE_DEBUG=1``) its traceback, and that of the exception behind it, come first."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Cancelled as exc:
            click.echo(exc.sentence(), err=True)
            ctx.exit(130)
        except LithotseError as exc:
            hint = ""
            if debug_enabled(ctx):
                click.echo("".join(traceback.format_exception(exc)), err=True, nl=False)
                detail = getattr(exc, "debug_detail", None)
                if detail:
                    click.echo(detail.rstrip("\n"), err=True)
            elif _hides_traceback(exc):
                hint = " (run with --debug for the traceback)"
            click.echo(f"error: {engine.out_of_memory(exc) or exc}{hint}", err=True)
            ctx.exit(1)
        except duckdb.OutOfMemoryException as exc:
            if debug_enabled(ctx):
                click.echo("".join(traceback.format_exception(exc)), err=True, nl=False)
            click.echo(f"error: {engine.out_of_memory(exc)}", err=True)
            ctx.exit(1)
