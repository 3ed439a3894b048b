"""Refresh keeps the parts of an Excel-made workbook that openpyxl drops: chart styles and colours,
printer settings; and refuses, leaving the file as it was, what it cannot put back."""

from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
import zipfile

import pytest
from openpyxl import load_workbook
from openpyxl.chart import BarChart, LineChart, Reference

from lithotse_desktop.excel.ops import bind_workbook, refresh_workbook
from lithotse_desktop.excel.workbook import WorkbookRefused
from tests.cache.helpers import build_sample
from tests.excel.test_workbook import add_month

STYLE_REL = "http://schemas.microsoft.com/office/2011/relationships/chartStyle"
COLORS_REL = "http://schemas.microsoft.com/office/2011/relationships/chartColorStyle"
STYLE_TYPE = "application/vnd.ms-office.chartstyle+xml"
COLORS_TYPE = "application/vnd.ms-office.chartcolorstyle+xml"
PRINTER_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/printerSettings"
PRINTER_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.printerSettings"
R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"


def chart_style(style_id: int) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n<cs:chartStyle '
            f'xmlns:cs="http://schemas.microsoft.com/office/drawing/2012/chartStyle" '
            f'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" id="{style_id}">'
            '<cs:axisTitle><cs:lnRef idx="0"/><cs:fillRef idx="0"/><cs:effectRef idx="0"/>'
            '<cs:fontRef idx="minor"><a:schemeClr val="tx1"/></cs:fontRef><cs:defRPr sz="1000" b="1"/>'
            '</cs:axisTitle></cs:chartStyle>').encode()


def chart_colors(method: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n<cs:colorStyle '
            'xmlns:cs="http://schemas.microsoft.com/office/drawing/2012/chartStyle" '
            f'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" meth="{method}" id="10">'
            '<a:schemeClr val="accent1"/><a:schemeClr val="accent2"/><cs:variation/>'
            '<cs:variation><a:lumMod val="60000"/></cs:variation></cs:colorStyle>').encode()


PRINTER_BIN = bytes(range(256)) * 4
EXCEL_SERIES_EXT = (
    b'<extLst><ext uri="{02D57815-91ED-43cb-92C2-25804820EDAC}" '
    b'xmlns:c15="http://schemas.microsoft.com/office/drawing/2012/chart"><c15:filteredSeriesTitle><c15:tx>'
    b"<strRef><f>'Data'!$Z$1</f></strRef></c15:tx></c15:filteredSeriesTitle></ext>"
    b'<ext uri="{C3380CC4-5D6E-409C-BE32-E72D297353CC}" '
    b'xmlns:c16="http://schemas.microsoft.com/office/drawing/2014/chart">'
    b'<c16:uniqueId val="{00000000-0001-0000-0000-000000000000}"/></ext></extLst>')


def rels_xml(entries) -> bytes:
    body = "".join(f'<Relationship Id="{i}" Type="{t}" Target="{target}"/>' for i, t, target in entries)
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n'
            f'<Relationships xmlns="{PKG_RELS}">{body}</Relationships>').encode()


def rewrite(src, dest, change=lambda name, data: data, add=(), rename=None):
    """Copy a package, changing, adding and renaming parts, like Excel's own part layout."""
    rename = rename or {}
    names = {posixpath.basename(a).encode(): posixpath.basename(b).encode() for a, b in rename.items()}
    pattern = re.compile(b"|".join(re.escape(n) for n in names)) if names else None
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as new:
        for item in old.infolist():
            data = change(item.filename, old.read(item.filename))
            if pattern is not None:
                data = pattern.sub(lambda m: names[m.group(0)], data)
            new.writestr(rename.get(item.filename, item.filename), data)
        for name, data in add:
            new.writestr(name, data)


def declare(types: bytes, entries) -> bytes:
    extra = "".join(f'<Override PartName="/{name}" ContentType="{ctype}"/>' for name, ctype in entries)
    return types.replace(b"</Types>", extra.encode() + b"</Types>")


def styled(dest, src, charts):
    """``src`` with Excel's style and colour parts added to each of ``charts`` (chart part -> style id)."""
    add, entries = [], []
    for chart, style_id in charts.items():
        n = re.search(r"(\d+)\.xml$", chart).group(1)
        style, colors = f"xl/charts/style{n}.xml", f"xl/charts/colors{n}.xml"
        add += [(style, chart_style(style_id)), (colors, chart_colors("cycle")),
                (f"xl/charts/_rels/chart{n}.xml.rels",
                 rels_xml([("rId2", COLORS_REL, f"colors{n}.xml"), ("rId1", STYLE_REL, f"style{n}.xml")]))]
        entries += [(style, STYLE_TYPE), (colors, COLORS_TYPE)]

    def change(name, data):
        if name in charts:  # what Excel adds to a series and openpyxl drops
            return data.replace(b"</ser>", EXCEL_SERIES_EXT + b"</ser>")
        return declare(data, entries) if name == "[Content_Types].xml" else data

    rewrite(src, dest, change, add)


def bound_with_charts(workspace, tmp_path, name="plain.xlsx"):
    """A bound table on sheet Data, a bar chart over its n column there, a line chart on Notes."""
    path = tmp_path / name
    bind_workbook(workspace, path, "visits", sheet="Data", columns=["grp", "n"])
    wb = load_workbook(path)
    data = wb["Data"]
    bar = BarChart()
    bar.add_data(Reference(data, min_col=2, min_row=1, max_row=7), titles_from_data=True)
    bar.set_categories(Reference(data, min_col=1, min_row=2, max_row=7))
    data.add_chart(bar, "E2")
    notes = wb.create_sheet("Notes")
    for i, v in enumerate([3, 5, 7], start=1):
        notes.cell(i, 1, v)
    line = LineChart()
    line.add_data(Reference(notes, min_col=1, min_row=1, max_row=3))
    notes.add_chart(line, "C3")
    wb["Notes"]["B1"] = "=SUM(lithotse_visits[n])"
    wb.save(path)
    return path


def parts(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {n: archive.read(n) for n in archive.namelist()}


def relationships(files, part) -> dict[str, tuple[str, str]]:
    folder, base = posixpath.split(part)
    name = posixpath.join(folder, "_rels", base + ".rels")
    if name not in files:
        return {}
    out = {}
    for rel in ET.fromstring(files[name]):
        target = rel.get("Target")
        if rel.get("TargetMode") != "External":
            target = target[1:] if target.startswith("/") else posixpath.normpath(posixpath.join(folder, target))
        out[rel.get("Id")] = (rel.get("Type"), target)
    return out


def assert_sound_package(path):
    """Every XML part parses, every part has a content type, every relationship and r:id resolves."""
    files = parts(path)
    types = ET.fromstring(files["[Content_Types].xml"])
    defaults = {e.get("Extension").lower() for e in types if e.tag.endswith("Default")}
    overrides = {e.get("PartName")[1:] for e in types if e.tag.endswith("Override")}
    for name, data in files.items():
        if name == "[Content_Types].xml":
            continue
        assert name in overrides or name.rsplit(".", 1)[1].lower() in defaults, name
        if name.endswith((".xml", ".rels")):
            root = ET.fromstring(data)
            rels = relationships(files, name)
            for _rel_type, target in rels.values():
                assert target in files or target.startswith(("http", "file", "mailto")), (name, target)
            used = {v for e in root.iter() for k, v in e.attrib.items() if k.startswith(f"{{{R_NS}}}")}
            assert used <= rels.keys(), (name, used - rels.keys())


def chart_of(files, formula):
    """The chart part whose series use ``formula``."""
    [found] = [n for n, d in files.items() if re.fullmatch(r"xl/charts/chart\d+\.xml", n) and formula.encode() in d]
    return found


def test_refresh_keeps_excel_chart_styles_and_printer_settings(workspace, lines, tmp_path, libreoffice):
    build_sample(workspace, lines)
    plain = bound_with_charts(workspace, tmp_path)
    files = parts(plain)
    data_chart = chart_of(files, "'Data'!$B$2:$B$7")
    notes_chart = chart_of(files, "'Notes'!$A$1:$A$3")
    styled_path = tmp_path / "styled.xlsx"
    styled(styled_path, plain, {data_chart: 201, notes_chart: 240})
    data_sheet = "xl/worksheets/sheet1.xml"
    path = tmp_path / "book.xlsx"

    def add_printer(name, body):
        if name == data_sheet:
            return body.replace(b"</worksheet>", b'<pageSetup xmlns:r="' + R_NS.encode() +
                                b'" orientation="landscape" r:id="rId7"/></worksheet>')
        if name == "xl/worksheets/_rels/sheet1.xml.rels":
            return body.replace(b"</Relationships>", f'<Relationship Id="rId7" Type="{PRINTER_REL}" '
                                f'Target="../printerSettings/printerSettings1.bin"/></Relationships>'.encode())
        if name == "[Content_Types].xml":
            return body.replace(b"</Types>",
                                f'<Default Extension="bin" ContentType="{PRINTER_TYPE}"/></Types>'.encode())
        return body

    rewrite(styled_path, path, add_printer, [("xl/printerSettings/printerSettings1.bin", PRINTER_BIN)])
    assert_sound_package(path)
    before = parts(path)

    add_month(workspace, lines)
    [placed] = refresh_workbook(workspace, path)
    assert placed.ref == "A1:B9"
    after = parts(path)
    assert_sound_package(path)
    for name in ("xl/charts/style1.xml", "xl/charts/colors1.xml", "xl/charts/style2.xml", "xl/charts/colors2.xml",
                 "xl/printerSettings/printerSettings1.bin"):
        assert after[name] == before[name], name
    for chart in (data_chart, notes_chart):
        rels_name = f"xl/charts/_rels/{posixpath.basename(chart)}.rels"
        assert after[rels_name] == before[rels_name]
        assert after[chart] == before[chart]
    assert b"'Data'!$B$2:$B$7" in after[data_chart] and b"'Data'!$A$2:$A$7" in after[data_chart]
    assert b"c16:uniqueId" in after[data_chart]
    types = after["[Content_Types].xml"].decode()
    assert f'PartName="/xl/charts/style1.xml" ContentType="{STYLE_TYPE}"' in types
    assert f'PartName="/xl/charts/colors2.xml" ContentType="{COLORS_TYPE}"' in types
    page = re.search(rb"<pageSetup[^>]*>", after[data_sheet]).group(0)
    assert b'orientation="landscape"' in page
    rid = re.search(rb':id="([^"]+)"', page).group(1).decode()
    assert relationships(after, data_sheet)[rid] == (PRINTER_REL, "xl/printerSettings/printerSettings1.bin")
    wb = load_workbook(path)
    assert wb["Data"].tables["lithotse_visits"].ref == "A1:B9"
    assert len(wb["Data"]._charts) == 1 and len(wb["Notes"]._charts) == 1

    recalculated = libreoffice(path, tmp_path / "lo")
    values = load_workbook(recalculated, data_only=True)
    assert values["Notes"]["B1"].value == 4 * (15 + 12)
    with zipfile.ZipFile(recalculated) as archive:
        assert sum(bool(re.fullmatch(r"xl/charts/chart\d+\.xml", n)) for n in archive.namelist()) == 2

    add_month(workspace, lines, month=5, name="c.txt")
    refresh_workbook(workspace, path)  # the restored workbook refreshes again, still keeping everything
    again = parts(path)
    assert_sound_package(path)
    assert again["xl/charts/style2.xml"] == before["xl/charts/style2.xml"]
    assert again["xl/printerSettings/printerSettings1.bin"] == PRINTER_BIN


def test_styles_follow_their_chart_when_openpyxl_renumbers_the_charts(workspace, lines, tmp_path):
    build_sample(workspace, lines)
    plain = bound_with_charts(workspace, tmp_path)
    files = parts(plain)
    data_chart, notes_chart = chart_of(files, "'Data'!$B$2"), chart_of(files, "'Notes'!$A$1")
    assert (data_chart, notes_chart) == ("xl/charts/chart1.xml", "xl/charts/chart2.xml")
    swapped = tmp_path / "swapped.xlsx"  # Excel numbers charts in the order they were made
    rewrite(plain, swapped, rename={data_chart: notes_chart, notes_chart: data_chart})
    path = tmp_path / "book.xlsx"
    styled(path, swapped, {"xl/charts/chart1.xml": 240, "xl/charts/chart2.xml": 201})
    assert chart_of(parts(path), "'Notes'!$A$1") == "xl/charts/chart1.xml"
    assert_sound_package(path)

    refresh_workbook(workspace, path)
    after = parts(path)
    assert_sound_package(path)
    for formula, style_id in (("'Notes'!$A$1", 240), ("'Data'!$B$2", 201)):
        chart = chart_of(after, formula)
        styles = [target for rel_type, target in relationships(after, chart).values() if rel_type == STYLE_REL]
        assert [after[s] for s in styles] == [chart_style(style_id)]
    assert chart_of(after, "'Data'!$B$2") == "xl/charts/chart1.xml"  # openpyxl renumbered them


def test_charts_that_cannot_be_told_apart_are_refused(workspace, lines, tmp_path):
    build_sample(workspace, lines)
    path = tmp_path / "plain.xlsx"
    bind_workbook(workspace, path, "visits", sheet="Data", columns=["grp", "n"])
    wb = load_workbook(path)
    for _ in range(2):
        chart = BarChart()
        chart.add_data(Reference(wb["Data"], min_col=2, min_row=2, max_row=5))
        wb["Data"].add_chart(chart, "E2")
    wb.save(path)
    book = tmp_path / "book.xlsx"
    styled(book, path, {"xl/charts/chart1.xml": 201})
    before = book.read_bytes()
    with pytest.raises(WorkbookRefused, match="charts on sheet Data cannot be told apart"):
        refresh_workbook(workspace, book)
    assert book.read_bytes() == before


DRAWING_SHAPE = (b'<xdr:twoCellAnchor xmlns:xdr="http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing">'
                 b'<xdr:from><xdr:col>1</xdr:col><xdr:colOff>0</xdr:colOff><xdr:row>20</xdr:row>'
                 b'<xdr:rowOff>0</xdr:rowOff></xdr:from><xdr:to><xdr:col>3</xdr:col><xdr:colOff>0</xdr:colOff>'
                 b'<xdr:row>24</xdr:row><xdr:rowOff>0</xdr:rowOff></xdr:to><xdr:sp macro="" textlink="">'
                 b'<xdr:nvSpPr><xdr:cNvPr id="9" name="TextBox 1"/><xdr:cNvSpPr txBox="1"/></xdr:nvSpPr>'
                 b'<xdr:spPr/></xdr:sp><xdr:clientData/></xdr:twoCellAnchor>')


@pytest.mark.parametrize("case, message", [
    ("shape", r"holds xl/drawings/drawing1\.xml \(a shape or text box\)"),
    ("user shapes", r"holds xl/drawings/drawing9\.xml \(shapes drawn on a chart\)"),
    ("orphan style", r"holds xl/charts/style7\.xml \(Excel chart styling\)"),
    ("image", r"holds xl/media/image1\.png \(an image\)"),
])
def test_what_cannot_be_put_back_is_still_refused(workspace, lines, tmp_path, case, message):
    build_sample(workspace, lines)
    plain = bound_with_charts(workspace, tmp_path)
    path = tmp_path / "book.xlsx"
    if case == "shape":
        rewrite(plain, path, lambda n, d: d.replace(b"</wsDr>", DRAWING_SHAPE + b"</wsDr>")
                if n == "xl/drawings/drawing1.xml" else d)
    elif case == "user shapes":
        rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/chartUserShapes"
        chart_rels = rels_xml([("rId1", rel, "../drawings/drawing9.xml")])
        rewrite(plain, path, add=[("xl/charts/_rels/chart1.xml.rels", chart_rels),
                                  ("xl/drawings/drawing9.xml", b"<c:userShapes xmlns:c='x'/>")])
    elif case == "orphan style":
        rewrite(plain, path, add=[("xl/charts/style7.xml", chart_style(201))])
    else:
        rewrite(plain, path, add=[("xl/media/image1.png", b"\x89PNG")])
    before = path.read_bytes()
    with pytest.raises(WorkbookRefused, match=message):
        refresh_workbook(workspace, path)
    assert path.read_bytes() == before


def test_styles_follow_their_chart_when_openpyxl_reorders_a_drawing(workspace, lines, tmp_path):
    from openpyxl.drawing.spreadsheet_drawing import AnchorMarker, TwoCellAnchor

    build_sample(workspace, lines)
    plain = tmp_path / "plain.xlsx"
    bind_workbook(workspace, plain, "visits", sheet="Data", columns=["grp", "n"])
    wb = load_workbook(plain)
    for col, anchor in ((1, TwoCellAnchor(_from=AnchorMarker(4, 0, 1, 0), to=AnchorMarker(10, 0, 16, 0))), (2, "E20")):
        chart = BarChart()
        chart.add_data(Reference(wb["Data"], min_col=col, min_row=2, max_row=7))
        wb["Data"].add_chart(chart, anchor)
    wb.save(plain)
    files = parts(plain)
    assert chart_of(files, "'Data'!$A$2") == "xl/charts/chart1.xml"  # the two-cell anchor comes first
    path = tmp_path / "book.xlsx"
    styled(path, plain, {"xl/charts/chart1.xml": 201, "xl/charts/chart2.xml": 240})

    refresh_workbook(workspace, path)
    after = parts(path)
    assert_sound_package(path)
    assert chart_of(after, "'Data'!$A$2") == "xl/charts/chart2.xml"  # openpyxl reads one-cell anchors first
    for formula, style_id in (("'Data'!$A$2", 201), ("'Data'!$B$2", 240)):
        chart = chart_of(after, formula)
        styles = [target for rel_type, target in relationships(after, chart).values() if rel_type == STYLE_REL]
        assert [after[s] for s in styles] == [chart_style(style_id)]


def test_a_refresh_leaves_no_cached_value_in_a_chart(workspace, lines, tmp_path):
    """Pass 38: a chart saved by a spreadsheet application keeps a copy of the values it draws
    (``numCache``); a refresh that hid a cell blanked the cell and put the chart back as it was,
    copy and all, so the hidden value stayed in ``chart1.xml``. The copies are dropped: Excel and
    LibreOffice draw from the cells."""
    build_sample(workspace, lines)
    plain = bound_with_charts(workspace, tmp_path)
    data_chart = chart_of(parts(plain), "'Data'!$B$2:$B$7")
    cached = tmp_path / "cached.xlsx"
    styled(cached, plain, {data_chart: 201})
    path = tmp_path / "book.xlsx"

    def with_cache(name, body):
        if name != data_chart:
            return body
        def cache(m):
            c = m.group(2) or b""
            return (m.group(1) + b"<%snumCache><%sformatCode>General</%sformatCode><%sptCount val=\"1\"/>"
                    b"<%spt idx=\"0\"><%sv>987654</%sv></%spt></%snumCache>" % ((c,) * 9))
        return re.sub(rb"(<(\w+:)?f>'Data'!\$B\$2:\$B\$7</(\w+:)?f>)", cache, body)

    rewrite(cached, path, with_cache)
    assert b"987654" in parts(path)[data_chart]
    add_month(workspace, lines)
    refresh_workbook(workspace, path)
    after = parts(path)
    assert_sound_package(path)
    charts = [n for n in after if re.fullmatch(r"xl/charts/chart\d+\.xml", n)]
    assert len(charts) == 2
    assert not any(b"numCache" in after[n] or b"987654" in after[n] for n in charts)
    assert b"'Data'!$B$2:$B$" in after[data_chart], "the chart still draws from the bound column"
