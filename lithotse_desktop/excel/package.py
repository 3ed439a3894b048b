"""The OOXML package around openpyxl: which parts a workbook may hold, and putting back what
openpyxl drops.

openpyxl rewrites the whole file, and drops parts it does not understand. A few of those are
self-contained and hang off parts that survive: the style and colour parts of charts made in
Excel (and a chart's theme override), and a sheet's printer settings. We carry those over:
after openpyxl saves, each chart is matched to its original (same sheet, same anchor, same
series formulas), its original XML and relationships are put back, the carried parts are
copied byte for byte and declared in ``[Content_Types].xml``. Anything else openpyxl would
lose (Power Query connections, custom XML, macros, pivot tables, images, comments, shapes in
a drawing, ...) is refused before touching the workbook, naming the part. The rewritten
package is checked (every part declared, every relationship resolving) before it replaces
the file, and writes are atomic (temp file, fsync, rename): a refusal, a failure or a crash
leaves the old workbook byte for byte.
"""

from __future__ import annotations

import io
import posixpath
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from ..atomic import atomic_write_bytes
from ..errors import LithotseError


class WorkbookRefused(LithotseError):
    """A workbook we will not rewrite, because doing so would lose part of it."""


# Parts openpyxl reads and writes back faithfully (or that the application regenerates).
KEPT_PARTS = [re.compile(p) for p in (
    r"\[Content_Types\]\.xml", r"_rels/\.rels", r"docProps/(core|app|custom)\.xml", r"docProps/thumbnail\.\w+",
    r"xl/workbook\.xml", r"xl/_rels/workbook\.xml\.rels", r"xl/styles\.xml", r"xl/sharedStrings\.xml",
    r"xl/theme/theme\d+\.xml", r"xl/calcChain\.xml",
    r"xl/worksheets/sheet\d+\.xml", r"xl/worksheets/_rels/sheet\d+\.xml\.rels",
    r"xl/tables/table\d+\.xml", r"xl/drawings/drawing\d+\.xml", r"xl/drawings/_rels/drawing\d+\.xml\.rels",
    r"xl/charts/chart\d+\.xml", r"xl/externalLinks/externalLink\d+\.xml",
    r"xl/externalLinks/_rels/externalLink\d+\.xml\.rels",
)]
# Parts we know openpyxl would drop, with what they are, for the refusal message.
KNOWN_LOSSES = [
    (r"xl/connections\.xml", "data connections (Power Query / external data)"),
    (r"customXml/", "custom XML parts (Power Query keeps its queries there)"),
    (r"xl/vbaProject\.bin", "VBA macros"),
    (r"xl/pivotCache/", "a pivot cache"), (r"xl/pivotTables/", "a pivot table"),
    (r"xl/queryTables/", "a query table (external data range)"),
    (r"xl/metadata\.xml", "dynamic array formula metadata"),
    (r"xl/media/", "an image"), (r"xl/(comments|threadedComments|persons)", "comments"),
    (r"xl/drawings/vmlDrawing", "comments or form controls (VML drawing)"),
    (r"xl/charts/(style|colors)\d+\.xml", "Excel chart styling"),
    (r"xl/(slicers|slicerCaches|timelines|timelineCaches)/", "a slicer or timeline"),
    (r"xl/(activeX|ctrlProps|embeddings)/", "controls or embedded objects"),
    (r"xl/printerSettings/", "printer settings"), (r"xl/model/", "a Power Pivot data model"),
    (r"xl/richData/", "rich data types"),
]
RISKY_SHEET_XML = re.compile(rb"<(?:\w+:)?(sparklineGroups|slicerList|conditionalFormattings|dataValidations|"
                             rb"controls|oleObjects|legacyDrawing|legacyDrawingHF)\b")

R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
CT_NS = "http://schemas.openxmlformats.org/package/2006/content-types"
MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
CHART_NS = "http://schemas.openxmlformats.org/drawingml/2006/chart"
PRINTER_SETTINGS = R_NS + "/printerSettings"
# The id openpyxl writes on <pageSetup> for the printer settings we put back (distinct from its rIdN).
PRINTER_REL_ID = "rIdLithotsePrinterSettings"
# A chart's relationships whose targets depend on nothing else, so they can be copied as they are.
CHART_CARRIED = {
    "http://schemas.microsoft.com/office/2011/relationships/chartStyle",
    "http://schemas.microsoft.com/office/2011/relationships/chartColorStyle",
    R_NS + "/themeOverride",
}
CHART_REFUSED = {
    R_NS + "/chartUserShapes": "shapes drawn on a chart",
    R_NS + "/package": "the chart's embedded data",
    R_NS + "/oleObject": "the chart's linked data",
    R_NS + "/image": "a picture in a chart",
}
# What a drawing anchor may hold besides a chart, all of which openpyxl drops.
ANCHOR_CONTENT = {
    "sp": "a shape or text box", "grpSp": "a group of shapes", "cxnSp": "a connector line",
    "pic": "an image", "contentPart": "ink",
    "AlternateContent": "an object openpyxl cannot read (a slicer, form control or newer chart type)",
}
ANCHOR_FRAME = {"from", "to", "pos", "ext", "clientData"}
PAGE_SETUP_REL = re.compile(rb"<(?:[\w.-]+:)?pageSetup\b[^>]*?\s[\w.-]+:id=\"([^\"]*)\"")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _has(archive: zipfile.ZipFile, name: str) -> bool:
    try:
        archive.getinfo(name)
    except KeyError:
        return False
    return True


def _rels_name(part: str) -> str:
    folder, base = posixpath.split(part)
    return posixpath.join(folder, "_rels", base + ".rels")


def _rels(archive: zipfile.ZipFile, part: str) -> dict[str, tuple[str, str | None]]:
    """A part's relationships: id -> (type, target part name, or None for an external target)."""
    name = _rels_name(part)
    if not _has(archive, name):
        return {}
    out: dict[str, tuple[str, str | None]] = {}
    for rel in ET.fromstring(archive.read(name)):
        target = rel.get("Target", "")
        if rel.get("TargetMode") == "External":
            resolved = None
        elif target.startswith("/"):
            resolved = target[1:]
        else:
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(part), target))
        out[rel.get("Id", "")] = (rel.get("Type", ""), resolved)
    return out


def _sheets(archive: zipfile.ZipFile) -> dict[str, str]:
    """Worksheet name -> part name: sheets are how we tell parts apart across openpyxl's renumbering."""
    rels = _rels(archive, "xl/workbook.xml")
    out = {}
    for sheet in ET.fromstring(archive.read("xl/workbook.xml")).iter(f"{{{MAIN_NS}}}sheet"):
        rel = rels.get(sheet.get(f"{{{R_NS}}}id", ""))
        if rel and rel[0] == R_NS + "/worksheet" and rel[1]:
            out[sheet.get("name", "")] = rel[1]
    return out


def _content_types(archive: zipfile.ZipFile) -> tuple[dict[str, str], dict[str, str]]:
    """``[Content_Types].xml`` as (extension -> type, part name -> type)."""
    root = ET.fromstring(archive.read("[Content_Types].xml"))
    defaults = {d.get("Extension", "").lower(): d.get("ContentType", "") for d in root.iter(f"{{{CT_NS}}}Default")}
    overrides = {o.get("PartName", "").lstrip("/"): o.get("ContentType", "")
                 for o in root.iter(f"{{{CT_NS}}}Override")}
    return defaults, overrides


def _refuse(path: Path, name: str, what: str) -> WorkbookRefused:
    return WorkbookRefused(
        f"{path}: holds {name} ({what}); rewriting the workbook would lose it, so Lithotse leaves it "
        "untouched. Put the bound tables in a separate workbook, or refresh from Excel with the Lithotse add-in.")


ChartKey = tuple[tuple[str, ...], tuple[str, ...]]


def _charts(path: Path, archive: zipfile.ZipFile, sheets: dict[str, str]) -> dict[str, list[tuple[ChartKey, str]]]:
    """Per sheet, each chart's identity (anchor position, series formulas) and part name.

    Refuses a drawing holding anything besides charts: openpyxl writes drawings back with
    their charts only."""
    out: dict[str, list[tuple[ChartKey, str]]] = {}
    for sheet, part in sheets.items():
        for rel_type, drawing in _rels(archive, part).values():
            if rel_type != R_NS + "/drawing" or drawing is None:
                continue
            targets = _rels(archive, drawing)
            for anchor in ET.fromstring(archive.read(drawing)):
                position: tuple[str, ...] = ()
                chart = None
                for child in anchor:
                    name = _local(child.tag)
                    if name in ("from", "pos"):
                        position = (name, *sorted(f"{k}={v}" for k, v in child.attrib.items()),
                                    *((c.text or "").strip() for c in child))
                    elif name == "graphicFrame":
                        ref = child.find(f".//{{{CHART_NS}}}chart")
                        chart = targets.get(ref.get(f"{{{R_NS}}}id", ""), ("", None))[1] if ref is not None else None
                        if chart is None or not _has(archive, chart):
                            raise _refuse(path, drawing, "an object that is not a chart, such as a SmartArt diagram")
                    elif name in ANCHOR_CONTENT:
                        raise _refuse(path, drawing, ANCHOR_CONTENT[name])
                    elif name not in ANCHOR_FRAME:
                        raise _refuse(path, drawing, f"a drawing element {name!r}")
                if chart is not None:
                    formulas = tuple(sorted(_formulas(ET.fromstring(archive.read(chart)))))
                    out.setdefault(sheet, []).append(((position, formulas), chart))
    return out


def _formulas(node: ET.Element) -> list[str]:
    """A chart's cell references, leaving out extensions (which openpyxl drops, so they cannot match)."""
    if _local(node.tag) in ("extLst", "AlternateContent"):
        return []
    if node.tag == f"{{{CHART_NS}}}f":
        return [(node.text or "").strip()]
    return [f for child in node for f in _formulas(child)]


@dataclass
class Carry:
    """The parts of a workbook openpyxl drops and we put back after it saves, read from the original."""

    charts: dict[str, list[tuple[ChartKey, str]]] = field(default_factory=dict)
    chart_parts: dict[str, list[str]] = field(default_factory=dict)
    printers: dict[str, str] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)

    @property
    def parts(self) -> set[str]:
        """Parts copied as they are (what check_parts lets through besides KEPT_PARTS)."""
        rels = {_rels_name(chart) for chart in self.chart_parts if _rels_name(chart) in self.blobs}
        return {p for parts in self.chart_parts.values() for p in parts} | set(self.printers.values()) | rels


def _survey(path: Path, archive: zipfile.ZipFile) -> Carry:
    defaults, overrides = _content_types(archive)
    sheets = _sheets(archive)
    carry = Carry(charts=_charts(path, archive, sheets))

    def take(part: str) -> None:
        if not _has(archive, part):
            raise WorkbookRefused(f"{path}: a relationship points at {part}, which is missing; "
                                  "open and save the workbook in Excel to repair it")
        if _has(archive, _rels_name(part)):
            raise _refuse(path, part, "it refers to further parts")
        carry.blobs[part] = archive.read(part)
        carry.types[part] = overrides.get(part) or defaults.get(part.rsplit(".", 1)[-1].lower(), "")
        if not carry.types[part]:
            raise WorkbookRefused(f"{path}: {part} has no content type; open and save it in Excel to repair it")

    for entries in carry.charts.values():
        for _, chart in entries:
            carry.blobs[chart] = archive.read(chart)
            if _has(archive, _rels_name(chart)):
                carry.blobs[_rels_name(chart)] = archive.read(_rels_name(chart))
            parts = carry.chart_parts.setdefault(chart, [])
            for rel_type, target in _rels(archive, chart).values():
                if target is None:
                    continue
                if rel_type in CHART_REFUSED:
                    raise _refuse(path, target, CHART_REFUSED[rel_type])
                if rel_type not in CHART_CARRIED:
                    raise _refuse(path, target, f"a chart part of type {rel_type}")
                take(target)
                parts.append(target)
    for sheet, part in sheets.items():
        rels = _rels(archive, part)
        printers = {rid: target for rid, (rel_type, target) in rels.items()
                    if rel_type == PRINTER_SETTINGS and target is not None}
        if printers:
            found = PAGE_SETUP_REL.search(archive.read(part))
            if found and found.group(1).decode() in printers:
                carry.printers[sheet] = printers[found.group(1).decode()]
                take(carry.printers[sheet])
    return carry


def check_parts(path: Path) -> Carry:
    """Refuse a workbook holding anything openpyxl would drop (and we cannot put back) or that
    is not a workbook; returns what we will put back."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise WorkbookRefused(f"{path}: not an .xlsx workbook ({exc})") from None
    with archive:
        names = archive.namelist()
        if "xl/workbook.xml" not in names or "[Content_Types].xml" not in names:
            raise WorkbookRefused(f"{path}: not an .xlsx workbook (no xl/workbook.xml)")
        try:
            carry = _survey(path, archive)
        except (ET.ParseError, KeyError, zipfile.BadZipFile) as exc:
            raise WorkbookRefused(f"{path}: cannot be read as a workbook: {exc}") from None
        carried = carry.parts
        for name in names:
            if name.endswith("/") or name in carried or any(p.fullmatch(name) for p in KEPT_PARTS):
                continue
            what = next((label for pattern, label in KNOWN_LOSSES if re.match(pattern, name)), None)
            raise WorkbookRefused(
                f"{path}: holds {name}" + (f" ({what})" if what else "") +
                "; rewriting the workbook would lose it, so Lithotse leaves it untouched. Put the "
                "bound tables in a separate workbook, or refresh from Excel with the Lithotse add-in.")
        for name in names:
            if re.fullmatch(r"xl/worksheets/sheet\d+\.xml", name):
                found = RISKY_SHEET_XML.search(archive.read(name))
                if found:
                    raise WorkbookRefused(
                        f"{path}: {name} uses {found.group(1).decode()}, which rewriting the workbook "
                        "would lose; Lithotse leaves it untouched (use a separate workbook for bound tables).")
    return carry


def _insert_before(xml: bytes, closing: bytes, fragment: str) -> bytes:
    at = xml.rfind(closing)
    if at < 0:
        raise WorkbookRefused(f"unexpected package XML (no {closing.decode()}); nothing was written")
    return xml[:at] + fragment.encode() + xml[at:]


def put_back(path: Path, data: bytes, carry: Carry) -> bytes:
    """openpyxl's saved package ``data`` with the carried parts restored.

    Charts are matched by sheet, anchor and series formulas, which openpyxl round-trips; a chart
    with carried parts that cannot be matched one-to-one is refused rather than guessed."""
    src = zipfile.ZipFile(io.BytesIO(data))
    sheets = _sheets(src)
    fresh = _charts(path, src, sheets)
    parts: dict[str, bytes] = {}
    declare: dict[str, str] = {}
    for sheet, originals in carry.charts.items():
        now = fresh.get(sheet, [])
        old_keys = [key for key, _ in originals]
        matched = len(set(old_keys)) == len(old_keys) and sorted(old_keys) == sorted(key for key, _ in now)
        where = dict(now)
        if matched:
            matched = all(posixpath.dirname(where[key]) == posixpath.dirname(old) for key, old in originals)
        if not matched:
            if any(carry.chart_parts.get(old) for _, old in originals):
                raise WorkbookRefused(
                    f"{path}: the charts on sheet {sheet} cannot be told apart after rewriting (same place "
                    "and same data, or a chart openpyxl cannot read), so their Excel styling could not be "
                    "kept; Lithotse leaves the workbook untouched (move one of the charts, or use a "
                    "separate workbook for bound tables)")
            continue
        for key, old in originals:
            new = where[key]
            parts[new] = carry.blobs[old]
            if _rels_name(old) in carry.blobs:
                parts[_rels_name(new)] = carry.blobs[_rels_name(old)]
            for dep in carry.chart_parts.get(old, []):
                parts[dep] = carry.blobs[dep]
                declare[dep] = carry.types[dep]
    for sheet, printer in carry.printers.items():
        part = sheets.get(sheet)
        if part is None or PRINTER_REL_ID.encode() not in src.read(part):
            raise WorkbookRefused(f"{path}: the printer settings of sheet {sheet} could not be kept; "
                                  "Lithotse leaves the workbook untouched")
        rels_name = _rels_name(part)
        rels = parts.get(rels_name) or (src.read(rels_name) if _has(src, rels_name) else
                                        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships '
                                        b'xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                                        b'</Relationships>')
        target = posixpath.relpath(printer, posixpath.dirname(part))
        parts[rels_name] = _insert_before(rels, b"</Relationships>", (
            f'<Relationship Id="{PRINTER_REL_ID}" Type="{PRINTER_SETTINGS}" Target={quoteattr(target)}/>'))
        parts[printer] = carry.blobs[printer]
        declare[printer] = carry.types[printer]
    for dep in declare:
        if _has(src, dep) and dep not in carry.blobs:
            raise WorkbookRefused(f"{path}: {dep} would clash with a part openpyxl wrote; nothing was written")
    _, overrides = _content_types(src)
    types = src.read("[Content_Types].xml")
    for name, content_type in sorted(declare.items()):
        if name not in overrides:
            types = _insert_before(types, b"</Types>", (
                f"<Override PartName={quoteattr('/' + name)} ContentType={quoteattr(content_type)}/>"))
    parts["[Content_Types].xml"] = types
    out = io.BytesIO()
    with src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dest:
        for info in src.infolist():
            body = parts.pop(info.filename) if info.filename in parts else src.read(info)
            dest.writestr(info, without_chart_caches(info.filename, body))
        for name, body in parts.items():
            dest.writestr(name, without_chart_caches(name, body))
    return out.getvalue()


CHART_PART = re.compile(r"xl/charts/chart\d+\.xml")
_CACHE = re.compile(rb"<([\w.-]+:)?(numCache|strCache|multiLvlStrCache)(\s[^>]*)?(/>|>.*?</([\w.-]+:)?\2>)", re.S)


def without_chart_caches(name: str, body: bytes) -> bytes:
    """A chart part without the values it cached from its cells (``numCache``, ``strCache``).

    A chart keeps a copy of the values it draws; a refresh that hides a cell blanks the cell, but
    the copy would still hold the old value for anyone who reads the file without recalculating
    it (pass 38: five suppressed cells' values in ``chart1.xml``). The caches are optional:
    Excel and LibreOffice draw from the cells the chart's formulas name."""
    return _CACHE.sub(b"", body) if CHART_PART.fullmatch(name) else body


def package_problems(data: bytes) -> list[str]:
    """What is broken in a package: unreadable XML, undeclared parts, relationships to nothing.

    Run on every package we are about to write, so a mistake in openpyxl or in put_back is
    caught while the old workbook is still in place."""
    problems = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = {n for n in archive.namelist() if not n.endswith("/")}
        defaults, overrides = _content_types(archive)
        for name in sorted(names - {"[Content_Types].xml"}):
            if name not in overrides and name.rsplit(".", 1)[-1].lower() not in defaults:
                problems.append(f"{name} has no content type")
            if name.endswith(".rels"):
                continue
            try:
                rels = _rels(archive, name)
            except ET.ParseError as exc:
                problems.append(f"{_rels_name(name)} is not well-formed ({exc})")
                continue
            problems += [f"{name} relates to missing {target}" for _, target in rels.values()
                         if target is not None and target not in names]
            if not name.endswith(".xml"):
                continue
            ids: set[str] = set()
            try:
                for _, elem in ET.iterparse(archive.open(name)):
                    ids.update(v for k, v in elem.attrib.items() if k.startswith(f"{{{R_NS}}}"))
                    elem.clear()
            except ET.ParseError as exc:
                problems.append(f"{name} is not well-formed ({exc})")
            problems += [f"{name} uses relationship {rid}, which {_rels_name(name)} lacks"
                         for rid in sorted(ids - rels.keys())]
    return problems


def load(path: Path) -> tuple[Any, Carry]:
    """The workbook as openpyxl reads it, and what to put back when saving it (refused if anything
    would be lost)."""
    from openpyxl import load_workbook

    if path.suffix.lower() not in (".xlsx",):
        raise WorkbookRefused(f"{path}: only .xlsx workbooks can be bound (macros in .xlsm would be lost)")
    carry = check_parts(path)
    try:
        wb = load_workbook(path, keep_links=True, rich_text=True)
    except Exception as exc:
        raise WorkbookRefused(f"{path}: cannot be read as a workbook: {exc}") from None
    for sheet in carry.printers:
        if sheet in wb.sheetnames:
            wb[sheet].page_setup.id = PRINTER_REL_ID
    return wb, carry


def save(wb: Any, path: Path, carry: Carry | None = None) -> None:
    """Write the workbook with the carried parts restored, checked, atomically; old file kept on failure."""
    wb.calculation.fullCalcOnLoad = True
    buf = io.BytesIO()
    wb.save(buf)
    data = put_back(path, buf.getvalue(), carry) if carry is not None else buf.getvalue()
    problems = package_problems(data)
    if problems:
        raise WorkbookRefused(f"{path}: the rewritten workbook would be damaged ({'; '.join(problems[:3])}); "
                              "Lithotse leaves it untouched")
    try:
        atomic_write_bytes(path, data)
    except PermissionError as exc:
        raise LithotseError(f"{path}: cannot write ({exc.strerror}); if it is open in Excel, close it "
                            "or refresh from Excel with the Lithotse add-in") from None
