"""What the desktop app says about imports, builds and landings, in an analyst's words.

The command line prints the engine's own terms (landings, partitions, hashes); the app says
what changed in one sentence — "Imported 6 new records dated between 3 Aug and 18 Dec 2015;
3 derivatives rebuilt." — and keeps the technical lines for a Details view. No Qt here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from ..dates import DateRange
from ..jobs import ImportOutcome
from ..raw.landing import left_out_text
from ..raw.manifest import Manifest
from .timeaxis import MONTHS

REBUILT = ("built", "incremental")


def day_text(day: dt.date, year: bool = True) -> str:
    return f"{day.day} {MONTHS[day.month - 1]}" + (f" {day.year}" if year else "")


def span_text(low: dt.date | None, high: dt.date | None) -> str:
    """"on 3 Aug 2015", "between 3 Aug and 18 Dec 2015", "between 30 Dec 2014 and 2 Jan 2015"."""
    if low is None or high is None:
        return "without dates"
    if low == high:
        return f"on {day_text(low)}"
    return f"between {day_text(low, year=low.year != high.year)} and {day_text(high)}"


def range_text(rng: DateRange) -> str:
    if rng.start is None and rng.end is None:
        return "all dates"
    if rng.start is None:
        return f"up to {day_text(rng.end)}" if rng.end else "all dates"
    if rng.end is None:
        return f"from {day_text(rng.start)} on"
    return f"{day_text(rng.start)} to {day_text(rng.end)}"


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {many or word + 's'}"


def _day(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(text)[:10]) if text else None
    except ValueError:
        return None


def landed_span(manifests: Iterable[Manifest]) -> tuple[dt.date | None, dt.date | None]:
    manifests = list(manifests)
    lows = [d for m in manifests if (d := _day(m.date_min)) is not None]
    highs = [d for m in manifests if (d := _day(m.date_max)) is not None]
    return (min(lows) if lows else None), (max(highs) if highs else None)


def build_sentence(results: Iterable[Any]) -> str:
    """"3 derivatives rebuilt", "visits rebuilt (420 rows)", "derivatives already up to date"."""
    results = list(results)
    rebuilt = [r for r in results if r.status in REBUILT]
    if not results:
        return ""
    not_built = [r.name for r in results if r.status in ("failed", "skipped")]
    if not_built:
        done = f"{len(rebuilt)} rebuilt, " if rebuilt else ""
        return f"{done}{', '.join(not_built)} not built (see Details)"
    if not rebuilt:
        return "derivatives already up to date" if len(results) > 1 else f"{results[0].name} already up to date"
    if len(rebuilt) == 1:
        return f"{rebuilt[0].name} rebuilt ({plural(rebuilt[0].rows, 'row')})"
    return f"{len(rebuilt)} derivatives rebuilt"


def built_text(results: Iterable[Any]) -> str:
    """What the Derivatives page says after Build: "Built visits: 420 rows." """
    results = list(results)
    rebuilt = [r for r in results if r.status in REBUILT]
    if not rebuilt:
        return "Already up to date: nothing changed since the last build." if results else "Nothing to build."
    if len(rebuilt) == 1:
        return f"Built {rebuilt[0].name}: {plural(rebuilt[0].rows, 'row')}."
    return f"Built {len(rebuilt)} derivatives: {', '.join(r.name for r in rebuilt)}."


def import_sentence(outcome: ImportOutcome) -> str:
    """The one sentence an import ends with."""
    result = outcome.imported
    manifests = [item.manifest for item in result.landings]
    if not manifests:
        return (f"Nothing new from {result.source} for {range_text(result.date_range)}: "
                "every file was already imported.")
    counted = sum(m.records_in_range for m in manifests)
    aside = sum(m.records_out_of_range for m in manifests)
    low, high = landed_span([m for m in manifests if m.records_in_range])
    rng = result.date_range
    if low is not None and rng.start is not None:
        low = max(low, rng.start)
    if high is not None and rng.end is not None:
        high = min(high, rng.end)
    text = f"Imported {plural(counted, 'new record')} from {result.source}"
    if counted and low is not None and high is not None:
        text += f" dated {span_text(low, high)}"
    if aside:
        text += f" ({plural(aside, 'more record')} outside {range_text(result.date_range)} stored, not counted)"
    built = build_sentence(outcome.builds)
    if outcome.build_error and not built:
        built = "the build that follows failed (see Details)"
    return text + (f"; {built}." if built else ".")


def landing_details(m: Manifest) -> str:
    """The technical line of one landing, for the Details view."""
    stored = "same file as before: stored once" if m.already_stored else "stored"
    return (f"{m.stream} ← {m.original_name}: {plural(m.records, 'record')} ({m.records_in_range:,} in the range, "
            f"{m.records_out_of_range:,} outside){left_out_text(m.meta)}, {size_text(m.bytes)}, {stored}; "
            f"landing {m.id}, content sha256 {m.sha256[:12]}…")


def size_text(count: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return plural(count, "byte")
