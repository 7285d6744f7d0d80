"""The dashboard in a real headless Chromium: its figures change in place when calls move, without the page
reloading and without losing the reader's scroll position; a recent call leads to its log.

The screenshot goes to var/screenshots/ (under HERALD_VAR_DIR), like the report pages'.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from campaigns.launch import launch_campaign
from campaigns.models import Call, CallAttempt
from tests.conftest import CHROMIUM, CHROMIUM_MISSING

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=CHROMIUM_MISSING)]


def test_dashboard_refreshes_in_place(live_server, transactional_db, django_user_model, browser, make_campaign):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    django_user_model.objects.create_superuser("staff", "staff@example.com", "correct horse battery")
    campaign = make_campaign(40)
    launch_campaign(campaign)
    dashboard_path = reverse("dashboard")

    browser.set_window_size(1200, 500)  # short, so the page scrolls
    browser.get(f"{live_server.url}{reverse('admin:login')}?next={dashboard_path}")
    browser.find_element(By.NAME, "username").send_keys("staff")
    browser.find_element(By.NAME, "password").send_keys("correct horse battery")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    on_line = browser.find_element(By.CSS_SELECTOR, '[data-figure="on_the_line.total"]')
    assert on_line.text == "0"
    row = browser.find_element(By.CSS_SELECTOR, f'#campaigns tr[data-campaign="{campaign.pk}"]')
    assert "0 / 40" in row.text
    # A mark only this page load carries, and a scroll position: a reload would lose both.
    browser.execute_script("window.heraldMark = 'same page'; window.scrollTo(0, 200);")
    scrolled = browser.execute_script("return window.scrollY")
    assert scrolled > 0

    calls = list(campaign.calls.order_by("pk"))
    Call.objects.filter(pk__in=[c.pk for c in calls[:3]]).update(state=Call.State.IN_PROGRESS)
    Call.objects.filter(pk__in=[c.pk for c in calls[3:8]]).update(state=Call.State.DONE)
    ended = timezone.now() - timedelta(seconds=5)
    CallAttempt.objects.create(call=calls[3], number=1, provider="twilio", status="completed", answered_by="human",
                               action="confirmed", ended_at=ended)  # fmt: skip

    WebDriverWait(browser, 20).until(
        lambda b: b.find_element(By.CSS_SELECTOR, '[data-figure="on_the_line.total"]').text == "3"
    )
    row = browser.find_element(By.CSS_SELECTOR, f'#campaigns tr[data-campaign="{campaign.pk}"]')
    assert "5 / 40" in row.text
    assert browser.find_element(By.CSS_SELECTOR, '[data-figure="outcomes_today.answered"]').text == "1"
    assert browser.find_element(By.CSS_SELECTOR, '#actions tr[data-action="confirmed"]').text.split()[-1] == "1"
    assert browser.execute_script("return window.heraldMark") == "same page"
    assert browser.execute_script("return window.scrollY") == scrolled
    assert browser.find_element(By.ID, "refresh-error").text == ""

    recent = browser.find_element(By.CSS_SELECTOR, "#recent tbody tr")
    assert calls[3].phone in recent.text  # a superuser holds campaigns.view_full_number
    folder = Path(settings.VAR_DIR) / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(1200, browser.execute_script("return document.body.scrollHeight") + 120)
    assert browser.save_screenshot(str(folder / "dashboard.png"))

    recent.find_element(By.TAG_NAME, "a").click()
    assert browser.current_url == f"{live_server.url}{reverse('admin:campaigns_call_log', args=[calls[3].pk])}"
    assert "confirmed" in browser.find_element(By.CSS_SELECTOR, '.attempt[data-attempt="1"] .action').text
