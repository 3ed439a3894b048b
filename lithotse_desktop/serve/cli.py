"""``lithotse serve`` and ``lithotse token``, added to the main group by :mod:`lithotse_desktop.cli`."""

from __future__ import annotations

import click

from ..cliutil import current_workspace, workspace_option


@click.command("serve")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port on 127.0.0.1 (0: any free port). Default: [serve] port in lithotse.toml, else 8765.")
@workspace_option
def serve_cmd(port: int | None) -> None:
    """Serve derivatives and cell values on http://127.0.0.1:PORT/api/v1 (token required)."""
    from .app import bind_socket, run_server
    from .links import api_base, serve_port

    ws = current_workspace()
    sock = bind_socket(serve_port(ws) if port is None else port)
    actual = sock.getsockname()[1]
    click.echo(f"serving workspace {ws.root} on {api_base(actual)} "
               "(token: lithotse token; Ctrl+C stops)", err=True)
    run_server(ws, actual, sock=sock)


@click.command("token")
@click.option("--rotate", is_flag=True, help="Replace the token (restart lithotse serve; clients need the new one).")
@workspace_option
def token_cmd(rotate: bool) -> None:
    """Print the workspace's local API token (created on first use)."""
    from .token import workspace_token

    click.echo(workspace_token(current_workspace(), rotate=rotate))
