"""Spreadsheet cells from free text: a value a spreadsheet would run as a formula is written as text.

One guard for every export (reports CSV/xlsx, the do-not-call list): names, reasons and variants come from
staff, contact lists and callers, and `=HYPERLINK(...)` in a name must never become a live formula.
"""

from __future__ import annotations

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run such a cell as a formula


def guard_cell(text: str) -> str:
    """The text as a spreadsheet shows it literally: a leading ' when it would start a formula."""
    return "'" + text if text.startswith(FORMULA_START) else text


def unguard_cell(text: str) -> str:
    """The text guard_cell wrote, as it was before (for files read back in, e.g. a DNC import)."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_START) else text


def guard_value(value: object) -> object:
    """A report value for a cell: strings guarded, numbers and dates as they are (-3 is a number, not a formula)."""
    return guard_cell(value) if isinstance(value, str) else value
