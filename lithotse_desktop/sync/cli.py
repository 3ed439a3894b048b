"""``lithotse sync push|pull|status``: a thin shell over :mod:`lithotse_desktop.sync`.

Added to the main command with ``main.add_command(sync_group)``. Exit status is 1 when a
sync leaves conflicts or mismatches behind, so scripts notice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import click

from ..errors import LithotseError
from ..workspace import Workspace

_REMOTE_HELP = ("Remote store: s3://bucket/prefix or a store name from [stores] "
                "(default: remote in the [sync] table of lithotse.toml).")


class _SyncGroup(click.Group):
    """Prints LithotseError as one line and exits 1, also when run on its own."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LithotseError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


def _options(func: Callable) -> Callable:
    func = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(func)
    func = click.option("--remote", default=None, help=_REMOTE_HELP)(func)
    func = click.option("--workspace", "workspace_dir", default=None,
                        type=click.Path(file_okay=False, path_type=Path),
                        help="Workspace folder (default: $LITHOTSE_WORKSPACE or the user data "
                        "folder).")(func)
    return func


def _workspace(workspace_dir: Path | None) -> Workspace:
    chosen = workspace_dir or click.get_current_context().find_root().params.get("workspace_dir")
    return Workspace.open(chosen)


def _progress(quiet: bool):
    from ..cli import cli_progress

    return cli_progress(quiet)


def _emit(data: dict) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _report(result: Any, as_json: bool) -> None:
    if as_json:
        _emit(result.to_json())
    else:
        click.echo(result.summary())


@click.group("sync", cls=_SyncGroup)
def sync_group() -> None:
    """Share the workspace through S3: push, pull, status."""


@sync_group.command("push")
@_options
def push_cmd(workspace_dir: Path | None, remote: str | None, as_json: bool) -> None:
    """Upload objects and manifests the remote lacks; publish moved pointers conditionally."""
    from . import push

    result = push(_workspace(workspace_dir), remote, _progress(as_json))
    _report(result, as_json)
    if not result.ok:
        raise click.exceptions.Exit(1)


@sync_group.command("pull")
@_options
@click.option("--take-remote", is_flag=True,
              help="Resolve pointer conflicts by taking the remote's value.")
def pull_cmd(workspace_dir: Path | None, remote: str | None, as_json: bool, take_remote: bool) -> None:
    """Download objects and manifests this workspace lacks; move pointers that changed remotely."""
    from . import pull

    result = pull(_workspace(workspace_dir), remote, _progress(as_json), take_remote=take_remote)
    _report(result, as_json)
    if not result.ok:
        raise click.exceptions.Exit(1)


@sync_group.command("status")
@_options
def status_cmd(workspace_dir: Path | None, remote: str | None, as_json: bool) -> None:
    """What push and pull would copy, from the listings alone."""
    from . import status

    state = status(_workspace(workspace_dir), remote)
    if as_json:
        _emit(state.to_json())
    else:
        click.echo(state.summary())
