"""Downloads for a staff member who chose Chinese name their sheets and columns in Chinese (issue 21); the same
download in English keeps the API's keys (tests/campaigns/test_report_pages.py), and the API itself always does."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.urls import reverse
from openpyxl import load_workbook

from campaigns.exports import COLUMNS, column_name, workbook
from campaigns.launch import launch_campaign
from campaigns.reports import export_columns

pytestmark = pytest.mark.django_db
KEY = re.compile(r"[a-z]+_[a-z_]+|\b[a-z]{4,}\b")  # answer_rate, listened_to_end, calls: a key left as it was


def test_every_report_download_names_its_columns_in_chinese(client, chinese_staff, make_campaign):
    campaign = make_campaign(4)
    launch_campaign(campaign)
    report_csv = client.get(reverse("admin:campaigns_campaign_report_csv", args=[campaign.pk]))
    header = next(csv.reader(io.StringIO(report_csv.content.decode("utf-8-sig"))))
    assert header[:5] == ["外呼任务", "版本", "音色", "话术", "呼叫数"]
    assert "接听率" in header and "接听率（95% 区间下限）" in header
    assert not [name for name in header if KEY.search(name)], header

    book = load_workbook(io.BytesIO(client.get(
        reverse("admin:campaigns_campaign_report_xlsx", args=[campaign.pk])).content))  # fmt: skip
    assert book.sheetnames == ["版本", "AB 测试结论", "时段（被叫当地时间）"]
    for sheet in book.worksheets:
        names = [cell.value for cell in sheet[1]]
        assert names and not [name for name in names if KEY.search(name)], (sheet.title, names)

    hours = client.get(reverse("admin:campaigns_campaign_heatmap", args=[campaign.pk]) + "?format=csv")
    assert next(csv.reader(io.StringIO(hours.content.decode("utf-8-sig"))))[:3] == ["星期序号（0 = 星期一）", "星期", "小时"]
    voices = client.get(reverse("admin:voices_voice_report") + "?format=xlsx")
    assert load_workbook(io.BytesIO(voices.content)).sheetnames == ["音色"]


def test_rates_keep_their_percent_format_under_their_chinese_names():
    from django.utils import translation

    with translation.override("zh-hans"):
        sheet = load_workbook(io.BytesIO(workbook([("版本", (["calls", "answer_rate"], [[10, 0.25]]))]))).active
    assert [c.value for c in sheet[1]] == ["呼叫数", "接听率"]
    assert [c.number_format for c in sheet[2]] == ["General", "0.0%"]


def test_a_column_is_its_key_in_english_and_has_a_chinese_name_for_every_key():
    from django.utils import translation

    keys = [*COLUMNS, *export_columns(["1", "9"], flow=True)]
    with translation.override("en"):
        assert [column_name(key) for key in keys] == keys
    with translation.override("zh-hans"):
        named = {key: column_name(key) for key in keys}
    assert not {key: name for key, name in named.items() if KEY.search(name)}
    assert named["digit_9"] == "按键 9" and named["action_confirmed"].startswith("最终动作：")
    assert len(set(named.values())) == len(named), "two columns with one name"
