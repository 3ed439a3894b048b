"""``lithotse sync push|pull|status``: a thin shell over :mod:`lithotse_desktop.sync`.

Added to the main command with ``main.add_command(sync_group)``. Exit status is 1 when a
sync leaves conflicts or mismatches behind, so scripts notice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..cliutil import LithotseGroup, _emit_json, cancellable, current_workspace, workspace_option

_REMOTE_HELP = ("Remote store: s3://bucket/prefix or a store name from [stores] "
                "(default: remote in the [sync] table of lithotse.toml).")


def _options(func: Callable) -> Callable:
    func = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(func)
    func = click.option("--remote", default=None, help=_REMOTE_HELP)(func)
    return workspace_option(func)


def _report(result: Any, as_json: bool) -> None:
    if as_json:
        _emit_json(result.to_json())
    else:
        click.echo(result.summary())


@click.group("sync", cls=LithotseGroup)
def sync_group() -> None:
    """Share the workspace through S3: push, pull, status."""


@sync_group.command("push")
@_options
def push_cmd(remote: str | None, as_json: bool) -> None:
    """Upload objects and manifests the remote lacks; publish moved pointers conditionally."""
    from . import push

    ws = current_workspace()
    result = cancellable(lambda progress: push(ws, remote, progress), as_json)
    _report(result, as_json)
    if not result.ok:
        raise click.exceptions.Exit(1)


@sync_group.command("pull")
@_options
@click.option("--take-remote", is_flag=True,
              help="Resolve pointer conflicts by taking the remote's value.")
def pull_cmd(remote: str | None, as_json: bool, take_remote: bool) -> None:
    """Download objects and manifests this workspace lacks; move pointers that changed remotely."""
    from . import pull

    ws = current_workspace()
    result = cancellable(lambda progress: pull(ws, remote, progress, take_remote=take_remote), as_json)
    _report(result, as_json)
    if not result.ok:
        raise click.exceptions.Exit(1)


@sync_group.command("status")
@_options
def status_cmd(remote: str | None, as_json: bool) -> None:
    """What push and pull would copy, from the listings alone."""
    from . import status

    state = status(current_workspace(), remote)
    if as_json:
        _emit_json(state.to_json())
    else:
        click.echo(state.summary())
