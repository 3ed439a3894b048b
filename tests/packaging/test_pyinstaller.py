"""The PyInstaller one-folder app: it builds, answers --version, and renders every page offscreen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

PAGES = ["derivative-form.png", "derivatives.png", "plugins.png", "raw.png", "settings.png",
         "sources.png", "spreadsheets.png", "view-editor.png"]


@pytest.fixture(scope="module")
def frozen_app(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pyinstaller")
    proc = subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
                           "--distpath", str(out / "dist"), "--workpath", str(out / "build"),
                           str(REPO / "packaging" / "lithotse.spec")],
                          capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    exe = out / "dist" / "lithotse-desktop" / ("lithotse-desktop.exe" if os.name == "nt" else "lithotse-desktop")
    assert exe.exists()
    return exe


def clean_env(**extra: str) -> dict[str, str]:
    """The user's environment without this checkout on the path, so only the bundle is used."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DISPLAY", "WAYLAND_DISPLAY")}
    env.update(extra)
    return env


def test_frozen_app_answers_version(frozen_app):
    proc = subprocess.run([str(frozen_app), "--version"], capture_output=True, text=True,
                          env=clean_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "lithotse-desktop 0.1.0"


def test_frozen_app_renders_every_page_with_its_plugins(frozen_app, workspace, tmp_path):
    from PySide6.QtGui import QImage

    from lithotse_desktop.demo import DEMO_SOURCES, demo_specs, synth
    from lithotse_desktop.derive.build import build
    from lithotse_desktop.derive.service import add_spec
    from lithotse_desktop.raw import run_import

    bundled = frozen_app.parent / "_internal" / "lithotse_desktop"
    shipped = REPO / "lithotse_desktop"
    for folder in ("demo/derivatives", "gui/viewdefinitions"):
        assert sorted(p.name for p in (bundled / folder).iterdir()) == sorted(
            p.name for p in (shipped / folder).iterdir() if p.is_file()), f"{folder} is bundled"

    synth.generate(tmp_path / "data", patients=300)
    connector, settings = DEMO_SOURCES["ehr"]
    workspace.add_source("ehr", connector, {**settings, "path": str(tmp_path / "data" / "csv")}, {})
    run_import(workspace, "ehr")
    add_spec(workspace, next(s for s in demo_specs() if s["name"] == "visits_by_department"))
    build(workspace, "visits_by_department")

    shots = tmp_path / "shots"
    proc = subprocess.run([str(frozen_app), "--workspace", str(workspace.root), "--screenshot", str(shots)],
                          capture_output=True, text=True, timeout=600,
                          env=clean_env(QT_QPA_PLATFORM="offscreen"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "cut off" not in proc.stderr, proc.stderr[-4000:]
    variants = {"": (1280, 720), "dark-1280x720": (1280, 720), "light-2560x1440": (2560, 1440),
                "dark-2560x1440": (2560, 1440)}
    assert sorted(p.name for p in shots.iterdir() if p.is_dir()) == sorted(v for v in variants if v)
    for folder, size in variants.items():
        assert sorted(p.name for p in (shots / folder).glob("*.png")) == PAGES, folder
        for name in PAGES:
            image = QImage(str(shots / folder / name))
            assert not image.isNull() and image.width() > 600, (folder, name)
        main = QImage(str(shots / folder / "sources.png"))
        assert (main.width(), main.height()) == size, folder

    from lithotse_desktop.plugins import PluginManager

    line = next(text for text in proc.stdout.splitlines() if text.startswith("connectors: "))
    frozen = set(line[len("connectors: "):].split(", "))
    assert "csv" in frozen
    assert frozen == set(PluginManager().connectors()), "every installed plugin is bundled with its entry points"
