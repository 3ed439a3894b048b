"""How long does the desktop app's event loop stall while a 200,000-record import runs?

Runs offscreen: builds a throwaway workspace with a ``lines`` source holding one file of
200,000 ``date,value`` lines, starts the import from the Sources page exactly as the Import
button does, and measures the longest gap between ticks of a 5 ms QTimer heartbeat until
the import's result is shown. The target is a longest stall under 100 ms.

    python bench/gui_responsiveness.py [--records N] [--target-ms MS]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def write_lines(path: Path, count: int) -> None:
    start = dt.date(2023, 1, 1)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(count):
            fh.write(f"{start + dt.timedelta(days=i % 730)},{i}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--target-ms", type=float, default=100.0)
    args = parser.parse_args(argv)

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from lithotse_desktop.dates import DateRange
    from lithotse_desktop.gui import jobs
    from lithotse_desktop.gui.window import MainWindow
    from lithotse_desktop.plugins import get_plugin_manager
    from lithotse_desktop.workspace import Workspace
    from tests.support import lines_connector

    app = QApplication.instance() or QApplication([sys.argv[0]])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        write_lines(folder / "big.txt", args.records)
        ws = Workspace.create(Path(tmp) / "ws")
        get_plugin_manager().register(lines_connector, "lines-bench")
        ws.add_source("big", "lines", {"path": str(folder)}, {})

        window = MainWindow(ws)
        window.resize(1280, 800)
        window.show()
        jobs.wait_for_jobs()
        app.processEvents()
        page = window.sources
        page.reload(select="big")
        page.picker.set_range(DateRange.parse("2023-06-01", "2023-12-31"))

        gaps: list[float] = []
        last = [time.perf_counter()]

        def beat() -> None:
            now = time.perf_counter()
            gaps.append(now - last[0])
            last[0] = now

        heartbeat = QTimer()
        heartbeat.setInterval(5)
        heartbeat.timeout.connect(beat)
        outcome: dict = {}

        def finished(result) -> None:
            outcome["result"] = result
            outcome["t"] = time.perf_counter()
            app.quit()

        def failed(exc, _trace) -> None:
            outcome["error"] = exc
            app.quit()

        started = time.perf_counter()
        heartbeat.start()
        page.start_import()
        page.job.signals.finished.connect(finished)
        page.job.signals.failed.connect(failed)
        app.exec()
        heartbeat.stop()
        jobs.wait_for_jobs()
        if "error" in outcome:
            print(f"import failed: {outcome['error']}", file=sys.stderr)
            return 2
        manifest = outcome["result"].imported.landings[0].manifest
        longest = max(gaps) * 1000 if gaps else float("inf")
        print(f"records imported : {manifest.records:,} ({manifest.records_in_range:,} in range)")
        print(f"import time      : {outcome['t'] - started:.2f} s")
        print(f"heartbeats       : {len(gaps)} at 5 ms")
        print(f"longest stall    : {longest:.1f} ms (target < {args.target_ms:.0f} ms)")
        print(f"summary shown    : {page.strip.status.text()}")
        window.close()
        return 0 if longest < args.target_ms else 1


if __name__ == "__main__":
    sys.exit(main())
