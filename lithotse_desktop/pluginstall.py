"""Installing and removing plugins in the application's own Python environment.

pip runs with a constraints file pinning every package the core depends on at its installed
version, so a plugin can never upgrade or downgrade what the core was tested with.

After pip, the plugins of the distribution it installed are loaded and their connectors
registered, as every later command will. A plugin that does not load is an error naming the
reason, but it stays installed: pip cannot restore a version it replaced, and the author of
an editable install (``-e``) wants it in place to fix. It is listed with its error, and
``plugins remove`` takes it out.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import site
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LithotseError, NotFound
from .plugins import ENTRY_POINT_GROUP, PluginInfo, get_plugin_manager

if TYPE_CHECKING:
    from .workspace import Workspace

CORE_DISTRIBUTION = "lithotse-desktop"


def _requirement_name(req: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0]


def core_constraints() -> list[str]:
    """``name==version`` for the core and everything it requires, recursively.

    The core's ``gui`` extra (Qt) counts where it is installed: a plugin must not swap the
    desktop app's Qt for another version either."""
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
            wanted_extra = name == CORE_DISTRIBUTION and req.replace("'", '"').endswith('extra == "gui"')
            if "extra ==" in req and not wanted_extra:
                continue
            todo.append(_requirement_name(req))
    pins.pop(CORE_DISTRIBUTION, None)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def _pip(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


class PluginNotLoaded(LithotseError):
    """pip installed the distribution, but a plugin in it does not load (or it has none)."""

    def __init__(self, message: str, debug_detail: str | None = None) -> None:
        super().__init__(message)
        self.debug_detail = debug_detail


def _dist_key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_names(report_file: Path, target: str) -> list[str]:
    """The distributions pip installed for the request (from ``pip install --report``); for a
    name that was already installed, that name."""
    try:
        report = json.loads(report_file.read_text("utf-8"))
    except (OSError, ValueError):
        report = {}
    names = [item["metadata"]["name"] for item in report.get("install", [])
             if item.get("requested") and "name" in item.get("metadata", {})]
    if not names:  # pip found it installed already: the name the target itself gives
        given = _target_name(target)
        names = [given] if given else []
    return names


def _target_name(target: str) -> str | None:
    """The distribution name a wheel file, project folder or requirement names."""
    path = Path(target).expanduser()
    if path.is_file() and path.suffix == ".whl":
        return path.name.split("-", 1)[0]
    if path.is_dir():
        try:
            return tomllib.loads((path / "pyproject.toml").read_text("utf-8"))["project"]["name"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return None
    return _requirement_name(target)


def _plugin_entry_points(dist_name: str) -> list[str]:
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        return []
    return sorted(ep.name for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP)


def _site_dirs() -> list[Path]:
    paths = sysconfig.get_paths()
    return sorted({Path(paths["purelib"]), Path(paths["platlib"])})


def _path_files() -> set[Path]:
    return {pth for folder in _site_dirs() if folder.is_dir() for pth in folder.glob("*.pth")}


def _activate(path_files: set[Path]) -> None:
    """Apply ``.pth`` files pip just added, as the next interpreter would at startup: an
    editable install (``pip -e``) is only importable through its ``.pth`` file."""
    for pth in sorted(path_files):
        site.addpackage(str(pth.parent), pth.name, None)


def install_plugin(target: str, *, editable: bool = False) -> list[str]:
    """Install a plugin by name, wheel or folder (``editable``: a folder, with ``pip -e``) and load
    it; returns the names of the plugins the installed distribution provides.

    Raises PluginNotLoaded when one of them does not load, or the distribution declares none;
    the distribution stays installed either way (see the module notes).
    """
    path = Path(target).expanduser()
    spec = str(path.resolve()) if path.exists() else target
    if not path.exists() and (target.endswith(".whl") or "/" in target or editable):
        raise NotFound(f"{target}: no such {'folder' if editable else 'wheel file or folder'}")
    if editable and not path.is_dir():
        raise LithotseError(f"{target}: an editable install (-e) needs a project folder")
    path_files = _path_files()
    with tempfile.TemporaryDirectory(prefix="lithotse-pip-") as tmp:
        constraints, report = Path(tmp) / "constraints.txt", Path(tmp) / "report.json"
        constraints.write_text("\n".join(core_constraints()) + "\n")
        proc = _pip(["install", "--disable-pip-version-check", "--no-input", "-c", str(constraints),
                     "--report", str(report), *(["-e"] if editable else []), spec])
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
            detail = "\n".join(lines[-6:])
            raise LithotseError(f"installing {target} failed:\n{detail}")
        dists = _installed_names(report, target)
    _activate(_path_files() - path_files)
    return check_installed(target, dists)


def check_installed(target: str, dists: list[str]) -> list[str]:
    """Load the plugins of freshly installed distributions as a new process would; returns their
    names or raises PluginNotLoaded naming each one that failed and why."""
    manager = get_plugin_manager()
    keys = {_dist_key(d) for d in dists}
    for name, info in list(manager.plugins.items()):
        if info.distribution and _dist_key(info.distribution) in keys:
            manager.unload(name)  # an upgrade in a running app: load the new code
    manager.load_entry_points()
    manager.connectors()  # runs each plugin's registration hook; a hook that raises is recorded
    names = [ep for dist in dists for ep in _plugin_entry_points(dist)]
    if not names:
        shown = ", ".join(dists) or target
        raise PluginNotLoaded(
            f"{target} installed {shown}, which declares no entry point in group "
            f"'{ENTRY_POINT_GROUP}', so it is not a Lithotse plugin. It stays installed; remove it "
            f"with: {sys.executable} -m pip uninstall {' '.join(dists) or target}")
    broken = [manager.plugins[n] for n in names if n in manager.plugins and manager.plugins[n].error]
    if broken:
        raise PluginNotLoaded(_not_loaded_message(target, broken),
                              "\n".join(f"plugin {i.name}:\n{i.traceback}" for i in broken if i.traceback)
                              or None)
    return names


def _not_loaded_message(target: str, broken: list[PluginInfo]) -> str:
    what = "; ".join(f"plugin {i.name} ({i.distribution} {i.version}) does not load: {i.error}"
                     for i in broken)
    first = broken[0].name
    return (f"{target} was installed, but {what}. It stays installed and `lithotse plugins list` "
            f"shows the error; fix the plugin and install it again (an editable install, -e, "
            f"needs no reinstall), or remove it with `lithotse plugins remove {first}`")


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


def connectors_of(dist: str) -> list[str]:
    """The connectors the plugins of a distribution register (as far as they load)."""
    manager = get_plugin_manager()
    manager.connectors()
    return sorted({c for info in manager.plugins.values() if info.distribution == dist
                   for c in info.connectors})


def sources_using(ws: Workspace, connectors: list[str]) -> list[str]:
    """Names of the workspace's sources configured with one of these connectors."""
    wanted = set(connectors)
    return [src.name for src in ws.sources() if src.connector in wanted]


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
