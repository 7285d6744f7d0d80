"""Parse an uploaded contacts CSV (raw bytes) into validated contact rows.

Pure Python apart from Django's gettext (messages in the importing person's language): no database. The
Django side calls
:func:`parse_contacts_csv` and stores the result.

Guarantee: nothing is dropped silently. Every non-blank data row ends up in
exactly one of ``contacts`` (accepted), ``merged`` (a later duplicate of an
accepted phone number, folded into the first occurrence) or ``rejected``
(with its physical line number and a reason a non-engineer can act on)::

    len(result.contacts) + result.merged + len(result.rejected) == result.total_rows

Problems with the whole file (empty, not decodable, no header, no phone
column, ambiguous header, too many rows, broken quoting) raise
:class:`CsvImportError` instead.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import re
import unicodedata
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field

from django.utils.translation import gettext

from campaigns import phones
from campaigns.cells import unguard_cell

# Rows with a phone number already seen in the file: one call per number either way (a list has one contact per
# number), but what it says differs. COMBINE: every row's values are said, joined with JOINER (two orders:
# "SF1、SF2"); the name and an explicit time zone are the first row's. LATEST: a later row's non-empty values
# replace the earlier ones (a file of corrections).
COMBINE, LATEST = "combine", "latest"
DUPLICATE_POLICIES = (COMBINE, LATEST)
JOINER = "、"
# The column the rejected rows' download adds: ignored when that file is fixed and uploaded again.
REASON_COLUMN = "rejected_reason"
PROGRESS_EVERY = 2000  # rows between two on_progress calls while a file is read

__all__ = [
    "MAX_FIELD_LENGTH",
    "PHONE_ALIASES",
    "NAME_ALIASES",
    "TIMEZONE_ALIASES",
    "CsvImportError",
    "ParsedContact",
    "RejectedRow",
    "ParseResult",
    "parse_contacts_csv",
    "check_phone_and_timezone",
    "clean_value",
    "canonical_timezone",
]

MAX_FIELD_LENGTH = 1000

PHONE_ALIASES = ("phone", "phone_number", "mobile", "tel", "电话", "手机", "手机号", "手机号码", "联系电话")
NAME_ALIASES = ("name", "姓名", "名字", "客户姓名", "收件人")
TIMEZONE_ALIASES = ("timezone", "tz", "时区")


def _save_as_hint() -> str:
    return gettext('In Excel choose "Save As" → "CSV UTF-8 (Comma delimited)" and upload the new file.')


# --------------------------------------------------------------------------- results


class CsvImportError(ValueError):
    """A problem with the whole file; nothing was imported.

    ``line`` (1-based physical line) and ``byte_offset`` (0-based offset into
    the uploaded bytes) are set when the problem has a location.
    """

    def __init__(self, message: str, *, line: int | None = None, byte_offset: int | None = None):
        super().__init__(message)
        self.line = line
        self.byte_offset = byte_offset


@dataclass(frozen=True)
class ParsedContact:
    line: int  # physical line where the (first occurrence of the) row starts
    phone: str  # E.164, e.g. "+8613800138000"
    name: str
    timezone: str  # IANA name, e.g. "Asia/Shanghai"
    fields: dict[str, str] = field(default_factory=dict)  # every other column: header text → value
    merged_lines: tuple[int, ...] = ()  # later lines with the same phone, merged into this one


@dataclass(frozen=True)
class RejectedRow:
    line: int
    reason: str
    raw: str  # the row's original text (all its physical lines), without the final line break


@dataclass(frozen=True)
class MergedRow:
    line: int  # the later line
    into_line: int  # the first line with the same phone number, which the call is made for
    changes: dict[str, str]  # what this line changed there: column → the value it now holds


@dataclass(frozen=True)
class ParseResult:
    encoding: str  # "utf-8", "utf-8-sig", "gb18030" (or "utf-16" for Excel "Unicode Text" files)
    contacts: list[ParsedContact]
    rejected: list[RejectedRow]
    merged: int  # rows folded into an earlier row with the same phone number
    total_rows: int  # non-blank data rows (header and blank lines excluded)
    merged_rows: list[MergedRow] = field(default_factory=list)
    header: list[str] = field(default_factory=list)  # the header row's cells, for the rejected rows' download
    delimiter: str = ","


# --------------------------------------------------------------------------- decoding


def _line_of_offset(data: bytes, offset: int, encoding: str) -> int:
    prefix = data[:offset].decode(encoding, errors="replace")
    # Same notion of a line as the parser: \n, \r\n and a lone \r each end one.
    return prefix.count("\n") + prefix.count("\r") - prefix.count("\r\n") + 1


def _decode_error(data: bytes, exc: UnicodeDecodeError, label: str, *, skip: int = 0) -> CsvImportError:
    """``skip``: length of a BOM that was cut off before decoding (exc offsets are relative to it)."""
    offset = exc.start + skip
    line = _line_of_offset(data[skip:], exc.start, exc.encoding or "latin-1")
    bad = data[offset : max(exc.end + skip, offset + 1)][:4]
    shown = " ".join(f"0x{b:02X}" for b in bad)
    return CsvImportError(
        gettext(
            "The file could not be read as %(encoding)s text: the byte(s) %(bytes)s on line %(line)s "
            "(byte offset %(offset)s) are not valid. %(hint)s"
        )
        % {"encoding": label, "bytes": shown, "line": line, "offset": offset, "hint": _save_as_hint()},
        line=line,
        byte_offset=offset,
    )


def _decode(data: bytes) -> tuple[str, str]:
    """Return (text, encoding-name). UTF-8 (± BOM) first, then GB18030."""
    if data.startswith(b"PK\x03\x04"):
        raise CsvImportError(
            gettext("This is an Excel workbook (.xlsx), not a CSV file. %(hint)s") % {"hint": _save_as_hint()},
            line=1,
            byte_offset=0,
        )
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise CsvImportError(
            gettext("This is an old Excel workbook (.xls), not a CSV file. %(hint)s") % {"hint": _save_as_hint()},
            line=1,
            byte_offset=0,
        )

    if data.startswith(codecs.BOM_UTF8):
        # The BOM declares UTF-8: a decoding failure is a real error, not a hint to try GB18030.
        try:
            return data[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            raise _decode_error(data, exc, "UTF-8", skip=3) from None
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            # Excel's "Unicode Text" export: UTF-16 with BOM, tab separated.
            try:
                return data[2:].decode(codec), "utf-16"
            except UnicodeDecodeError as exc:
                raise _decode_error(data, exc, "UTF-16", skip=2) from None

    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as utf8_exc:
        try:
            return data.decode("gb18030"), "gb18030"
        except UnicodeDecodeError as gb_exc:
            # Report the failure of the encoding that got further: that one is most
            # likely what the file was meant to be, and its first bad byte is the real culprit.
            if gb_exc.start > utf8_exc.start:
                raise _decode_error(data, gb_exc, "UTF-8 or GBK/GB18030") from None
            raise _decode_error(data, utf8_exc, "UTF-8 or GBK/GB18030") from None


# --------------------------------------------------------------------------- text helpers

# Control and format characters (Cc, Cf, line/paragraph separators). Line breaks and tabs
# inside a value become a space; everything else is removed.
_SPACE_LIKE = re.compile(r"[\t\n\r\x0b\x0c\x1c-\x1f\x85\u2028\u2029]+")
_INVISIBLE = re.compile(
    r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f"
    r"\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]"
)


def clean_value(value: str) -> str:
    """A cell as stored: control characters out, line breaks and tabs to a space, trimmed."""
    return _clean(value)


def _clean(value: str) -> str:
    if value.isprintable():
        return value.strip()
    value = _SPACE_LIKE.sub(" ", value)
    value = _INVISIBLE.sub("", value)
    return value.strip()


def _header_key(header: str) -> str:
    """Normalisation used to compare header names: NFKC, case-folded, spaces/dashes → '_'."""
    key = unicodedata.normalize("NFKC", header).casefold().strip()
    return re.sub(r"[\s\-]+", "_", key)


_ROLE_BY_KEY: dict[str, str] = {}
for _role, _aliases in (("phone", PHONE_ALIASES), ("name", NAME_ALIASES), ("timezone", TIMEZONE_ALIASES)):
    for _alias in _aliases:
        _ROLE_BY_KEY[_header_key(_alias)] = _role


def _col_label(index: int) -> str:
    """Column 3 → '3 (C)': the number plus the Excel column letter."""
    n, letters = index + 1, ""
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(65 + rem) + letters
    return f"{index + 1} ({letters})"


def _sniff_delimiter(first_line: str) -> str:
    """Comma unless the header line clearly uses tabs or semicolons (counted outside quotes)."""
    counts = {",": 0, "\t": 0, ";": 0}
    in_quotes = False
    for ch in first_line:
        if ch == '"':
            in_quotes = not in_quotes
        elif not in_quotes and ch in counts:
            counts[ch] += 1
    best = max(("\t", ";"), key=lambda d: counts[d])
    if counts[best] > counts[","]:
        return best
    return ","


def _ends_inside_quotes(raw: str, delimiter: str) -> bool:
    """Mirror of the csv module's quote handling: does ``raw`` end inside a quoted value?"""
    in_quotes = False
    field_start = True
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if in_quotes:
            if ch == '"':
                if i + 1 < n and raw[i + 1] == '"':
                    i += 2
                    continue
                in_quotes = False
        elif ch == '"' and field_start:
            in_quotes = True
            field_start = False
        else:
            field_start = ch == delimiter or ch in "\r\n"
        i += 1
    return in_quotes


# --------------------------------------------------------------------------- phone numbers



# --------------------------------------------------------------------------- time zones


@functools.lru_cache(maxsize=1)
def _zone_names() -> dict[str, str]:
    return {name.casefold(): name for name in zoneinfo.available_timezones()}


@functools.lru_cache(maxsize=1024)
def _canonical_timezone(value: str) -> str | None:
    """'asia/shanghai' → 'Asia/Shanghai'; None when not a known IANA zone."""
    value = unicodedata.normalize("NFKC", value).strip()
    if not value:
        return None
    name = _zone_names().get(value.casefold())
    if name is None:
        # Not in the listed zones (or the list is unavailable): ask zoneinfo directly.
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            return None
        return value
    return name



def canonical_timezone(value: str) -> str | None:
    """'asia/shanghai' → 'Asia/Shanghai'; None when not a known IANA zone."""
    return _canonical_timezone(value)


# --------------------------------------------------------------------------- parsing


class _Lines:
    """Iterator over physical lines that counts them and remembers the current record's text."""

    __slots__ = ("_it", "count", "buf")

    def __init__(self, text: str):
        self._it = iter(io.StringIO(text, newline=""))
        self.count = 0
        self.buf: list[str] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self._it)
        self.count += 1
        self.buf.append(line)
        return line

    def take(self) -> str:
        raw = "".join(self.buf)
        self.buf.clear()
        return raw


@dataclass
class _Layout:
    """What the header row says about the columns."""

    header: list[str]
    delimiter: str
    phone_i: int
    name_i: int  # -1: no such column
    tz_i: int  # -1: no such column
    field_cols: list[tuple[int, str]]  # (index, header text) of the other named columns
    unnamed_cols: list[int]  # columns with an empty header


@dataclass
class _Draft:
    line: int
    phone: str
    name: str
    timezone: str
    tz_explicit: bool
    fields: dict[str, str]
    merged_lines: list[int]


def _looks_like_swallowed_rows(cell: str, delimiter: str, ncols: int) -> bool:
    """A multi-line value whose later lines look like whole CSV rows: a misplaced quote."""
    if ncols < 3:
        return False
    lines = cell.splitlines()
    return any(line.count(delimiter) >= ncols - 1 for line in lines[1:])


def parse_contacts_csv(
    data: bytes,
    *,
    default_region: str = "CN",
    default_timezone: str | None = None,
    max_rows: int = 1_000_000,
    duplicates: str = COMBINE,
    on_progress: Callable[[int, int], None] | None = None,
) -> ParseResult:
    """Parse contacts CSV bytes. See the module docstring for the guarantees; `duplicates` is one of
    DUPLICATE_POLICIES. `on_progress(lines read, lines in the file)` is called every PROGRESS_EVERY rows and at the
    end, for a progress bar."""
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"unknown duplicate policy {duplicates!r}; use one of {', '.join(DUPLICATE_POLICIES)}")
    if default_region is not None and not phones.is_region(default_region):
        raise ValueError(f"unknown default_region {default_region!r}")
    default_tz: str | None = None
    if default_timezone:
        default_tz = _canonical_timezone(default_timezone)
        if default_tz is None:
            raise ValueError(f"unknown default_timezone {default_timezone!r}")

    if not data.strip():
        raise CsvImportError(gettext("The file is empty."))
    text, encoding = _decode(data)
    if not text.strip():
        raise CsvImportError(gettext("The file is empty."))

    first_line = next((ln for ln in io.StringIO(text, newline="") if ln.strip()), "")
    delimiter = _sniff_delimiter(first_line)

    lines = _Lines(text)
    total_lines = text.count("\n") + (not text.endswith("\n")) if on_progress else 0
    reader = csv.reader(lines, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)

    layout: _Layout | None = None
    drafts: list[_Draft] = []
    by_phone: dict[str, _Draft] = {}
    rejected: list[RejectedRow] = []
    merged_rows: list[MergedRow] = []
    merged = 0
    total_rows = 0

    prev_count = 0
    last_raw = ""
    last_start = 0
    try:
        for row in reader:
            start = prev_count + 1
            end = lines.count
            prev_count = end
            raw = lines.take()
            last_raw, last_start = raw, start

            if not row or all(not c.strip() for c in row):
                continue  # blank line (or a row of empty cells): not a row

            if layout is None:
                layout = _read_header([_clean(c) for c in row], start, delimiter)
                continue

            total_rows += 1
            if on_progress and total_rows % PROGRESS_EVERY == 0:
                on_progress(end, total_lines)
            if total_rows > max_rows:
                raise CsvImportError(
                    gettext(
                        "The file has more than %(max)s contact rows (line %(line)s is row %(row)s); "
                        "split it into smaller files."
                    )
                    % {"max": f"{max_rows:,}", "line": start, "row": f"{total_rows:,}"},
                    line=start,
                )

            checked = _check_row(row, end > start, layout, default_region, default_tz)
            if isinstance(checked, str):
                reason = (
                    checked
                    if end == start
                    else gettext("%(reason)s (this row spans lines %(start)s–%(end)s)")
                    % {"reason": checked, "start": start, "end": end}
                )
                rejected.append(RejectedRow(line=start, reason=reason, raw=raw.rstrip("\r\n")))
                continue
            e164, name, tz, tz_explicit, fields = checked

            # Duplicates: fold into the first occurrence, as the policy says; what changed there is kept.
            first = by_phone.get(e164)
            if first is not None:
                merged_rows.append(MergedRow(start, first.line, _fold(first, name, tz, tz_explicit, fields, duplicates)))
                first.merged_lines.append(start)
                merged += 1
                continue
            draft = _Draft(start, e164, name, tz, tz_explicit, fields, [])
            drafts.append(draft)
            by_phone[e164] = draft
    except csv.Error as exc:
        line = prev_count + 1
        raise CsvImportError(
            gettext(
                "The file's CSV structure is broken in the row starting on line %(line)s (%(error)s); "
                'check that every double quote (") is closed.'
            )
            % {"line": line, "error": exc},
            line=line,
        ) from None

    if layout is None:
        raise CsvImportError(gettext("The file has no header row (it contains only blank lines)."))
    if last_start and lines.count > last_start and _ends_inside_quotes(last_raw, delimiter):
        raise CsvImportError(
            gettext(
                'A double quote (") opened on line %(start)s is never closed, so lines '
                "%(start)s–%(end)s were read as a single value. Fix the quotes and upload again."
            )
            % {"start": last_start, "end": lines.count},
            line=last_start,
        )

    contacts = [
        ParsedContact(
            line=d.line,
            phone=d.phone,
            name=d.name,
            timezone=d.timezone,
            fields=d.fields,
            merged_lines=tuple(d.merged_lines),
        )
        for d in drafts
    ]
    if on_progress:
        on_progress(total_lines, total_lines)
    return ParseResult(
        encoding=encoding, contacts=contacts, rejected=rejected, merged=merged, total_rows=total_rows,
        merged_rows=merged_rows, header=layout.header, delimiter=layout.delimiter,
    )  # fmt: skip


def _fold(
    first: _Draft, name: str, tz: str, tz_explicit: bool, fields: dict[str, str], policy: str
) -> dict[str, str]:
    """A later row with `first`'s phone folded into it; returns what it changed (column → value now held)."""
    changes: dict[str, str] = {}
    if name and name != first.name and (policy == LATEST or not first.name):
        first.name = changes["name"] = name
    if tz_explicit and tz != first.timezone and (policy == LATEST or not first.tz_explicit):
        first.timezone, first.tz_explicit = tz, True
        changes["timezone"] = tz
    for key, val in fields.items():
        held = first.fields.get(key, "")
        if not val or val == held:
            continue
        if policy == COMBINE and held:
            if val in held.split(JOINER):
                continue
            val = held + JOINER + val
        first.fields[key] = changes[key] = val
    return changes


def _read_header(header: list[str], line: int, delimiter: str) -> _Layout:
    seen: dict[str, int] = {}
    roles: dict[str, int] = {}
    field_cols: list[tuple[int, str]] = []
    unnamed: list[int] = []
    for i, h in enumerate(header):
        if not h:
            unnamed.append(i)
            continue
        key = _header_key(h)
        if key == _header_key(REASON_COLUMN):
            continue  # the reason a downloaded rejected row carries: not a variable
        if key in seen:
            j = seen[key]
            raise CsvImportError(
                gettext(
                    'The header (line %(line)s) has the column name "%(name)s" twice: columns %(first)s '
                    "and %(second)s. Rename or remove one of them."
                )
                % {"line": line, "name": h, "first": _col_label(j), "second": _col_label(i)},
                line=line,
            )
        seen[key] = i
        role = _ROLE_BY_KEY.get(key)
        if role is None:
            field_cols.append((i, h))
        elif role in roles:
            j = roles[role]
            raise CsvImportError(
                _two_columns_message(role)
                % {"line": line, "first": header[j], "first_col": _col_label(j), "second": h, "second_col": _col_label(i)},
                line=line,
            )
        else:
            roles[role] = i
    if "phone" not in roles:
        found = ", ".join(f'"{h}"' for h in header if h) or gettext("(none)")
        raise CsvImportError(
            gettext(
                "The header (line %(line)s) has no phone number column. Name the column one of: "
                "%(names)s. Columns found: %(found)s."
            )
            % {"line": line, "names": ", ".join(PHONE_ALIASES), "found": found},
            line=line,
        )
    return _Layout(
        header=header,
        delimiter=delimiter,
        phone_i=roles["phone"],
        name_i=roles.get("name", -1),
        tz_i=roles.get("timezone", -1),
        field_cols=field_cols,
        unnamed_cols=unnamed,
    )


def _two_columns_message(role: str) -> str:
    """The message for a header with two columns of one role, the role said in the reader's language."""
    if role == "phone":
        return gettext(
            'The header (line %(line)s) has two phone columns: "%(first)s" in column %(first_col)s '
            'and "%(second)s" in column %(second_col)s. Rename one of them so it is clear which to use.'
        )
    if role == "name":
        return gettext(
            'The header (line %(line)s) has two name columns: "%(first)s" in column %(first_col)s '
            'and "%(second)s" in column %(second_col)s. Rename one of them so it is clear which to use.'
        )
    return gettext(
        'The header (line %(line)s) has two timezone columns: "%(first)s" in column %(first_col)s '
        'and "%(second)s" in column %(second_col)s. Rename one of them so it is clear which to use.'
    )


def _check_row(
    row: list[str], multiline: bool, layout: _Layout, region: str | None, default_tz: str | None
) -> str | tuple[str, str, str, bool, dict[str, str]]:
    """Validate one data row: a rejection reason, or (e164, name, timezone, tz_explicit, fields)."""
    header, ncols = layout.header, len(layout.header)

    # ---- shape
    if len(row) > ncols and all(not c.strip() for c in row[ncols:]):
        row = row[:ncols]  # trailing empty cells carry no data
    if len(row) != ncols:
        if len(row) < ncols:
            hint = gettext("some values are missing")
        elif layout.delimiter == ",":
            hint = gettext("a value probably contains an unquoted comma; put that value in double quotes")
        else:
            hint = gettext("a value probably contains the separator character; put that value in double quotes")
        return gettext("expected %(expected)s columns, found %(found)s (%(hint)s)") % {
            "expected": ncols, "found": len(row), "hint": hint,
        }
    if multiline:
        for i, cell in enumerate(row):
            if ("\n" in cell or "\r" in cell) and _looks_like_swallowed_rows(cell, layout.delimiter, ncols):
                return gettext(
                    'the value in column "%(column)s" contains what look like whole rows: '
                    'a double quote (") was probably opened but not closed; fix the quotes'
                ) % {"column": header[i] or _col_label(i)}

    # ---- values
    cells = [unguard_cell(_clean(c)) for c in row]  # a file we wrote (rejected rows) guards formula-like cells
    for i, cell in enumerate(cells):
        if len(cell) > MAX_FIELD_LENGTH:
            return gettext(
                'the value in column "%(column)s" is %(length)s characters long; the limit is %(limit)s'
            ) % {"column": header[i] or _col_label(i), "length": f"{len(cell):,}", "limit": f"{MAX_FIELD_LENGTH:,}"}
    for i in layout.unnamed_cols:
        if cells[i]:
            return gettext(
                "column %(column)s has a value but no header, so it would be lost; "
                "give the column a name in the first row"
            ) % {"column": _col_label(i)}

    tz_value = cells[layout.tz_i] if layout.tz_i >= 0 else ""
    checked = check_phone_and_timezone(cells[layout.phone_i], tz_value, region, default_tz)
    if isinstance(checked, str):
        return checked
    e164, tz, tz_explicit = checked
    name = cells[layout.name_i] if layout.name_i >= 0 else ""
    fields = {h: cells[i] for i, h in layout.field_cols}
    return e164, name, tz, tz_explicit, fields


def check_phone_and_timezone(
    phone: str, tz_value: str, region: str | None, default_tz: str | None
) -> str | tuple[str, str, bool]:
    """The rules every contact meets, from a CSV row or the API: a rejection reason, or (e164, time zone,
    whether the zone was given). Without a zone, the number's own zone, else `default_tz`."""
    num, why, kind = phones.parse_phone_kind(phone, region)
    if num is None:
        return why
    e164 = phones.e164(num)
    if tz_value:
        tz = _canonical_timezone(tz_value)
        if tz is None:
            return gettext(
                'the time zone "%(zone)s" is not recognised; use a name like Asia/Shanghai or America/New_York'
            ) % {"zone": tz_value}
        tz_explicit = True
    else:
        tz_explicit = False
        zones = phones.zones_for(num, kind)
        if len(zones) == 1:
            tz = zones[0]
        elif default_tz is not None:
            tz = default_tz
        elif zones:
            shown = ", ".join(zones[:3]) + (", …" if len(zones) > 3 else "")
            return gettext(
                "the phone number %(phone)s could be in several time zones (%(zones)s); "
                "add a timezone column (e.g. America/New_York) or choose a default time zone"
            ) % {"phone": e164, "zones": shown}
        else:
            return gettext(
                "the time zone of the phone number %(phone)s is unknown; "
                "add a timezone column (e.g. Asia/Shanghai) or choose a default time zone"
            ) % {"phone": e164}
    return e164, tz, tz_explicit
