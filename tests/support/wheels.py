"""Plugin wheels written by hand (zip + dist-info + RECORD), so tests need no build backend."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

SHARED_VENV = pytest.mark.xdist_group("pip-into-the-venv")
"""For tests that pip-install or uninstall into the test run's own environment: they run on one
worker, one after another. Two pip processes changing one site-packages at once collide (an
uninstall's move of files failed, and a fresh install's entry points went missing), which made
the README test fail now and then under ``-n 2``."""


def build_plugin_wheel(folder: Path, dist: str, module: str, version: str, entry_point: str | None,
                       source: str) -> Path:
    """A pure-Python wheel of one module registered as plugin ``entry_point`` (group ``lithotse``);
    with ``entry_point=None``, a distribution that is no plugin."""
    info = f"{module}-{version}.dist-info"
    files = {
        f"{module}.py": source.encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: lithotse-tests\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
    }
    if entry_point is not None:
        files[f"{info}/entry_points.txt"] = f"[lithotse]\n{entry_point} = {module}\n".encode()
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path
