"""The ``lithotse`` command. Every command is a thin shell over core functions the GUI calls too."""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__, audit
from .cliutil import LithotseGroup, _emit_json, cancellable, cli_progress, current_workspace, workspace_option
from .dates import DateRange
from .errors import Cancelled, ConfigError, LithotseError, NotFound
from .secrets import current_store
from .workspace import Workspace, default_workspace_dir


@click.group(cls=LithotseGroup)
@click.version_option(__version__, prog_name="lithotse")
@click.option("--workspace", "workspace_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Workspace folder for every command that follows.")
@click.option("--debug", is_flag=True,
              help="On an error, also print its traceback to stderr (as LITHOTSE_DEBUG=1 does).")
def main(workspace_dir: Path | None, debug: bool) -> None:
    """Lithotse: land health records raw (L1), derive Parquet aggregates (L2), serve them to cells (L3)."""


# --- workspace ----------------------------------------------------------------
@main.command("init")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="A display name for the workspace.")
@workspace_option
def init_cmd(directory: Path | None, name: str | None) -> None:
    """Create a workspace (default: the user data folder)."""
    target = directory or click.get_current_context().meta.get("workspace_dir") or default_workspace_dir()
    ws = Workspace.create(target, name=name)
    click.echo(f"created workspace {ws.root}")


# --- sources ------------------------------------------------------------------
@main.group("source")
def source_group() -> None:
    """Configured sources: add once, import many times."""


def _parse_sets(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        out[key.strip()] = value
    return out


@source_group.command("add")
@click.argument("name")
@click.option("--connector", required=True, help="Connector name (see lithotse plugins list).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="A connector setting.")
@click.option("--replace", is_flag=True, help="Overwrite an existing source of that name.")
@workspace_option
def source_add(name: str, connector: str, sets: tuple[str, ...], replace: bool) -> None:
    """Configure a source. Secret settings are prompted for, or read from stdin with KEY=-."""
    from .connectors import FieldType
    from .plugins import get_plugin_manager

    ws = current_workspace()
    cls = get_plugin_manager().connector(connector)
    given = _parse_sets(sets)
    secret_fields = {f.name: f for f in cls.fields if f.type is FieldType.SECRET}
    secrets: dict[str, str] = {}
    stdin_text: str | None = None
    for key, field in secret_fields.items():
        value = given.pop(key, None)
        if value is not None and value != "-":
            raise ConfigError(f"setting {key} is a secret: it is not accepted on the command line "
                              f"(it would stay in shell history). Use --set {key}=- to read it from "
                              "stdin, or leave it out to be prompted.")
        if value == "-":
            if stdin_text is not None:
                raise ConfigError("only one secret can be read from stdin; leave the others out to be prompted")
            stdin_text = sys.stdin.readline().rstrip("\r\n")
            secrets[key] = stdin_text
        elif field.required or sys.stdin.isatty():
            if not sys.stdin.isatty():
                raise ConfigError(f"setting {key} is a required secret; pass --set {key}=- and "
                                  "write it to stdin")
            entered = click.prompt(f"{field.label or key}", hide_input=True, default="",
                                   show_default=False)
            if entered:
                secrets[key] = entered
    settings = cls.validate_settings({**given, **{k: None for k in secret_fields}})
    settings = {k: v for k, v in settings.items() if k not in secret_fields and v is not None}
    ws.add_source(name, connector, settings, secrets, replace=replace)
    where = f"; secrets in {current_store().label}: {', '.join(secrets)}" if secrets else ""
    click.echo(f"source {name} ({connector}) saved{where}")


@source_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@workspace_option
def source_list(as_json: bool) -> None:
    """Configured sources (secrets are shown by name only)."""
    ws = current_workspace()
    rows = [s.to_json() for s in ws.sources()]
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        click.echo("no sources; add one with: lithotse source add NAME --connector C --set KEY=VALUE")
    for row in rows:
        settings = ", ".join(f"{k}={v}" for k, v in row["settings"].items())
        secrets = f" secrets: {', '.join(row['secrets'])}" if row["secrets"] else ""
        click.echo(f"{row['name']:<16} {row['connector']:<12} {settings}{secrets}")


@source_group.command("streams")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@workspace_option
def source_streams(name: str, as_json: bool) -> None:
    """The streams a source offers and the date field of each."""
    from .errors import connector_guard
    from .raw.sources import make_connector

    connector = make_connector(current_workspace(), name)
    with connector_guard(connector.name, f"to list the streams of source {name}"):
        rows = [s.to_json() for s in connector.streams()]
    if as_json:
        _emit_json(rows)
        return
    for row in rows:
        key = f" key: {','.join(row['key'])}" if row["key"] else ""
        click.echo(f"{row['name']:<28} date field: {row['date_field'] or '-'}{key}")


@source_group.command("rm")
@click.argument("name")
@workspace_option
def source_rm(name: str) -> None:
    """Forget a source's configuration and secrets (its landed data stays in L1)."""
    current_workspace().remove_source(name)
    click.echo(f"source {name} removed")


# --- import and raw -----------------------------------------------------------
@main.command("import")
@click.argument("name")
@click.option("--from", "date_from", help="First day, YYYY-MM-DD (inclusive).")
@click.option("--to", "date_to", help="Last day, YYYY-MM-DD (inclusive).")
@click.option("--stream", "streams", multiple=True, help="Only this stream (repeatable).")
@click.option("--full", is_flag=True, help="Re-read everything, ignoring the incremental state.")
@click.option("--no-build", is_flag=True, help="Do not rebuild derivatives that read these streams.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--quiet", is_flag=True, help="No progress lines.")
@workspace_option
def import_cmd(name: str, date_from: str | None, date_to: str | None, streams: tuple[str, ...],
               full: bool, no_build: bool, as_json: bool, quiet: bool) -> None:
    """Import a source into L1 raw storage for a date range."""
    from .jobs import import_and_build

    ws = current_workspace()
    rng = DateRange.parse(date_from, date_to)
    outcome = cancellable(lambda progress: import_and_build(ws, name, rng, streams=list(streams) or None, full=full,
                                                            build=not no_build, progress=progress), quiet or as_json)
    if as_json:
        _emit_json(outcome.to_json())
    else:
        result = outcome.imported
        if not result.landings:
            click.echo(f"{name}: nothing new to import for {rng}")
        for item in result.landings:
            click.echo(item.summary())
        for line in result.skipped_lines():
            click.echo(line)
        for line in outcome.build_lines():
            click.echo(line)
    if outcome.build_error:
        raise LithotseError(f"imported, but the build that follows failed: {outcome.build_error}")


@main.group("raw")
def raw_group() -> None:
    """L1 raw storage: landings and their manifests."""


@raw_group.command("ls")
@click.option("--json", "as_json", is_flag=True)
@click.option("--source", help="Only this source.")
@click.option("--stream", help="Only this stream.")
@workspace_option
def raw_ls(as_json: bool, source: str | None, stream: str | None) -> None:
    """Landings, oldest first, with record counts."""
    from .raw.index import landing_store, open_index

    ws = current_workspace()
    index = open_index(ws)
    try:
        if source is not None:
            known = {m.source for m in index.landings()} | {s.name for s in ws.sources()}
            if source not in known:
                raise NotFound.unknown("source", source, known, "configured or landed")
        rows = index.landings(source, stream)
    finally:
        index.close()
    if as_json:
        default = ws.raw_store_names()[0]
        _emit_json([{**m.to_json(), "store": landing_store(m) or default} for m in rows])
        return
    if not rows:
        click.echo("no landings yet")
    for m in rows:
        click.echo(f"{m.id}  {m.source}/{m.stream:<24} {m.records:>8} rec "
                   f"({m.records_in_range} in range)  {m.bytes:>10} B  {m.original_name}")


@raw_group.command("show")
@click.argument("ident")
@click.option("--json", "as_json", is_flag=True)
@workspace_option
def raw_show(ident: str, as_json: bool) -> None:
    """A landing's manifest, by id (or a unique prefix) or sha256 prefix."""
    from .raw.index import open_index

    index = open_index(current_workspace())
    try:
        manifest = index.get(ident)
    finally:
        index.close()
    data = manifest.to_json()
    if as_json:
        _emit_json(data)
        return
    for key in sorted(data):
        if key != "cursor":
            click.echo(f"{key:<22} {data[key]}")


@raw_group.command("reindex")
@workspace_option
def raw_reindex() -> None:
    """Rebuild the local landing index from the manifests in every raw store."""
    from .raw.index import open_index

    index = open_index(current_workspace(), rebuild=True)
    try:
        count = len(index.landings())
    finally:
        index.close()
    click.echo(f"indexed {count} manifests")


@raw_group.command("verify")
@click.option("--source", help="Only this source's objects and manifests.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--quiet", is_flag=True, help="No progress lines.")
@workspace_option
def raw_verify(source: str | None, as_json: bool, quiet: bool) -> None:
    """Re-hash every raw object against its name and manifests; changes nothing.

    Reports corrupted, missing and unreferenced objects (and unreadable manifests) in every
    raw store the workspace reads; exits 1 when anything is wrong.
    """
    from .raw.verify import verify_raw

    ws = current_workspace()
    report = cancellable(lambda progress: verify_raw(ws, source, progress=progress), quiet or as_json)
    if as_json:
        _emit_json(report.to_json())
    else:
        for problem in report.problems:
            click.echo(f"{problem['problem']:<13} {problem['store']}:{problem['key']}  {problem['detail']}")
            for landing in problem["landings"]:
                click.echo(f"{'':<13} landing {landing['id']} {landing['source']}/{landing['stream']} "
                           f"{landing['original_name']}")
        summary = report.to_json()["summary"]
        click.echo(f"checked {summary['objects']} object(s) ({summary['bytes']} bytes) and "
                   f"{summary['manifests']} manifest(s) in {', '.join(summary['stores'])}: {summary['ok']} ok, "
                   f"{summary['corrupted']} corrupted, {summary['missing']} missing, "
                   f"{summary['unreferenced']} unreferenced, {summary['bad_manifest']} unreadable manifests")
    if not report.clean:
        click.get_current_context().exit(1)


# --- derivatives ----------------------------------------------------------------
@main.group("derive")
def derive_group() -> None:
    """L2 derivatives: aggregates, SQL-on-FHIR views and SQL, built into Parquet versions."""


@derive_group.command("add")
@click.option("--file", "spec_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A JSON spec (see README: Derivatives).")
@click.option("--replace", is_flag=True, help="Replace a derivative of the same name.")
@click.option("--build/--no-build", default=False, help="Build it right away.")
@workspace_option
def derive_add(spec_file: Path, replace: bool, build: bool) -> None:
    """Add a derivative from a JSON spec, checked against its inputs before it is saved."""
    from .derive.build import build as build_one
    from .derive.service import add_spec, load_spec_file

    ws = current_workspace()
    spec = add_spec(ws, load_spec_file(spec_file), replace=replace)
    click.echo(f"derivative {spec['name']} ({spec['kind']}) saved")
    if build:
        try:
            click.echo(cancellable(lambda progress: build_one(ws, spec["name"], progress=progress)).summary())
        except Cancelled as exc:  # the spec stays saved
            raise Cancelled([f"the spec of {spec['name']}", *exc.committed]) from None


@derive_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@workspace_option
def derive_list(as_json: bool) -> None:
    """Derivatives with their kind and current version."""
    from .derive.catalog import Catalog
    from .derive.disclosure import Restricted

    catalog = Catalog(current_workspace())
    rows = []
    for spec in catalog.specs():
        disclosure = catalog.disclosure(spec["name"])
        try:
            current = catalog.current(spec["name"])
            readable = True
        except Restricted:
            current, readable = None, False
        rows.append({"name": spec["name"], "kind": spec["kind"],
                     "input": spec.get("input") or spec.get("inputs"),
                     "version": current.version if current else None,
                     "published_at": current.published_at if current else None,
                     "rows": current.rows if current else None,
                     "columns": current.columns if current else None,
                     "class": disclosure.kind, "readable": readable})
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        click.echo("no derivatives; add one with: lithotse derive add --file SPEC.json")
    for row in rows:
        state = f"version {row['version']} ({row['rows']} rows)" if row["version"] else \
            "not built" if row["readable"] else "restricted (these credentials may not read it)"
        click.echo(f"{row['name']:<28} {row['kind']:<10} {row['class']:<13} {state}")


@derive_group.command("show")
@click.argument("name")
@click.option("--as-of", "as_of", help="Answer from the version that was current on this day.")
@click.option("--from", "date_from")
@click.option("--to", "date_to")
@click.option("--json", "as_json", is_flag=True)
@workspace_option
def derive_show(name: str, as_of: str | None, date_from: str | None, date_to: str | None,
                as_json: bool) -> None:
    """The derivative's table (suppressed), from the current version or one --as-of a day."""
    from .dates import parse_date
    from .derive.service import read_table

    version, table = read_table(current_workspace(), name, rng=DateRange.parse(date_from, date_to),
                                as_of=parse_date(as_of, "--as-of"))
    if as_json:
        _emit_json({"name": name, "version": version.version, "published_at": version.published_at,
                    "columns": table.column_names, "rows": table.to_pylist()})
        return
    click.echo(f"{name} version {version.version} published {version.published_at}")
    _print_table(table)


def _print_table(table: Any, limit: int | None = None) -> None:
    rows = table.to_pylist()[:limit] if limit else table.to_pylist()
    names = table.column_names
    cells = [[("" if r[n] is None else str(r[n])) for n in names] for r in rows]
    widths = [min(40, max([len(n)] + [len(c[i]) for c in cells])) for i, n in enumerate(names)]
    click.echo("  ".join(n.ljust(w)[:w] for n, w in zip(names, widths, strict=True)))
    for c in cells:
        click.echo("  ".join(v.ljust(w)[:w] for v, w in zip(c, widths, strict=True)))
    if limit and table.num_rows > limit:
        click.echo(f"… {table.num_rows - limit} more rows")


@derive_group.command("build")
@click.argument("name", required=False)
@click.option("--all", "build_every", is_flag=True, help="Build every derivative, inputs first.")
@click.option("--full", is_flag=True, help="Recompute every partition.")
@click.option("--engine", default=None, metavar="NAME",
              help="Build on this engine for this run (duckdb, spark, or a plugin's).")
@click.option("--json", "as_json", is_flag=True)
@workspace_option
def derive_build(name: str | None, build_every: bool, full: bool, engine: str | None, as_json: bool) -> None:
    """Build a derivative (or all) when its spec or inputs changed."""
    from .derive.build import BuildsFailed, build_all

    if bool(name) == build_every:
        raise ConfigError("give a derivative NAME or --all")
    failed: BuildsFailed | None = None
    ws = current_workspace()
    try:
        results = cancellable(lambda progress: build_all(ws, [name] if name else None, full=full, engine=engine,
                                                         progress=progress), as_json)
    except BuildsFailed as exc:
        results, failed = exc.results, exc
    if as_json:
        _emit_json([r.to_json() for r in results])
    else:
        for r in results:
            click.echo(r.summary())
    if failed is not None:
        raise failed


@derive_group.command("rm")
@click.argument("name")
@workspace_option
def derive_rm(name: str) -> None:
    """Remove a derivative: its spec and every version (raw data is untouched)."""
    from .derive.catalog import Catalog

    Catalog(current_workspace()).remove(name)
    click.echo(f"derivative {name} removed")


@derive_group.command("preview")
@click.argument("name")
@click.option("--rows", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@workspace_option
def derive_preview(name: str, rows: int, as_json: bool) -> None:
    """The first rows of the current version."""
    from .derive.service import read_table

    version, table = read_table(current_workspace(), name)
    if as_json:
        _emit_json({"name": name, "version": version.version, "columns": table.column_names,
                    "rows": table.slice(0, rows).to_pylist(), "total_rows": table.num_rows})
        return
    _print_table(table, rows)


@derive_group.command("lineage")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@workspace_option
def derive_lineage(name: str, as_json: bool) -> None:
    """The spec and raw objects behind the current version."""
    from .derive.service import lineage

    data = lineage(current_workspace(), name)
    if as_json:
        _emit_json(data)
        return
    click.echo(f"{name} version {data['version']} published {data['published_at']}")
    click.echo(f"spec sha256 {data['spec_hash']}")
    if data["counts"] == "people":
        click.echo(f"suppression counts people (distinct {', '.join(data['person_key'])} per cell)")
    elif data["counts"] == "records":
        click.echo("suppression counts records: the input declares no person key")
    for alias, item in data["inputs"].items():
        if "derivative" in item:
            click.echo(f"  {alias}: derivative {item['derivative']} version {item['version']}")
            continue
        click.echo(f"  {alias}: {item['source']}/{item['stream']}")
        for obj in item["objects"]:
            if not data["raw_readable"]:
                sha, start, end = obj
                click.echo(f"    {sha}  range {start or '…'} to {end or '…'}  (raw store not readable)")
                continue
            rng = f"{obj['range'][0] or '…'} to {obj['range'][1] or '…'}"
            click.echo(f"    {obj['sha256']}  {obj['original_name']}  range {rng}  landing {obj['landing']}")


@derive_group.command("export")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet", "xlsx"]), required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--from", "date_from")
@click.option("--to", "date_to")
@workspace_option
def derive_export(name: str, fmt: str, output: Path, date_from: str | None, date_to: str | None) -> None:
    """Write the derivative's (suppressed) table to a file; row-level derivatives are refused."""
    from .excel.ops import export_derivative

    _path, rows = export_derivative(current_workspace(), name, fmt, output,
                                    rng=DateRange.parse(date_from, date_to))
    click.echo(f"wrote {rows} rows to {output}")


@main.command("sof-test")
@click.argument("suite_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--report", "report", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the suite's JSON test report here.")
@click.option("--engine", type=click.Choice(["duckdb", "spark"]), default="duckdb", show_default=True,
              help="Run the views as DuckDB SQL or as Spark SQL on a Spark Connect server.")
@click.option("--spark-url", default="local[2]", show_default=True,
              help="The Spark Connect server for --engine spark (sc://host:15002, or local[N] to start one).")
def sof_test(suite_dir: Path, report: Path | None, engine: str, spark_url: str) -> None:
    """Run an SQL-on-FHIR v2 conformance suite; exits non-zero if any test fails."""
    import tempfile

    from .derive.sof.conformance import run_suite

    session = None
    if engine == "spark":
        from .derive.engines.spark import connect

        session = connect(spark_url)
    with tempfile.TemporaryDirectory() as scratch:
        written = report or Path(scratch) / "report.json"
        passed, failed = run_suite(suite_dir, written, cli_progress(), engine=engine, session=session)
    where = f"; report: {report}" if report else ""
    click.echo(f"{passed} passed, {failed} failed on {engine}{where}")
    if failed:
        raise click.exceptions.Exit(1)


@main.command("audit")
@click.option("--json", "as_json", is_flag=True)
@click.option("--action", type=click.Choice(audit.ACTIONS), help="Only this kind of action.")
@click.option("--limit", type=int, help="Only the newest N records.")
@workspace_option
def audit_cmd(as_json: bool, action: str | None, limit: int | None) -> None:
    """Who imported, built, published, exported, refreshed, read (API) or synced what, and when."""
    rows = audit.entries(current_workspace(), action=action, limit=limit)
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        click.echo("no audit records yet")
    for row in rows:
        what = ", ".join(f"{k}={v}" for k, v in row["details"].items() if k in
                         ("source", "derivative", "version", "format", "remote", "rows", "requests"))
        click.echo(f"{row['at']}  {row['who']}@{row['host']}  {row['action']:<8} {what}  "
                   f"({len(row['objects'])} objects)")


@main.group("privacy")
def privacy_group() -> None:
    """Disclosure control over the published derivatives."""


@privacy_group.command("audit")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: ok, groups, findings, refusals, revisions.")
@workspace_option
def privacy_audit(as_json: bool) -> None:
    """Bound every hidden cell from all published totals, and compare each aggregate's kept
    versions; exit 1 when a hidden cell is narrowed below its threshold or a shown count was
    revised by fewer than it."""
    from .derive.privacy import audit_published

    report = audit_published(current_workspace())
    if as_json:
        _emit_json(report)
    else:
        for group in report["groups"]:
            if group["kind"] == "sql cells":
                left_out = "not recorded" if group["hidden_cells"] is None else group["hidden_cells"]
                click.echo(f"sql cells {group['derivatives'][0]}: {left_out} cell(s) left out with their keys, "
                           "no totals shown; decided alone (a table counting the same rows is refused beside it)")
                continue
            where = group["input"].get("derivative") or f"{group['input'].get('source')}/{group['input'].get('stream')}"
            click.echo(f"{where}: {', '.join(group['derivatives'])}; {len(group['relations'])} relation(s), "
                       f"{len(group['partitions'])} partition(s), {group['hidden_cells']} hidden cell(s), "
                       f"{group['findings']} finding(s)")
        if not report["groups"]:
            click.echo("no published tables of cells")
        for finding in report["findings"]:
            cell = ", ".join(f"{k}={v}" for k, v in finding["cell"].items())
            if finding["lower"] is None:
                how = "could not be bounded (the published numbers disagree, or the solver failed)"
            else:
                how = (f"{'recovered exactly' if finding['exact'] else 'narrowed'} to "
                       f"[{finding['lower']:g}, {finding['upper']:g}]")
            click.echo(f"FOUND {cell}: {finding['measure']} {how} "
                       f"(threshold {finding['threshold']}) from {', '.join(finding['via'])}")
        for refused in report["refusals"]:
            pair = " and ".join(f"{kind} {name}" for kind, name in zip(refused["kinds"], refused["derivatives"],
                                                                        strict=True))
            click.echo(f"REFUSED {pair} both count rows of {', '.join(refused['streams'])}; rule: {refused['rule']}")
        for revised in report["revisions"]:
            cell = ", ".join(f"{k}={v}" for k, v in revised["cell"].items())
            click.echo(f"REVISED {revised['derivative']} {cell}: {revised['measure']} {revised['before']} -> "
                       f"{revised['after']} between versions {revised['versions'][0]} and {revised['versions'][1]}, "
                       f"a change of {abs(revised['change'])} (threshold {revised['threshold']}) that a reader "
                       "holding both versions sees")
        click.echo("ok: no hidden cell can be recovered or narrowed below its threshold, and no shown cell was "
                   "revised by fewer than its threshold" if report["ok"]
                   else f"{len(report['findings'])} finding(s), {len(report['refusals'])} refused pair(s), "
                        f"{len(report['revisions'])} small revision(s)")
    if not report["ok"]:
        raise click.exceptions.Exit(1)


@main.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (keys in lithotse_desktop/doctor.py).")
@workspace_option
def doctor_cmd(as_json: bool) -> None:
    """What is installed and reachable: versions, plugins, secrets store, stores, port, display."""
    from .doctor import format_text, report

    target = click.get_current_context().meta.get("workspace_dir") or default_workspace_dir()
    data = report(Path(target))
    if as_json:
        _emit_json(data)
        return
    click.echo(format_text(data))


@main.command("demo")
@click.option("--headless", is_flag=True, help="Do not open the desktop app.")
@workspace_option
def demo_cmd(headless: bool) -> None:
    """Create (or reuse) the demo workspace, import the bundled data, build derivatives."""
    from .demo import DEFAULT_TARGET, has_display, next_steps, run_demo

    target = click.get_current_context().meta.get("workspace_dir")
    ws = run_demo(target, echo=click.echo, progress=cli_progress())
    steps = next_steps(ws, Path(target or DEFAULT_TARGET))
    if headless or not has_display():
        shots = ws.root / "screenshots"
        click.echo("\nno display: rendering the desktop app's pages to "
                   f"{shots} instead" if not headless else f"\nrendering screenshots to {shots}")
        _render_screenshots(ws.root, shots)
        click.echo("\n" + steps)
    else:
        click.echo("\n" + steps + "\n\nopening the desktop app now")
        from .gui.app import main as desktop_main

        desktop_main(["--workspace", str(ws.root)])


def _render_screenshots(root: Path, shots: Path) -> None:
    """The desktop app's pages as PNGs, offscreen (the demo's output where there is no display)."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from .gui.app import main as desktop_main

    code = desktop_main(["--workspace", str(root), "--screenshot", str(shots)])
    if code:
        click.echo(f"rendering screenshots failed (exit {code}); the command line works as shown below")
    else:
        click.echo("wrote " + ", ".join(sorted(p.name for p in shots.glob("*.png"))))


def _add_subsystem_commands() -> None:
    """Command groups that live beside their subsystems."""
    from .excel.cli import excel_group
    from .plugins_cli import plugins_group
    from .serve.cli import serve_cmd, token_cmd
    from .sync.cli import sync_group

    for command in (plugins_group, sync_group, excel_group, serve_cmd, token_cmd):
        main.add_command(command)


_add_subsystem_commands()


def run() -> None:
    # what the imports made lives until the process ends: frozen, no collection walks it again,
    # neither during the command nor at exit (a few hundred thousand objects, ~30 ms of each run)
    gc.freeze()
    main(prog_name="lithotse")


if __name__ == "__main__":
    run()
