"""A call flow built by hand in the admin's editor, then walked in "walk the call", in a real headless Chromium.

Log in, add a flow with confirm, reschedule, opt-out and repeat keys but no slots (the save names the problem
and keeps the page), add the two slots under the reschedule key, give the flow to a campaign, then open *walk
the call*: the clips are rendered with the embedded eSpeak voice for the campaign's first contact, and the
on-screen keypad walks the flow on the server. The ORM only creates the staff user and the campaign's data
(contacts, voices, account), and checks what the pages say.
"""

from __future__ import annotations

import os
import urllib.request

import pytest

from campaigns.models import CallFlow
from tests.conftest import CHROMIUM, CHROMIUM_MISSING

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=CHROMIUM_MISSING)]

PASSWORD = "correct horse battery"
RESCHEDULE_PROBLEM = "key 2: a reschedule key needs at least one slot under it"


def test_build_a_flow_in_the_editor_and_walk_it(live_server, transactional_db, django_user_model, browser,
                                                 make_campaign, settings):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    settings.PUBLIC_URL = live_server.url
    django_user_model.objects.create_superuser("staff", "staff@example.com", PASSWORD)
    campaign = make_campaign(3)
    first = campaign.contact_list.contacts.order_by("pk").first()
    browser.implicitly_wait(0)  # explicit waits only
    wait = WebDriverWait(browser, 30)

    def find(css: str):
        return wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def load_by(action) -> None:
        page = browser.find_element(By.TAG_NAME, "html")
        action()
        wait.until(EC.staleness_of(page))
        wait.until(lambda d: d.execute_script("return document.readyState") == "complete")

    def click(css: str = "", *, link: str = "") -> None:
        locator = (By.XPATH, f"//a[normalize-space()='{link}']") if link else (By.CSS_SELECTOR, css)
        load_by(wait.until(EC.element_to_be_clickable(locator)).click)

    def type_into(name: str, text: str) -> None:
        field = find(f"[name='{name}']")
        field.clear()
        field.send_keys(text)
        assert field.get_attribute("value") == text

    def choose(name: str, label: str) -> None:
        Select(find(f"select[name='{name}']")).select_by_visible_text(label)

    def messages(level: str) -> list[str]:
        return [li.text for li in browser.find_elements(By.CSS_SELECTOR, f"ul.messagelist li.{level}")]

    def node_row(i: int, key: str, action: str, text: str, under: str = "", **more: str) -> None:
        while not browser.find_elements(By.CSS_SELECTOR, f"[name='nodes-{i}-key']"):
            wait.until(EC.element_to_be_clickable((By.XPATH, "//a[normalize-space()='Add another Key']"))).click()
        choose(f"nodes-{i}-under", under or "the message's menu")
        choose(f"nodes-{i}-key", key)
        choose(f"nodes-{i}-action", action)
        if text:
            type_into(f"nodes-{i}-text", text)
        for name, value in more.items():
            type_into(f"nodes-{i}-{name}", value)

    # 1. Log in, open the call flows and add one.
    browser.get(f"{live_server.url}/admin/")
    type_into("username", "staff")
    type_into("password", PASSWORD)
    click("input[type=submit]")
    find("#site-name")
    flows_link = (By.XPATH, "//th[@scope='row']/a[normalize-space()='Call flows']")
    load_by(wait.until(EC.element_to_be_clickable(flows_link)).click)
    click(link="Add call flow")
    type_into("name", "送货确认")
    type_into("menu_text", "确认请按1，改期请按2，退订请按9，重听请按星号。")
    node_row(0, "1", "Confirm (thank-you clip, end)", "感谢您的确认，{name}。")
    node_row(1, "2", "Reschedule (menu of slots)", "明天上午请按1，明天下午请按2。")
    node_row(2, "9", "Opt out (do-not-call at once, confirmation, end)", "好的，您将不会再接到我们的电话。")
    node_row(3, "*", "Repeat the menu", "")

    # 2. The first save: the reschedule key has no slots yet. Saved, but named as a problem, on the same page.
    click("input[name='_save']")
    assert messages("error") == [RESCHEDULE_PROBLEM.capitalize()], messages("error")  # as the admin shows messages
    assert "no campaign can use it" in messages("warning")[0]
    assert RESCHEDULE_PROBLEM in find("#flow-problems").text
    flow = CallFlow.objects.get(name="送货确认")
    assert browser.current_url.endswith(f"/admin/campaigns/callflow/{flow.pk}/change/")
    assert flow.problems() == [RESCHEDULE_PROBLEM]

    # 3. The two slots under key 2, then a clean save.
    rows = len(browser.find_elements(By.CSS_SELECTOR, "tr.form-row.has_original"))
    assert rows == 4
    node_row(4, "1", "Slot (under a reschedule key: repeats the slot, end)", "已为您改到{slot}。",
             under="reschedule key 2", slot_label="上午", slot_days="1")
    node_row(5, "2", "Slot (under a reschedule key: repeats the slot, end)", "已为您改到{slot}。",
             under="reschedule key 2", slot_label="下午", slot_days="1")
    click("input[name='_continue']")
    assert messages("error") == [] and not browser.find_elements(By.ID, "flow-problems")
    assert any("was changed successfully" in m for m in messages("success")), messages("success")
    assert flow.problems() == []
    assert sorted(n.path for n in flow.nodes.select_related("parent")) == ["*", "1", "2", "2.1", "2.2", "9"]

    # 4. The campaign gets the flow in its own form.
    browser.get(f"{live_server.url}/admin/campaigns/campaign/{campaign.pk}/change/")
    choose("flow", "送货确认")
    click("input[name='_save']")
    assert not browser.find_elements(By.CSS_SELECTOR, ".errornote, .errorlist"), find("#content").text
    campaign.refresh_from_db()
    assert campaign.flow_id == flow.pk

    # 5. Walk the call, from the flow's page: the campaign's first variant and first contact are offered.
    browser.get(f"{live_server.url}/admin/campaigns/callflow/{flow.pk}/change/")
    click("#walk-link")
    assert Select(find("select[name='contact']")).first_selected_option.get_attribute("value") == str(first.pk)
    click("#walk-render")
    assert not browser.find_elements(By.CSS_SELECTOR, ".errornote:not([hidden])"), find("#content").text
    assert find("#walk-path").text == "message"
    assert find("#walk-action").text == "not yet"
    (message,) = browser.find_elements(By.CSS_SELECTOR, "#walk-heard li.walk-clip")
    assert first.name in message.find_element(By.CSS_SELECTOR, ".walk-clip-text").text

    def pressed(key: str, path: str) -> None:
        find(f"#walk-keypad button[data-key='{key}']").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "walk-path"), path))
        assert find("#walk-path").text == path

    pressed("2", "message → 2 Reschedule")
    assert find("#walk-menu").text == "2 Reschedule"
    pressed("5", "message → 2 Reschedule → 2 Reschedule")  # an invalid key: said so, then the slot menu again
    pressed("1", "message → 2 Reschedule → 2 Reschedule → 2.1 Slot")
    action = find("#walk-action").text
    assert action.startswith("Rescheduled: ") and action.endswith("上午"), action
    assert all(not key.is_enabled() for key in browser.find_elements(By.CSS_SELECTOR, "#walk-keypad button"))
    assert not browser.find_element(By.ID, "walk-error").is_displayed()
    heard = [li.get_attribute("data-clip") for li in browser.find_elements(By.CSS_SELECTOR, "#walk-heard li")]
    assert heard == ["message", "2", "invalid", "2", "2.1"]
    slot_text = browser.find_elements(By.CSS_SELECTOR, "#walk-heard li .walk-clip-text")[-1].text
    assert slot_text.startswith("已为您改到") and action.removeprefix("Rescheduled: ") in slot_text

    # Every clip has a playable source: the signed URL answers with audio, and the browser reads its length.
    sources = browser.execute_script("return [...document.querySelectorAll('#walk-heard audio')].map(a => a.src)")
    assert len(sources) == 5 and all(src.startswith(live_server.url) for src in sources), sources
    for src in set(sources):
        with urllib.request.urlopen(src, timeout=10) as response:
            assert response.status == 200 and response.headers["Content-Type"] == "audio/wav"
            assert response.read(4) == b"RIFF"
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#walk-heard audio')].every(a => a.readyState >= 1 && a.duration > 0)"
    ))

    # Again from the start: 9 opts out, and the keypad is done.
    find("#walk-restart").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "walk-action"), "not yet"))
    pressed("9", "message → 9 Opt out")
    assert find("#walk-action").text.startswith("Opted out")
    pressed_repeat = browser.find_element(By.CSS_SELECTOR, "#walk-keypad button[data-key='*']")
    assert not pressed_repeat.is_enabled()
