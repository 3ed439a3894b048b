"""``lithotse plugins new``: names, an all-or-nothing folder, and starting points whose own tests
pass, and fail when the code they test is broken."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lithotse_desktop.errors import ConfigError
from lithotse_desktop.scaffold import PluginNames, new_plugin
from tests.conftest import run_lithotse

# For each kind: a change to the generated module that breaks what its tests check.
BREAKAGES = {
    "connector": ('READINGS = StreamInfo("readings", date_field="date"',
                  'READINGS = StreamInfo("readings", date_field=None'),
    "store": ("INSERT OR IGNORE INTO objects", "INSERT OR REPLACE INTO objects"),
    "cache": ("if expect is not ANY and", "if False and"),
}


def run_generated_tests(folder: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LITHOTSE_WORKSPACE"}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(folder)],
                          capture_output=True, text=True, cwd=folder.parent, env=env, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(BREAKAGES))
def test_a_new_plugin_passes_its_tests_and_they_catch_a_break(tmp_path, kind):
    proc = run_lithotse("plugins", "new", f"try-{kind}", "--kind", kind, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / f"try-{kind}"
    module = folder / f"lithotse_try_{kind}" / "__init__.py"
    assert proc.stdout.splitlines()[0] == (f"created try-{kind}: {kind} plugin try-{kind} "
                                           f"(distribution lithotse-try-{kind}, module lithotse_try_{kind})")
    project = tomllib.loads((folder / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["lithotse"] == {f"try-{kind}": f"lithotse_try_{kind}"}
    passed = run_generated_tests(folder)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert " passed" in passed.stdout and "failed" not in passed.stdout
    old, new = BREAKAGES[kind]
    text = module.read_text()
    assert text.count(old) == 1
    module.write_text(text.replace(old, new))
    broken = run_generated_tests(folder)
    assert broken.returncode == 1 and " failed" in broken.stdout, broken.stdout


def test_names_follow_the_first_party_plugins():
    names = PluginNames.from_name("lithotse-lab-results", "connector")
    assert (names.folder, names.name, names.distribution, names.module, names.class_name) == (
        "lithotse-lab-results", "lab-results", "lithotse-lab-results", "lithotse_lab_results",
        "LabResultsConnector")
    assert PluginNames.from_name("blob-store", "store").class_name == "BlobStore"
    for bad in ("My-Plugin", "my_plugin", "9lives", "my--plugin", "lithotse-", "-x", ""):
        with pytest.raises(ConfigError, match="lowercase letters, digits and single hyphens"):
            PluginNames.from_name(bad, "connector")


def test_an_existing_folder_is_refused_and_left_alone(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    proc = run_lithotse("plugins", "new", "taken", cwd=tmp_path)
    assert proc.returncode == 1 and "taken: already exists" in proc.stderr
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["mine.txt"]
    unknown = run_lithotse("plugins", "new", "x", "--kind", "exporter", cwd=tmp_path)
    assert unknown.returncode == 2 and "'exporter' is not one of 'connector', 'store', 'cache'" in unknown.stderr


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    written = []
    real_write = Path.write_text

    def failing_write(self, text, *args, **kwargs):
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        written.append(self)
        return real_write(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", failing_write)
    with pytest.raises(ConfigError, match="cannot write the plugin: No space left on device"):
        new_plugin("half", "connector", tmp_path)
    assert len(written) == 2 and list(tmp_path.iterdir()) == []
