"""The campaign report in a real headless Chromium: log in through the admin form, open the report,
check the charts and table are in the DOM, keep a screenshot."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.urls import reverse

from tests.campaigns.test_reports import build_report_campaign

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is not installed (apt-get install chromium chromium-driver)",
    ),
]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    # With both the browser and the driver path given, Selenium Manager never looks for (or downloads) either.
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1100",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.implicitly_wait(10)
    yield driver
    driver.quit()


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
