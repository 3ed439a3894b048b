"""``lithotse plugins list|install|remove|new``: a thin shell over plugins, pluginstall and scaffold.

Added to the main command with ``main.add_command(plugins_group)``. docs/plugins.md is the
guide for plugin authors.
"""

from __future__ import annotations

from pathlib import Path

import click

from .cliutil import _emit_json, debug_enabled, workspace_option


@click.group("plugins")
def plugins_group() -> None:
    """Plugins: list, install, remove, or start a new one."""


@plugins_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_list(as_json: bool) -> None:
    """Installed plugins with their versions, origin, connectors and status (ok, error, disabled).

    With --debug, the traceback of each plugin that failed goes to stderr.
    """
    from .plugins import get_plugin_manager

    manager = get_plugin_manager()
    connectors = manager.connectors()
    rows = [info.to_json() for info in sorted(manager.plugins.values(), key=lambda p: p.name)]
    for row in rows:
        row["connector_versions"] = {c: connectors[c].version for c in row["connectors"] if c in connectors}
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        click.echo("no plugins installed")
    for row in rows:
        status = {"error": f"ERROR: {row['error']}", "disabled": f"disabled: {row['disabled']}"}.get(
            row["status"], row["status"])
        click.echo(f"{row['name']:<14} {row['distribution'] or '-'} {row['version'] or '-'}  "
                   f"connectors: {', '.join(row['connectors']) or '-'}  [{status}]\n"
                   f"{'':<14} origin: {row['origin']}")
        if row["status"] == "error" and row["traceback"] and debug_enabled():
            click.echo(f"plugin {row['name']}:\n{row['traceback'].rstrip()}", err=True)


@plugins_group.command("install")
@click.argument("target")
@click.option("-e", "--editable", is_flag=True,
              help="Install a project folder in place (pip -e): edits take effect without reinstalling.")
def plugins_install(target: str, editable: bool) -> None:
    """Install a plugin by NAME, wheel file or folder into Lithotse's own environment, then load it.

    Exits 1, naming the error, when the plugin does not load; it then stays installed (see
    `lithotse plugins list`; `lithotse plugins remove NAME` takes it out).
    """
    from .plugins import get_plugin_manager
    from .pluginstall import install_plugin

    names = install_plugin(target, editable=editable)
    manager = get_plugin_manager()
    parts = []
    for name in names:
        info = manager.plugins.get(name)
        if info is not None and info.disabled:
            parts.append(f"plugin {name} (not loaded: {info.disabled})")
        else:
            found = ", ".join(info.connectors) if info is not None and info.connectors else "none"
            parts.append(f"plugin {name} (connectors: {found})")
    click.echo(f"installed {target}: {'; '.join(parts)}")


@plugins_group.command("remove")
@click.argument("name")
@workspace_option
def plugins_remove(name: str) -> None:
    """Uninstall the distribution that provides plugin NAME.

    Warns when sources of the workspace (--workspace, else the default one) use its connectors.
    """
    from .errors import LithotseError
    from .pluginstall import connectors_of, distribution_for, remove_plugin, sources_using
    from .workspace import Workspace, default_workspace_dir

    connectors = connectors_of(distribution_for(name))
    folder = click.get_current_context().meta.get("workspace_dir") or default_workspace_dir()
    try:
        users = sources_using(Workspace.open(folder), connectors) if connectors else []
    except LithotseError:
        users = []  # no workspace here: nothing to warn about
    removed = remove_plugin(name)
    click.echo(f"removed {removed}")
    if users:
        click.echo(f"warning: source(s) {', '.join(users)} of workspace {folder} use connector(s) "
                   f"{', '.join(connectors)} of {removed}; importing them fails until a plugin "
                   "provides the connector again (or remove them: lithotse source rm NAME)", err=True)


@plugins_group.command("new")
@click.argument("name")
@click.option("--kind", type=click.Choice(["connector", "store", "cache"]), default="connector",
              show_default=True, help="What the plugin provides.")
def plugins_new(name: str, kind: str) -> None:
    """Write a new plugin's folder NAME: pyproject.toml with the entry point, the plugin module
    and a test using lithotse_desktop.testing (see docs/plugins.md)."""
    from .scaffold import new_plugin

    _folder, names, files = new_plugin(name, kind, Path.cwd())
    shown = names.folder
    click.echo(f"created {shown}: {kind} plugin {names.name} (distribution {names.distribution}, "
               f"module {names.module})")
    for relative in files:
        click.echo(f"  {shown}/{relative}")
    click.echo(f"next: lithotse plugins install -e ./{shown}, then python -m pytest {shown}")
