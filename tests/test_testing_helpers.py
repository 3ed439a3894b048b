"""lithotse_desktop.testing as plugin authors use it: a pytest run of their own, in a new process.

The tests below write a plugin author's test file into an empty folder (no conftest) and run
pytest on it, so the fixtures can only come from the ``pytest11`` entry point, or from a
``pytest_plugins`` line when autoloading is off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

AUTHOR_TESTS = '''
import os
from pathlib import Path

from lithotse_desktop.plugin import hookimpl
from lithotse_desktop.plugins import get_plugin_manager
from lithotse_desktop.secrets import load_secret
from lithotse_desktop.testing import import_rows, read_rows
from tests.support import lines_connector


def test_the_workspace_and_its_secrets_are_the_tests_own(lithotse_workspace, tmp_path):
    assert lithotse_workspace.root == tmp_path / "workspace"
    assert os.environ["LITHOTSE_WORKSPACE"] == str(lithotse_workspace.root)
    assert os.environ["LITHOTSE_SECRETS_STORE"] == "file"
    assert os.environ["LITHOTSE_SECRETS_DIR"] == str(tmp_path / "secrets")


def test_import_rows_lands_and_reads_back(lithotse_workspace, register_plugin, tmp_path):
    register_plugin(lines_connector)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("2024-01-05,1,x,id1\\n2024-02-05,2,y,id2\\n2024-03-05,3,z,id3\\n")
    result = import_rows(lithotse_workspace, "src", connector="lines", settings={"path": data},
                         secrets={"token": "tok-3141"}, start="2024-02-01", end="2024-03-31")
    [landing] = result.landings
    assert (landing.records, landing.records_in_range, landing.stream) == (3, 2, "values")
    assert [(r["id"], r["value"]) for r in result.rows["values"]] == [("id2", 2), ("id3", 3)]
    assert "tok-3141" not in (lithotse_workspace.root / "lithotse.toml").read_text()
    assert load_secret(lithotse_workspace.source("src").secrets["token"]) == "tok-3141"
    assert list((tmp_path / "secrets").iterdir()), "the secret went to this test's own store"
    again = import_rows(lithotse_workspace, "src", start="2024-01-01", end="2024-01-31")
    assert [m.already_stored for m in again.landings] == [True]
    assert [r["id"] for r in again.rows["values"]] == ["id1", "id2", "id3"]
    assert [r["id"] for r in read_rows(lithotse_workspace, "src", "values", start="2024-01-01",
                                       end="2024-01-31")] == ["id1"]
    assert import_rows(lithotse_workspace, "src", start="2024-01-01", end="2024-01-31").landings == []


def test_register_plugin_a_registers(register_plugin):
    manager = register_plugin(lines_connector, "lines-test")
    assert "lines" in manager.connectors() and manager.plugins["lines-test"].status == "ok"


def test_register_plugin_b_forgot_it_after_the_test():
    assert "lines" not in get_plugin_manager().connectors()


def test_an_installed_plugin_is_used_as_it_is(register_plugin):
    import lithotse_csv

    manager = register_plugin(lithotse_csv)
    assert manager.name_of(lithotse_csv) == "csv", "its entry point's name: not registered twice"


class Broken:
    @hookimpl
    def lithotse_register_connectors(self):
        raise RuntimeError("broken on purpose")


def test_a_plugin_that_does_not_load_fails_the_test(register_plugin):
    register_plugin(Broken())
'''


def run_pytest(folder: Path, *, autoload: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LITHOTSE_WORKSPACE", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")}
    if not autoload:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rf", str(folder)],
                          capture_output=True, text=True, cwd=folder, env=env, timeout=300)


def author_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "author"
    folder.mkdir()
    (folder / "test_author.py").write_text(textwrap.dedent(AUTHOR_TESTS))
    return folder


def assert_outcome(proc: subprocess.CompletedProcess) -> None:
    assert "5 passed, 1 failed" in proc.stdout or "1 failed, 5 passed" in proc.stdout, proc.stdout + proc.stderr
    assert "FAILED test_author.py::test_a_plugin_that_does_not_load_fails_the_test" in proc.stdout
    assert ("plugin Broken does not load: hook lithotse_register_connectors raised RuntimeError: "
            "broken on purpose") in proc.stdout


@pytest.mark.slow
def test_the_fixtures_come_from_the_entry_point(tmp_path):
    assert_outcome(run_pytest(author_folder(tmp_path)))


@pytest.mark.slow
def test_without_autoload_a_conftest_line_brings_them(tmp_path):
    folder = author_folder(tmp_path)
    missing = run_pytest(folder, autoload=False)
    assert "fixture 'lithotse_workspace' not found" in missing.stdout
    (folder / "conftest.py").write_text('pytest_plugins = ["lithotse_desktop.testing"]\n')
    assert_outcome(run_pytest(folder, autoload=False))
    assert_outcome(run_pytest(folder))  # entry point and conftest line: one plugin, not two
