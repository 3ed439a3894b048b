"""Column names as real files write them, made usable everywhere a column is named.

Exports put any text in a header cell: spaces, ``LOS (days)``, ``% Readmit``, ``Ward/Bed``,
accents, quotes, SQL keywords, line breaks, nothing at all, the same name twice. Lithotse keeps
that text as the column's name (SQL always quotes it, see ``derive.compile.Dialect.quote``) and
changes only what would make a name unusable, by one rule for every file connector
(:func:`header_names`):

* control characters become spaces, runs of whitespace (line breaks in a wrapped header cell
  included) become one space, and the ends are trimmed: ``"LOS\\n(days)"`` is ``LOS (days)``;
* an empty or blank header gets the connector's placeholder (``column_C``, ``column_3``);
* names are unique ignoring case, since DuckDB and Excel compare names without case: a header
  keeps its own text unless an earlier header or one of the core's columns (``_landing_id``,
  ``_landed_at``, ``_row``) has it; such a name, or a placeholder another header holds, gets
  the first free suffix ``_2``, ``_3``…: ``Name, Name, name`` become ``Name, Name_2, name_3``,
  ``Name, Name, Name_2`` become ``Name, Name_3, Name_2``, and ``Name, , column_2`` (a
  placeholder ``column_2``) become ``Name, column_2_2, column_2``.

Settings and parameters that list several names in one text (``key``, ``date_column``, the
API's ``columns``) are split at commas by :func:`split_names`, which keeps a comma that is part
of a known column's name. :func:`is_total_label` recognises the label of a total row under a
table's data.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Sequence

CORE_COLUMNS = ("_landing_id", "_landed_at", "_row")
"""Columns the core adds to every record it reads back (which landing, when, which position)."""

_SPACES = re.compile(r"\s+")

TOTAL_LABELS = (
    # English
    "total", "totals", "grand total", "subtotal", "sub-total", "sub total", "sum", "overall",
    # German
    "gesamt", "insgesamt", "summe", "gesamtsumme", "endsumme", "zwischensumme",
    # French
    "totaux", "total général", "somme", "sous-total",
    # Spanish, Portuguese, Italian
    "total general", "totales", "suma", "total geral", "soma", "totale", "totale generale", "somma",
    "subtotale",
    # Dutch, Nordic, Polish, Finnish
    "totaal", "eindtotaal", "subtotaal", "som", "totalt", "summa", "i alt", "razem", "yhteensä",
)
_TOTAL = re.compile(r"^(?:" + "|".join(re.escape(w) for w in sorted(TOTAL_LABELS, key=len, reverse=True))
                    + r")\s*(?:[:\-\u2013\u2014(\[#\d].*)?$", re.IGNORECASE | re.DOTALL)


def clean_header(text: str | None) -> str:
    """A header cell's text as a name: control characters and whitespace runs as one space, trimmed."""
    value = "".join(" " if unicodedata.category(c) == "Cc" else c for c in (text or "").replace("\ufeff", ""))
    return _SPACES.sub(" ", value).strip()


def header_names(cells: Sequence[str | None], placeholder: Callable[[int], str]) -> list[str]:
    """Header texts as column names by the module's rule; ``placeholder(i)`` names empty cell ``i``."""
    texts = [clean_header(text) for text in cells]
    claimed = {c.casefold() for c in CORE_COLUMNS}
    names: list[str | None] = []
    for text in texts:  # a header's own text first, so no placeholder or suffix takes it
        if text and text.casefold() not in claimed:
            claimed.add(text.casefold())
            names.append(text)
        else:
            names.append(None)
    out = []
    for i, (text, name) in enumerate(zip(texts, names, strict=True)):
        if name is None:
            base = text or placeholder(i)
            name, n = base, 2
            while name.casefold() in claimed:
                name, n = f"{base}_{n}", n + 1
            claimed.add(name.casefold())
        out.append(name)
    return out


def split_names(text: str, known: Collection[str] = ()) -> list[str]:
    """Names listed in one text, separated by commas; surrounding spaces are dropped.

    A run of comma-separated pieces that together spell a ``known`` name is that one name
    (the longest such run wins), so ``"period,Cost, total ($)"`` is two names when
    ``Cost, total ($)`` is a known column.
    """
    pieces = str(text or "").split(",")
    out: list[str] = []
    i = 0
    while i < len(pieces):
        end = i + 1
        for j in range(len(pieces), i + 1, -1):
            if ",".join(pieces[i:j]).strip() in known:
                end = j
                break
        name = ",".join(pieces[i:end]).strip()
        if name:
            out.append(name)
        i = end
    return out


def is_total_label(value: object) -> bool:
    """Whether a cell reads as the label of a total row: Total, Totals, Grand total, Sum,
    Subtotal and their German, French, Spanish, Portuguese, Italian, Dutch, Nordic, Polish and
    Finnish words (:data:`TOTAL_LABELS`), in any case, alone or followed by a colon, dash,
    bracket or number (``Total:``, ``Total (all wards)``, ``Total 2024``); never a word that
    only starts like one (``Totally``, ``Summary``) or a name that goes on (``Total cholesterol``)."""
    return isinstance(value, str) and bool(_TOTAL.match(value.strip()))
