"""The admin in Simplified Chinese in a real headless Chromium, for a staff member who chose it (admin → 语言):
the home page, Getting started and the campaign form, read off the rendered pages; screenshots kept under
var/screenshots/ for people to review."""

from __future__ import annotations

import os

import pytest
from django.urls import reverse

from tests.conftest import CHROMIUM, CHROMIUM_MISSING
from tests.test_admin_browser import _screenshot

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=CHROMIUM_MISSING)]


def test_the_admin_in_chinese(live_server, transactional_db, django_user_model, make_campaign, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    django_user_model.objects.create_superuser("ops", "ops@example.test", "correct horse battery")
    campaign = make_campaign(2)
    browser.get(f"{live_server.url}{reverse('admin:login')}?next={reverse('language')}")
    browser.find_element(By.NAME, "username").send_keys("ops")
    browser.find_element(By.NAME, "password").send_keys("correct horse battery")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    Select(browser.find_element(By.NAME, "language")).select_by_value("zh-hans")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    assert "后台现在以简体中文显示。" in browser.find_element(By.CSS_SELECTOR, ".messagelist").text
    assert browser.find_element(By.ID, "language-link").text == "语言: 简体中文"
    assert "快速上手" in browser.find_element(By.ID, "herald-getting-started").text
    _screenshot(browser, "zh-home")

    browser.get(f"{live_server.url}{reverse('getting_started')}")
    steps = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#steps li")]
    assert len(steps) == 7 and steps[0].startswith("✓ 已完成 添加电话账户")
    _screenshot(browser, "zh-getting-started")

    browser.get(f"{live_server.url}{reverse('admin:campaigns_campaign_change', args=[campaign.pk])}")
    headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "fieldset.module h2")]
    assert {"时间安排", "拨号", "自动外呼规则"} <= set(headings), headings
    days = [label.text for label in browser.find_elements(By.CSS_SELECTOR, "#id_weekdays label")]
    assert days[:2] == ["星期一", "星期二"] and days[-1] == "星期日"
    _screenshot(browser, "zh-campaign-form")
