"""The ``lithotse-desktop`` window: a page list on the left, one page per task on the right.

``--version`` answers without a display; ``--screenshot DIR`` renders every page offscreen, in
light and dark, at 1280x720 and at 2560x1440 with 200% scaling (``DIR/<page>.png`` for light
1280x720, ``DIR/<variant>/<page>.png`` for the others; ``--variants`` narrows them), reports any
text that does not fit, and exits: for docs and for checking the layout in CI.
While the window is open it also serves the local API (as ``lithotse serve`` does), except in
``--screenshot`` mode.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import __version__

WINDOW_SIZE = (1280, 800)


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="lithotse-desktop",
                                     description="Lithotse desktop app: import health records, "
                                     "browse raw landings, manage plugins.")
    parser.add_argument("--workspace", type=Path, default=None,
                        help="workspace folder (default: $LITHOTSE_WORKSPACE or the user data folder); "
                        "created when missing or empty")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--screenshot", type=Path, default=None, metavar="DIR",
                        help="render each page in light and dark at 1280x720 and 2560x1440 (200%% scaling) "
                        "to DIR and exit")
    parser.add_argument("--variants", default=None, metavar="LIST",
                        help="with --screenshot: comma-separated variants to render, first one to DIR itself "
                        "(light-1280x720, dark-1280x720, light-2560x1440, dark-2560x1440)")
    return parser.parse_known_args(list(argv))


def qt_missing(exc: ImportError) -> str:
    """What to do when Qt cannot be imported: the core installs without the ``gui`` extra."""
    import importlib.util

    if importlib.util.find_spec("PySide6") is None:
        return ("the desktop app needs PySide6, which is not installed in this environment. "
                "Install it with: pip install 'lithotse-desktop[gui]' (scripts/setup.sh does); "
                "the command line (lithotse) works without it.")
    return (f"PySide6 is installed but cannot be loaded: {exc}. On Linux this is usually a missing "
            "system library (scripts/system-deps.sh installs them).")


def screenshot_summary(folder: Path) -> str:
    """What a --screenshot run made and which connectors it had: a frozen app's self-check."""
    from ..plugins import get_plugin_manager

    shots = sorted(p.name for p in Path(folder).glob("*.png"))
    connectors = ", ".join(sorted(get_plugin_manager().connectors())) or "none"
    return f"{len(shots)} screenshot(s) in {folder}: {', '.join(shots)}\nconnectors: {connectors}"


def main(argv: Sequence[str] | None = None) -> int:
    args, qt_args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.version:
        print(f"lithotse-desktop {__version__}")
        return 0
    if args.screenshot is not None:
        import os

        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    try:
        from PySide6.QtWidgets import QApplication, QMessageBox
    except ImportError as exc:
        print(f"lithotse-desktop: {qt_missing(exc)}", file=sys.stderr)
        return 1

    from ..errors import LithotseError
    from ..workspace import Workspace
    from .common import error_text
    from .window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "lithotse-desktop",
                                                   *qt_args])
    app.setApplicationName("Lithotse")
    QApplication.setApplicationDisplayName("Lithotse")  # a QGuiApplication setting, static
    app.setApplicationVersion(__version__)
    app.setOrganizationName("Lithotse")
    from .theme import apply_theme, saved_theme

    apply_theme(saved_theme())
    try:
        ws, created = Workspace.open_or_create(args.workspace)
    except LithotseError as exc:
        if args.screenshot is not None:
            print(f"lithotse-desktop: {error_text(exc)}", file=sys.stderr)
            return 1
        QMessageBox.critical(None, "Cannot open workspace", error_text(exc))
        return 1
    window = MainWindow(ws)
    # the app keeps requests loaded from the start, as it was when the fhir plugin imported it on
    # loading: with the plugin importing it only on a server call, CI's screenshot run once aborted
    # at exit (a refcount error in finalization) that was not reproduced since; the command line,
    # where every process pays the import, is where the lazy import saves time
    import requests  # noqa: F401
    if created:
        from ..pathtext import display_path

        window.statusBar().showMessage(f"Created a new workspace in {display_path(ws.root)}", 10000)
    if args.screenshot is not None:
        from .window import VARIANTS

        variants = [v.strip() for v in (args.variants or ",".join(VARIANTS)).split(",") if v.strip()]
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            print(f"lithotse-desktop: unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}",
                  file=sys.stderr)
            return 2
        ok = window.save_screenshots(args.screenshot, variants)
        print(screenshot_summary(args.screenshot))
        for where, problems in window.cut_off.items():
            for problem in problems:
                print(f"cut off in {where}: {problem}", file=sys.stderr)
        return 0 if ok else 1
    window.resize(*WINDOW_SIZE)
    window.show()
    window.start_api()
    code = app.exec()
    window.stop_api()
    from ..cache.lookup import close_all

    close_all()
    return code


if __name__ == "__main__":
    sys.exit(main())
