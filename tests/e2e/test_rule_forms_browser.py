"""The campaign's calling rules set in a real headless Chromium, as operations staff would: weekday checkboxes,
the browser's time pickers, a list of holidays, minutes per outcome and a caller id picked from the account's
numbers; what the browser posts is stored as the model keeps it. Screenshot kept under var/screenshots/."""

from __future__ import annotations

import os

import pytest
from django.urls import reverse

from campaigns.models import Campaign
from campaigns.policy import RETRY_OUTCOMES
from tests.conftest import CHROMIUM, CHROMIUM_MISSING
from tests.test_admin_browser import _screenshot

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=CHROMIUM_MISSING)]


def test_calling_rules_set_in_chromium(live_server, transactional_db, django_user_model, make_campaign, browser):
    from selenium.webdriver.common.by import By

    django_user_model.objects.create_superuser("staff", "staff@example.com", "correct horse battery")
    campaign = make_campaign(3)
    change_path = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    browser.get(f"{live_server.url}{reverse('admin:login')}?next={change_path}")
    browser.find_element(By.NAME, "username").send_keys("staff")
    browser.find_element(By.NAME, "password").send_keys("correct horse battery")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    def field(selector: str):
        return browser.find_element(By.CSS_SELECTOR, selector)

    def set_value(selector: str, value: str) -> None:  # time and number inputs: what the picker would leave
        browser.execute_script("arguments[0].value = arguments[1];", field(selector), value)

    for day in ("5", "6"):  # no calls at the weekend
        box = field(f"input[name='weekdays'][value='{day}']")
        assert box.is_selected()
        box.click()
    set_value("input[name='window_start']", "09:30")
    set_value("input[name='weekday_hours_8']", "10:00")  # Friday
    set_value("input[name='weekday_hours_9']", "17:00")
    field("textarea[name='holidays']").send_keys("2027-01-01\n2027-02-06")
    set_value(f"input[name='retry_policy_{2 * RETRY_OUTCOMES.index('busy')}']", "15")
    field(f"input[name='retry_policy_{2 * RETRY_OUTCOMES.index('failed') + 1}']").click()
    caller = field("input[name='caller_id']")
    assert caller.get_attribute("list") == "herald-caller-ids"
    options = browser.find_elements(By.CSS_SELECTOR, "datalist#herald-caller-ids option")
    assert [o.get_attribute("value") for o in options] == ["+862161234567"]
    _screenshot(browser, "campaign-rules")
    field("input[name='_continue']").click()

    assert not browser.find_elements(By.CSS_SELECTOR, ".errornote, .errorlist"), field("#content").text
    campaign = Campaign.objects.get(pk=campaign.pk)
    assert campaign.weekdays == "01234" and f"{campaign.window_start:%H:%M}" == "09:30"
    assert campaign.weekday_hours == {"4": ["10:00", "17:00"]}
    assert campaign.holidays == ["2027-01-01", "2027-02-06"]
    assert campaign.retry_policy == {"busy": 15, "failed": None}
    # The page shows them again as set.
    assert not field("input[name='weekdays'][value='5']").is_selected()
    assert field("input[name='weekday_hours_8']").get_attribute("value") == "10:00"
