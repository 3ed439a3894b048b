"""``lithotse doctor``: what a newcomer needs to know about this machine and workspace, at a glance.

:func:`report` returns a plain dict (the ``--json`` form); :func:`format_text` renders it on
one screen. It is a report, not a check: nothing here raises for a missing piece, every
section says what it found. Nothing is written except the probes' own traffic: a bound and
closed socket, one S3 listing of at most one key per store.

JSON keys (stable):

- ``lithotse``: ``{"version"}``; ``python``: ``{"version", "executable"}``;
  ``platform``: ``{"system", "release", "machine"}``;
  ``libraries``: distribution name -> version, or null when not installed;
- ``plugins``: ``[{"name", "distribution", "version", "status" ("ok"|"error"|"disabled"), "error", "connectors"}]``;
- ``workspace``: ``{"found", "path", "id", "name", "error", "hint"}``;
- ``secrets``: ``{"store" ("os"|"file"|null), "location", "requested" ("auto"|"os"|"file"),
  "requested_by", "reason", "error"}``;
- ``stores``: ``[{"name", "url", "kind" ("local"|"s3"|"other"), "tiers", "status", "detail"}]``
  with status ``ok``, ``read-only``, ``denied``, ``missing``, ``unreachable`` or ``error``;
- ``cache``: ``{"backend", "available", "status", "detail"}``;
- ``serve``: ``{"port", "free", "detail"}``;
- ``libreoffice``: ``{"found", "path"}``;
- ``display``: ``{"available", "detail"}``.
"""

from __future__ import annotations

import concurrent.futures as futures
import importlib.metadata as md
import os
import platform
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import __version__
from .errors import LithotseError, NotFound

KEY_LIBRARIES = ("keyring", "duckdb", "pyarrow", "PySide6-Essentials", "boto3", "openpyxl",
                 "pluggy", "starlette", "uvicorn", "platformdirs", "click")
PROBE_TIMEOUT = 3.0
LIBREOFFICE_PLACES = (Path("/Applications/LibreOffice.app/Contents/MacOS/soffice"),
                      Path(r"C:\Program Files\LibreOffice\program\soffice.exe"))


def _guard(section: Callable[[], Any], on_error: Callable[[str], Any]) -> Any:
    """Run one section; an unexpected failure becomes part of the report, never a crash."""
    try:
        return section()
    except Exception as exc:
        return on_error(f"{type(exc).__name__}: {exc}")


def versions() -> dict[str, Any]:
    libraries: dict[str, str | None] = {}
    for name in KEY_LIBRARIES:
        try:
            libraries[name] = md.version(name)
        except md.PackageNotFoundError:
            libraries[name] = None
    return {"lithotse": {"version": __version__},
            "python": {"version": platform.python_version(), "executable": sys.executable},
            "platform": {"system": platform.system(), "release": platform.release(),
                         "machine": platform.machine()},
            "libraries": libraries}


def plugins() -> list[dict[str, Any]]:
    from .plugins import get_plugin_manager

    manager = get_plugin_manager()
    manager.connectors()  # runs the registration hooks, so a plugin that raises shows as an error
    return [{k: row[k] for k in ("name", "distribution", "version", "status", "error", "connectors")}
            for row in (info.to_json() for info in sorted(manager.plugins.values(), key=lambda p: p.name))]


def open_workspace(path: Path) -> tuple[Any, dict[str, Any]]:
    """The workspace at ``path`` (or None) and what to say about it."""
    from .workspace import Workspace

    out: dict[str, Any] = {"found": False, "path": str(path), "id": None, "name": None,
                           "error": None, "hint": None}
    try:
        ws = Workspace.open(path)
    except NotFound:
        out["hint"] = ("create one with: lithotse init DIR "
                       "(then pass --workspace DIR or set LITHOTSE_WORKSPACE)")
        return None, out
    except LithotseError as exc:
        out.update(found=True, error=str(exc), hint="fix lithotse.toml, then run lithotse doctor again")
        return None, out
    section = ws.config.get("workspace", {})
    out.update(found=True, path=str(ws.root), id=ws.id, name=section.get("name"))
    return ws, out


def secrets_store() -> dict[str, Any]:
    from .secrets import current_store, requested

    out: dict[str, Any] = {"store": None, "location": None, "requested": None,
                           "requested_by": None, "reason": None, "error": None}
    try:
        out["requested"], out["requested_by"] = requested()
        out.update(current_store().to_json())
    except LithotseError as exc:
        out["error"] = str(exc)
    return out


def _local_status(path: Path) -> tuple[str, str]:
    if path.is_dir():
        if os.access(path, os.W_OK):
            return "ok", f"writable folder {path}"
        return "read-only", f"{path} is not writable by this user"
    if path.exists():
        return "error", f"{path} is not a folder"
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and parent.is_dir() and os.access(parent, os.W_OK):
        return "ok", f"{path} does not exist yet; it is created on first write"
    return "error", f"{path} does not exist and cannot be created under {parent}"


def _other_status(store: Any, timeout: float) -> tuple[str, str]:
    """A plugin's store: list one key in a helper thread, giving up after ``timeout``."""
    pool = futures.ThreadPoolExecutor(1)
    job = pool.submit(lambda: next(iter(store.list("")), None))
    try:
        job.result(timeout=timeout)
        return "ok", f"listed {getattr(store, 'url', 'the store')}"
    except futures.TimeoutError:
        return "unreachable", f"no answer within {timeout:g} s"
    except LithotseError as exc:
        return "error", str(exc)
    finally:
        pool.shutdown(wait=False)


def _store_status(ws: Any, name: str, spec: dict, timeout: float) -> dict[str, Any]:
    from .plugins import open_store
    from .storage.s3 import S3Store

    url = str(spec.get("url", ""))
    from .workspace import ALL_TIERS

    configured = ws.config.get("tiers", {})
    tiers = [tier for tier in ALL_TIERS if ws.tier_store_name(tier) == name]
    tiers += [tier for tier, store in configured.items() if isinstance(store, list) and name in store]
    row = {"name": name, "url": url, "kind": "other", "tiers": tiers, "status": "error", "detail": ""}
    if not url:
        row["detail"] = "no url"
        return row
    if url.startswith("file://") or "://" not in url:
        row["kind"] = "local"
        path = Path(url[len("file://"):] if url.startswith("file://") else url).expanduser()
        path = path if path.is_absolute() else ws.root / path
        row["status"], row["detail"] = _local_status(path.resolve())
        return row
    options = {k: v for k, v in spec.items() if k != "url"}
    try:
        store = open_store(url, base=ws.root, options=options)
    except LithotseError as exc:
        row["detail"] = str(exc)
        return row
    if isinstance(store, S3Store):
        row["kind"] = "s3"
        row["status"], row["detail"] = store.probe(timeout)
    else:
        row["status"], row["detail"] = _other_status(store, timeout)
    return row


def stores(ws: Any, timeout: float = PROBE_TIMEOUT) -> list[dict[str, Any]]:
    """Every ``[stores]`` entry, probed side by side so slow endpoints do not add up."""
    specs = {name: dict(spec or {}) for name, spec in sorted(ws.config.get("stores", {}).items())}
    with futures.ThreadPoolExecutor(max(1, min(8, len(specs)))) as pool:
        jobs = {name: pool.submit(_store_status, ws, name, spec, timeout) for name, spec in specs.items()}
    rows = []
    for name, job in jobs.items():
        try:
            rows.append(job.result())
        except Exception as exc:
            rows.append({"name": name, "url": str(specs[name].get("url", "")), "kind": "other",
                         "tiers": [], "status": "error", "detail": f"{type(exc).__name__}: {exc}"})
    return rows


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def cache(ws: Any, timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    from .cache.backends import backend_factories, cache_config, create_backend

    config = cache_config(ws)
    name = str(config["backend"])
    available = name in backend_factories()
    out: dict[str, Any] = {"backend": name, "available": available, "status": "ok", "detail": ""}
    if not available:
        out.update(status="error", detail=f"no cache backend named {name!r} is installed "
                   "(a Redis backend comes with the lithotse-redis plugin)")
    elif name == "embedded":
        path = Path(config["path"]).expanduser() if config.get("path") else Path(".lithotse/cache/l3.sqlite")
        out["detail"] = f"SQLite file {path if path.is_absolute() else ws.root / path}"
    else:
        where = _without_userinfo(str(config.get("url", "")))
        pool = futures.ThreadPoolExecutor(1)
        job = pool.submit(lambda: create_backend(ws).entries())
        try:
            job.result(timeout=timeout)
            out["detail"] = f"answered at {where}" if where else "answered"
        except futures.TimeoutError:
            out.update(status="unreachable", detail=f"no answer from {where or name} within {timeout:g} s")
        except Exception as exc:
            out.update(status="error", detail=f"{type(exc).__name__}: {exc}")
        finally:
            pool.shutdown(wait=False)
    return out


def serve_port(ws: Any) -> dict[str, Any]:
    """Whether ``lithotse serve`` could listen on ``[serve] port`` (bound like it, then closed)."""
    from .serve.links import DEFAULT_PORT
    from .serve.links import serve_port as configured_port

    port = DEFAULT_PORT if ws is None else configured_port(ws)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as serve.app.bind_socket
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        return {"port": port, "free": False,
                "detail": f"in use or not allowed ({exc.strerror or exc}); lithotse serve may already be "
                          "running, or choose another port with [serve] port / --port"}
    finally:
        sock.close()
    return {"port": port, "free": True, "detail": f"127.0.0.1:{port} is free"}


def libreoffice() -> dict[str, Any]:
    found = shutil.which("soffice") or shutil.which("libreoffice")
    if not found:
        found = next((str(p) for p in LIBREOFFICE_PLACES if p.exists()), None)
    return {"found": bool(found), "path": found}


def display() -> dict[str, Any]:
    if sys.platform in ("win32", "darwin"):
        return {"available": True, "detail": "desktop session (Windows and macOS always have one)"}
    shown = [f"{var}={os.environ[var]}" for var in ("WAYLAND_DISPLAY", "DISPLAY") if os.environ.get(var)]
    if shown:
        return {"available": True, "detail": ", ".join(shown)}
    return {"available": False,
            "detail": "headless: no DISPLAY or WAYLAND_DISPLAY; the command line works, and "
                      "lithotse-desktop --screenshot DIR renders the app offscreen"}


def report(workspace_dir: Path, *, timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """The whole report; the workspace is opened first so its ``[secrets] store`` counts."""
    out = versions()
    out["plugins"] = _guard(plugins, lambda err: [{"name": "?", "distribution": None, "version": None,
                                                   "status": "error", "error": err, "connectors": []}])
    ws, out["workspace"] = open_workspace(Path(workspace_dir))
    out["secrets"] = _guard(secrets_store, lambda err: {"store": None, "location": None, "requested": None,
                                                        "requested_by": None, "reason": None, "error": err})
    if ws is None:
        out["stores"] = []
        out["cache"] = {"backend": None, "available": False, "status": "error", "detail": "no workspace"}
    else:
        out["stores"] = stores(ws, timeout)
        out["cache"] = _guard(lambda: cache(ws, timeout), lambda err: {
            "backend": None, "available": False, "status": "error", "detail": err})
    out["serve"] = _guard(lambda: serve_port(ws), lambda err: {"port": None, "free": False, "detail": err})
    out["libreoffice"] = libreoffice()
    out["display"] = display()
    return out


def format_text(data: dict[str, Any]) -> str:
    """The report on one screen: a label column, then what was found."""
    lines = []

    def add(label: str, text: str) -> None:
        lines.append(f"{label:<12}{text}")

    py, plat = data["python"], data["platform"]
    add("lithotse", f"{data['lithotse']['version']} on Python {py['version']} ({py['executable']}), "
                    f"{plat['system']} {plat['release']} {plat['machine']}")
    add("libraries", ", ".join(f"{k} {v or 'MISSING'}" for k, v in data["libraries"].items()))
    if not data["plugins"]:
        add("plugins", "none installed (lithotse plugins install NAME)")
    for n, row in enumerate(data["plugins"]):
        state = f"ERROR: {row['error']}" if row["status"] == "error" else row["status"]
        add("plugins" if n == 0 else "", f"{row['name']} {row['version'] or '-'} [{state}] "
                                         f"connectors: {', '.join(row['connectors']) or '-'}")
    wsinfo = data["workspace"]
    if wsinfo["found"] and not wsinfo["error"]:
        add("workspace", f"{wsinfo['path']} (id {wsinfo['id']})")
    else:
        add("workspace", f"{wsinfo['error']}; {wsinfo['hint']}" if wsinfo["error"]
            else f"none at {wsinfo['path']}; {wsinfo['hint']}")
    sec = data["secrets"]
    if sec["error"]:
        add("secrets", f"NOT USABLE: {sec['error']}")
    else:
        where = f"OS keyring ({sec['location']})" if sec["store"] == "os" else f"file {sec['location']}"
        add("secrets", f"{where}; {sec['reason']} [requested: {sec['requested']} by {sec['requested_by']}]")
    for n, row in enumerate(data["stores"]):
        tiers = f" ({', '.join(row['tiers'])})" if row["tiers"] else ""
        add("stores" if n == 0 else "", f"{row['name']}{tiers} {row['url']}: {row['status']}: {row['detail']}")
    c = data["cache"]
    if c["backend"] is not None:
        add("cache", f"{c['backend']}: {c['status']}" + (f": {c['detail']}" if c["detail"] else ""))
    s = data["serve"]
    add("serve", f"port {s['port']}: {'free' if s['free'] else 'NOT FREE'}" +
        ("" if s["free"] else f" ({s['detail']})"))
    lo = data["libreoffice"]
    add("libreoffice", lo["path"] if lo["found"] else
        "not found (optional: opens refreshed workbooks without Excel; the workbook tests need it)")
    d = data["display"]
    add("display", d["detail"])
    return "\n".join(lines)
