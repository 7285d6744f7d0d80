"""Report downloads for analysts: CSV (one table) and Excel workbooks (one sheet per table).

Both take the tables campaigns.reports builds (header, rows), so a download holds exactly what the page shows.
Rates stay fractions: in Excel they carry a percent format, in CSV four decimals, so both compute.
"""

from __future__ import annotations

import io

from django.http import HttpResponse
from django.utils.http import content_disposition_header
from django.utils.text import slugify

from campaigns.cells import guard_value
from campaigns.reports import to_csv

Table = tuple[list[str], list[list[object]]]
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Columns holding fractions get a percent format in Excel.
_FRACTION_SUFFIXES = ("_rate", "_rate_low", "_rate_high", "ci_low", "ci_high", "difference")


def filename(name: str, suffix: str) -> str:
    return f"{slugify(name, allow_unicode=True) or 'report'}-{suffix}"


def csv_response(table: Table, name: str) -> HttpResponse:
    """A CSV attachment; the BOM makes Excel read UTF-8 (Chinese names) correctly."""
    response = HttpResponse("\ufeff" + to_csv(*table), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(True, name)
    return response


def workbook(sheets: list[tuple[str, Table]]) -> bytes:
    """An .xlsx file with one sheet per (title, table): bold frozen header, percent format on rates."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    book = Workbook(write_only=True)
    bold = Font(bold=True)
    for title, (header, rows) in sheets:
        sheet = book.create_sheet(title[:31])  # Excel's limit on sheet names
        sheet.freeze_panes = "A2"
        cells = []
        for name in header:
            cell = WriteOnlyCell(sheet, value=name)
            cell.font = bold
            cells.append(cell)
        sheet.append(cells)
        percent = {i for i, name in enumerate(header) if name.endswith(_FRACTION_SUFFIXES)}
        for row in rows:
            out = []
            for i, value in enumerate(row):
                if i in percent and isinstance(value, float):
                    cell = WriteOnlyCell(sheet, value=value)
                    cell.number_format = "0.0%"
                    out.append(cell)
                else:
                    out.append(guard_value(value))  # openpyxl writes a string starting with = as a formula
            sheet.append(out)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def xlsx_response(sheets: list[tuple[str, Table]], name: str) -> HttpResponse:
    response = HttpResponse(workbook(sheets), content_type=XLSX_TYPE)
    response["Content-Disposition"] = content_disposition_header(True, name)
    return response
