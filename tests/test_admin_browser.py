"""The campaign report in a real headless Chromium: log in through the admin form, open the report,
check the charts and table are in the DOM, keep a screenshot."""

from __future__ import annotations

import os

import pytest
from django.urls import reverse

from tests.campaigns.test_reports import build_report_campaign
from tests.conftest import CHROMIUM, CHROMIUM_MISSING

# The `browser` fixture (headless Chromium) lives in tests/conftest.py.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=CHROMIUM_MISSING)]


def test_report_page_in_chromium(live_server, transactional_db, django_user_model, browser, tmp_path):
    from selenium.webdriver.common.by import By

    django_user_model.objects.create_superuser("staff", "staff@example.com", "correct horse battery")
    campaign = build_report_campaign()
    report_path = reverse("admin:campaigns_campaign_report", args=[campaign.pk])

    browser.get(f"{live_server.url}{reverse('admin:login')}?next={report_path}")
    browser.find_element(By.NAME, "username").send_keys("staff")
    browser.find_element(By.NAME, "password").send_keys("correct horse battery")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    table = browser.find_element(By.CSS_SELECTOR, "table#report")
    assert browser.current_url == f"{live_server.url}{report_path}"
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert [r.find_element(By.TAG_NAME, "th").text for r in rows] == ["All variants", "A", "B", "C"]
    assert "75.0%" in rows[1].text and "42.9%" in rows[2].text

    charts = browser.find_elements(By.CSS_SELECTOR, "svg.herald-chart")
    assert len(charts) == 2
    assert len(charts[0].find_elements(By.CSS_SELECTOR, "rect.bar")) == 6  # A and B: three rates each
    assert len(charts[1].find_elements(By.CSS_SELECTOR, "rect.bar")) == 10  # hours 9-13, two series
    assert charts[0].size["width"] > 300 and charts[0].size["height"] > 200

    screenshot = tmp_path / "campaign-report.png"
    browser.set_window_size(1400, browser.execute_script("return document.body.scrollHeight") + 120)
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 20_000
