"""Report downloads never carry a live spreadsheet formula: names starting with = + - @ are written as text."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from campaigns.cells import guard_cell, unguard_cell
from tests.campaigns.test_report_pages import build_random_campaign

pytestmark = pytest.mark.django_db

HOSTILE = '=HYPERLINK("http://x","y")'


@pytest.fixture
def hostile_campaign():
    campaign = build_random_campaign(name=HOSTILE)
    variant = campaign.variants.order_by("pk").first()
    variant.name = "+" + HOSTILE
    variant.save(update_fields=["name"])
    return campaign


def test_guard_cell_round_trips_and_leaves_plain_text_alone():
    for text in (HOSTILE, "+1", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert guard_cell(text).startswith("'")
        assert unguard_cell(guard_cell(text)) == text
    assert guard_cell("张先生") == "张先生"


def test_report_csv_writes_formula_names_as_text(admin_client, hostile_campaign):
    response = admin_client.get(reverse("admin:campaigns_campaign_report_csv", args=[hostile_campaign.pk]))

    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    cells = [cell for row in rows[1:] for cell in row]
    assert "'" + HOSTILE in cells and "'+" + HOSTILE in cells
    assert not any(cell.startswith(("=", "+", "@")) for cell in cells)


def test_report_xlsx_holds_no_formula(admin_client, hostile_campaign):
    from openpyxl import load_workbook

    response = admin_client.get(reverse("admin:campaigns_campaign_report_xlsx", args=[hostile_campaign.pk]))

    book = load_workbook(io.BytesIO(response.content))
    cells = [cell for sheet in book.worksheets for row in sheet.iter_rows(min_row=2) for cell in row]
    assert not [cell.coordinate for cell in cells if cell.data_type == "f"]
    values = {cell.value for cell in cells}
    assert "'" + HOSTILE in values and "'+" + HOSTILE in values


def test_voices_report_downloads_guard_voice_names(admin_client, hostile_campaign):
    from voices.models import Voice

    Voice.objects.filter(pk=hostile_campaign.variants.first().voice_id).update(name="@" + HOSTILE)
    response = admin_client.get(reverse("admin:voices_voice_report") + "?format=csv")

    assert response.status_code == 200
    text = response.content.decode("utf-8-sig")
    assert "'@" + HOSTILE.replace('"', '""') in text
    assert not any(cell.startswith(("=", "+", "@")) for row in csv.reader(io.StringIO(text)) for cell in row)
