"""``lithotse excel …``: bind workbook ranges to derivatives, refresh them, install the add-ins."""

from __future__ import annotations

from pathlib import Path

import click

from ..cliutil import _emit_json, current_workspace, workspace_option


@click.group("excel")
def excel_group() -> None:
    """Workbook tables bound to derivatives, and the Excel add-in."""


@excel_group.command("bind")
@click.argument("workbook", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("derivative")
@click.option("--sheet", default="Lithotse", show_default=True, help="Sheet to put the table on (created if missing).")
@click.option("--cell", default="A1", show_default=True, help="Top-left cell of the table.")
@click.option("--from", "date_from", help="First period (YYYY-MM-DD).")
@click.option("--to", "date_to", help="Last period (YYYY-MM-DD).")
@click.option("--columns", help="Comma-separated columns, in order (default: all).")
@click.option("--table", "table_name", help="Excel table name (default: lithotse_<derivative>).")
@workspace_option
def excel_bind(workbook: Path, derivative: str, sheet: str, cell: str, date_from: str | None,
               date_to: str | None, columns: str | None, table_name: str | None) -> None:
    """Write DERIVATIVE into WORKBOOK as an Excel table and remember the query for refresh."""
    from .ops import bind_workbook

    placed = bind_workbook(current_workspace(), workbook, derivative, sheet=sheet, cell=cell,
                           from_=date_from, to=date_to, columns=columns or None, table=table_name)
    click.echo(f"{workbook}: table {placed.binding.table} at {sheet}!{placed.ref}, {placed.rows} rows "
               f"of {derivative} version {placed.version}")


@excel_group.command("refresh")
@click.argument("workbook", type=click.Path(dir_okay=False, path_type=Path))
@workspace_option
def excel_refresh(workbook: Path) -> None:
    """Rewrite every bound table in WORKBOOK with the current aggregates."""
    from .ops import refresh_workbook

    for placed in refresh_workbook(current_workspace(), workbook):
        click.echo(f"{placed.binding.table}: {placed.rows} rows of {placed.binding.derivative} "
                   f"version {placed.version} at {placed.binding.sheet}!{placed.ref}")


@excel_group.command("install-addin")
@click.option("--target", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to copy the add-in sources to (default: the user data folder).")
@click.option("--no-xlwings", is_flag=True, help="Do not run 'xlwings addin install'.")
def excel_install_addin(target: Path | None, no_xlwings: bool) -> None:
    """Install the Excel add-in pieces that can be installed here, and say exactly what is left."""
    from .addin import install_addin

    report = install_addin(target, run_xlwings=not no_xlwings)
    click.echo(report.text())


@excel_group.command("addin-manifest")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the manifest to this file (default: print it).")
@workspace_option
def excel_addin_manifest(output: Path | None) -> None:
    """The Office add-in's manifest (XML) for sideloading or central deployment; it points at
    https://localhost:PORT/addin/, PORT being [serve] https_port (default 8766)."""
    from ..atomic import atomic_write_text
    from ..serve.links import addin_base, https_port
    from .officejs import manifest_xml

    port = https_port(current_workspace())
    text = manifest_xml(port)
    if output is None:
        click.echo(text, nl=False)
        return
    atomic_write_text(output, text)
    click.echo(f"wrote {output}: the Lithotse add-in at {addin_base(port)}/ (serve it with: lithotse serve --https)",
               err=True)


@excel_group.command("trust-cert")
@click.option("--print-only", is_flag=True, help="Change nothing; print the steps for Windows, macOS and Linux.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@workspace_option
def excel_trust_cert(print_only: bool, as_json: bool) -> None:
    """Trust Lithotse's local certificate authority (made on first use) for this user, so Excel and
    browsers accept https://localhost for the add-in; prints the steps where it cannot."""
    from ..serve.links import https_port
    from .officejs import trust_ca

    report = trust_ca(https_port(current_workspace()), install=not print_only)
    if as_json:
        _emit_json(report.to_json())
    else:
        click.echo(report.text())
    if report.failed:
        raise SystemExit(1)
