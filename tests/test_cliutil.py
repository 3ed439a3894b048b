"""Ctrl-C at the terminal during a long command: a cancel first, leaving at once the second time."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

COMMAND = """
import sys, time
import click
from lithotse_desktop.cliutil import LithotseGroup, cancellable

@click.group(cls=LithotseGroup)
def main():
    pass

@main.command()
@click.argument("mode")
def job(mode):
    def work(progress):
        print("started", flush=True)
        while True:  # a job checks between blocks; one inside a plugin's long call may not
            if mode == "checks":
                progress.check()
            time.sleep(0.02)
    cancellable(work)

main()
"""


def _started(mode: str) -> subprocess.Popen:
    # a shell's background job ignores SIGINT, and Python keeps that: the child hears it as a terminal would
    proc = subprocess.Popen([sys.executable, "-c", COMMAND, "job", mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None and proc.stdout.readline() == "started\n"
    return proc


def _interrupted(proc: subprocess.Popen, times: int) -> tuple[int, str, float]:
    started = time.monotonic()
    for n in range(times):
        if n:
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    return proc.returncode, err, time.monotonic() - started


@pytest.mark.parametrize("mode", ["checks", "stuck"])
def test_ctrl_c_cancels_a_long_command_and_a_second_leaves_at_once(mode):
    """The job runs in a worker thread: a first Ctrl-C cancels it, and a job that checks stops
    at its next check, the command saying nothing it started was committed (exit 130, no
    traceback); a job that does not check (inside a plugin's long call) is left at once by a
    second Ctrl-C, exit 130 too, without waiting for it."""
    proc = _started(mode)
    code, err, seconds = _interrupted(proc, 1 if mode == "checks" else 2)
    assert code == 130, err
    assert "cancelling: stopping at the next safe point (Ctrl-C again to leave at once)" in err, err
    assert "Traceback" not in err and "Aborted" not in err, err
    if mode == "checks":
        assert "cancelled: nothing the command had started was committed" in err, err
    else:
        assert "left at once: what was committed stays, the rest is gone" in err, err
    assert seconds < 10, seconds


def test_ctrl_c_interrupts_a_builds_query_and_names_what_it_had_built(tmp_path):
    """``lithotse derive build --all`` as a user runs it, over a CSV source: Ctrl-C during a
    query that would run for hours ends the command at once (exit 130), saying that the
    derivative built before it stays published. Before, the first Ctrl-C waited for the query."""
    from lithotse_desktop.derive.catalog import Catalog
    from lithotse_desktop.derive.service import add_spec
    from lithotse_desktop.raw import run_import
    from lithotse_desktop.workspace import Workspace

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "visits.csv").write_text("patient_id,department,admit_date\n" + "".join(
        f"P{i},dept_{i % 3},2024-01-{i % 28 + 1:02d}\n" for i in range(60)), "utf-8")
    ws = Workspace.create(tmp_path / "ws")
    ws.add_source("ehr", "csv", {"path": str(folder), "date_column": "admit_date"}, {})
    run_import(ws, "ehr")
    add_spec(ws, {"name": "by_month", "kind": "aggregate", "input": {"source": "ehr", "stream": "visits"},
                  "date_field": "admit_date", "grain": "month", "group_by": ["department"],
                  "measures": [{"fn": "count", "as": "visits"}], "suppress_below": 0})
    Catalog(ws).save_spec({"name": "slow", "kind": "sql", "inputs": {"m": {"derivative": "by_month"}},
                           "sql": "SELECT department, visits + (SELECT count(*) FROM range(1000000000000) t(i) "
                                  "WHERE hash(i) % 7 = 1) AS visits FROM m"})
    proc = subprocess.Popen([sys.executable, "-m", "lithotse_desktop", "--workspace", str(ws.root), "derive",
                             "build", "--all"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stderr is not None
    seen = []
    while not seen or not seen[-1].startswith("… computing slow"):
        line = proc.stderr.readline()
        assert line, (seen, proc.communicate(timeout=30))
        seen.append(line)
    time.sleep(0.5)  # inside the query
    code, err, _seconds = _interrupted(proc, 1)
    version = Catalog(ws).current("by_month")
    assert code == 130, err
    assert version is not None and Catalog(ws).current("slow") is None
    assert (f"cancelled: the build of by_month (version {version.version}) committed before the cancel; "
            "nothing else the command had started was") in err, err
    assert "Traceback" not in err and "left at once" not in err, err
