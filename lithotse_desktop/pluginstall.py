"""Installing and removing plugins in the application's own Python environment.

pip runs with a constraints file pinning every package the core depends on at its installed
version, so a plugin can never upgrade or downgrade what the core was tested with.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import LithotseError, NotFound
from .plugins import ENTRY_POINT_GROUP, get_plugin_manager

CORE_DISTRIBUTION = "lithotse-desktop"


def _requirement_name(req: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0]


def core_constraints() -> list[str]:
    """``name==version`` for the core and everything it requires, recursively."""
    pins: dict[str, str] = {}
    todo = [CORE_DISTRIBUTION]
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in pins:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        pins[key] = dist.version
        for req in dist.requires or []:
            if "extra ==" in req:
                continue
            todo.append(_requirement_name(req))
    pins.pop(CORE_DISTRIBUTION, None)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def _pip(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def install_plugin(target: str) -> list[str]:
    """Install a plugin by name, wheel or folder; returns the entry-point names it added."""
    before = {ep.name for ep in md.entry_points(group=ENTRY_POINT_GROUP)}
    path = Path(target).expanduser()
    spec = str(path.resolve()) if path.exists() else target
    if not path.exists() and (target.endswith(".whl") or "/" in target):
        raise NotFound(f"{target}: no such wheel file or folder")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write("\n".join(core_constraints()) + "\n")
        constraints = fh.name
    try:
        proc = _pip(["install", "--disable-pip-version-check", "--no-input", "-c", constraints, spec])
    finally:
        Path(constraints).unlink(missing_ok=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        detail = "\n".join(lines[-6:])
        raise LithotseError(f"installing {target} failed:\n{detail}")
    manager = get_plugin_manager()
    manager.load_entry_points()
    return sorted({ep.name for ep in md.entry_points(group=ENTRY_POINT_GROUP)} - before)


def distribution_for(name: str) -> str:
    """The distribution that provides plugin ``name`` (an entry-point or distribution name)."""
    installed = []
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        if dist is None:
            continue
        if name in (ep.name, dist.metadata["Name"]):
            return dist.metadata["Name"]
        installed.append(ep.name)
    raise NotFound.unknown("installed plugin", name, installed, "installed")


def remove_plugin(name: str) -> str:
    dist = distribution_for(name)
    if dist.lower().replace("_", "-") == CORE_DISTRIBUTION:
        raise LithotseError("the core cannot be removed as a plugin")
    proc = _pip(["uninstall", "-y", "--disable-pip-version-check", dist])
    if proc.returncode != 0:
        raise LithotseError(f"removing {dist} failed: {proc.stderr.strip()[-500:]}")
    manager = get_plugin_manager()
    for ep_name, info in list(manager.plugins.items()):
        if info.distribution == dist:
            manager.unload(ep_name)
    return dist
