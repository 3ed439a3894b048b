"""``lithotse serve`` and ``lithotse token``, added to the main group by :mod:`lithotse_desktop.cli`."""

from __future__ import annotations

import click

from ..cliutil import current_workspace, workspace_option


@click.command("serve")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port on 127.0.0.1 (0: any free port). Default: [serve] port in lithotse.toml, else 8765.")
@click.option("--https/--no-https", "use_https", default=None,
              help="Also serve HTTPS for the Office add-in (default: [serve] https in lithotse.toml, else off).")
@click.option("--https-port", type=click.IntRange(0, 65535), default=None,
              help="The add-in's HTTPS port on 127.0.0.1. Default: [serve] https_port, else 8766.")
@workspace_option
def serve_cmd(port: int | None, use_https: bool | None, https_port: int | None) -> None:
    """Serve derivatives and cell values on http://127.0.0.1:PORT/api/v1 (token required), and with
    --https the Office add-in on https://localhost:HTTPS_PORT/addin/."""
    from .app import bind_socket, run_server
    from .links import addin_base, api_base, https_enabled, serve_port
    from .links import https_port as configured_https_port

    ws = current_workspace()
    if use_https is None:
        use_https = https_enabled(ws) or https_port is not None
    sock = bind_socket(serve_port(ws) if port is None else port)
    try:
        https_sock = bind_socket(configured_https_port(ws) if https_port is None else https_port) \
            if use_https else None
    except BaseException:
        sock.close()
        raise
    actual = sock.getsockname()[1]
    where = api_base(actual)
    if https_sock is not None:
        where += f" and the Office add-in on {addin_base(https_sock.getsockname()[1])}/"
    click.echo(f"serving workspace {ws.root} on {where} (token: lithotse token; Ctrl+C stops)", err=True)
    run_server(ws, actual, sock=sock, https_sock=https_sock)


@click.command("token")
@click.option("--rotate", is_flag=True, help="Replace the token (restart lithotse serve; clients need the new one).")
@workspace_option
def token_cmd(rotate: bool) -> None:
    """Print the workspace's local API token (created on first use)."""
    from .token import workspace_token

    click.echo(workspace_token(current_workspace(), rotate=rotate))
