"""The report pages in a real headless Chromium: log in through the admin form, open a campaign's report,
read the numbers off the rendered page and check them against the database, keep screenshots.

Screenshots go to var/screenshots/ (under HERALD_VAR_DIR), where a person or CI can look at them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from tests.campaigns.direct_sql import heatmap_counts, variant_counts
from tests.campaigns.test_report_pages import build_random_campaign
from tests.conftest import CHROMIUM, CHROMIUM_MISSING

# The `browser` fixture (headless Chromium) lives in tests/conftest.py.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=CHROMIUM_MISSING)]

SHOWN = {"calls": "Calls", "dialled": "Dialled", "answered": "Answered", "human": "Human",
         "listened_to_end": "Listened to end", "confirmed": "Confirmed", "rescheduled": "Rescheduled",
         "opted_out": "Opted out"}  # fmt: skip


def _screenshot(browser, name: str) -> Path:
    folder = Path(settings.VAR_DIR) / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    browser.set_window_size(1500, browser.execute_script("return document.body.scrollHeight") + 120)
    assert browser.save_screenshot(str(path))
    assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 20_000
    return path


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_report_pages_in_chromium(live_server, transactional_db, django_user_model, browser):
    from selenium.webdriver.common.by import By

    django_user_model.objects.create_superuser("staff", "staff@example.com", "correct horse battery")
    campaign = build_random_campaign(calls=400)
    report_path = reverse("admin:campaigns_campaign_report", args=[campaign.pk])

    browser.set_window_size(1500, 1000)
    browser.get(f"{live_server.url}{reverse('admin:login')}?next={report_path}")
    browser.find_element(By.NAME, "username").send_keys("staff")
    browser.find_element(By.NAME, "password").send_keys("correct horse battery")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    table = browser.find_element(By.CSS_SELECTOR, "table#report")
    assert browser.current_url == f"{live_server.url}{report_path}"
    # textContent, not .text: columns scrolled out of the table's box are not "displayed" to WebDriver.
    headings = [th.get_attribute("textContent").strip() for th in table.find_elements(By.CSS_SELECTOR, "thead tr:not(.groups) th")]
    expected = variant_counts(campaign.pk)
    seen = set()
    for row in table.find_elements(By.CSS_SELECTOR, "tbody tr[data-row]"):
        label = row.get_attribute("data-row")
        cells = [row.find_element(By.TAG_NAME, "th"), *row.find_elements(By.TAG_NAME, "td")]
        # A rate cell shows the rate, then its interval in a span of its own: the first text node is the figure.
        figures = [browser.execute_script("return arguments[0].firstChild.textContent", c).strip() for c in cells]
        shown = dict(zip(headings, figures, strict=True))
        for key, heading in SHOWN.items():
            assert _number(shown[heading]) == expected[label][key], (label, key)
        dialled, answered = expected[label]["dialled"], expected[label]["answered"]
        assert shown["Answer rate"] == f"{100 * answered / dialled:.1f}%"
        seen.add(label)
    assert seen == {"A", "B", "C"}

    # The decision box speaks in sentences, and the charts are drawn (SVG, no script, no CDN).
    sentences = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#decisions li[data-verdict]")]
    assert len(sentences) == 6  # three metrics × B and C against A
    assert all(re.search(r"wins\.|not enough data yet|No difference worth acting on", s) for s in sentences)
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.herald-chart")
    assert len(charts) == 4
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.interval-chart circle.rate")) == 9
    assert charts[-1].size["width"] > 300 and charts[-1].size["height"] > 200
    stylesheet = browser.execute_script(
        "return getComputedStyle(document.querySelector('#report td.num')).textAlign"
    )
    assert stylesheet == "right"  # the report's own CSS was served and applied
    _screenshot(browser, "campaign-report")

    # When callees answer: every cell the page draws equals the attempts counted one by one in local time.
    hours_path = reverse("admin:campaigns_campaign_heatmap", args=[campaign.pk])
    browser.find_element(By.CSS_SELECTOR, f'.object-tools a[href="{hours_path}"]').click()
    cells = browser.find_elements(By.CSS_SELECTOR, "table#heatmap td[data-attempts]")
    hours = [int(th.text) for th in browser.find_elements(By.CSS_SELECTOR, "table#heatmap thead th[scope=col]")]
    shown_cells = {}
    days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    for row in browser.find_elements(By.CSS_SELECTOR, "table#heatmap tbody tr[data-day]"):
        day = days.index(row.get_attribute("data-day"))
        for hour, td in zip(hours, row.find_elements(By.TAG_NAME, "td"), strict=False):
            if td.get_attribute("data-attempts"):
                shown_cells[(day, hour)] = (int(td.get_attribute("data-attempts")), int(td.get_attribute("data-answered")))
    assert cells and shown_cells == heatmap_counts(campaign.pk)
    _screenshot(browser, "campaign-hours")
