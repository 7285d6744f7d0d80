"""The Preflight page in a real headless Chromium: reached from the campaign's change page, its summary and
sample messages read off the rendered page, a mistyped test-call number refused on the page; screenshot kept
under var/screenshots/ (HERALD_VAR_DIR)."""

from __future__ import annotations

import os

import pytest
from django.urls import reverse

from campaigns.models import DoNotCall
from tests.conftest import CHROMIUM, CHROMIUM_MISSING
from tests.test_admin_browser import _screenshot

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=CHROMIUM_MISSING)]


def test_preflight_page_in_chromium(live_server, transactional_db, django_user_model, make_campaign, browser):
    from selenium.webdriver.common.by import By

    django_user_model.objects.create_superuser("staff", "staff@example.com", "correct horse battery")
    fields = lambda i: {"order_id": f"SF{i:04d}"} if i != 3 else {}  # noqa: E731
    campaign = make_campaign(5, fields=fields)
    DoNotCall.objects.create(phone=campaign.contact_list.contacts.order_by("pk")[4].phone)
    change_path = reverse("admin:campaigns_campaign_change", args=[campaign.pk])

    browser.get(f"{live_server.url}{reverse('admin:login')}?next={change_path}")
    browser.find_element(By.NAME, "username").send_keys("staff")
    browser.find_element(By.NAME, "password").send_keys("correct horse battery")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    browser.find_element(By.CSS_SELECTOR, ".object-tools a[href$='/preflight/']").click()

    assert browser.current_url.endswith(reverse("admin:campaigns_campaign_preflight", args=[campaign.pk]))
    summary = {
        row.find_element(By.TAG_NAME, "th").text.strip(): row.find_element(By.TAG_NAME, "td").text.strip()
        for row in browser.find_elements(By.CSS_SELECTOR, "table#summary tr")
    }
    assert summary["Calls planned"] == "3" and summary["On the do-not-call list"] == "1"
    assert summary["missing variables: order_id"] == "1"
    assert "callee-local" in summary["Calling window"]
    samples = browser.find_elements(By.CSS_SELECTOR, "table#samples tbody tr")
    assert len(samples) == 3 and "SF0000" in samples[0].text
    _screenshot(browser, "preflight")

    browser.find_element(By.NAME, "number").send_keys("12345")
    browser.find_element(By.CSS_SELECTOR, "#test-call input[type=submit]").click()
    error = browser.find_element(By.CSS_SELECTOR, "ul.messagelist li.error").text
    assert error.startswith("Test call not placed: the phone number")
