#!/usr/bin/env python3
"""The newcomer's path, as CI runs it (from .ci/run, before the unit tests).

A fresh clone of this checkout's HEAD in a temporary folder; HOME an empty folder; no display,
no keyring backend injected, no PYTHONPATH; then the README's first command, `bash scripts/demo.sh`.
It checks that the demo exits 0 and prints every demo derivative with its figures (compared with
`lithotse derive show --json`), and that the demo leaves a working `lithotse serve`: started on a
free port, it answers the value of the printed `curl` example, with the token `lithotse token`
prints, as `derive show` has it. Each step's time is printed; the clone is removed at the end.

Standard library only: it runs before any virtual environment exists.
Usage: python3 scripts/newcomer_check.py [--keep]   (--keep leaves the temporary folder for a look)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = "demo-workspace"
MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"
DEMO_TIMEOUT = 45 * 60  # the first run installs every package from the registry
HEADER = re.compile(r"^derivative (?P<name>\S+) \(version (?P<version>\w+), (?P<rows>\d+) rows"
                    r"(?:, (?P<hidden>all|\d+) suppressed)?\)$")
EXAMPLE_URL = re.compile(r"'(http://127\.0\.0\.1:\d+/api/v1/derivatives/[^']+)'")
TOKEN_COMMAND = f"$(.venv/bin/lithotse token --workspace {WORKSPACE})"
ADDITIVE = ("count", "sum")


class CheckFailed(Exception):
    """One check of the newcomer's path did not hold; the message says which and why."""


@dataclass
class Printed:
    """One derivative as the demo printed it: its header and the sample row lines under it."""

    version: str
    rows: int
    hidden: str | None
    lines: list[str] = field(default_factory=list)


def minimal_env(home: Path) -> dict[str, str]:
    """What a new user's login shell might give: a home folder and the system PATH, nothing else."""
    return {"HOME": str(home), "PATH": MINIMAL_PATH, "LANG": "C.UTF-8"}


@contextmanager
def step(name: str, timings: list[tuple[str, float]]) -> Iterator[None]:
    print(f"== {name}", flush=True)
    start = time.monotonic()
    try:
        yield
    finally:
        took = time.monotonic() - start
        timings.append((name, took))
        print(f"   ({took:.1f} s)", flush=True)


def run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float,
        what: str) -> subprocess.CompletedProcess:
    """Run a command; a non-zero exit or a timeout fails the check with the end of its output."""
    try:
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise CheckFailed(f"{what}: no answer within {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise CheckFailed(f"{what} exited with {done.returncode}:\n"
                          f"{_tail(done.stdout)}\n{_tail(done.stderr)}")
    return done


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def clone_head(target: Path) -> str:
    """Clone this checkout's committed HEAD (not its working tree) into ``target``."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True,
                           text=True, check=True).stdout.strip()
    if dirty:
        print("   note: uncommitted changes in the checkout are not part of the clone", flush=True)
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(REPO), str(target)], check=True)
    subprocess.run(["git", "-C", str(target), "checkout", "--quiet", "--detach", head], check=True)
    return head


def demo_specs(clone: Path) -> dict[str, dict]:
    """The demo's derivatives, from the specs it bundles (package data of lithotse_desktop.demo)."""
    specs = {}
    for path in sorted((clone / "lithotse_desktop" / "demo" / "derivatives").glob("*.json")):
        spec = json.loads(path.read_text("utf-8"))
        specs[spec["name"]] = spec
    if not specs:
        raise CheckFailed("lithotse_desktop/demo/derivatives holds no derivative specs")
    return specs


def parse_demo_output(text: str) -> dict[str, Printed]:
    """Each ``derivative NAME (version V, N rows[, K suppressed])`` header with its row lines."""
    printed: dict[str, Printed] = {}
    current: Printed | None = None
    for line in text.splitlines():
        match = HEADER.match(line)
        if match:
            current = printed[match["name"]] = Printed(match["version"], int(match["rows"]), match["hidden"])
        elif current is not None and line.startswith("  "):
            current.lines.append(line[2:])
        else:
            current = None
    return printed


def split_row(line: str, columns: list[str]) -> dict[str, str] | None:
    """``a=1, b=x, c=None`` back into fields, using the known column order (values may hold ", ")."""
    if not columns or not line.startswith(f"{columns[0]}="):
        return None
    fields, rest = {}, line[len(columns[0]) + 1:]
    for name, following in zip(columns, [*columns[1:], None], strict=True):
        if following is None:
            fields[name] = rest
            break
        cut = rest.find(f", {following}=")
        if cut < 0:
            return None
        fields[name], rest = rest[:cut], rest[cut + len(following) + 3:]
    return fields


def shown(value: Any) -> str:
    """A JSON value as the demo prints the same Python value."""
    return "None" if value is None else str(value)


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text not in ("nan", "inf", "-inf")


def check_figures(specs: dict[str, dict], printed: dict[str, Printed], tables: dict[str, dict]) -> list[str]:
    """Every demo derivative printed with figures that ``derive show --json`` confirms.

    A figure is a measure's number in a printed row (the row must be one of the table's rows); a
    view without measures has its row count; a derivative whose cells are all suppressed must
    say so, and the table must agree. Returns one line per derivative saying what was checked.
    """
    report = []
    for name, spec in specs.items():
        block = printed.get(name)
        if block is None:
            raise CheckFailed(f"the demo printed no table for derivative {name}")
        table = tables[name]
        if block.version != table["version"] or block.rows != len(table["rows"]):
            raise CheckFailed(f"{name}: printed version {block.version} with {block.rows} rows, but "
                              f"derive show has {table['version']} with {len(table['rows'])} rows")
        if block.rows == 0:
            raise CheckFailed(f"{name}: the demo built it empty")
        measures = [m["as"] for m in spec.get("measures", [])]
        if not measures:
            report.append(f"{name}: {block.rows} rows (a view; its row count is its figure)")
            continue
        expected = {tuple(shown(row.get(c)) for c in table["columns"]) for row in table["rows"]}
        figures = []
        for line in block.lines:
            fields = split_row(line, table["columns"])
            if fields is None:
                raise CheckFailed(f"{name}: cannot read the printed row {line!r}")
            if tuple(fields[c] for c in table["columns"]) not in expected:
                raise CheckFailed(f"{name}: the printed row {line!r} is not in derive show --json")
            figures += [f"{m}={fields[m]}" for m in measures if is_number(fields[m])]
        if figures:
            report.append(f"{name}: {len(figures)} figure(s) printed and confirmed, e.g. {figures[0]}")
        elif block.hidden == "all" and all(row.get("suppressed") for row in table["rows"]):
            report.append(f"{name}: all {block.rows} rows suppressed, as printed")
        else:
            raise CheckFailed(f"{name}: the demo printed no figure (measures: {', '.join(measures)})")
    return report


def example_query(demo_stdout: str) -> tuple[str, dict[str, str]]:
    """The derivative and query of the printed ``curl`` example, which must use the token command."""
    lines = demo_stdout.splitlines()
    at = next((i for i, line in enumerate(lines) if "curl " in line), None)
    if at is None or TOKEN_COMMAND not in lines[at]:
        raise CheckFailed(f"the demo printed no ready curl line using {TOKEN_COMMAND}")
    match = next((EXAMPLE_URL.search(line) for line in lines[at:at + 2] if EXAMPLE_URL.search(line)), None)
    if match is None:
        raise CheckFailed("the demo's curl line has no http://127.0.0.1 value URL")
    url = urllib.parse.urlsplit(match[1])
    name = url.path.rsplit("/", 2)[-2]
    return name, dict(urllib.parse.parse_qsl(url.query))


def expected_value(spec: dict, table: dict, query: dict[str, str]) -> tuple[Any, bool]:
    """The value and suppression flag ``derive show --json`` implies for a value query."""
    query = dict(query)
    measure = query.pop("measure")
    start, end = query.pop("from", None), query.pop("to", None)
    rows = [row for row in table["rows"]
            if (start is None or str(row.get("period")) >= start)
            and (end is None or str(row.get("period")) <= end)
            and all(shown(row.get(k)) == v for k, v in query.items())]
    if not rows:
        raise CheckFailed(f"the curl example matches no row of {spec['name']} in derive show --json")
    if any(row.get("suppressed") for row in rows):
        return None, True
    fn = next(m["fn"] for m in spec["measures"] if m["as"] == measure)
    if fn in ADDITIVE:
        return sum(row[measure] for row in rows if row[measure] is not None), False
    if len(rows) != 1:
        raise CheckFailed(f"the curl example matches {len(rows)} rows of a non-additive measure")
    return rows[0][measure], False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, token: str | None = None, timeout: float = 10) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class ApiServer:
    """``lithotse serve`` running in the clone, started and stopped by the check."""

    def __init__(self, clone: Path, env: dict[str, str], port: int) -> None:
        self.clone, self.env, self.port = clone, env, port
        self.log = clone.parent / "serve.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        """Start the server and wait until it answers HTTP (any status: it needs a token)."""
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [".venv/bin/lithotse", "serve", "--workspace", WORKSPACE, "--port", str(self.port)],
                cwd=self.clone, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise CheckFailed(f"lithotse serve exited with {self.proc.returncode}:\n"
                                  + _tail(self.log.read_text("utf-8", "replace")))
            try:
                http_get(f"http://127.0.0.1:{self.port}/api/v1/derivatives", timeout=2)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise CheckFailed(f"lithotse serve did not answer within {timeout:.0f} s") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def check_api(clone: Path, env: dict[str, str], demo_output: str, spec: dict, table: dict,
              query: dict[str, str], timings: list[tuple[str, float]]) -> str:
    """Start the API, fetch the example value with the workspace token, compare with derive show."""
    server = ApiServer(clone, env, free_port())
    try:
        with step(f"start lithotse serve on port {server.port}", timings):
            server.start()
        with step("lithotse token", timings):
            token = run([".venv/bin/lithotse", "token", "--workspace", WORKSPACE], cwd=clone, env=env,
                        timeout=120, what="lithotse token").stdout.strip()
            if not token:
                raise CheckFailed("lithotse token printed nothing")
            if token in demo_output:
                raise CheckFailed("the demo's output contains the API token itself")
        with step("fetch one value with the token", timings):
            url = (f"http://127.0.0.1:{server.port}/api/v1/derivatives/{spec['name']}/value?"
                   + urllib.parse.urlencode(query))
            status, _body = http_get(url)
            if status != 401:
                raise CheckFailed(f"without the token the API answered {status}, not 401")
            status, body = http_get(url, token)
            if status != 200:
                raise CheckFailed(f"GET {url} answered {status}: {body[:300]!r}")
            answer = json.loads(body)
            want, suppressed = expected_value(spec, table, query)
            value = answer.get("value")
            if bool(answer.get("suppressed")) != suppressed or (
                    not suppressed and not (isinstance(value, (int, float)) and value == want)):
                raise CheckFailed(f"GET {url} answered {answer}, but derive show --json implies "
                                  f"value={want}, suppressed={suppressed}")
    finally:
        with step("stop lithotse serve", timings):
            server.stop()
    return f"{spec['name']}?{urllib.parse.urlencode(query)} -> {answer}"


def check(keep: bool = False) -> None:
    timings: list[tuple[str, float]] = []
    base = Path(tempfile.mkdtemp(prefix="lithotse-newcomer."))
    clone, home = base / "lithotse", base / "home"
    home.mkdir()
    env = minimal_env(home)
    print(f"newcomer check in {base} (HOME={home}, PATH={MINIMAL_PATH}, no display, no keyring backend)")
    try:
        with step("git clone of HEAD", timings):
            print(f"   commit {clone_head(clone)}")
        with step("bash scripts/demo.sh", timings):
            demo = run(["bash", "scripts/demo.sh"], cwd=clone, env=env, timeout=DEMO_TIMEOUT,
                       what="bash scripts/demo.sh")
            print(_tail(demo.stdout, 12))
        with step("demo figures against derive show --json", timings):
            specs = demo_specs(clone)
            tables = {name: json.loads(run([".venv/bin/lithotse", "derive", "show", name, "--json",
                                            "--workspace", WORKSPACE], cwd=clone, env=env, timeout=300,
                                           what=f"lithotse derive show {name}").stdout)
                      for name in specs}
            for line in check_figures(specs, parse_demo_output(demo.stdout), tables):
                print(f"   {line}")
            name, query = example_query(demo.stdout)
            if name not in specs:
                raise CheckFailed(f"the curl example names {name}, not a demo derivative")
        print("   " + check_api(clone, env, demo.stdout + demo.stderr, specs[name], tables[name], query,
                                timings))
    except CheckFailed as exc:
        print(f"\nnewcomer check FAILED: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    finally:
        print("timings: " + ", ".join(f"{name} {took:.1f} s" for name, took in timings), flush=True)
        if keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print("newcomer check passed")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the temporary folder for a look")
    check(keep=parser.parse_args(argv).keep)


if __name__ == "__main__":
    main()
