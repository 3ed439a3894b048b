"""``lithotse plugins new``: a plugin's starting point, written from the templates beside this file.

Names follow the first-party plugins: for ``NAME`` (or ``lithotse-NAME``) the folder is NAME as
given, the distribution ``lithotse-NAME``, the module ``lithotse_NAME`` (hyphens become
underscores), and the entry point, connector, store URL scheme or cache backend is ``NAME``.
The folder appears complete or not at all: files are written into a hidden sibling folder,
which is then renamed.
"""

from __future__ import annotations

import os
import re
import shutil
import string
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

KINDS = ("connector", "store", "cache")
TEMPLATES = Path(__file__).resolve().parent / "templates"
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_DESCRIPTIONS = {
    "connector": "A Lithotse connector plugin: $name reads JSON Lines files of readings.",
    "store": "A Lithotse store plugin: $name:// URLs keep objects in an SQLite file.",
    "cache": "A Lithotse cache plugin: the $name backend keeps cached aggregates in an SQLite file.",
}


@dataclass(frozen=True)
class PluginNames:
    folder: str
    name: str
    distribution: str
    module: str
    class_name: str
    title: str

    @classmethod
    def from_name(cls, given: str, kind: str) -> PluginNames:
        short = given[len("lithotse-"):] if given.startswith("lithotse-") else given
        if not _NAME.match(short):
            raise ConfigError(f"plugin name {given!r}: use lowercase letters, digits and single "
                              "hyphens, starting with a letter (e.g. my-plugin)")
        words = short.split("-")
        suffix = {"connector": "Connector", "store": "Store", "cache": "Cache"}[kind]
        camel = "".join(w.capitalize() for w in words)
        return cls(given, short, f"lithotse-{short}", "lithotse_" + "_".join(words),
                   camel if camel.endswith(suffix) else camel + suffix, " ".join(words).capitalize())

    def values(self, kind: str) -> dict[str, str]:
        names = {"folder": self.folder, "name": self.name, "distribution": self.distribution,
                 "module": self.module, "class_name": self.class_name, "title": self.title,
                 "factory": f"open_{self.module[len('lithotse_'):]}_cache"}
        names["description"] = string.Template(_DESCRIPTIONS[kind]).substitute(names)
        return names


def render(names: PluginNames, kind: str) -> dict[str, str]:
    """The plugin's files, path relative to its folder -> text."""
    if kind not in KINDS:
        raise ConfigError(f"plugin kind {kind!r}: choose one of {', '.join(KINDS)}")
    values = names.values(kind)
    test_file = f"tests/test_{names.module[len('lithotse_'):]}.py"
    sources = {"pyproject.toml": "common/pyproject.toml.tmpl", "README.md": "common/README.md.tmpl",
               f"{names.module}/__init__.py": f"{kind}/plugin.py.tmpl", test_file: f"{kind}/test.py.tmpl"}
    return {path: string.Template((TEMPLATES / template).read_text("utf-8")).substitute(values)
            for path, template in sources.items()}


def new_plugin(given: str, kind: str = "connector", parent: Path | None = None) -> tuple[Path, PluginNames, list[str]]:
    """Write the plugin's folder below ``parent`` (default: the current folder).

    Returns the folder, the names chosen and the files written (relative to the folder);
    refuses a folder that exists already, and leaves nothing behind on failure.
    """
    names = PluginNames.from_name(given, kind)
    parent = Path(parent or Path.cwd())
    target = parent / names.folder
    if target.exists():
        raise ConfigError(f"{target}: already exists; choose another name, or remove it first")
    files = render(names, kind)
    staging = parent / f".{names.folder}-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir()
        for relative, text in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, "utf-8")
        os.rename(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ConfigError(f"{target}: cannot write the plugin: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target, names, list(files)
