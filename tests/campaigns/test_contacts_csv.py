"""Pure tests for campaigns.contacts_csv (no database)."""

import codecs

import pytest

from campaigns.contacts_csv import (
    LATEST,
    MAX_FIELD_LENGTH,
    CsvImportError,
    MergedRow,
    ParsedContact,
    RejectedRow,
    parse_contacts_csv,
)

PHONE = "+8613800138000"


def parse_text(text, encoding="utf-8", **kwargs):
    return parse_contacts_csv(text.encode(encoding), **kwargs)


def only_reason(result):
    assert len(result.rejected) == 1, result.rejected
    return result.rejected[0].reason


def assert_accounted(result):
    assert len(result.contacts) + result.merged + len(result.rejected) == result.total_rows


# --------------------------------------------------------------------------- encodings


def test_gbk_file_with_chinese_headers():
    text = "姓名,手机号,订单号\r\n张三,13800138000,DD001\r\n李四,13900139000,DD002\r\n"
    result = parse_contacts_csv(text.encode("gbk"))
    assert result.encoding == "gb18030"
    assert result.total_rows == 2
    assert result.rejected == []
    assert result.contacts == [
        ParsedContact(line=2, phone=PHONE, name="张三", timezone="Asia/Shanghai", fields={"订单号": "DD001"}),
        ParsedContact(
            line=3, phone="+8613900139000", name="李四", timezone="Asia/Shanghai", fields={"订单号": "DD002"}
        ),
    ]


def test_gb18030_only_characters():
    # 𠮷 is outside GBK; GB18030 encodes it with four bytes.
    text = "姓名,电话\n𠮷野家,13800138000\n"
    result = parse_contacts_csv(text.encode("gb18030"))
    assert result.encoding == "gb18030"
    assert result.contacts[0].name == "𠮷野家"


def test_utf8_with_bom():
    result = parse_contacts_csv("姓名,手机\n张三,13800138000\n".encode("utf-8-sig"))
    assert result.encoding == "utf-8-sig"
    assert result.contacts[0].name == "张三"
    assert result.contacts[0].phone == PHONE


def test_plain_utf8():
    result = parse_text("name,phone\nAlice,13800138000\n")
    assert result.encoding == "utf-8"
    assert result.contacts[0].name == "Alice"


def test_utf16_excel_unicode_text():
    data = codecs.BOM_UTF16_LE + "姓名\t手机号\n张三\t13800138000\n".encode("utf-16-le")
    result = parse_contacts_csv(data)
    assert result.encoding == "utf-16"
    assert result.contacts[0].phone == PHONE


def test_undecodable_bytes_name_line_and_offset():
    data = b"name,phone\nAlice,13800138000\nBob,\x80\xff13900139000\n"
    with pytest.raises(CsvImportError) as info:
        parse_contacts_csv(data)
    offset = data.index(b"\x80")
    assert info.value.line == 3
    assert info.value.byte_offset == offset
    message = str(info.value)
    assert "line 3" in message and f"byte offset {offset}" in message and "0x80" in message


def test_undecodable_gbk_file_reports_the_gbk_position():
    # Valid GBK up to line 4, then a byte that is neither UTF-8 nor GB18030.
    data = "姓名,手机号\n张三,13800138000\n李四,13900139000\n".encode("gbk") + b"\xff\xff,1\n"
    with pytest.raises(CsvImportError) as info:
        parse_contacts_csv(data)
    assert info.value.line == 4
    assert info.value.byte_offset == data.index(b"\xff")


def test_bom_declares_utf8_so_bad_bytes_are_an_error():
    data = codecs.BOM_UTF8 + b"name,phone\n" + "张三,13800138000\n".encode("gbk")
    with pytest.raises(CsvImportError) as info:
        parse_contacts_csv(data)
    assert info.value.line == 2


def test_excel_workbook_is_explained():
    with pytest.raises(CsvImportError, match="xlsx"):
        parse_contacts_csv(b"PK\x03\x04\x14\x00\x06\x00")


# --------------------------------------------------------------------------- whole-file errors


@pytest.mark.parametrize("data", [b"", b"   \r\n\n", codecs.BOM_UTF8])
def test_empty_file(data):
    with pytest.raises(CsvImportError, match="empty"):
        parse_contacts_csv(data)


def test_missing_phone_column_lists_accepted_and_found_names():
    with pytest.raises(CsvImportError) as info:
        parse_text("姓名,订单号\n张三,A1\n")
    message = str(info.value)
    for accepted in ("phone", "mobile", "手机号", "联系电话"):
        assert accepted in message
    assert '"姓名"' in message and '"订单号"' in message
    assert info.value.line == 1


def test_duplicate_header_names():
    with pytest.raises(CsvImportError, match="twice"):
        parse_text("name,phone,Order_ID,order_id\n")


def test_two_phone_columns_are_ambiguous():
    with pytest.raises(CsvImportError, match="two phone columns"):
        parse_text("电话,手机\n010-12345678,13800138000\n")


def test_header_only_is_an_empty_result():
    result = parse_text("name,phone\n")
    assert result.contacts == [] and result.rejected == [] and result.total_rows == 0


def test_max_rows():
    text = "phone\n" + "".join(f"1380013800{i}\n" for i in range(5))
    assert parse_text(text, max_rows=5).total_rows == 5
    with pytest.raises(CsvImportError, match="more than 4"):
        parse_text(text, max_rows=4)


def test_unclosed_quote_swallowing_the_rest_of_the_file():
    text = 'name,phone,note\nA,13800138000,"oops\nB,13900139000,x\nC,13700137000,y\n'
    with pytest.raises(CsvImportError) as info:
        parse_text(text)
    assert info.value.line == 2
    assert "2–4" in str(info.value)


def test_bad_default_arguments():
    with pytest.raises(ValueError):
        parse_text("phone\n13800138000\n", default_region="XX")
    with pytest.raises(ValueError):
        parse_text("phone\n13800138000\n", default_timezone="Mars/Olympus")


# --------------------------------------------------------------------------- header handling


def test_header_aliases_case_and_whitespace():
    result = parse_text(" Name , PHONE_NUMBER ,TZ, Order ID \nAlice,13800138000,Asia/Tokyo,42\n")
    contact = result.contacts[0]
    assert contact.name == "Alice"
    assert contact.timezone == "Asia/Tokyo"
    assert contact.fields == {"Order ID": "42"}


@pytest.mark.parametrize(
    "alias", ["phone", "mobile", "tel", "电话", "手机", "手机号", "手机号码", "联系电话", "Phone Number"]
)
def test_every_phone_alias(alias):
    assert parse_text(f"{alias}\n13800138000\n").contacts[0].phone == PHONE


@pytest.mark.parametrize("alias", ["name", "姓名", "名字", "客户姓名", "收件人"])
def test_every_name_alias(alias):
    assert parse_text(f"{alias},phone\n张三,13800138000\n").contacts[0].name == "张三"


def test_leading_blank_lines_before_header_keep_line_numbers():
    result = parse_text("\n\nname,phone\n\nAlice,13800138000\n")
    assert result.total_rows == 1
    assert result.contacts[0].line == 5


@pytest.mark.parametrize("sep", ["\t", ";"])
def test_sniffed_delimiters(sep):
    text = sep.join(["姓名", "手机号", "订单号"]) + "\n" + sep.join(["张三", "13800138000", "A,1"]) + "\n"
    result = parse_text(text)
    assert result.contacts[0].fields == {"订单号": "A,1"}


# --------------------------------------------------------------------------- rows


def test_wrong_column_count_names_line_and_counts():
    text = "name,phone,a,b,c\nAlice,13800138000,1,2,3\nBob,13900139000,1\nCarol,13700137000,1,2,3,4\n"
    result = parse_text(text)
    assert [c.line for c in result.contacts] == [2]
    assert [(r.line, r.raw) for r in result.rejected] == [
        (3, "Bob,13900139000,1"),
        (4, "Carol,13700137000,1,2,3,4"),
    ]
    assert "expected 5 columns, found 3" in result.rejected[0].reason
    assert "expected 5 columns, found 6" in result.rejected[1].reason
    assert "quote" in result.rejected[1].reason


def test_trailing_empty_cells_are_tolerated():
    result = parse_text("name,phone\nAlice,13800138000,,\n")
    assert result.rejected == [] and result.contacts[0].name == "Alice"


def test_multiline_quoted_field_keeps_later_line_numbers_right():
    text = (
        "name,phone,address\n"
        'Alice,13800138000,"Line one\nLine two\nLine three"\n'
        "Bob,13900139000,Short\n"
        "Carol,bad,Short\n"
    )
    result = parse_text(text)
    assert [c.line for c in result.contacts] == [2, 5]
    assert result.contacts[0].fields["address"] == "Line one Line two Line three"
    assert result.rejected[0].line == 6
    assert result.rejected[0].raw == "Carol,bad,Short"


def test_rejected_multiline_row_keeps_all_its_text_and_span():
    text = 'name,phone,note\nAlice,not-a-phone,"a\r\nb"\r\nBob,13900139000,x\r\n'
    result = parse_text(text)
    rejected = result.rejected[0]
    assert rejected.line == 2
    assert rejected.raw == 'Alice,not-a-phone,"a\r\nb"'
    assert "lines 2–3" in rejected.reason
    assert result.contacts[0].line == 4


def test_misplaced_quotes_swallowing_rows_are_rejected():
    text = (
        "name,phone,note\n"
        'A,13800138000,"starts here\n'
        "B,13900139000,swallowed\n"
        'C,13700137000,ends here"\n'
        "D,13600136000,ok\n"
    )
    result = parse_text(text)
    assert [c.line for c in result.contacts] == [5]
    assert result.rejected[0].line == 2
    assert "quote" in result.rejected[0].reason


def test_blank_lines_and_empty_rows_are_not_rows():
    result = parse_text("name,phone\n\nAlice,13800138000\n,\n   \nBob,13900139000\n\n")
    assert result.total_rows == 2
    assert [c.line for c in result.contacts] == [3, 6]


def test_values_stripped_and_control_characters_removed():
    result = parse_text('name,phone,note\n \u200b张\x07三\ufeff ,13800138000," a\tb "\n')
    contact = result.contacts[0]
    assert contact.name == "张三"
    assert contact.fields["note"] == "a b"


def test_too_long_field_rejected():
    long_value = "x" * (MAX_FIELD_LENGTH + 1)
    result = parse_text(
        f"name,phone,note\nAlice,13800138000,{long_value}\nBob,13900139000,{'y' * MAX_FIELD_LENGTH}\n"
    )
    assert "note" in only_reason(result) and "1,000" in only_reason(result)
    assert result.contacts[0].name == "Bob"


def test_value_under_an_unnamed_column_is_not_lost():
    result = parse_text("name,phone,\nAlice,13800138000,\nBob,13900139000,something\n")
    assert [c.name for c in result.contacts] == ["Alice"]
    assert result.rejected[0].line == 3 and "no header" in result.rejected[0].reason


def test_empty_name_is_allowed():
    result = parse_text("name,phone\n,13800138000\n")
    assert result.contacts[0].name == ""


# --------------------------------------------------------------------------- phone numbers


@pytest.mark.parametrize(
    "value",
    [
        "13800138000",
        "+8613800138000",
        "+86 138 0013 8000",
        "008613800138000",
        "86 13800138000",
        "138-0013-8000",
        "(138) 0013 8000",
        "１３８００１３８０００",  # full-width digits
        "＋８６　１３８００１３８０００",  # full-width plus and ideographic space
        "13800138000.0",  # Excel float artefact
        "'13800138000",  # Excel text marker
    ],
)
def test_phone_forms_normalise_to_e164(value):
    result = parse_text(f'phone\n"{value}"\n')
    assert result.rejected == [], result.rejected
    assert result.contacts[0].phone == PHONE


def test_excel_scientific_notation_rejected_as_lost_digits():
    reason = only_reason(parse_text("name,phone\nAlice,1.38001E+10\n"))
    assert "scientific notation" in reason and "lost" in reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "empty"),
        ("abc", "not a phone number"),
        ("call me", "not a phone number"),
        ("13800138000/13900139000", "more than one phone number"),
        ("123", "too short"),
        ("1380013800013800138000", "too long"),
        ("+999 1234 5678", "country code"),
        ("12345", "area code"),
        ("23800138000", "not a valid China phone number"),
    ],
)
def test_invalid_numbers_have_distinct_reasons(value, expected):
    result = parse_text(f'name,phone\nX,"{value}"\n')
    assert expected in only_reason(result)
    assert result.rejected[0].line == 2


def test_other_default_region():
    result = parse_text("phone\n020 7946 0018\n", default_region="GB")
    assert result.contacts[0].phone == "+442079460018"
    assert result.contacts[0].timezone == "Europe/London"


# --------------------------------------------------------------------------- time zones


def test_timezone_from_number():
    result = parse_text("phone\n+1 212 555 0100\n13800138000\n")
    assert [c.timezone for c in result.contacts] == ["America/New_York", "Asia/Shanghai"]


def test_us_number_spanning_time_zones_needs_a_timezone():
    text = "phone\n+1 775 234 5678\n"
    reason = only_reason(parse_text(text))
    assert "timezone column" in reason and "America/Los_Angeles" in reason
    result = parse_text(text, default_timezone="America/Los_Angeles")
    assert result.rejected == []
    assert result.contacts[0].timezone == "America/Los_Angeles"


def test_default_timezone_does_not_override_a_single_zone():
    result = parse_text("phone\n13800138000\n", default_timezone="America/Los_Angeles")
    assert result.contacts[0].timezone == "Asia/Shanghai"


def test_timezone_column_wins_and_is_validated():
    text = "phone,时区\n+1 775 234 5678,america/los_angeles\n13800138000,Asia/Urumqi\n13900139000,\n13700137000,Beijing\n"
    result = parse_text(text)
    assert [c.timezone for c in result.contacts] == ["America/Los_Angeles", "Asia/Urumqi", "Asia/Shanghai"]
    assert result.rejected[0].line == 5
    assert '"Beijing"' in result.rejected[0].reason


def test_timezone_unknown_for_number():
    # +800 (international freephone) is valid but has no time zone: phonenumbers says Etc/Unknown.
    result = parse_text("phone\n+800 1234 5678\n")
    assert "unknown" in only_reason(result)
    assert parse_text("phone\n+800 1234 5678\n", default_timezone="UTC").contacts[0].timezone == "UTC"


# --------------------------------------------------------------------------- duplicates


def test_duplicates_merged_later_non_empty_values_win_when_asked():
    text = (
        "姓名,手机号,订单号,备注\n"
        "张三,13800138000,A1,first\n"
        "李四,13900139000,B1,\n"
        ",+86 138 0013 8000,A2,\n"  # same number, empty name and note: keep earlier ones
        "张三丰,008613800138000,,newest\n"
    )
    result = parse_text(text, "gb18030", duplicates=LATEST)
    assert result.merged == 2
    assert result.total_rows == 4
    first = result.contacts[0]
    assert first == ParsedContact(
        line=2,
        phone=PHONE,
        name="张三丰",
        timezone="Asia/Shanghai",
        fields={"订单号": "A2", "备注": "newest"},
        merged_lines=(4, 5),
    )
    assert result.contacts[1].merged_lines == ()
    assert_accounted(result)


def test_duplicates_combined_by_default_say_every_rows_values():
    text = (
        "姓名,手机号,订单号,备注,时间\n"
        "张三,13800138000,SF1,,下午3点\n"
        "李四,13900139000,B1,,上午\n"
        "张三丰,+86 138 0013 8000,SF2,易碎,下午3点\n"  # a second order for the same customer
        ",13800138000,SF1,,\n"  # the first order again: nothing new
        "张三,13800138000,SF3,,\n"
    )
    result = parse_text(text)
    first = result.contacts[0]
    assert first.name == "张三"  # the first row's name stays
    assert first.fields == {"订单号": "SF1、SF2、SF3", "备注": "易碎", "时间": "下午3点"}
    assert first.merged_lines == (4, 5, 6)
    assert result.merged_rows == [
        MergedRow(line=4, into_line=2, changes={"订单号": "SF1、SF2", "备注": "易碎"}),
        MergedRow(line=5, into_line=2, changes={}),
        MergedRow(line=6, into_line=2, changes={"订单号": "SF1、SF2、SF3"}),
    ]
    assert result.contacts[1].fields == {"订单号": "B1", "备注": "", "时间": "上午"}
    assert_accounted(result)


def test_latest_policy_records_what_each_merged_line_replaced():
    text = "name,phone,order\n张三,13800138000,SF1\n张三丰,13800138000,SF2\n"
    result = parse_text(text, duplicates=LATEST)
    assert result.contacts[0].fields == {"order": "SF2"} and result.contacts[0].name == "张三丰"
    assert result.merged_rows == [MergedRow(line=3, into_line=2, changes={"name": "张三丰", "order": "SF2"})]


def test_an_unknown_duplicate_policy_is_refused():
    with pytest.raises(ValueError, match="unknown duplicate policy 'first'; use one of combine, latest"):
        parse_text("phone\n13800138000\n", duplicates="first")


def test_the_reason_column_of_a_rejected_rows_download_is_not_a_variable():
    result = parse_text("rejected_reason,phone,order\nline 2: bad,13800138000,'=1+1\n")
    assert result.contacts[0].fields == {"order": "=1+1"}  # and a guarded cell is read back as it was
    assert result.header == ["rejected_reason", "phone", "order"]


def test_duplicate_with_explicit_timezone_overrides():
    text = "phone,timezone\n13800138000,\n13800138000,Asia/Urumqi\n13800138000,\n"
    result = parse_text(text)  # either policy: the first row named no zone
    assert result.contacts[0].timezone == "Asia/Urumqi"
    assert result.contacts[0].merged_lines == (3, 4)


def test_rejected_duplicate_is_not_merged():
    text = "phone,timezone\n13800138000,\n13800138000,Nowhere/Land\n"
    result = parse_text(text)
    assert result.merged == 0
    assert result.contacts[0].merged_lines == ()
    assert result.rejected[0].line == 3


# --------------------------------------------------------------------------- accounting


def test_every_line_accounted_for_on_a_messy_file():
    lines = [
        "\ufeff姓名 , 手机号码 ,订单号,备注",  # 1 header (stray BOM char, spaces)
        "张三,13800138000,A1,普通",  # 2 ok
        "",  # 3 blank
        "李四,1.39001E+10,A2,科学计数",  # 4 rejected: scientific
        "王五,１３７００１３７０００,A3,全角",  # 5 ok
        '赵六,13600136000,A4,"多行',  # 6 ok, spans 6-7
        '备注"',  # 7
        "钱七,13800138000.0,A5,重复",  # 8 merged into 2
        "孙八,12345678901234567,A6,太长",  # 9 rejected: too long
        "周九,,A7,空号码",  # 10 rejected: empty
        "吴十,13500135000,A8",  # 11 rejected: column count
        ",,,",  # 12 empty row: not a row
        "郑一,+1 775 234 5678,A9,美国",  # 13 rejected: several time zones
        "冯二,abc,A10,字母",  # 14 rejected: not a number
        "陈三,13400134000,A11,正常,,",  # 15 ok (trailing empty cells)
        "褚四,+8613600136000,,更新",  # 16 merged into 6
    ]
    data = "\r\n".join(lines).encode("gb18030")  # no final newline
    result = parse_contacts_csv(data, duplicates=LATEST)
    assert result.encoding == "gb18030"
    assert result.total_rows == 12
    assert_accounted(result)
    assert [c.line for c in result.contacts] == [2, 5, 6, 15]
    assert result.merged == 2
    assert result.contacts[0].merged_lines == (8,)
    assert result.contacts[2].merged_lines == (16,)
    assert result.contacts[2].fields == {"订单号": "A4", "备注": "更新"}
    assert [r.line for r in result.rejected] == [4, 9, 10, 11, 13, 14]
    assert all(isinstance(r, RejectedRow) and r.reason and r.raw for r in result.rejected)
    assert result.rejected[0].raw == "李四,1.39001E+10,A2,科学计数"
    # Every non-blank physical line is accepted, merged, rejected, part of a multi-line row or the header.
    used = {1, 7, 12} | {c.line for c in result.contacts} | {r.line for r in result.rejected}
    used |= {line for c in result.contacts for line in c.merged_lines}
    assert used == {n for n, text in enumerate(lines, 1) if text.strip()}


@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
def test_file_ending_in_a_multiline_value_is_fine(ending):
    result = parse_text(f'name,phone,note\nAlice,13800138000,"a\nb"{ending}')
    assert result.rejected == []
    assert result.contacts[0].fields["note"] == "a b"


def test_invisible_characters_in_phone_are_ignored():
    result = parse_text("name,phone\nAlice,\u200b13800138000\ufeff\n")
    assert result.contacts[0].phone == PHONE


def test_giant_unclosed_value_is_a_file_error_with_its_line():
    text = 'name,phone,note\nAlice,13800138000,ok\nBob,13900139000,"' + "x" * 200_000 + "\n"
    with pytest.raises(CsvImportError) as info:
        parse_text(text)
    assert info.value.line == 3


@pytest.mark.django_db
def test_a_number_spanning_several_zones_takes_the_lists_default_zone():
    from campaigns.contacts import import_contacts
    from campaigns.models import ContactList

    data = b"phone,name\n+61412345678,Ava\n"  # an Australian mobile: any of eight zones
    no_default = ContactList.objects.create(name="au", default_region="AU")
    record = import_contacts(no_default, data, filename="au.csv")
    assert record.created == 0 and "several time zones" in record.rejected_rows[0]["reason"]

    with_default = ContactList.objects.create(name="au-sydney", default_region="AU", default_timezone="Australia/Sydney")
    record = import_contacts(with_default, data, filename="au.csv")
    assert record.created == 1
    assert with_default.contacts.get().timezone == "Australia/Sydney"
