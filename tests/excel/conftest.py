from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cache.helpers import _close_caches  # noqa: F401  (fixture)
from tests.conftest import REPO
from tests.derive.conftest import lines  # noqa: F401  (fixture)
from tests.support.serving import served  # noqa: F401  (fixture)

RECALC = REPO / "scripts" / "libreoffice-recalc.sh"


@pytest.fixture(scope="session")
def libreoffice():
    """Open a workbook in headless LibreOffice (recalculating on load) and save a copy."""
    if shutil.which("soffice") is None and shutil.which("libreoffice") is None:
        pytest.fail("LibreOffice is not installed; install it with: "
                    "apt-get install -y --no-install-recommends libreoffice-calc-nogui")

    def convert(path: Path, outdir: Path, fmt: str = "xlsx") -> Path:
        proc = subprocess.run([str(RECALC), str(path), str(outdir), fmt], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        return Path(proc.stdout.strip().splitlines()[-1])

    return convert

