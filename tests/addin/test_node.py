"""The add-in's JavaScript, run by Node's test runner against a real ``lithotse serve --https``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from lithotse_desktop.excel.formula import build_table_formula, build_value_formula
from tests.addin.conftest import ADDIN, derive_show
from tests.cache.helpers import free_port


def test_addin_code_against_the_real_https_server(https_serve, addin_workspace, node_modules):
    env = {**os.environ,
           "NODE_EXTRA_CA_CERTS": str(https_serve["ca"]),
           "LITHOTSE_TEST_BASE": https_serve["base"],
           "LITHOTSE_TEST_TOKEN": https_serve["token"],
           "LITHOTSE_TEST_EXPECTED": json.dumps(derive_show(addin_workspace), default=str),
           "LITHOTSE_TEST_PYTHON": sys.executable,
           "LITHOTSE_TEST_WORKSPACE": str(addin_workspace.root),
           "LITHOTSE_TEST_CSV": str(addin_workspace.csv_folder),
           "LITHOTSE_TEST_CLOSED_PORT": str(free_port())}
    proc = subprocess.run(["node", "--test", "--test-concurrency=1", "--test-timeout=240000", "test/"], cwd=ADDIN,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "# fail 0" in proc.stdout and "# pass 11" in proc.stdout, proc.stdout[-2000:]


CASES = [
    ("visits", "n", "2024-01-01", "2024-03-31", {}),
    ("visits", "total", "", "", {"grp": "a"}),
    ("visits by dept", "n", "2024-01-01", "", {"department": 'Card"iology', "year": "2024"}),
    ("x", "y", None, "2024-12-31", {"a": "b=c"}),
]


def test_task_pane_builds_the_same_formula_text_as_python(node_modules):
    script = ("import {buildValueFormula, buildTableFormula} from './src/lithotse.js';"
              "const cases = JSON.parse(process.argv[1]);"
              "console.log(JSON.stringify(cases.map(([d, m, f, t, dims]) => "
              "[buildValueFormula(d, m, f, t, dims), buildTableFormula(d, f, t, Object.keys(dims))])));")
    proc = subprocess.run(["node", "--input-type=module", "-e", script, json.dumps(CASES)], cwd=ADDIN,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    js = json.loads(proc.stdout)
    python = [[build_value_formula(d, m, f, t, dims, addin="officejs"),
               build_table_formula(d, f, t, list(dims), addin="officejs")] for d, m, f, t, dims in CASES]
    assert js == python
    assert js[0][0] == '=LITHOTSE.VALUE("visits","n","2024-01-01","2024-03-31")'


def test_built_files_match_the_sources(node_modules):
    proc = subprocess.run(["node", "build.mjs", "--check"], cwd=ADDIN, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
