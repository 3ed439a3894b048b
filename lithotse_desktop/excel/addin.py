"""``lithotse excel install-addin``: install what can be installed here and say exactly what is left.

An .xlam can only be produced by Excel itself, so Lithotse ships its sources: the VBA module
with the ribbon callbacks (``Lithotse.bas``) and the ribbon (``customUI14.xml``). This copies
them to a folder, runs ``xlwings addin install`` when xlwings is available (that installs the
xlwings add-in, which provides RunPython and the UDF import; xlwings is a dependency of
Lithotse on Windows and macOS, and never installed on Linux), and prints the remaining steps
for this operating system.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

SOURCES = Path(__file__).with_name("addin")
FILES = ("Lithotse.bas", "customUI14.xml")
UDF_MODULE = "lithotse_desktop.excel.xlwings_addin"


@dataclass
class InstallReport:
    target: Path
    copied: list[Path] = field(default_factory=list)
    xlwings: str = ""
    steps: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"copied the add-in sources to {self.target}:"]
        lines += [f"  {p.name}" for p in self.copied]
        lines.append(f"xlwings: {self.xlwings}")
        lines.append("what is left to do:")
        lines += [f"  {i}. {s}" for i, s in enumerate(self.steps, 1)]
        return "\n".join(lines)


def startup_folder(platform: str = sys.platform) -> str | None:
    """Excel's per-user startup folder (add-ins there open with Excel), or None off Windows/macOS."""
    if platform.startswith("win"):
        return os.path.join(os.environ.get("APPDATA", r"%APPDATA%"), "Microsoft", "Excel", "XLSTART")
    if platform == "darwin":
        return os.path.expanduser("~/Library/Group Containers/UBF8T346G9.Office/User Content/Startup/Excel")
    return None


def _run_xlwings() -> str:
    """``xlwings addin install``, run in this process so it works in the frozen app too (which
    has no ``xlwings`` command). xlwings is a dependency of Lithotse on Windows and macOS."""
    try:
        from xlwings import cli
    except Exception as exc:  # an install without its declared dependency, or a broken one
        return (f"xlwings cannot be imported ({exc}); it is part of Lithotse on Windows and macOS, "
                "so reinstall Lithotse, then run: lithotse excel install-addin")
    out = io.StringIO()
    saved = sys.argv
    sys.argv = ["xlwings", "addin", "install"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            cli.main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            lines = out.getvalue().strip().splitlines() or [str(exc.code)]
            return f"'xlwings addin install' failed: {lines[-1]}"
    except Exception as exc:  # Excel missing or not scriptable: say so, the copied sources stay
        return f"'xlwings addin install' failed: {exc}"
    finally:
        sys.argv = saved
    lines = out.getvalue().strip().splitlines()
    return "ran 'xlwings addin install': " + (lines[-1] if lines else "done")


def install_addin(target: Path | None = None, *, run_xlwings: bool = True,
                  platform: str = sys.platform) -> InstallReport:
    target = Path(target or Path(platformdirs.user_data_dir("lithotse", appauthor=False)) / "excel-addin")
    target.mkdir(parents=True, exist_ok=True)
    report = InstallReport(target)
    for name in FILES:
        shutil.copyfile(SOURCES / name, target / name)
        report.copied.append(target / name)
    if not (platform.startswith("win") or platform == "darwin"):
        report.xlwings = "skipped: Excel (and so xlwings' add-in) runs only on Windows and macOS"
        report.steps = [
            "Excel does not run on this system. Here, refresh bound workbooks with: "
            "lithotse excel refresh WORKBOOK.xlsx, or read tables from Power Query / LibreOffice "
            "through lithotse serve.",
            "On a Windows or macOS machine with Excel, install Lithotse and run: lithotse excel install-addin",
        ]
        return report
    report.xlwings = _run_xlwings() if run_xlwings else "skipped (--no-xlwings)"
    folder = startup_folder(platform)
    editor = "Alt+F11" if platform.startswith("win") else "Tools > Macro > Visual Basic Editor"
    report.steps = [
        f"In Excel, open a new blank workbook and the Visual Basic editor ({editor}); "
        f"File > Import File… > {target / 'Lithotse.bas'}.",
        "In the editor: Tools > References… > tick 'xlwings' (present once 'xlwings addin install' ran).",
        f"File > Save As… > type 'Excel Add-in (*.xlam)', name Lithotse.xlam, in {folder}",
        f"Add the ribbon tab: open Lithotse.xlam in the Office RibbonX Editor (free, github.com/fernandreu/"
        f"office-ribbonx-editor), Insert > Office 2010+ Custom UI Part, paste {target / 'customUI14.xml'}, save.",
        f"xlwings tab in Excel: set Interpreter to {sys.executable} and UDF Modules to {UDF_MODULE}"
        + (", then click Import Functions for LITHOTSE_VALUE / LITHOTSE_TABLE." if platform.startswith("win")
           else " (worksheet functions need Windows; the ribbon buttons work on macOS)."),
        "Restart Excel. Set LITHOTSE_WORKSPACE for Excel if your workspace is not the default one.",
        "The functions and ribbon buttons read the local API: keep the Lithotse desktop app open, "
        "or run: lithotse serve",
    ]
    return report
