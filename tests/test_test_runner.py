"""The test runner as scripts/test.sh uses it: tests of one xdist group share one worker.

The Spark tests rely on it (one local Spark server per run, not one per worker); a pytest or
pytest-xdist upgrade that breaks the grouping fails here instead of doubling CI's Spark work.
"""

from __future__ import annotations

import subprocess
import sys


def test_an_xdist_group_runs_on_one_worker(tmp_path):
    (tmp_path / "test_grouped.py").write_text(
        "import os\nimport pytest\n\npytestmark = pytest.mark.xdist_group('together')\n\n"
        + "".join(f"def test_{i}():\n    print('worker', os.environ['PYTEST_XDIST_WORKER'])\n\n"
                  for i in range(6)))
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2",
                           "--dist", "loadgroup", "-v", "-s", str(tmp_path / "test_grouped.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    workers = {line.split()[0] for line in done.stdout.splitlines() if line.startswith("[gw")}
    assert len(workers) == 1, done.stdout
