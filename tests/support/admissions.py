"""A hospital's admissions workbook as it comes: a merged title row, a subtitle, the header on row
3 with the header text people write (``LOS (days)``, ``Cost ($)``, ``% Readmit``, ``Ward/Bed``,
``Patient #``, ``Diagnóstico``, a repeated ``Department``), the data, a blank row, a ``Total``
row of SUM formulas, and a ``Notes`` sheet of free text with no row 3.

The rows are made here, so tests compute what the import and the aggregates must give from
them with plain Python, independently of Lithotse.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from pathlib import Path

import openpyxl

HEADER = ["Admission ID", "Admit Date", "Department", "LOS (days)", "Cost ($)", "% Readmit", "Ward/Bed",
          "Patient #", "Diagnóstico", "Department"]
# The names the import gives those header cells: the repeated one is made unique.
NAMES = ["Admission ID", "Admit Date", "Department", "LOS (days)", "Cost ($)", "% Readmit", "Ward/Bed",
         "Patient #", "Diagnóstico", "Department_2"]
HEADER_ROW = 3
WARDS = ["W1/3", "W2/1", "ICU/2"]


@dataclass
class Admissions:
    path: Path
    rows: list[dict]
    """The data rows, by the imported column names, as the sheet holds them."""

    @property
    def first_row(self) -> int:
        return HEADER_ROW + 1

    @property
    def last_row(self) -> int:
        return HEADER_ROW + len(self.rows)


def admission_rows(count: int = 40, seed: int = 13) -> list[list]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        out.append([f"A{1000 + i}", dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(180)),
                    rng.choice(["Cardiology", "Oncology", "Surgery"]), rng.randint(1, 21),
                    round(rng.uniform(300, 25000), 2), round(rng.uniform(0, 0.5), 3), WARDS[i % len(WARDS)],
                    f"P{rng.randint(1, 60):03d}", rng.choice(["I10", "C50", "K35", "Infarto agudo"]),
                    rng.choice(["Inpatient", "Day case"])])
    return out


def write_admissions(path: Path, count: int = 40) -> Admissions:
    """The workbook, saved by openpyxl (the Total row holds formulas without computed values;
    open and save it in LibreOffice for the values Excel would store)."""
    rows = admission_rows(count)
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Admissions"
    sheet["A1"] = "St Elsewhere Hospital — admissions, first half of 2024"
    sheet.merge_cells("A1:F1")
    sheet["A2"] = "Exported from the PAS on 2024-07-01; figures unaudited"
    for col, text in enumerate(HEADER, start=1):
        sheet.cell(HEADER_ROW, col, text)
    for r, row in enumerate(rows, start=HEADER_ROW + 1):
        for col, value in enumerate(row, start=1):
            sheet.cell(r, col, value)
        sheet.cell(r, 2).number_format = "yyyy-mm-dd"
    first, last = HEADER_ROW + 1, HEADER_ROW + len(rows)
    total = last + 2  # a blank row between the data and its totals
    sheet.cell(total, 1, "Total")
    sheet.cell(total, 4, f"=SUM(D{first}:D{last})")
    sheet.cell(total, 5, f"=SUM(E{first}:E{last})")
    sheet.cell(total, 6, f"=AVERAGE(F{first}:F{last})")
    notes = book.create_sheet("Notes")
    notes["A1"] = "LOS counts midnights; day cases have LOS 1."
    notes["A2"] = "Costs in USD, before reimbursement."
    book.save(path)
    return Admissions(path, [dict(zip(NAMES, row, strict=True)) for row in rows])
