"""Runs one import in a subprocess and prints every progress event, so a test can SIGKILL it
at a chosen point: ``python -m tests.support.import_worker WORKSPACE SOURCE``."""

from __future__ import annotations

import sys

from lithotse_desktop.plugins import get_plugin_manager
from lithotse_desktop.progress import Progress
from lithotse_desktop.raw import run_import
from lithotse_desktop.workspace import Workspace
from tests.support import lines_connector


def main() -> None:
    get_plugin_manager().register(lines_connector, "lines-test")
    ws = Workspace.open(sys.argv[1])

    def report(state) -> None:
        print(f"{state.message}|{state.done}", flush=True)

    result = run_import(ws, sys.argv[2], progress=Progress(report))
    print(f"DONE|{len(result.landings)}", flush=True)


if __name__ == "__main__":
    main()
