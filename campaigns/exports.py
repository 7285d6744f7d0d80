"""Report downloads for analysts: CSV (one table) and Excel workbooks (one sheet per table).

Both take the tables campaigns.reports builds (header, rows), so a download holds exactly what the page shows.
Rates stay fractions: in Excel they carry a percent format, in CSV four decimals, so both compute.

Column names are the API's keys (answer_rate, listened_to_end) for a staff member reading English, so scripts
written against a download keep working; in another language each one is that language's name for it
(接听率, 接听率（95% 区间下限）), the keys staying where the API serves the same tables.
"""

from __future__ import annotations

import io

from django.http import HttpResponse
from django.utils import translation
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from django.utils.translation import pgettext, pgettext_lazy

from campaigns.cells import guard_value
from campaigns.reports import FUNNEL_ACTIONS, METRICS, to_csv

Table = tuple[list[str], list[list[object]]]
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Columns holding fractions get a percent format in Excel.
_FRACTION_SUFFIXES = ("_rate", "_rate_low", "_rate_high", "ci_low", "ci_high", "difference")


# Every fixed column of the downloads (rates, their intervals, final actions and keys are named from their parts),
# written out: makemessages finds only literal msgids.
COLUMNS = {
    "campaign": pgettext_lazy("export column", "campaign"),
    "variant": pgettext_lazy("export column", "variant"),
    "voice": pgettext_lazy("export column", "voice"),
    "script": pgettext_lazy("export column", "script"),
    "calls": pgettext_lazy("export column", "calls"),
    "excluded_dnc": pgettext_lazy("export column", "excluded_dnc"),
    "invalid": pgettext_lazy("export column", "invalid"),
    "attempts": pgettext_lazy("export column", "attempts"),
    "dialled": pgettext_lazy("export column", "dialled"),
    "answered": pgettext_lazy("export column", "answered"),
    "human": pgettext_lazy("export column", "human"),
    "machine": pgettext_lazy("export column", "machine"),
    "listened_to_end": pgettext_lazy("export column", "listened_to_end"),
    "confirmed": pgettext_lazy("export column", "confirmed"),
    "rescheduled": pgettext_lazy("export column", "rescheduled"),
    "opted_out": pgettext_lazy("export column", "opted_out"),
    "busy": pgettext_lazy("export column", "busy"),
    "no_answer": pgettext_lazy("export column", "no_answer"),
    "failed": pgettext_lazy("export column", "failed"),
    "pending": pgettext_lazy("export column", "pending"),
    "done": pgettext_lazy("export column", "done"),
    "timed_attempts": pgettext_lazy("export column", "timed_attempts"),
    "talk_seconds": pgettext_lazy("export column", "talk_seconds"),
    "mean_duration": pgettext_lazy("export column", "mean_duration"),
    "voice_id": pgettext_lazy("export column", "voice_id"),
    "campaigns": pgettext_lazy("export column", "campaigns"),
    "call_id": pgettext_lazy("export column", "call_id"),
    "contact_id": pgettext_lazy("export column", "contact_id"),
    "external_id": pgettext_lazy("export column", "external_id"),
    "phone": pgettext_lazy("export column", "phone"),
    "state": pgettext_lazy("export column", "state"),
    "outcome": pgettext_lazy("export column", "outcome"),
    "final_digits": pgettext_lazy("export column", "final_digits"),
    "final_action": pgettext_lazy("export column", "final_action"),
    "action_detail": pgettext_lazy("export column", "action_detail"),
    "path": pgettext_lazy("export column", "path"),
    "metric_key": pgettext_lazy("export column", "metric_key"),
    "metric": pgettext_lazy("export column", "metric"),
    "control": pgettext_lazy("export column", "control"),
    "challenger": pgettext_lazy("export column", "challenger"),
    "control_rate": pgettext_lazy("export column", "control_rate"),
    "challenger_rate": pgettext_lazy("export column", "challenger_rate"),
    "difference": pgettext_lazy("export column", "difference"),
    "ci_low": pgettext_lazy("export column", "ci_low"),
    "ci_high": pgettext_lazy("export column", "ci_high"),
    "p_value": pgettext_lazy("export column", "p_value"),
    "verdict": pgettext_lazy("export column", "verdict"),
    "more_calls_per_variant": pgettext_lazy("export column", "more_calls_per_variant"),
    "sentence": pgettext_lazy("export column", "sentence"),
    "weekday_number": pgettext_lazy("export column", "weekday_number"),
    "weekday": pgettext_lazy("export column", "weekday"),
    "hour": pgettext_lazy("export column", "hour"),
}


def column_name(key: str) -> str:
    """What a download calls column `key` in the active language: the key itself in English."""
    if (translation.get_language() or "en").startswith("en"):
        return key
    if key in COLUMNS:
        return str(COLUMNS[key])
    if key in METRICS:
        return str(METRICS[key].label)
    for end, words in (("_low", pgettext("export column", "%(rate)s, 95%% interval low")),
                       ("_high", pgettext("export column", "%(rate)s, 95%% interval high"))):  # fmt: skip
        if key.endswith(end) and key.removesuffix(end) in METRICS:
            return words % {"rate": METRICS[key.removesuffix(end)].label}
    if key.startswith("action_") and key.removeprefix("action_") in FUNNEL_ACTIONS:
        return pgettext("export column", "final action: %(action)s") % {"action": FUNNEL_ACTIONS[key.removeprefix("action_")]}
    if key.startswith("digit_"):
        return pgettext("export column", "pressed %(key)s") % {"key": key.removeprefix("digit_")}
    return key


def _named(table: Table) -> Table:
    header, rows = table
    return [column_name(key) for key in header], rows


def filename(name: str, suffix: str) -> str:
    return f"{slugify(name, allow_unicode=True) or 'report'}-{suffix}"


def csv_response(table: Table, name: str) -> HttpResponse:
    """A CSV attachment; the BOM makes Excel read UTF-8 (Chinese names) correctly."""
    response = HttpResponse("\ufeff" + to_csv(*_named(table)), content_type="text/csv; charset=utf-8")
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
        for key in header:
            cell = WriteOnlyCell(sheet, value=column_name(key))
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
