"""The local API: derivatives and cell values over HTTP on 127.0.0.1, for Excel, Power Query, scripts.

Every request carries the workspace token, as ``Authorization: Bearer <token>`` or as a
``?token=`` query parameter (Power Query's "From Web" cannot always set headers; a token in
a URL can end up in logs and history, so prefer the header where the client allows it).

Endpoints (``/api/v1``):

* ``GET /status`` – the Lithotse version and the workspace served (the add-in's task pane shows it)
* ``GET /derivatives`` – name, kind, version, columns, measures, dimensions of each
* ``GET /derivatives/{name}/table?from=&to=&format=json|csv[&columns=a,b][&<dim>=<value>]``
  (JSON: derivative, version, columns with types, measures, rows)
* ``GET /derivatives/{name}/value?measure=&from=&to=&<dim>=<value>[&format=json|text]``
  (``text``: the bare number, ``suppressed``, or nothing, for Excel's and LibreOffice's
  ``WEBSERVICE``)
* ``POST /values`` – many value lookups in one request (``{"lookups": [{derivative, measure,
  from, to, dims}]}``), answered in order; a failing lookup gives its own ``error``
* ``GET /events`` – Server-Sent Events announcing the current version of every derivative as
  it changes (see :mod:`.events`)

A dimension is named as its column is, any text (``&Ward%2FBed=W1``, URL-encoded); one whose
name is a parameter of the API's own (``from``, ``format``…) or starts with ``dim.`` is given
as ``&dim.<name>=<value>``. ``columns`` is split at commas, except where a comma is part of
one of the derivative's column names.

Table and value answers carry ``X-Lithotse-Version`` and an ``ETag`` made of the version and
a hash of the query, so ``If-None-Match`` gets a 304 until the derivative is rebuilt.

``/addin/`` serves the Office add-in's own files (pages, scripts, icons, the custom functions'
metadata) without a token: they hold no data, and Excel loads them before the user has pasted
the token into the task pane. The server can listen on a second, HTTPS port for the add-in
(:func:`run_server`'s ``https_sock``); CORS lets in that add-in origin only.

Row-level derivatives are listed with ``restricted: true`` and nothing else of theirs is served:
their table and values answer 403 with the rule. Reads (and refusals) are counted and written
to the audit trail as ``api-read`` records (:mod:`.readlog`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import decimal
import hashlib
import hmac
import io
import json
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from ..cache import LookupMismatch, lookup, table_of
from ..cache.lookup import describe_all
from ..derive.disclosure import Restricted
from ..errors import ConfigError, LithotseError, NotFound
from ..workspace import Workspace
from .events import VersionWatch, sse_stream
from .links import HOST, addin_origin, dims_from_params
from .readlog import ReadLog
from .token import workspace_token

ADDIN_FILES = Path(__file__).with_name("static") / "addin"
SUPPRESSED_TEXT = "suppressed"


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json(data: Any, status: int = 200, headers: dict | None = None) -> Response:
    body = json.dumps(data, default=_json_default, allow_nan=False, separators=(",", ":"))
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def _etag(version: str, request: Request, path: str) -> str:
    query = sorted((k, v) for k, v in request.query_params.multi_items() if k != "token")
    digest = hashlib.sha256(json.dumps([path, query]).encode()).hexdigest()[:16]
    return f'"{version}-{digest}"'


def _not_modified(request: Request, etag: str) -> bool:
    wanted = request.headers.get("if-none-match", "")
    return etag in [tag.strip() for tag in wanted.split(",")] or wanted.strip() == "*"


def _dims(request: Request) -> dict[str, str]:
    return dims_from_params(request.query_params.items())


def _columns(request: Request) -> str | None:
    """The ``columns`` text as given: the lookup splits it against the derivative's columns."""
    return request.query_params.get("columns") or None


def _failure(exc: Exception) -> Response:
    if isinstance(exc, NotFound):
        return _error(404, str(exc))
    if isinstance(exc, Restricted):
        return _error(403, str(exc))
    if isinstance(exc, LookupMismatch):
        return _error(422, str(exc))
    if isinstance(exc, LithotseError):
        return _error(400, str(exc))
    raise exc


def value_text(value: Any, suppressed: bool) -> str:
    """One cell as ``format=text`` answers it: the number as JSON writes it, ``suppressed``, or
    nothing for a cell without a value."""
    if suppressed:
        return SUPPRESSED_TEXT
    value = _clean(value)
    if value is None:
        return ""
    return json.dumps(value, default=_json_default)


class AddinFiles(StaticFiles):
    """The add-in's files, revalidated on every load so an updated Lithotse reaches Excel, which
    otherwise keeps add-in files for a long time."""

    def file_response(self, full_path: Any, stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def create_app(ws: Workspace, token: str | None = None, *, https_port: int | None = None,
               watch: VersionWatch | None = None, reads: ReadLog | None = None) -> Starlette:
    """The API for one workspace; ``token`` defaults to the workspace's (created on first use).

    ``https_port`` names the add-in's HTTPS listener: its origin is the one CORS allows.
    ``watch`` (one is made if not given) feeds ``/api/v1/events``; the server closes it on shutdown.
    ``app.state.reads`` counts the reads for the audit trail; close it when the server stops.
    """
    secret = (token or workspace_token(ws)).encode()
    watch = watch or VersionWatch(ws)
    reads = reads or ReadLog(ws)

    def authorised(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header.lower().startswith("bearer ") else \
            request.query_params.get("token", "")
        return hmac.compare_digest(given.encode(), secret)

    def guarded(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            if not authorised(request):
                return Response(json.dumps({"error": "missing or wrong token; send Authorization: "
                                                     "Bearer <token> (see: lithotse token)"}),
                                status_code=401, media_type="application/json",
                                headers={"WWW-Authenticate": 'Bearer realm="lithotse"'})
            try:
                return await asyncio.to_thread(handler, request)
            except Exception as exc:
                if isinstance(exc, Restricted) and "name" in request.path_params:
                    reads.note(request.path_params["name"], None, "refused")
                return _failure(exc)
        return endpoint

    def derivatives(request: Request) -> Response:
        rows = []
        for meta in describe_all(ws):
            row = {"name": meta["name"], "kind": meta["kind"], "version": meta["version"],
                   "published_at": meta.get("published_at"), "grain": meta.get("grain"),
                   "columns": meta["columns"], "dimensions": meta["dimensions"],
                   "measures": [{"name": k, "fn": v} for k, v in meta["measures"].items()],
                   "class": meta.get("class"), "restricted": bool(meta.get("restricted"))}
            if meta.get("restricted"):
                row["reason"] = meta.get("reason")
            rows.append(row)
        return _json({"derivatives": rows})

    def status(request: Request) -> Response:
        from .. import __version__

        return _json({"lithotse": __version__, "workspace": {"name": ws.root.name, "path": str(ws.root)}})

    def table_endpoint(request: Request) -> Response:
        name = request.path_params["name"]
        fmt = request.query_params.get("format", "json")
        if fmt not in ("json", "csv"):
            raise ConfigError(f"format={fmt!r}: use json or csv")
        entry, table = table_of(ws, name, request.query_params.get("from"), request.query_params.get("to"),
                                dims=_dims(request), columns=_columns(request))
        reads.note(name, entry.version, "table")
        etag = _etag(entry.version, request, request.url.path)
        headers = {"ETag": etag, "X-Lithotse-Version": entry.version, "Cache-Control": "no-cache"}
        if _not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        if fmt == "csv":
            buf = io.BytesIO()
            pacsv.write_csv(table, buf)
            return Response(buf.getvalue(), headers=headers, media_type="text/csv; charset=utf-8")
        rows = [{k: _clean(v) for k, v in row.items()} for row in table.to_pylist()]
        return _json({"derivative": name, "version": entry.version,
                      "columns": [{"name": f.name, "type": str(f.type)} for f in table.schema],
                      "measures": [m for m in entry.measures if m in table.column_names],
                      "rows": rows}, headers=headers)

    def value_endpoint(request: Request) -> Response:
        name = request.path_params["name"]
        fmt = request.query_params.get("format", "json")
        if fmt not in ("json", "text"):
            raise ConfigError(f"format={fmt!r}: use json or text")
        measure = request.query_params.get("measure")
        if not measure:
            raise ConfigError("measure= is required")
        cell = lookup(ws, name, measure, request.query_params.get("from"), request.query_params.get("to"),
                      **_dims(request))
        reads.note(name, cell.version, "value")
        etag = _etag(cell.version, request, request.url.path)
        headers = {"ETag": etag, "X-Lithotse-Version": cell.version, "Cache-Control": "no-cache"}
        if _not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        if fmt == "text":
            return Response(value_text(cell.value, cell.suppressed), headers=headers,
                            media_type="text/plain; charset=utf-8")
        return _json({**cell.to_json(), "value": _clean(cell.value)}, headers=headers)

    def text_failure(request: Request, response: Response) -> Response:
        """``format=text`` errors as text too (``error: …``), keeping the status code."""
        if request.query_params.get("format") != "text" or response.media_type != "application/json":
            return response
        try:
            message = json.loads(bytes(response.body))["error"]
        except (ValueError, KeyError, TypeError):
            return response
        return Response(f"error: {message}", status_code=response.status_code,
                        headers={k: v for k, v in response.headers.items()
                                 if k.lower() not in ("content-length", "content-type")},
                        media_type="text/plain; charset=utf-8")

    def value_or_text(handler: Any) -> Any:
        inner = guarded(handler)

        async def endpoint(request: Request) -> Response:
            return text_failure(request, await inner(request))
        return endpoint

    async def events(request: Request) -> Response:
        if not authorised(request):
            return _error(401, "missing or wrong token; send Authorization: Bearer <token>")
        return StreamingResponse(sse_stream(watch), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def batch(request: Request) -> Response:
        if not authorised(request):
            return _error(401, "missing or wrong token; send Authorization: Bearer <token>")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body must be JSON: {\"lookups\": [...]}")
        items = body.get("lookups") if isinstance(body, dict) else None
        if not isinstance(items, list):
            return _error(400, "the body must be JSON: {\"lookups\": [...]}")
        return await asyncio.to_thread(_answer_batch, items)

    def _answer_batch(items: list) -> Response:
        out = []
        for item in items:
            try:
                if not isinstance(item, dict) or not item.get("derivative") or not item.get("measure"):
                    raise ConfigError("each lookup needs derivative and measure")
                dims = item.get("dims") or {}
                if not isinstance(dims, dict):
                    raise ConfigError("dims must be an object")
                cell = lookup(ws, item["derivative"], item["measure"], item.get("from"), item.get("to"), **dims)
                reads.note(item["derivative"], cell.version, "value")
                out.append({"value": _clean(cell.value), "suppressed": cell.suppressed, "version": cell.version})
            except LithotseError as exc:
                if isinstance(exc, Restricted):
                    reads.note(str(item.get("derivative")), None, "refused")
                out.append({"error": str(exc)})
        return _json({"results": out})

    routes: list[BaseRoute] = [
        Route("/api/v1/status", guarded(status)),
        Route("/api/v1/derivatives", guarded(derivatives)),
        Route("/api/v1/derivatives/{name}/table", guarded(table_endpoint)),
        Route("/api/v1/derivatives/{name}/value", value_or_text(value_endpoint)),
        Route("/api/v1/values", batch, methods=["POST"]),
        Route("/api/v1/events", events),
    ]
    if ADDIN_FILES.is_dir():
        routes.append(Mount("/addin", app=AddinFiles(directory=ADDIN_FILES, html=True), name="addin"))
    middleware = []
    if https_port is not None:
        middleware.append(Middleware(
            CORSMiddleware, allow_origins=[addin_origin(https_port)], allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "If-None-Match", "Accept", "Cache-Control"],
            expose_headers=["ETag", "X-Lithotse-Version"], allow_private_network=True, max_age=600))

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, f"no such endpoint: {request.method} {request.url.path}")

    app = Starlette(routes=routes, middleware=middleware, exception_handlers={404: not_found})
    app.state.watch = watch
    app.state.reads = reads
    return app


def bind_socket(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 only (never another interface); port 0 picks a free one."""
    # proto=IPPROTO_TCP lets asyncio switch Nagle off on accepted connections; without it each
    # keep-alive response waits ~40 ms for the client's delayed ACK (headers and body go apart)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {HOST}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class RunningServer:
    """A server started in a thread (the desktop app): its ports, and how to stop it."""

    def __init__(self, servers: list[Any], thread: threading.Thread, port: int,
                 https_port: int | None = None) -> None:
        self.servers = servers
        self.server = servers[0]
        self.thread = thread
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.https_port = https_port
        self.addin_url = f"{addin_origin(https_port)}/addin/" if https_port is not None else None

    def stop(self, timeout: float = 10) -> None:
        for server in self.servers:
            server.should_exit = True
        self.thread.join(timeout)
        _close_reads(self.server)


def _close_reads(server: Any) -> None:
    """Write the reads counted since the last audit record (the server is stopping)."""
    reads = getattr(server.config.app.state, "reads", None)
    if reads is not None:
        reads.close()


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server as one of a group (HTTP, and HTTPS for the add-in) in one event loop:
        Ctrl+C stops them all, the first one alone handles signals, and shutting down ends the
        event streams first (they never end by themselves)."""

        def __init__(self, config: Any, group: list[Any], watch: VersionWatch) -> None:
            super().__init__(config)
            self.group = group
            self.watch = watch

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            for peer in self.group:
                peer.should_exit = True

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if self is self.group[0]:
                with super().capture_signals():
                    try:
                        yield
                    finally:
                        # uvicorn raises a caught SIGTERM again on leaving, which ends the process
                        # at once: the reads counted so far are written before
                        _close_reads(self)
            else:
                yield

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            self.watch.close()
            await super().shutdown(sockets)

    return Server


def _make_servers(ws: Workspace, token: str | None, https: tuple[Any, int] | None) -> list[Any]:
    """One app, served by an HTTP server and (``https`` = certificates and port) an HTTPS one."""
    import uvicorn

    watch = VersionWatch(ws)
    app = create_app(ws, token, https_port=https[1] if https else None, watch=watch)
    options: dict[str, Any] = {"log_level": "warning", "access_log": False, "lifespan": "off",
                               "timeout_keep_alive": 30, "timeout_graceful_shutdown": 3}
    server_class = _server_class()
    group: list[Any] = []
    group.append(server_class(uvicorn.Config(app, **options), group, watch))
    if https is not None:
        certs = https[0]
        config = uvicorn.Config(app, ssl_certfile=str(certs.server_cert), ssl_keyfile=str(certs.server_key),
                                **options)
        group.append(server_class(config, group, watch))
    return group


def run_server(ws: Workspace, port: int, ready_event: threading.Event | None = None, *,
               token: str | None = None, sock: socket.socket | None = None, server_box: list | None = None,
               https_sock: socket.socket | None = None) -> None:
    """Serve until stopped; sets ``ready_event`` once requests are accepted.

    ``https_sock`` (from :func:`bind_socket`) adds the add-in's HTTPS listener, with the local
    CA's ``localhost`` certificate (created on first use, see :mod:`.tls`).
    Works in the main thread (``lithotse serve``; Ctrl+C stops it) or in another thread
    (pass ``server_box`` to get the uvicorn servers back and set ``should_exit`` on them).
    """
    sock = sock or bind_socket(port)
    sockets = [sock] + ([https_sock] if https_sock is not None else [])
    servers: list[Any] = []
    try:
        https = None
        if https_sock is not None:
            from .tls import ensure_certificates

            https = (ensure_certificates(), https_sock.getsockname()[1])
        servers = _make_servers(ws, token, https)
        if server_box is not None:
            server_box.extend(servers)
        if ready_event is not None:
            def watch() -> None:
                while not all(s.started for s in servers) and not any(s.should_exit for s in servers):
                    time.sleep(0.01)
                ready_event.set()
            threading.Thread(target=watch, daemon=True).start()

        async def serve_all() -> None:
            pairs = zip(servers, sockets, strict=True)
            await asyncio.gather(*(server.serve(sockets=[listener]) for server, listener in pairs))

        asyncio.run(serve_all())
    finally:
        for listener in sockets:
            listener.close()
        if server_box is None and servers:
            _close_reads(servers[0])


def start_server_thread(ws: Workspace, port: int = 0, *, token: str | None = None,
                        timeout: float = 15, https_port: int | None = None) -> RunningServer:
    """Start the API in a daemon thread and wait until it accepts requests; ``https_port`` (0:
    any free one) adds the add-in's HTTPS listener."""
    sock = bind_socket(port)
    try:
        https_sock = bind_socket(https_port) if https_port is not None else None
    except BaseException:
        sock.close()
        raise
    actual = sock.getsockname()[1]
    actual_https = https_sock.getsockname()[1] if https_sock is not None else None
    ready = threading.Event()
    box: list = []
    failures: list[BaseException] = []

    def serve() -> None:
        try:
            run_server(ws, actual, ready, token=token, sock=sock, server_box=box, https_sock=https_sock)
        except BaseException as exc:
            failures.append(exc)
            ready.set()

    thread = threading.Thread(target=serve, name="lithotse-serve", daemon=True)
    thread.start()
    started = ready.wait(timeout)
    if failures:
        raise LithotseError(f"the local API could not start on {HOST}:{actual}: {failures[0]}")
    if not started or not box or not all(s.started for s in box):
        for server in box:
            server.should_exit = True
        raise LithotseError(f"the local API did not start on {HOST}:{actual} within {timeout:.0f}s")
    return RunningServer(box, thread, actual, actual_https)
