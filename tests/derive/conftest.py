from __future__ import annotations

import pytest

from lithotse_desktop.plugins import get_plugin_manager, reset_plugin_manager
from tests.support import lines_connector
from tests.support.spark import sail, spark_url  # noqa: F401 - pytest fixtures, used by name


@pytest.fixture
def lines(workspace, tmp_path):
    """A ``vals`` source of the test connector reading files from a folder the test fills."""
    reset_plugin_manager()
    get_plugin_manager().register(lines_connector, "lines-test")
    folder = tmp_path / "lines-in"
    folder.mkdir()
    workspace.add_source("vals", "lines", {"path": str(folder)}, {})
    yield folder
    reset_plugin_manager()
