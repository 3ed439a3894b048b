"""Builds on Apache Spark through Spark Connect: ``[engine] kind = "spark"`` with
``url = "sc://host:15002"`` (any Spark Connect server: Spark's own, Sail, a cluster's), or
``url = "local[2]"``, for which pyspark starts a local Spark Connect server (it needs Java 17).

What Spark reads: each stream's records exactly as the DuckDB engine sees them, and where it can,
from the raw objects where they lie. A connector may describe how an engine reads one of its
landed objects itself (``Connector.native_read``: a :class:`~...connectors.NativeRead`, e.g. the
csv connector's recorded layout: delimiter, header, each column's kind, the records under the data
it leaves out; or the FHIR connectors' NDJSON columns: JSON paths and date rules). Such an object
is read by Spark's own CSV reader (an NDJSON line as one field) at its location: a ``file://``
path for a local folder, which the server must see too; an ``s3://`` URL for an S3 store, which
the server reads with its own S3 access, as Sail does. The reader reads it in one task, in order
(multi-line mode), so that a record's position in it is a row number;
:func:`..compile.native_object_sql` types the fields, numbers the rows and keeps each to the first
of the object's landings whose range holds it, as :mod:`...raw.reader` does. Only the object's
size is checked before (its bytes are not hashed: Spark reads them). Every other object (no
description, a format this engine does not read, a store without an address or one the server
failed to open) is read by its connector in Python, hashed as it is read, and its rows staged as
one Parquet file per object, written batch by batch, in the restricted tier's store
(``engine-staging/<build>/``; row-level data belongs there), which Spark reads the same way. The
objects' relations are united into ``<alias>__landed`` with the stream's types. Deduplication to
the newest version of each record, the incremental periods and the aggregate run in Spark; only
the cells come back (``DataFrame.toArrow()``). The staged files are deleted when the build ends.

The session is set up for exact, comparable results: ``spark.sql.session.timeZone=UTC`` (the
workspace time zone is applied in the SQL, as on DuckDB), few shuffle partitions, no UI or
console progress bar. Cancel interrupts the running Spark job (``interruptAll``).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from ...connectors import Connector, RawObject
from ...errors import Cancelled, ConfigError, CorruptObject, LithotseError, NotFound
from ...progress import Progress
from ...raw.reader import PROVENANCE, StoredObject, landing_object_store, read_object
from ...raw.sources import make_connector
from ...raw.verify import IntegrityChecks
from ...workspace import Workspace
from ..catalog import Catalog, Version
from ..compile import SPARK, Span, native_object_sql, period_query
from ..disclosure import Masking, masked_role
from ..inputs import StreamInput, dedupe_query, fresh_landings, stream_key
from . import Engine, EngineSession

DEFAULT_PORT = 15002
LOCAL = re.compile(r"^local(\[[0-9*]+\])?$")
SESSION_CONFIG = {
    "spark.sql.shuffle.partitions": "2",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}
"""Set when a local server starts; on a remote server the runtime ones are set per session."""
RUNTIME_CONFIG = ("spark.sql.shuffle.partitions", "spark.sql.session.timeZone")
STAGING = "engine-staging"
NATIVE_FORMATS_READ = ("csv", "ndjson")
"""The formats of :class:`~lithotse_desktop.connectors.NativeRead` this engine reads itself."""
LITERAL = re.compile(r"[A-Za-z0-9_.:+/-]+")

_sessions: dict[str, Any] = {}
_locks: dict[str, threading.Lock] = {}
_registry_lock = threading.Lock()


def shown_url(url: str) -> str:
    """The URL without what may be secret: ``sc://host:port`` (a token rides after ``/;``, a user
    before ``@``)."""
    if LOCAL.match(url):
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _spark_error(exc: BaseException) -> str:
    """The first line of what Spark said (error class and message), without the JVM stack."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


def _reachable(url: str) -> None:
    """A clear error at once when nothing listens at the URL (the client would retry for minutes)."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ConfigError(f"[engine] url {shown_url(url)!r}: write it as sc://host:15002 or local[2]")
    port = parts.port or DEFAULT_PORT
    try:
        with socket.create_connection((parts.hostname, port), timeout=5):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise LithotseError(f"the Spark Connect server {shown_url(url)} is unreachable: {reason}") from None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_WATCHDOG = (
    'trap \'kill "$server" 2>/dev/null; wait "$server"\' EXIT; "$@" & server=$!; '
    'while kill -0 "$LITHOTSE_SPARK_OWNER" 2>/dev/null && kill -0 "$server" 2>/dev/null; do sleep 1; done'
)
"""Runs the local server and stops it within a second of the process that started it ending in
any way (atexit does not run on a kill or ``os._exit``, and a Spark JVM holds a gigabyte)."""


def _local_server(master: str) -> str:
    """Start a Spark Connect server (``spark-submit`` of pyspark's own jars) on a free loopback port,
    stopped when this process ends; its ``sc://`` URL. pyspark's ``remote("local")`` would always
    connect to port 15002, where another process's server may be."""
    try:
        import pyspark
    except ImportError:
        raise ConfigError("the spark engine needs pyspark with Spark Connect: "
                          "pip install 'pyspark[connect]>=4,<5'") from None
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise LithotseError(f"a local Spark ({master}) needs a Java 17 runtime; none is on PATH "
                            f"(Debian: apt-get install openjdk-17-jre-headless)")
    home = Path(pyspark.__file__).parent
    port = _free_port()
    work = Path(tempfile.mkdtemp(prefix="lithotse-spark-"))
    conf = {**SESSION_CONFIG, "spark.connect.grpc.binding.port": str(port),
            "spark.connect.grpc.binding.address": "127.0.0.1", "spark.sql.warehouse.dir": str(work / "warehouse")}
    command = [str(home / "bin" / "spark-submit"), "--master", master,
               "--class", "org.apache.spark.sql.connect.service.SparkConnectServer"]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    command.append("spark-internal")
    log = open(work / "server.log", "wb")
    env = {**os.environ, "SPARK_HOME": str(home)}
    env.pop("SPARK_REMOTE", None)
    env["LITHOTSE_SPARK_OWNER"] = str(os.getpid())
    server = subprocess.Popen(["bash", "-c", _WATCHDOG, "lithotse-spark", *command], cwd=work, stdout=log,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    atexit.register(_stop_server, server, work)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = (work / "server.log").read_text("utf-8", "replace").strip().splitlines()[-5:]
            raise LithotseError(f"the local Spark Connect server ({master}) did not start: " + " | ".join(tail))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return f"sc://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.5)
    _stop_server(server, work)
    raise LithotseError(f"the local Spark Connect server ({master}) did not answer within 240 s")


def _stop_server(server: subprocess.Popen, work: Path) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    shutil.rmtree(work, ignore_errors=True)


def _start(url: str) -> Any:
    target = _local_server(url) if LOCAL.match(url) else url
    if not target.startswith("sc://"):
        raise ConfigError(f"[engine] url {shown_url(url)!r}: write it as sc://host:15002 or local[2]")
    _reachable(target)
    try:
        from pyspark.sql.connect.session import SparkSession
    except ImportError:
        raise ConfigError("the spark engine needs pyspark with Spark Connect: "
                          "pip install 'pyspark[connect]>=4,<5'") from None
    return SparkSession.builder.remote(target).create()


def connect(url: str) -> Any:
    """The Spark Connect session for ``url``, opened once per process and checked to answer."""
    with _registry_lock:
        session = _sessions.get(url)
        if session is not None:
            return session
        try:
            session = _start(url)
            for key in RUNTIME_CONFIG:
                session.conf.set(key, SESSION_CONFIG[key])
            zone = session.conf.get("spark.sql.session.timeZone")
            session.sql("SELECT 1").collect()
        except LithotseError:
            raise
        except Exception as exc:
            raise LithotseError(f"the Spark Connect server {shown_url(url)} refused the session: "
                                f"{_spark_error(exc)}") from None
        if zone != "UTC":
            raise LithotseError(f"the Spark Connect server {shown_url(url)} keeps its session time zone at "
                                f"{zone!r}; Lithotse needs UTC there to compute calendar days exactly")
        _sessions[url] = session
        _locks.setdefault(url, threading.Lock())
        return session


def forget(url: str) -> None:
    """Stop using the session of ``url`` (a server that went away); the next build opens a new one."""
    with _registry_lock:
        session = _sessions.pop(url, None)
    if session is not None and not LOCAL.match(url):
        try:
            session.stop()
        except Exception:
            pass


def _check_literal(text: str) -> None:
    """Landing ids, their times and zone names go into view text (no bound values there): the
    core's own spellings, checked anyway."""
    if not LITERAL.fullmatch(text):
        raise LithotseError(f"{text!r} cannot be written into Spark SQL")


class SparkEngine(Engine):
    name = "spark"

    def __init__(self, ws: Workspace, settings: dict[str, Any]) -> None:
        url = settings.get("url")
        if not isinstance(url, str) or not url.strip():
            raise ConfigError(f"{ws.root / 'lithotse.toml'}: the spark engine needs a url in [engine] "
                              f"(or [engine.spark] when the default engine is another one): "
                              f"\"sc://host:15002\" for a Spark Connect server, \"local[2]\" to start one here")
        self.ws = ws
        self.url = url.strip()

    def session(self, progress: Progress) -> SparkBuild:
        spark = connect(self.url)
        lock = _locks[self.url]
        while not lock.acquire(timeout=0.5):
            progress.check()
        try:
            return SparkBuild(self.ws, spark, self.url, lock)
        except BaseException:
            lock.release()
            raise


def _stageable(schema: pa.Schema) -> pa.Schema:
    """Types Spark reads from Parquet: a column without any value becomes text, nanoseconds micro."""
    fields = []
    for f in schema:
        typ = f.type
        if pa.types.is_null(typ):
            typ = pa.string()
        elif pa.types.is_timestamp(typ) and typ.unit == "ns":
            typ = pa.timestamp("us", typ.tz)
        fields.append(pa.field(f.name, typ))
    return pa.schema(fields)


class SparkBuild(EngineSession):
    """One build on a Spark Connect session: temp views by alias over staged Parquet."""

    dialect = SPARK

    def __init__(self, ws: Workspace, spark: Any, url: str, lock: threading.Lock) -> None:
        self.ws = ws
        self.spark = spark
        self.url = url
        self.shown = shown_url(url)
        self._lock = lock
        self.store = ws.store("restricted")
        self.prefix = f"{STAGING}/{uuid.uuid4().hex}"
        self.staged: list[str] = []
        self.views: list[str] = []
        self.landed_schemas: dict[str, pa.Schema] = {}
        self.unreadable: dict[str, str] = {}
        self.definitions: dict[str, Any] = {}
        """What each view was made from (its SQL text, or a DataFrame), to make it again under
        another name."""
        """Stores whose objects the server could not read (by URL), with its reason."""

    # --- inputs -------------------------------------------------------------------------------
    def _put_staged(self, name: str, path: Path) -> str:
        """Move a Parquet file into the staging area; where Spark reads it."""
        key = f"{self.prefix}/{name}.parquet"
        where = self.store.location(key)
        if where is None:
            raise LithotseError(f"the restricted tier's store has no address a Spark server can read "
                                f"({type(self.store).__name__}); use a local folder or s3:// for it")
        self.store.put_file(key, path, move=True)
        self.staged.append(key)
        return where

    def _stage(self, name: str, table: pa.Table) -> str:
        """Write ``table`` as Parquet to the staging area; where Spark reads it."""
        fd, tmp = tempfile.mkstemp(suffix=".parquet", dir=self.ws.local_dir)
        os.close(fd)
        try:
            pq.write_table(table, tmp, compression="zstd")
            return self._put_staged(name, Path(tmp))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _view(self, name: str, sql: str) -> None:
        self._sql(f"CREATE OR REPLACE TEMPORARY VIEW {SPARK.quote(name)} AS {sql}", {}, f"input {name}")
        self.views.append(name)
        self.definitions[name] = sql

    def _read(self, name: str, locations: list[str], what: str) -> None:
        try:
            frame = self.spark.read.parquet(*locations)
            frame.createOrReplaceTempView(name)
            self.views.append(name)
            self.definitions[name] = frame
            frame.schema  # noqa: B018 - asks the server to read the files' footers: fails here if it cannot
        except Exception as exc:
            raise LithotseError(f"{what}: the Spark Connect server {self.shown} cannot read the staged input "
                                f"in {self.store.url}/{self.prefix}: {_spark_error(exc)}") from None

    def load_stream(self, ws: Workspace, alias: str, resolved: StreamInput, progress: Progress,
                    checks: IntegrityChecks, *, materialize: bool = False, rescanned: bool = False,
                    unused: tuple[str, ...] = ()) -> pa.Schema:
        connector = make_connector(ws, resolved.source)
        what = f"{resolved.source}/{resolved.stream}"
        parts: list[tuple[str, pa.Schema]] = []
        for number, stored in enumerate(resolved.objects(ws)):
            progress.check()
            name = f"{alias}__object{number}"
            schema = self._native(ws, name, stored, connector, unused, progress)
            if schema is None:
                schema = self._staged(ws, name, stored, connector, checks, unused, progress)
            if schema is not None:
                parts.append((name, schema))
        if not parts:
            raise NotFound(f"input {what} has no landed records; import it first (lithotse import {resolved.source})")
        checks.raise_found()
        try:
            landed = pa.unify_schemas([schema for _, schema in parts], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise LithotseError(f"{what}: landings do not fit each other: {exc}") from None
        landed_name = f"{alias}__landed"
        self._view(landed_name, " UNION ALL ".join(self._fitted(name, schema, landed) for name, schema in parts))
        self.landed_schemas[alias] = landed
        columns = landed.names
        key = stream_key(resolved, columns)
        missing = [k for k in key if k not in columns]
        if missing:
            raise ConfigError(f"{what}: key column(s) {missing} are not in the data")
        visible = [c for c in columns if c not in PROVENANCE]
        q = SPARK.quote
        if key:
            self._view(alias, self._dedupe(q(landed_name), key, columns, visible))
        else:
            self._view(alias, f"SELECT {', '.join(q(c) for c in visible)} FROM {q(landed_name)}")
        return pa.schema([landed.field(c) for c in visible])

    @staticmethod
    def _fitted(name: str, schema: pa.Schema, landed: pa.Schema) -> str:
        """One object's rows with the stream's columns and types (a column it lacks is null)."""
        q = SPARK.quote
        picked = []
        for f in landed:
            if f.name not in schema.names:
                picked.append(f"CAST(NULL AS {SPARK.sql_type(f.type)}) AS {q(f.name)}")
            elif _stageable(pa.schema([schema.field(f.name)])) != _stageable(pa.schema([f])):
                picked.append(f"CAST({q(f.name)} AS {SPARK.sql_type(f.type)}) AS {q(f.name)}")
            else:
                picked.append(q(f.name))
        return f"SELECT {', '.join(picked)} FROM {q(name)}"

    def _native(self, ws: Workspace, name: str, stored: StoredObject, connector: Connector,
                unused: tuple[str, ...], progress: Progress) -> pa.Schema | None:
        """Have Spark read the object where it lies, as its connector describes it; None when it
        cannot (the connector gives no description, the store no address Spark reads)."""
        manifest = stored.reader
        spans = stored.spans()
        if not spans:
            return None
        store = landing_object_store(ws, manifest)
        key = manifest.object_key
        where = store.location(key)
        if where is None or store.url in self.unreadable:
            return None
        if "://" not in where:
            where = "file://" + where
        read = connector.native_read(RawObject(None, manifest.stream, manifest.original_name, manifest.media_type,
                                               manifest.meta, validated=True, open=lambda: store.open_read(key)))
        if read is None or read.format not in NATIVE_FORMATS_READ:
            return None
        schema = read.schema()
        bounded = [m for rng, m in spans if rng.bounded and m.date_field]
        if any(m.date_field not in schema.names for m in bounded):
            return None
        self._verify_size(store, stored)
        raw = f"{name}__raw"
        try:
            # the CSV reader in multi-line mode reads a file in one task, in order: a record's
            # position is its row number. An NDJSON line is read as one field of it: no delimiter
            # or quote (NUL cannot stand in valid JSON text)
            csv = read.format == "csv"
            frame = (self.spark.read.schema(", ".join(f"_c{i} STRING" for i in range(read.width)))
                     .options(header="false", multiLine="true", sep=read.delimiter if csv else "\u0000",
                              quote=read.quote if csv else "", escape=read.quote if csv else "\u0000",
                              encoding=read.encoding, mode="PERMISSIVE")
                     .csv(where))
            frame.createOrReplaceTempView(raw)
            self.views.append(raw)
            frame.schema  # noqa: B018 - the server resolves the location here: fails if it cannot read it
        except Exception as exc:
            self.unreadable[store.url] = _spark_error(exc)
            progress.update(f"the Spark Connect server {self.shown} cannot read {store.url} "
                            f"({self.unreadable[store.url]}); Lithotse reads its objects and stages them instead")
            return None
        progress.update(f"Spark reads {manifest.source}/{manifest.stream} {manifest.original_name} where it lies")
        kept = [c for c in schema.names if c not in unused]
        landings = [Span(m.id, m.landed_at, m.date_field, rng) for rng, m in spans]
        for landing in landings:
            _check_literal(landing.landing_id)
            _check_literal(landing.landed_at)
        _check_literal(ws.timezone)
        self._view(name, native_object_sql(read, SPARK.quote(raw), landings, kept, timezone=ws.timezone,
                                           dialect=SPARK))
        provenance = pa.schema([pa.field("_landing_id", pa.string()), pa.field("_landed_at", pa.string()),
                                pa.field("_row", pa.int64())])
        return pa.schema([*(schema.field(c) for c in kept), *provenance])

    @staticmethod
    def _verify_size(store: Any, stored: StoredObject) -> None:
        """What is checked of an object Spark reads itself: it is there with the size it was
        landed with. Its bytes are not hashed on the way (``lithotse raw verify`` does that)."""
        manifest = stored.reader
        info = store.stat(manifest.object_key)
        what = f"{manifest.source}/{manifest.stream}, {manifest.original_name}"
        if info is None:
            raise LithotseError(f"raw object {manifest.object_key} of landing {manifest.id} ({what}) is missing")
        if info.size != manifest.bytes:
            raise CorruptObject(manifest.object_key, what,
                                f"{info.size} bytes where {manifest.bytes} were landed")

    def _staged(self, ws: Workspace, name: str, stored: StoredObject, connector: Connector,
                checks: IntegrityChecks, unused: tuple[str, ...], progress: Progress) -> pa.Schema | None:
        """Read the object with its connector (hashing it) and stage its rows as one Parquet file
        Spark reads, batch by batch: never the whole stream in memory."""
        manifest = stored.reader
        progress.update(f"reading {manifest.source}/{manifest.stream} {manifest.original_name} for Spark")
        fd, tmp = tempfile.mkstemp(suffix=".parquet", dir=self.ws.local_dir)
        os.close(fd)
        writer = None
        schema = None
        try:
            for batch in read_object(ws, stored, connector, checks, provenance=True):
                batch = batch.drop_columns([c for c in unused if c in batch.schema.names])
                if writer is None:
                    schema = batch.schema
                    writer = pq.ParquetWriter(tmp, _stageable(schema), compression="zstd")
                writer.write_batch(batch.cast(_stageable(schema)) if batch.schema == schema
                                   else pa.Table.from_batches([batch]).cast(_stageable(schema)).to_batches()[0])
            if writer is None:
                return None
            writer.close()
            writer = None
            location = self._put_staged(name, Path(tmp))
        finally:
            if writer is not None:
                writer.close()
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._read(name, [location], f"{manifest.source}/{manifest.stream}")
        return schema

    @staticmethod
    def _dedupe(relation: str, key: list[str], columns: list[str], visible: list[str]) -> str:
        """The newest version of each record, by the one rule of :func:`..inputs.dedupe_query`."""
        return dedupe_query(relation, key, columns, dialect=SPARK, kept=visible)

    def load_derivative(self, catalog: Catalog, alias: str, name: str) -> pa.Schema:
        current = catalog.current(name)
        if current is None:
            catalog.spec(name)
            raise LithotseError(f"input derivative {name!r} has not been built yet")
        table = catalog.read(current)
        staged = _stageable(table.schema)
        self._read(alias, [self._stage(alias, table.cast(staged))], f"input derivative {name}")
        return table.schema

    def touched_periods(self, ws: Workspace, spec: dict, schema: pa.Schema, resolved: StreamInput,
                        previous: Version) -> list[Any] | None:
        fresh = fresh_landings(resolved, previous)
        if fresh is None:
            return None
        if not fresh:
            return []
        for landing in fresh:  # landing ids are the core's own (timestamps and digits); checked anyway
            if not re.fullmatch(r"[A-Za-z0-9_.:-]+", landing):
                raise LithotseError(f"landing id {landing!r} cannot be written into Spark SQL")
        q = SPARK.quote
        landed = q("input__landed")
        condition = f"_landing_id IN ({', '.join(repr(i) for i in fresh)})"
        key = resolved.key or (["resourceType", "id"] if "resource" in schema.names else [])
        if key:
            cols = ", ".join(q(k) for k in key)
            condition = f"({cols}) IN (SELECT {cols} FROM {landed} WHERE {condition})"
        compiled = period_query(spec, self.landed_schemas["input"], landed, condition, timezone=ws.timezone,
                                dialect=SPARK)
        return self.run(compiled.sql, compiled.params, f"derivative {spec['name']}").column("p").to_pylist()

    def mask_inputs(self, roles: dict[str, dict[str, str | None]]) -> dict[str, tuple[str, str]]:
        """Each input of a sql cells query with its identifiers as tokens, by the rules of
        :func:`..disclosure.mask_inputs` (``<alias>`` over the plain input under a name fresh for each
        build, :meth:`..disclosure.Masking.plain_name`; a salted digest per
        value, fresh for each build, so tokens only say which values are equal)."""
        q = SPARK.quote
        masking = Masking()
        for alias, columns in roles.items():
            if alias not in self.definitions:
                continue
            plain = masking.plain_name(alias)
            types = {f.name: f.dataType.simpleString() for f in self.spark.sql(f"SELECT * FROM {q(alias)}").schema}
            picked, changed = [], False
            for column, typ in types.items():
                found = columns.get(column)
                if not masked_role(found):
                    picked.append(q(column))
                    continue
                changed = True
                masked = masking.column(SPARK, alias, column, found, typ)
                if masked is not None:
                    picked.append(masked)
            if not changed:
                continue
            definition = self.definitions[alias]
            if isinstance(definition, str):
                self._view(plain, definition)
            else:
                definition.createOrReplaceTempView(plain)
                self.views.append(plain)
            self._view(alias, f"SELECT {', '.join(picked) or 'NULL AS __nothing'} FROM {q(plain)}")
        return masking.tags

    def lock_down(self, user_sql: bool = False) -> None:
        """SQL may not name files itself (``parquet.`/path```); the inputs are views already. A
        server that does not take the setting (Sail) still runs the SQL Lithotse compiles, but not
        a ``sql`` derivative's own text."""
        try:
            self.spark.conf.set("spark.sql.runSQLOnFiles", "false")
        except Exception as exc:
            if user_sql:
                raise LithotseError(f"the Spark Connect server {self.shown} cannot be kept from reading files "
                                    f"named in SQL (spark.sql.runSQLOnFiles: {_spark_error(exc)}), so a sql "
                                    f"derivative is not built there") from None

    # --- queries ------------------------------------------------------------------------------
    def _sql(self, sql: str, args: dict[str, Any], what: str, progress: Progress | None = None) -> pa.Table:
        stop = threading.Event()
        watcher = None
        if progress is not None:
            def watch() -> None:
                while not stop.wait(0.2):
                    if progress.cancelled:
                        self.spark.interruptAll()
                        return

            watcher = threading.Thread(target=watch, name="lithotse-spark-cancel", daemon=True)
            watcher.start()
        try:
            return self.spark.sql(sql, args=args or None).toArrow()
        except Exception as exc:
            if progress is not None and progress.cancelled:
                raise Cancelled() from None
            raise LithotseError(f"{what}: Spark at {self.shown}: {_spark_error(exc)}") from None
        finally:
            stop.set()
            if watcher is not None:
                watcher.join()

    def run(self, sql: str, params: list[Any], what: str, progress: Progress | None = None) -> pa.Table:
        if progress is not None:
            progress.check()
        return self._sql(sql, {f"p{i}": v for i, v in enumerate(params, start=1)}, what, progress)

    def close(self) -> None:
        try:
            for name in reversed(self.views):
                try:
                    self.spark.catalog.dropTempView(name)
                except Exception:
                    pass
            for key in self.staged:
                self.store.delete(key)
        finally:
            self._lock.release()
