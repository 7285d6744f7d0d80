"""A running campaign's report refreshes in place in a real headless Chromium (issue 21): new figures appear
without a reload, and the reader keeps their place on the page and in the results table scrolled sideways; the
refreshing stops when the campaign finishes."""

from __future__ import annotations

import os
import time

import pytest
from django.urls import reverse

from campaigns import views
from campaigns.models import Call, Campaign
from tests.campaigns.test_report_pages import build_random_campaign
from tests.conftest import CHROMIUM, CHROMIUM_MISSING

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=CHROMIUM_MISSING)]


def test_the_report_refreshes_in_place_keeping_the_readers_place(
    live_server, transactional_db, django_user_model, browser, monkeypatch
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    monkeypatch.setattr(views, "REFRESH_SECONDS", 1)
    django_user_model.objects.create_superuser("staff", "staff@example.com", "correct horse battery")
    campaign = build_random_campaign(calls=120)
    report_path = reverse("admin:campaigns_campaign_report", args=[campaign.pk])
    browser.get(f"{live_server.url}{reverse('admin:login')}?next={report_path}")
    browser.find_element(By.NAME, "username").send_keys("staff")
    browser.find_element(By.NAME, "password").send_keys("correct horse battery")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    browser.set_window_size(1100, 900)  # the results table is wider than this: it scrolls sideways

    def js(script: str, *args):
        return browser.execute_script(script, *args)

    def progress() -> str:
        return browser.find_element(By.CSS_SELECTOR, "#report-live > p:nth-of-type(2)").text

    before = progress()
    table_box = "document.querySelector('#report-live table#report').closest('.scroll')"
    assert js(f"return {table_box}.scrollWidth > {table_box}.clientWidth")
    js(f"{table_box}.scrollLeft = 250; window.scrollTo(0, 600); window.notReloaded = true;")
    left, top = js(f"return [{table_box}.scrollLeft, window.scrollY]")
    assert left > 0 and top > 0

    ready = campaign.calls.filter(state=Call.State.READY)
    moved = ready.count()
    assert moved
    ready.update(state=Call.State.DONE, outcome=Call.Outcome.NO_ANSWER)
    WebDriverWait(browser, 15).until(lambda _: progress() != before)
    assert js("return window.notReloaded === true")  # swapped in place, not reloaded
    assert js(f"return [{table_box}.scrollLeft, window.scrollY]") == [left, top]
    assert js("return document.getElementById('refresh-error').textContent") == ""

    # Finished: the next refresh brings the page that no longer refreshes, and it stops there.
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.COMPLETED)
    WebDriverWait(browser, 15).until(lambda _: "Completed" in progress() or "Completed" in js(
        "return document.querySelector('#report-live p').textContent"))
    stamp = js("return document.getElementById('report-live').dataset.refreshedAt")
    assert js("return document.getElementById('report-live').dataset.refreshSeconds") == ""
    time.sleep(2.5)
    assert js("return document.getElementById('report-live').dataset.refreshedAt") == stamp
