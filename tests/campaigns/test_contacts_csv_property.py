"""Property tests of the contacts CSV parser (hypothesis, issue 17): arbitrary bytes and rows never crash it;
a file is either refused as a whole (CsvImportError with a message) or every row is accounted for, each
rejected row with its line and a reason.

Bounded for CI: few examples, no deadline, derandomized.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.contacts_csv import CsvImportError, parse_contacts_csv

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

CELL = st.one_of(
    st.sampled_from(["13800138000", "+8613800138000", "138-0013-8000", "张三", "Asia/Shanghai", "Mars/Base", "",
                     "=HYPERLINK(\"x\")", "a,b", '"quoted"', "１３８００１３８０００", "⟪digits:1⟫", " ", "\t"]),
    st.text(max_size=12),
    st.integers(0, 10**20).map(str),
)
ROWS = st.lists(st.lists(CELL, min_size=0, max_size=5), max_size=8)
HEADERS = st.sampled_from(["phone,name,timezone", "手机号,姓名", "phone", "name,tel,order_id", "电话;姓名", "x,y"])


def _check(data: bytes) -> None:
    try:
        result = parse_contacts_csv(data)
    except CsvImportError as exc:
        assert str(exc)
        return
    assert len(result.contacts) + result.merged + len(result.rejected) == result.total_rows
    for row in result.rejected:
        assert row.line >= 2 and row.reason  # the header is line 1
    for contact in result.contacts:
        assert contact.phone.startswith("+") and contact.line >= 2


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_parser(data):
    _check(data)


@SETTINGS
@given(HEADERS, ROWS, st.sampled_from([",", ";", "\t"]), st.sampled_from(["\n", "\r\n", "\r"]),
       st.sampled_from(["utf-8", "utf-8-sig", "gb18030", "utf-16"]))
def test_arbitrary_rows_are_each_accepted_merged_or_rejected_with_their_line(header, rows, sep, newline, encoding):
    lines = [header] + [sep.join(cells) for cells in rows]
    try:
        data = newline.join(lines).encode(encoding)
    except UnicodeEncodeError:
        data = newline.join(lines).encode("utf-8")
    _check(data)
