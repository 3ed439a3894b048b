"""Fixtures for sync tests: workspaces made on demand, the lines connector, the SeaweedFS server."""

from __future__ import annotations

import pytest


@pytest.fixture
def lines_plugin():
    from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
    from tests.support import lines_connector

    reset_plugin_manager()
    get_plugin_manager().register(lines_connector, "lines-test")
    yield
    reset_plugin_manager()


@pytest.fixture
def make_ws(tmp_path):
    """``make_ws("a")`` creates a fresh workspace in its own folder."""
    from lithotse_desktop.workspace import Workspace

    def make(name: str) -> Workspace:
        return Workspace.create(tmp_path / name)

    return make
