"""Jobs that span tiers, shared by the CLI and the desktop app: import then build what it feeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import audit
from .dates import DateRange
from .errors import Cancelled, LithotseError
from .progress import Progress
from .raw.landing import ImportResult, run_import
from .workspace import Workspace


@dataclass
class ImportOutcome:
    imported: ImportResult
    builds: list[Any] = field(default_factory=list)
    build_error: str | None = None
    """Why a build after the import failed: the data landed all the same, and stays."""

    def to_json(self) -> dict:
        data = self.imported.to_json()
        data["builds"] = [b.to_json() for b in self.builds]
        data["build_error"] = self.build_error
        return data

    def build_lines(self) -> list[str]:
        lines = [b.summary() for b in self.builds]
        if self.build_error and not any(b.status in ("failed", "skipped") for b in self.builds):
            lines.append(f"build failed: {self.build_error}")
        return lines


def import_and_build(ws: Workspace, source: str, date_range: DateRange | None = None, *,
                     streams: list[str] | None = None, full: bool = False, build: bool = True,
                     progress: Progress | None = None) -> ImportOutcome:
    """Land a source, then rebuild the derivatives that read the streams that received data."""
    progress = progress or Progress()
    imported = run_import(ws, source, date_range, streams=streams, full=full, progress=progress)
    if imported.landings:
        audit.record(ws, "import", objects=[m.manifest.object_key for m in imported.landings],
                     source=source, range=imported.date_range.to_json(), import_id=imported.import_id,
                     landings=[m.manifest.id for m in imported.landings])
    outcome = ImportOutcome(imported)
    if build and imported.landings:
        from .derive.build import BuildsFailed, build_affected

        try:
            outcome.builds = build_affected(ws, source, sorted(imported.streams), progress=progress)
        except Cancelled as exc:  # the import stays: say so
            landed = f"the import of {len(imported.landings)} object(s) from {source}"
            raise Cancelled([landed, *exc.committed]) from None
        except LithotseError as exc:
            outcome.builds = exc.results if isinstance(exc, BuildsFailed) else []
            outcome.build_error = str(exc)
    return outcome
