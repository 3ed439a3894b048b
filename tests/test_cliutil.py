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
        while True:  # a job checks between blocks; one inside a long query does not
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
    traceback); a job that does not check (inside a long DuckDB query) is left at once by a
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
