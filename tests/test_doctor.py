"""``lithotse doctor``: one report of versions, plugins, secrets, stores, cache, port, LibreOffice, display."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import socket
import stat
import sys
import time

import keyring
import pytest
from keyring.backends import fail

from lithotse_desktop import __version__, secrets
from lithotse_desktop.hookspecs import hookimpl
from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
from lithotse_desktop.workspace import Workspace
from tests.cache.helpers import redis_url  # noqa: F401 - fixture
from tests.conftest import run_lithotse

TOP_KEYS = {"lithotse", "python", "platform", "libraries", "plugins", "workspace", "secrets", "stores",
            "cache", "serve", "libreoffice", "display"}


@pytest.fixture(autouse=True)
def fresh_state():
    secrets.reset()
    reset_plugin_manager()
    yield
    secrets.reset()
    reset_plugin_manager()


def doctor(cli, *args: str) -> dict:
    result = cli("doctor", "--json", *args)
    return json.loads(result.stdout)


def test_without_a_workspace_it_says_how_to_make_one(tmp_path):
    result = run_lithotse("doctor", "--json", "--workspace", str(tmp_path / "none"))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == TOP_KEYS
    assert data["workspace"] == {"found": False, "path": str(tmp_path / "none"), "id": None, "name": None,
                                 "error": None, "hint": "create one with: lithotse init DIR (then pass "
                                 "--workspace DIR or set LITHOTSE_WORKSPACE)"}
    assert data["stores"] == [] and data["cache"]["backend"] is None
    assert data["lithotse"] == {"version": __version__}
    assert data["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert data["libraries"]["duckdb"] == md.version("duckdb")
    assert data["libraries"]["keyring"] == md.version("keyring")
    assert data["secrets"]["store"] == "file" and data["secrets"]["requested_by"] == "LITHOTSE_SECRETS_STORE"
    assert data["serve"]["port"] == 8765
    text = run_lithotse("doctor", "--workspace", str(tmp_path / "none"))
    assert text.returncode == 0
    assert f"workspace   none at {tmp_path / 'none'}; create one with: lithotse init DIR" in text.stdout


def test_report_on_a_workspace_with_every_kind_of_store(cli, workspace, seaweed, tmp_path):
    ws = Workspace.open(workspace.root)
    ws.config["stores"]["team"] = {"url": seaweed.new_prefix(), **seaweed.store_options("client")}
    ws.config["stores"]["managers"] = {"url": seaweed.new_prefix(), **seaweed.store_options("manager")}
    ws.config["stores"]["nobucket"] = {"url": "s3://no-such-bucket-here/p", **seaweed.store_options("admin")}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    ws.config["stores"]["down"] = {"url": "s3://raw-bucket/p", **seaweed.store_options("client"),
                                   "endpoint_url": f"http://127.0.0.1:{closed_port}"}
    ws.config["stores"]["nokeys"] = {"url": "s3://raw-bucket/p", "endpoint_url": seaweed.endpoint_url}
    (tmp_path / "a-file").write_text("not a folder")
    ws.config["stores"]["archive"] = {"url": str(tmp_path / "a-file" / "store")}
    ws.config["stores"]["later"] = {"url": "data-not-yet"}
    ws.config["tiers"]["raw_read"] = ["team"]
    ws.save()
    started = time.monotonic()
    data = doctor(cli)
    assert time.monotonic() - started < 20
    assert data["workspace"]["found"] and data["workspace"]["id"] == ws.id
    rows = {row["name"]: row for row in data["stores"]}
    assert rows["local"]["kind"] == "local" and rows["local"]["status"] == "ok"
    assert rows["local"]["tiers"] == ["raw", "derived", "cache", "restricted", "audit"]
    assert rows["team"]["tiers"] == ["raw_read"]
    assert (rows["team"]["kind"], rows["team"]["status"]) == ("s3", "ok")
    assert rows["managers"]["status"] == "denied" and "access denied" in rows["managers"]["detail"]
    assert rows["nobucket"]["status"] == "missing"
    assert rows["down"]["status"] == "unreachable" and "cannot reach the S3 endpoint" in rows["down"]["detail"]
    assert rows["archive"]["status"] == "error"
    assert rows["archive"]["detail"] == (f"{tmp_path / 'a-file' / 'store'} does not exist and cannot be created "
                                         f"under {tmp_path / 'a-file'}")
    assert rows["later"]["status"] == "ok" and "created on first write" in rows["later"]["detail"]
    assert not (ws.root / "data-not-yet").exists(), "doctor creates nothing"
    if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
        assert rows["nokeys"]["status"] == "error" and "no S3 credentials" in rows["nokeys"]["detail"]
    for identity in ("client", "manager", "admin"):
        assert seaweed.credentials[identity]["secret_access_key"] not in json.dumps(data)
    assert data["cache"] == {"backend": "embedded", "available": True, "status": "ok",
                             "detail": f"SQLite file {ws.root / '.lithotse/cache/l3.sqlite'}"}


def test_secrets_section_when_os_is_asked_for_but_missing(cli, workspace, monkeypatch):
    monkeypatch.setenv("LITHOTSE_SECRETS_STORE", "os")
    keyring.set_keyring(fail.Keyring())
    result = cli("doctor", "--json")
    data = json.loads(result.stdout)
    assert data["secrets"]["store"] is None
    assert data["secrets"]["requested"] == "os"
    assert "is not usable" in data["secrets"]["error"] and "Install and unlock" in data["secrets"]["error"]
    text = cli("doctor").stdout
    assert 'secrets     NOT USABLE: secrets store "os"' in text


def test_secrets_section_with_a_working_keyring(cli, workspace, os_keyring):
    data = doctor(cli)
    assert data["secrets"] == {"store": "os", "location": "keyring backend FileKeyring", "requested": "auto",
                               "requested_by": "LITHOTSE_SECRETS_STORE", "reason": "an OS keyring is available",
                               "error": None}


def test_plugins_with_their_state(cli, workspace):
    class Broken:
        @hookimpl
        def lithotse_register_connectors(self):
            raise RuntimeError("schema files missing")

    get_plugin_manager().register(Broken(), "broken-test")
    data = doctor(cli)
    rows = {row["name"]: row for row in data["plugins"]}
    assert rows["csv"]["status"] == "ok" and rows["csv"]["connectors"] == ["csv"]
    assert rows["broken-test"]["status"] == "error"
    assert "schema files missing" in rows["broken-test"]["error"]
    assert set(rows["csv"]) == {"name", "distribution", "version", "status", "error", "connectors"}


def test_serve_port_free_or_taken(cli, workspace):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        ws = Workspace.open(workspace.root)
        ws.config["serve"] = {"port": port}
        ws.save()
        data = doctor(cli)
        assert data["serve"]["port"] == port and data["serve"]["free"] is False
        assert "lithotse serve may already be running" in data["serve"]["detail"]
        assert f"port {port}: NOT FREE" in cli("doctor").stdout
    data = doctor(cli)
    assert data["serve"] == {"port": port, "free": True, "detail": f"127.0.0.1:{port} is free"}


def test_cache_backends(cli, workspace, redis_url):  # noqa: F811 - the fixture imported above, by name
    ws = Workspace.open(workspace.root)
    ws.config["cache"] = {"backend": "redis", "url": redis_url}
    ws.save()
    assert doctor(cli)["cache"] == {"backend": "redis", "available": True, "status": "ok",
                                    "detail": f"answered at {redis_url}"}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    ws.config["cache"] = {"backend": "redis", "url": f"redis://:pw-Secret-77@127.0.0.1:{closed_port}/0"}
    ws.save()
    result = cli("doctor", "--json")
    cache = json.loads(result.stdout)["cache"]
    assert cache["status"] in ("error", "unreachable") and cache["available"] is True
    assert "pw-Secret-77" not in result.stdout + result.stderr
    ws.config["cache"] = {"backend": "memcached"}
    ws.save()
    cache = doctor(cli)["cache"]
    assert (cache["available"], cache["status"]) == (False, "error")
    assert "lithotse-redis plugin" in cache["detail"]


def test_libreoffice_and_display(cli, workspace, tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    data = doctor(cli)
    if not any(p.exists() for p in __import__("lithotse_desktop.doctor").doctor.LIBREOFFICE_PLACES):
        assert data["libreoffice"] == {"found": False, "path": None}
    if sys.platform in ("win32", "darwin"):
        assert data["display"]["available"] is True
    else:
        assert data["display"]["available"] is False and data["display"]["detail"].startswith("headless")
        monkeypatch.setenv("DISPLAY", ":99")
        assert doctor(cli)["display"] == {"available": True, "detail": "DISPLAY=:99"}
    fake = empty / ("soffice.exe" if os.name == "nt" else "soffice")
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    assert doctor(cli)["libreoffice"] == {"found": True, "path": str(fake)}


def test_text_form_fits_one_screen(cli, workspace):
    text = cli("doctor").stdout
    lines = text.splitlines()
    labels = [line[:12].strip() for line in lines if line[:12].strip()]
    assert labels == ["lithotse", "libraries", "plugins", "workspace", "secrets", "stores", "cache",
                      "serve", "libreoffice", "display"]
    assert len(lines) <= 24
    assert f"workspace   {workspace.root} (id {workspace.id})" in lines
