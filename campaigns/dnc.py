"""The do-not-call list in and out as CSV.

Import: every line of the upload is accounted for, as added, already there (on the list before, or a repeat
of an earlier line), rejected with its line number and a reason, or blank. Numbers are read the way contact
lists read them (campaigns.contacts_csv: UTF-8 or GBK, Excel's quirks, phonenumbers with a default region),
so a number written the same way in both files always matches. Adding goes through
campaigns.lifecycle.do_not_call, which cancels the numbers' queued calls in every campaign.

Export: the whole list, numbers in E.164, for download by staff (the admin is behind login). Logs carry
counts only, never numbers.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from campaigns import phones
from campaigns.cells import guard_cell, unguard_cell
from campaigns.contacts_csv import (
    PHONE_ALIASES,
    CsvImportError,
    _clean,
    _decode,
    _header_key,
    _sniff_delimiter,
)
from campaigns.lifecycle import do_not_call
from campaigns.models import DoNotCall

log = logging.getLogger(__name__)

__all__ = [
    "EXPORT_HEADER",
    "CsvImportError",
    "DncImport",
    "RejectedLine",
    "export_csv",
    "export_rows",
    "import_do_not_call",
    "parse_do_not_call_csv",
]

EXPORT_HEADER = ("phone", "reason", "source", "created_at")
PHONE_HEADERS = frozenset(
    _header_key(h) for h in (*PHONE_ALIASES, "number", "phone_e164", "号码", "电话号码")
)
REASON_HEADERS = frozenset(_header_key(h) for h in ("reason", "原因", "备注", "note"))
MAX_LINES = 2_000_000  # far above any real list; stops a wrong file filling memory


@dataclass(frozen=True)
class RejectedLine:
    line: int
    reason: str
    raw: str


@dataclass
class DncImport:
    """What happened to each line of an uploaded DNC file.

    header + added + already_there + len(rejected) + blank == total_lines (rows, which are lines unless a
    quoted cell spans several; each rejected row names the line it starts on).
    """

    filename: str
    region: str
    encoding: str = ""
    total_lines: int = 0
    header: int = 0  # 1 when the first line named the columns
    added: int = 0
    already_there: int = 0  # on the list before, or a repeat of an earlier line of the file
    repeats: int = 0  # of already_there: repeats of an earlier line
    blank: int = 0
    rejected: list[RejectedLine] = field(default_factory=list)
    cancelled_calls: int = 0  # queued calls cancelled because their number was added
    numbers: dict[str, str] = field(default_factory=dict, repr=False)  # E.164 → reason, first line wins

    def accounted(self) -> bool:
        return (
            self.header + self.added + self.already_there + len(self.rejected) + self.blank
            == self.total_lines
        )


def parse_do_not_call_csv(
    data: bytes, *, region: str, filename: str = "", default_reason: str = ""
) -> DncImport:
    """Read numbers (and optional reasons) from CSV bytes; nothing touches the database.

    The phone column is the one headed phone / number / mobile / 手机号 … ; without such a header every line's
    first column is a number. A "reason" column, when present, gives each number its own reason.
    Raises CsvImportError for a file that cannot be read at all (not text, an Excel workbook, too long).
    """
    if not phones.is_region(region):
        raise CsvImportError(f"{region!r} is not a country code phone numbers can use, e.g. CN")
    result = DncImport(filename=filename, region=region)
    text, result.encoding = _decode(data)
    first = next((line for line in text.splitlines() if line.strip()), "")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_sniff_delimiter(first))
    phone_col, reason_col = 0, None
    first_line_of_row, first_row = 1, True
    try:
        for row in reader:
            line, first_line_of_row = first_line_of_row, reader.line_num + 1
            result.total_lines += 1
            if result.total_lines > MAX_LINES:
                raise CsvImportError(f"the file has more than {MAX_LINES} lines; split it into several files")
            cells = [_clean(cell) for cell in row]
            raw = ",".join(row)[:200]
            if not any(cells):
                result.blank += 1
                continue
            is_first, first_row = first_row, False
            if is_first:
                keys = [_header_key(cell) for cell in cells]
                phone_at = [i for i, key in enumerate(keys) if key in PHONE_HEADERS]
                if phone_at:
                    result.header = 1
                    phone_col = phone_at[0]
                    reason_col = next((i for i, key in enumerate(keys) if key in REASON_HEADERS), None)
                    continue
            value = cells[phone_col] if phone_col < len(cells) else ""
            number, problem = phones.parse_phone(value, region)
            if number is None:
                if is_first:
                    problem += "; if this line is a header, name the number column “phone”"
                result.rejected.append(RejectedLine(line, problem, raw))
                continue
            phone = phones.e164(number)
            if phone in result.numbers:
                result.already_there += 1
                result.repeats += 1
                continue
            reason = cells[reason_col] if reason_col is not None and reason_col < len(cells) else ""
            result.numbers[phone] = unguard_cell(reason)[:200] or default_reason[:200]
    except csv.Error as exc:
        raise CsvImportError(f"line {reader.line_num}: the file is not valid CSV ({exc})") from exc
    return result


def import_do_not_call(
    data: bytes, *, region: str, filename: str, reason: str = "", by: Any = None
) -> DncImport:
    """Put every valid number of a CSV on the DNC list and cancel its queued calls; say what became of each line."""
    default_reason = reason or f"imported from {filename}"
    result = parse_do_not_call_csv(data, region=region, filename=filename, default_reason=default_reason)
    added = do_not_call(result.numbers, source="import")
    result.added = len(added.added)
    result.already_there += len(result.numbers) - result.added
    result.cancelled_calls = added.cancelled
    log.info(
        "do-not-call import %s by %s: %d lines, %d added, %d already there, %d rejected, %d blank, "
        "%d queued calls cancelled",
        filename,
        by or "-",
        result.total_lines,
        result.added,
        result.already_there,
        len(result.rejected),
        result.blank,
        result.cancelled_calls,
    )
    return result


def export_rows() -> Iterator[tuple[str, str, str, str]]:
    """The whole list as CSV rows (header first), oldest entry first, numbers in E.164."""
    yield EXPORT_HEADER
    entries = DoNotCall.objects.order_by("pk").values_list("phone", "reason", "source", "created_at")
    for phone, reason, source, created_at in entries.iterator(chunk_size=5000):
        yield phone, guard_cell(reason), guard_cell(source), created_at.isoformat()


def export_csv(rows_per_piece: int = 1000) -> Iterator[str]:
    """The export as CSV text in pieces for streaming; a UTF-8 BOM first, so Excel reads Chinese reasons."""
    out = io.StringIO()
    writer = csv.writer(out)
    yield "\ufeff"
    for n, row in enumerate(export_rows(), start=1):
        writer.writerow(row)
        if n % rows_per_piece == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()
