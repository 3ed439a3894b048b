"""The window serves the local API, and a manager's workspace shows only what it may read."""

from __future__ import annotations

import json
import socket

import pytest
import requests
from PySide6.QtWidgets import QApplication

from lithotse_desktop.gui.window import PAGE_KEYS, MainWindow, NoRawAccessPage
from lithotse_desktop.serve.token import workspace_token
from lithotse_desktop.storage.s3 import AccessDenied
from lithotse_desktop.workspace import Workspace
from tests.gui.helpers import demo_workspace
from tests.support.ports import free_port
from tests.support.seaweed import DERIVED_BUCKET


def test_window_serves_the_api_on_the_configured_port(qtbot, window, workspace, tmp_path):
    demo_workspace(workspace, tmp_path / "clinic")
    port = free_port()
    workspace.config["serve"] = {"port": port}
    api = window.start_api()
    assert api is not None, window.statusBar().currentMessage()
    assert api.port == port
    assert window.api_label.text() == f"Local API: http://127.0.0.1:{port}"
    url = f"http://127.0.0.1:{port}/api/v1/derivatives"
    answer = requests.get(url, headers={"Authorization": f"Bearer {workspace_token(workspace)}"},
                          timeout=10)
    assert answer.status_code == 200
    assert [d["name"] for d in answer.json()["derivatives"]] == ["visits_by_grp"]
    assert requests.get(url, timeout=10).status_code == 401
    window.close()
    assert window.api is None
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=2)


def test_window_serves_the_excel_addin_over_https_when_set(qtbot, window, workspace, tmp_path):
    from lithotse_desktop.secrets import secrets_dir

    demo_workspace(workspace, tmp_path / "clinic")
    port, addin_port = free_port(), free_port()
    workspace.config["serve"] = {"port": port, "https": True, "https_port": addin_port}
    api = window.start_api()
    assert api is not None, window.statusBar().currentMessage()
    assert api.https_port == addin_port
    assert window.api_label.text() == (f"Local API: http://127.0.0.1:{port} · "
                                       f"Excel add-in: https://localhost:{addin_port}/addin/")
    ca = str(secrets_dir() / "tls" / "lithotse-ca.pem")
    page = requests.get(f"https://localhost:{addin_port}/addin/taskpane.html", verify=ca, timeout=10)
    assert page.status_code == 200 and "taskpane.js" in page.text
    answer = requests.get(f"https://localhost:{addin_port}/api/v1/derivatives", verify=ca, timeout=10,
                          headers={"Authorization": f"Bearer {workspace_token(workspace)}"})
    assert [d["name"] for d in answer.json()["derivatives"]] == ["visits_by_grp"]
    window.close()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"https://localhost:{addin_port}/addin/taskpane.html", verify=ca, timeout=2)


def test_the_addin_is_switched_on_in_settings_and_its_manifest_saved(qtbot, window, workspace, tmp_path):
    from PySide6.QtCore import QPoint, Qt

    from lithotse_desktop.excel.officejs import manifest_xml

    port, addin_port = free_port(), free_port()
    workspace.config["serve"] = {"port": port, "https_port": addin_port}
    window.start_api()
    assert window.api.https_port is None
    settings = window.show_page("settings")
    settings.set_workspace(workspace)
    assert not settings.addin.isChecked() and "Off" in settings.addin_hint.text()
    qtbot.mouseClick(settings.addin, Qt.MouseButton.LeftButton, pos=QPoint(8, settings.addin.height() // 2))
    assert settings.addin.isChecked()
    assert Workspace.open(workspace.root).config["serve"]["https"] is True
    assert window.api is not None and window.api.https_port == addin_port
    assert window.api_label.text().endswith(f"Excel add-in: https://localhost:{addin_port}/addin/")
    assert f"https://localhost:{addin_port}/addin/" in settings.addin_hint.text()
    target = tmp_path / "lithotse-addin.xml"
    settings.save_manifest(str(target))
    assert target.read_text() == manifest_xml(addin_port)
    assert settings.saved.text() == "Manifest saved: lithotse-addin.xml"
    qtbot.mouseClick(settings.addin, Qt.MouseButton.LeftButton, pos=QPoint(8, settings.addin.height() // 2))
    assert Workspace.open(workspace.root).config["serve"]["https"] is False
    assert window.api is not None and window.api.https_port is None and "add-in" not in window.api_label.text()
    window.close()


def test_a_busy_port_is_reported_and_the_app_carries_on(qtbot, window, workspace):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        workspace.config["serve"] = {"port": port}
        assert window.start_api() is None
    assert "Local API not started: cannot listen on 127.0.0.1:" in window.statusBar().currentMessage()
    assert window.api_label.text() == "Local API: not running"
    assert window.show_page("derivatives").isVisible()


def _s3_workspace(root, seaweed, identity: str, raw_url: str, derived_url: str) -> Workspace:
    ws = Workspace.create(root)
    ws.config["stores"]["rawbucket"] = {"url": raw_url, **seaweed.store_options(identity)}
    ws.config["stores"]["shared"] = {"url": derived_url, **seaweed.store_options(identity)}
    ws.config["tiers"].update(raw="rawbucket", derived="shared")
    ws.save()
    return Workspace.open(root)


def test_a_manager_sees_derivatives_but_no_raw_pages(qtbot, seaweed, tmp_path, test_plugins, cli):
    raw_url, derived_url = seaweed.new_prefix(), seaweed.new_prefix(DERIVED_BUCKET)
    team = _s3_workspace(tmp_path / "team", seaweed, "client", raw_url, derived_url)
    demo_workspace(team, tmp_path / "clinic")
    assert team.can_read_raw()

    manager = _s3_workspace(tmp_path / "manager", seaweed, "manager", raw_url, derived_url)
    assert manager.can_read_raw() is False
    with pytest.raises(AccessDenied, match="access denied: these credentials may not list here"):
        list(manager.store("raw").list("manifests/"))

    win = MainWindow(manager)
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    assert win.visible_pages() == [k for k in PAGE_KEYS if k not in ("sources", "raw")]
    assert isinstance(win.sources, NoRawAccessPage) and isinstance(win.raw, NoRawAccessPage)
    assert not win.actions_by_page["sources"].isEnabled()
    assert win.stack.currentWidget() is win.derivatives
    qtbot.waitUntil(lambda: [r.name for r in win.derivatives.rows] == ["visits_by_grp"], timeout=20000)
    assert win.derivatives.rows[0].version, "the built version is read from the derived bucket"
    assert not [w for w in QApplication.topLevelWidgets()
                if w.objectName() == "errorBox" and w.isVisible()], "nothing tried to read raw data"

    failed = cli("--workspace", str(manager.root), "raw", "ls", expect=1)
    assert f"{raw_url}" in failed.output and "access denied" in failed.output

    assert win.open_workspace(team.root)
    assert win.visible_pages() == PAGE_KEYS, "a workspace that can read raw gets the raw pages back"
    assert not isinstance(win.sources, NoRawAccessPage)
    qtbot.waitUntil(lambda: not win.raw.busy, timeout=20000)
    assert win.raw.model.rowCount() == 1


def _role_workspace(root, seaweed, identity: str, urls: dict[str, str]) -> Workspace:
    """Raw, derived and audit tiers in their own buckets, signed as ``identity``; cache local."""
    ws = Workspace.create(root)
    for tier, url in urls.items():
        ws.config["stores"][f"{tier}bucket"] = {"url": url, **seaweed.store_options(identity)}
        ws.config["tiers"][tier] = f"{tier}bucket"
    ws.save()
    return Workspace.open(root)


ROWS = {"name": "visit_rows", "kind": "sql", "inputs": {"v": {"source": "clinic", "stream": "values"}},
        "sql": "SELECT day, grp, value, id FROM v"}


def test_a_manager_does_their_job_with_only_the_access_they_should_have(
        qtbot, seaweed, tmp_path, test_plugins, cli):
    from lithotse_desktop import audit
    from lithotse_desktop.derive.build import build
    from lithotse_desktop.derive.catalog import Catalog
    from lithotse_desktop.derive.service import add_spec
    from lithotse_desktop.gui.pages.spreadsheets import describe_derivatives
    from tests.support.seaweed import AUDIT_BUCKET

    urls = {"raw": seaweed.new_prefix(), "derived": seaweed.new_prefix(DERIVED_BUCKET),
            "audit": seaweed.new_prefix(AUDIT_BUCKET)}
    team = _role_workspace(tmp_path / "team", seaweed, "client", urls)
    demo_workspace(team, tmp_path / "clinic")
    add_spec(team, ROWS)
    build(team, "visit_rows")
    restricted = [info.key for info in team.store("raw").list("restricted/visit_rows/")]
    assert restricted, "the analyst's row-level result is in the raw bucket"
    assert not list(team.store("derived").list("derived/visit_rows/"))

    manager = _role_workspace(tmp_path / "manager", seaweed, "manager", urls)
    where = ("--workspace", str(manager.root))
    # show, export, bind and refresh
    shown = cli(*where, "derive", "show", "visits_by_grp", "--json")
    assert '"visits"' in shown.output
    export = tmp_path / "visits.xlsx"
    cli(*where, "derive", "export", "visits_by_grp", "--format", "xlsx", "-o", str(export))
    book = tmp_path / "report.xlsx"
    cli(*where, "excel", "bind", str(book), "visits_by_grp", "--sheet", "Visits")
    refreshed = cli(*where, "excel", "refresh", str(book))
    assert "lithotse_visits_by_grp" in refreshed.output
    # the desktop app, and the API it serves
    port = free_port()
    manager.config["serve"] = {"port": port}
    win = MainWindow(manager)
    qtbot.addWidget(win)
    win.show()
    api = win.start_api()
    assert api is not None
    headers = {"Authorization": f"Bearer {workspace_token(manager)}"}
    base = f"http://127.0.0.1:{port}/api/v1/derivatives"
    table = requests.get(f"{base}/visits_by_grp/table", headers=headers, timeout=20)
    assert table.status_code == 200 and table.json()["rows"]
    listed = {d["name"]: d for d in requests.get(base, headers=headers, timeout=20).json()["derivatives"]}
    assert listed["visit_rows"]["restricted"] is True
    refused = requests.get(f"{base}/visit_rows/table", headers=headers, timeout=20)
    assert refused.status_code == 403 and "rule: row-level data stays restricted" in refused.json()["error"]
    qtbot.waitUntil(lambda: {r.name for r in win.derivatives.rows} == {"visits_by_grp", "visit_rows"}, timeout=20000)
    rows = {r.name: r for r in win.derivatives.rows}
    assert rows["visits_by_grp"].version and not rows["visits_by_grp"].problem
    assert "restricted store" in rows["visit_rows"].problem and not rows["visit_rows"].version
    assert [m["name"] for m in describe_derivatives(manager)] == ["visits_by_grp"]
    win.close()
    assert win.api is None

    # refused: raw objects and row-level derivatives
    failed = cli(*where, "raw", "ls", expect=1)
    assert "access denied" in failed.output
    with pytest.raises(AccessDenied):
        manager.store("raw").get_bytes(restricted[0])
    listed = {r["name"]: r for r in json.loads(cli(*where, "derive", "list", "--json").output)}
    assert (listed["visit_rows"]["class"], listed["visit_rows"]["readable"], listed["visit_rows"]["version"]) == \
        ("row-level", False, None)
    assert (listed["visits_by_grp"]["class"], listed["visits_by_grp"]["readable"]) == ("aggregate", True)
    assert "restricted (these credentials may not read it)" in cli(*where, "derive", "list").output
    hidden = cli(*where, "derive", "show", "visit_rows", expect=1)
    assert "restricted store" in hidden.output and "rule: row-level data stays restricted" in hidden.output
    no_export = cli(*where, "derive", "export", "visit_rows", "--format", "csv", "-o", str(tmp_path / "r.csv"),
                    expect=1)
    assert "rule: row-level data stays restricted" in no_export.output
    with pytest.raises(AccessDenied):
        manager.store("derived").put_bytes("derived/visits_by_grp/CURRENT", b"{}")
    assert Catalog(team).current("visits_by_grp").version == rows["visits_by_grp"].version

    # every one of the manager's actions is in the audit trail, which nobody can rewrite unseen
    records = json.loads(cli(*where, "audit", "--json").output)
    mine = [r for r in records if r["action"] in ("export", "excel-refresh", "api-read")]
    assert [r["action"] for r in mine] == ["export", "excel-refresh", "excel-refresh", "api-read"]
    reads = mine[-1]["details"]["reads"]
    assert {(r["derivative"], r.get("table"), r.get("refused")) for r in reads} >= {
        ("visits_by_grp", 1, None), ("visit_rows", None, 1)}
    assert {r["action"] for r in records} >= {"publish"}, "the analyst's builds are there too"
    key = audit.entry_key(mine[0])
    boss = seaweed.client("manager")
    bucket, _, prefix = urls["audit"][len("s3://"):].partition("/")
    with pytest.raises(boss.exceptions.ClientError, match="AccessDenied"):
        boss.delete_object(Bucket=bucket, Key=f"{prefix}/{key}")
    boss.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=json.dumps({**mine[0], "rows": 0}).encode())
    tampered = cli(*where, "audit", expect=1)
    assert f"audit record {key} was changed after it was written" in tampered.output
    versions = seaweed.client("admin").list_object_versions(Bucket=bucket, Prefix=f"{prefix}/{key}")["Versions"]
    assert len(versions) == 2, "the original record is kept as an older version"
