"""The window serves the local API, and a manager's workspace shows only what it may read."""

from __future__ import annotations

import socket

import pytest
import requests
from PySide6.QtWidgets import QApplication

from lithotse_desktop.gui.window import PAGE_KEYS, MainWindow, NoRawAccessPage
from lithotse_desktop.serve.token import workspace_token
from lithotse_desktop.storage.s3 import AccessDenied
from lithotse_desktop.workspace import Workspace
from tests.gui.helpers import demo_workspace
from tests.support.seaweed import DERIVED_BUCKET, seaweed  # noqa: F401 - a fixture, used by name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_window_serves_the_api_on_the_configured_port(qtbot, window, workspace, tmp_path):
    demo_workspace(workspace, tmp_path / "clinic")
    port = _free_port()
    workspace.config["serve"] = {"port": port}
    api = window.start_api()
    assert api is not None and api.port == port
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
    port, addin_port = _free_port(), _free_port()
    workspace.config["serve"] = {"port": port, "https": True, "https_port": addin_port}
    api = window.start_api()
    assert api is not None and api.https_port == addin_port
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


def _s3_workspace(root, seaweed, identity: str, raw_url: str, derived_url: str) -> Workspace:  # noqa: F811 - the fixture imported above, by name
    ws = Workspace.create(root)
    ws.config["stores"]["rawbucket"] = {"url": raw_url, **seaweed.store_options(identity)}
    ws.config["stores"]["shared"] = {"url": derived_url, **seaweed.store_options(identity)}
    ws.config["tiers"].update(raw="rawbucket", derived="shared")
    ws.save()
    return Workspace.open(root)


def test_a_manager_sees_derivatives_but_no_raw_pages(qtbot, seaweed, tmp_path, test_plugins, cli):  # noqa: F811 - the fixture imported above, by name
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
