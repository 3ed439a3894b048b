"""The local API: derivatives and cell values over HTTP on 127.0.0.1, for Excel, Power Query, scripts.

Every request carries the workspace token, as ``Authorization: Bearer <token>`` or as a
``?token=`` query parameter (Power Query's "From Web" cannot always set headers; a token in
a URL can end up in logs and history, so prefer the header where the client allows it).

Endpoints (``/api/v1``):

* ``GET /derivatives`` – name, kind, version, columns, measures, dimensions of each
* ``GET /derivatives/{name}/table?from=&to=&format=json|csv[&columns=a,b][&<dim>=<value>]``
  (JSON: derivative, version, columns with types, measures, rows)
* ``GET /derivatives/{name}/value?measure=&from=&to=&<dim>=<value>``
* ``POST /values`` – many value lookups in one request (``{"lookups": [{derivative, measure,
  from, to, dims}]}``), answered in order; a failing lookup gives its own ``error``

Table and value answers carry ``X-Lithotse-Version`` and an ``ETag`` made of the version and
a hash of the query, so ``If-None-Match`` gets a 304 until the derivative is rebuilt.

Row-level derivatives are listed with ``restricted: true`` and nothing else of theirs is served:
their table and values answer 403 with the rule. Reads (and refusals) are counted and written
to the audit trail as ``api-read`` records (:mod:`.readlog`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import hashlib
import hmac
import io
import json
import math
import socket
import threading
import time
from typing import Any

import pyarrow.csv as pacsv
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..cache import LookupMismatch, lookup, table_of
from ..cache.lookup import describe_all
from ..derive.disclosure import Restricted
from ..errors import ConfigError, LithotseError, NotFound
from ..workspace import Workspace
from .links import HOST
from .readlog import ReadLog
from .token import workspace_token

RESERVED = {"measure", "from", "to", "token", "format", "columns"}


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
    return {k: v for k, v in request.query_params.items() if k not in RESERVED}


def _columns(request: Request) -> list[str] | None:
    raw = request.query_params.get("columns")
    return [c.strip() for c in raw.split(",") if c.strip()] if raw else None


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


def create_app(ws: Workspace, token: str | None = None, *, reads: ReadLog | None = None) -> Starlette:
    """The API for one workspace; ``token`` defaults to the workspace's (created on first use).

    ``app.state.reads`` counts the reads for the audit trail; close it when the server stops.
    """
    secret = (token or workspace_token(ws)).encode()
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
        return _json({**cell.to_json(), "value": _clean(cell.value)}, headers=headers)

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

    routes = [
        Route("/api/v1/derivatives", guarded(derivatives)),
        Route("/api/v1/derivatives/{name}/table", guarded(table_endpoint)),
        Route("/api/v1/derivatives/{name}/value", guarded(value_endpoint)),
        Route("/api/v1/values", batch, methods=["POST"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, f"no such endpoint: {request.method} {request.url.path}")

    app = Starlette(routes=routes, exception_handlers={404: not_found})
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
    """A server started in a thread (the desktop app): its port, and how to stop it."""

    def __init__(self, server: Any, thread: threading.Thread, port: int) -> None:
        self.server = server
        self.thread = thread
        self.port = port
        self.url = f"http://{HOST}:{port}"

    def stop(self, timeout: float = 10) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        _close_reads(self.server)


def _close_reads(server: Any) -> None:
    """Write the reads counted since the last audit record (the server is stopping)."""
    reads = getattr(server.config.app.state, "reads", None)
    if reads is not None:
        reads.close()


def _make_server(ws: Workspace, token: str | None) -> Any:
    import uvicorn

    config = uvicorn.Config(create_app(ws, token), log_level="warning", access_log=False,
                            lifespan="off", timeout_keep_alive=30)
    return uvicorn.Server(config)


def run_server(ws: Workspace, port: int, ready_event: threading.Event | None = None, *,
               token: str | None = None, sock: socket.socket | None = None, server_box: list | None = None) -> None:
    """Serve until stopped; sets ``ready_event`` once requests are accepted.

    Works in the main thread (``lithotse serve``; Ctrl+C stops it) or in another thread
    (pass ``server_box`` to get the uvicorn server back and set ``should_exit`` on it).
    """
    sock = sock or bind_socket(port)
    server = _make_server(ws, token)
    if server_box is not None:
        server_box.append(server)
    if ready_event is not None:
        def watch() -> None:
            while not server.started and not server.should_exit:
                time.sleep(0.01)
            ready_event.set()
        threading.Thread(target=watch, daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if server_box is None:
            _close_reads(server)


def start_server_thread(ws: Workspace, port: int = 0, *, token: str | None = None,
                        timeout: float = 15) -> RunningServer:
    """Start the API in a daemon thread and wait until it accepts requests."""
    sock = bind_socket(port)
    actual = sock.getsockname()[1]
    ready = threading.Event()
    box: list = []
    thread = threading.Thread(target=run_server, args=(ws, actual, ready),
                              kwargs={"token": token, "sock": sock, "server_box": box},
                              name="lithotse-serve", daemon=True)
    thread.start()
    if not ready.wait(timeout):
        raise LithotseError(f"the local API did not start on {HOST}:{actual} within {timeout:.0f}s")
    return RunningServer(box[0], thread, actual)
