"""The whole manual flow in the admin, in a real headless Chromium: a person can do it all by hand.

Log in, create a contact list and import a GBK CSV into it, write a script (after a rejected one), add two
embedded voices and a Twilio account, set up an A/B campaign, launch it from the changelist and read its
report. Every step is clicks and typing on the real admin pages served by `live_server`; the ORM is used only
to create the superuser and to check what the pages say against the database. No worker runs, so the planned
calls stay "Waiting for audio"; the render tasks the launch would queue are captured instead of sent to Redis
(where another test run's worker could pick them up).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from campaigns.models import Call, Campaign, Contact, ContactImport, ContactList, ScriptTemplate
from synthesis import tasks as synthesis_tasks
from telephony.credentials import auth_token
from telephony.models import TelephonyAccount
from tests.conftest import CHROMIUM, CHROMIUM_MISSING
from voices.models import Voice

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=CHROMIUM_MISSING)]

PASSWORD = "correct horse battery"
LIST_NAME = "华东客户 11月"
GOOD_SCRIPT = "您好{name}，您的订单{订单号}明天送达，确认请按1。"
BAD_SCRIPT = "您好{name}，您的订单{订单号:bogus}明天送达，确认请按1。"
TOKEN = "f" * 32
# Line 1 is the header. Line 5 has a number too short to be Chinese; line 8 repeats line 2's number written
# differently (merged into it). The other five lines become contacts.
CSV_LINES = [
    "姓名,手机号,订单号",
    "张三,13800138000,SF1001",
    "李四,13900139001,SF1002",
    "王五,13700137002,SF1003",
    "赵六,12345,SF1004",
    "孙七,15000150003,SF1005",
    "周八,+86 186 0018 6004,SF1006",
    "张三,+86 138 0013 8000,SF1007",
]
VALID_CONTACTS = 5


def test_whole_flow_by_hand_in_the_admin(
    live_server, transactional_db, django_user_model, browser, tmp_path: Path, monkeypatch, settings
):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    settings.TWILIO_SANDBOX = True  # the account below talks to a local sandbox, as on a demo machine
    queued_renders: list[list[str]] = []
    monkeypatch.setattr(synthesis_tasks.render_batch, "delay", queued_renders.append)
    django_user_model.objects.create_superuser("staff", "staff@example.com", PASSWORD)
    browser.implicitly_wait(0)  # explicit waits only: mixing both makes wait times unpredictable
    wait = WebDriverWait(browser, 15)

    def find(css: str):
        return wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def load_by(action) -> None:
        """Do what navigates (a click, a submit) and wait until the next page has replaced this one."""
        page = browser.find_element(By.TAG_NAME, "html")
        action()
        wait.until(EC.staleness_of(page))
        wait.until(lambda d: d.execute_script("return document.readyState") == "complete")

    def link_to(text: str) -> tuple[str, str]:
        # By the text in the page source: object-tool buttons are upper-cased by CSS, which LINK_TEXT sees.
        return (By.XPATH, f"//a[normalize-space()='{text}']")

    def click(css: str = "", *, link: str = "") -> None:
        locator = link_to(link) if link else (By.CSS_SELECTOR, css)
        element = wait.until(EC.element_to_be_clickable(locator))
        load_by(element.click)

    def type_into(name: str, text: str) -> None:
        field = find(f"[name='{name}']")
        field.clear()
        field.send_keys(text)
        assert field.get_attribute("value") == text, (
            f"{name}: typed {text!r}, field holds {field.get_attribute('value')!r}"
        )

    def pick_time(name: str, value: str) -> None:  # the browser's time picker, as a choice in it leaves it
        field = find(f"input[type='time'][name='{name}']")
        browser.execute_script("arguments[0].value = arguments[1];", field, value)
        assert field.get_attribute("value") == value, f"{name}: picked {value!r}, holds {field.get_attribute('value')!r}"

    def choose(name: str, label: str) -> None:
        Select(find(f"select[name='{name}']")).select_by_visible_text(label)

    def messages(level: str) -> list[str]:
        return [li.text for li in browser.find_elements(By.CSS_SELECTOR, f"ul.messagelist li.{level}")]

    def go_to(model: str) -> None:
        """Home through the breadcrumbs, then the model's changelist by its name in the index's app list."""
        if browser.find_elements(By.CSS_SELECTOR, "div.breadcrumbs"):  # the index itself has none
            click(link="Home")
        row_link = (By.XPATH, f"//th[@scope='row']/a[normalize-space()='{model}']")  # not the app's heading
        load_by(wait.until(EC.element_to_be_clickable(row_link)).click)

    def save() -> None:
        click("input[name='_save']")

    # 1. Log in through the admin's login form.
    browser.get(f"{live_server.url}/admin/")
    assert "/admin/login/" in browser.current_url
    type_into("username", "staff")
    type_into("password", PASSWORD)
    click("input[type=submit]")
    find("#site-name")

    # 2. A contact list, then a GBK CSV imported into it from the list's own "Import CSV" button.
    go_to("Contact lists")
    click(link="Add contact list")
    type_into("name", LIST_NAME)
    type_into("default_region", "CN")
    click("input[name='_continue']")
    assert any("was added successfully" in m for m in messages("success")), messages("success")
    click(link="Import CSV")
    assert Select(find("select[name='contact_list']")).first_selected_option.text == LIST_NAME
    csv_path = tmp_path / "客户名单.csv"
    csv_path.write_bytes(("\r\n".join(CSV_LINES) + "\r\n").encode("gbk"))  # as Excel on Chinese Windows saves
    find("input[type=file][name='file']").send_keys(str(csv_path))
    click("#contact_import_form input[type=submit]")

    assert messages("warning") == [
        f"Imported {csv_path.name}: {VALID_CONTACTS} created, 0 updated, 1 merged, 1 rejected."
    ], messages("warning") + messages("error")
    readonly = {
        row.find_element(By.TAG_NAME, "label").text.rstrip(":"): row.find_element(
            By.CSS_SELECTOR, ".readonly"
        ).text
        for row in browser.find_elements(By.CSS_SELECTOR, "fieldset .form-row")
    }
    assert readonly["Contact list"] == LIST_NAME
    assert readonly["Encoding"] == "gb18030"
    assert (
        readonly["Total rows"],
        readonly["Created"],
        readonly["Updated"],
        readonly["Merged"],
        readonly["Rejected"],
    ) == ("7", "5", "0", "1", "1"), readonly
    assert find("#rejected-rows h2").text == "Rejected rows (1)"
    rejected = [
        [cell.text for cell in tr.find_elements(By.TAG_NAME, "td")]
        for tr in browser.find_elements(By.CSS_SELECTOR, "#rejected-rows tbody tr")
    ]
    assert len(rejected) == 1
    line, reason, raw = rejected[0]
    assert line == "5" and raw == "赵六,12345,SF1004"
    assert "12345" in reason and "missing its area code" in reason, reason

    contact_list = ContactList.objects.get(name=LIST_NAME)
    assert contact_list.default_region == "CN"
    assert ContactImport.objects.get().created == VALID_CONTACTS
    contacts = {c.phone: c for c in Contact.objects.filter(contact_list=contact_list)}
    assert len(contacts) == VALID_CONTACTS
    assert (
        contacts["+8613800138000"].name == "张三" and contacts["+8618600186004"].timezone == "Asia/Shanghai"
    )

    # 3. A script: a form error for the unknown hint first, then the good text saved.
    go_to("Script templates")
    click(link="Add script template")
    type_into("name", "到货通知")
    type_into("text", BAD_SCRIPT)
    save()
    assert "Please correct the error below." in find("p.errornote").text
    error = find(".field-text ul.errorlist").text
    assert "unknown hint 'bogus'" in error and "known hints:" in error, error
    assert not ScriptTemplate.objects.exists()
    assert find("input[name='name']").get_attribute("value") == "到货通知"  # the rejected form kept the name
    type_into("text", GOOD_SCRIPT)
    save()
    assert any("到货通知" in m and "was added successfully" in m for m in messages("success")), messages(
        "success"
    )
    assert ScriptTemplate.objects.get().text == GOOD_SCRIPT

    # 4. Two embedded (eSpeak NG) voices that differ in pitch.
    for name, pitch in (("普通话-高", 60), ("普通话-低", 35)):
        go_to("Voices")
        click(link="Add voice")
        type_into("name", name)
        choose("engine", "Embedded (eSpeak NG)")
        type_into("parameters", f'{{"voice": "cmn", "pitch": {pitch}}}')
        save()
        assert any(name in m and "was added successfully" in m for m in messages("success")), messages(
            "success"
        )
    assert {v.name: v.parameters for v in Voice.objects.all()} == {
        "普通话-高": {"voice": "cmn", "pitch": 60},
        "普通话-低": {"voice": "cmn", "pitch": 35},
    }
    assert all(not v.needs_consent for v in Voice.objects.all())

    # 5. A Twilio account; the token goes into the write-only field and is never shown again.
    go_to("Telephony accounts")
    click(link="Add telephony account")
    type_into("name", "twilio-cn")
    choose("kind", "Twilio")
    type_into("account_sid", "AC" + "0123456789abcdef" * 2)
    token_field = find("input[name='auth_token']")
    assert token_field.get_attribute("type") == "password"
    type_into("auth_token", TOKEN)
    type_into("api_base_url", "http://127.0.0.1:9")
    type_into("caller_ids", '["+862161234567"]')
    click("input[name='_continue']")
    assert any("was added successfully" in m for m in messages("success")), messages("success")
    assert find("input[name='auth_token']").get_attribute("value") == ""
    assert TOKEN not in browser.page_source
    assert find(".field-token_source .readonly").text == "stored (encrypted)"
    account = TelephonyAccount.objects.get()
    assert (account.api_base_url, account.caller_ids) == ("http://127.0.0.1:9", ["+862161234567"])
    assert auth_token(account) == TOKEN and TOKEN not in account.auth_token_encrypted

    # 6. The campaign with an A and a B variant (the second inline row added with "Add another Variant").
    go_to("Campaigns")
    click(link="Add campaign")
    type_into("name", "到货通知 A/B")
    choose("contact_list", LIST_NAME)
    choose("telephony_account", str(account))
    type_into("caller_id", "+862161234567")
    pick_time("window_start", "00:00")  # the 08:00–21:00 local cap is applied by the dialler, not the form
    pick_time("window_end", "23:59")
    type_into("variants-0-name", "A")
    choose("variants-0-voice", "普通话-高")
    choose("variants-0-script", "到货通知")
    type_into("variants-0-weight", "1")
    add_row = wait.until(EC.element_to_be_clickable(link_to("Add another Variant")))
    add_row.click()
    type_into("variants-1-name", "B")
    choose("variants-1-voice", "普通话-低")
    choose("variants-1-script", "到货通知")
    type_into("variants-1-weight", "1")
    save()
    assert not browser.find_elements(By.CSS_SELECTOR, ".errornote, .errorlist"), browser.find_element(
        By.ID, "content"
    ).text
    assert any("was added successfully" in m for m in messages("success")), messages("success")
    campaign = Campaign.objects.get()
    assert campaign.status == Campaign.Status.DRAFT and campaign.created_by.username == "staff"
    assert [(v.name, v.voice.name, v.script.name, v.weight) for v in campaign.variants.all()] == [
        ("A", "普通话-高", "到货通知", 1),
        ("B", "普通话-低", "到货通知", 1),
    ]

    # 7. Launch from the changelist's action menu, then read the report.
    row = find(f"#result_list tr:has(input.action-select[value='{campaign.pk}'])")
    row.find_element(By.CSS_SELECTOR, "input.action-select").click()
    Select(find("select[name='action']")).select_by_visible_text("Launch selected campaigns")
    click("button[name='index']")
    assert messages("error") == []
    assert messages("success") == [f"{campaign.name}: launched, {VALID_CONTACTS} calls planned."]
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    assert Call.objects.filter(campaign=campaign, state=Call.State.RENDERING).count() == VALID_CONTACTS
    assert sorted(key for batch in queued_renders for key in batch) == sorted(
        Call.objects.filter(campaign=campaign).values_list("audio_id", flat=True)
    )
    calls_per_variant = {
        name: Call.objects.filter(campaign=campaign, variant__name=name).count() for name in ("A", "B")
    }

    row = find(f"#result_list tr:has(input.action-select[value='{campaign.pk}'])")
    assert "Running" in row.text
    assert f"0/{VALID_CONTACTS} done" in row.text
    load_by(row.find_element(By.XPATH, ".//a[normalize-space()='Report']").click)

    def read_report(driver):
        """The report as text, read in one go: the running report reloads itself every few seconds."""
        progress = {
            tr.find_element(By.CSS_SELECTOR, "td:first-child").text: tr.find_element(
                By.CSS_SELECTOR, "td.num"
            ).text
            for tr in driver.find_elements(By.CSS_SELECTOR, "table#progress tbody tr")
        }
        headings = [  # the source text: the admin's CSS upper-cases table headings
            th.get_attribute("textContent").strip()
            for th in driver.find_elements(By.CSS_SELECTOR, "table#report thead tr:not(.groups) th")
        ]
        # The figure of each cell (its first text node: a rate's interval is a span after it), from the DOM,
        # since columns scrolled out of the table's box are not "displayed" text to WebDriver.
        results = driver.execute_script(
            "return [...document.querySelectorAll('table#report tbody tr')].map(tr =>"
            " [...tr.children].map(cell => (cell.firstChild ? cell.firstChild.textContent : '').trim()))"
        )
        status = driver.find_element(By.CSS_SELECTOR, "#report-live > p strong").text
        return (progress, headings, results, status) if progress and results else False

    progress, headings, results, status = WebDriverWait(
        browser, 15, ignored_exceptions=[StaleElementReferenceException]
    ).until(read_report)
    assert browser.title.startswith(f"Report: {campaign.name}")
    assert status == "Running"
    assert progress["Waiting for audio"] == str(VALID_CONTACTS)
    assert all(count == "0" for state, count in progress.items() if state != "Waiting for audio"), progress
    column = {heading: i for i, heading in enumerate(headings)}
    by_label = {line[0]: line for line in results}
    assert list(by_label) == ["All variants", "A", "B"]
    assert by_label["All variants"][column["Calls"]] == str(VALID_CONTACTS)
    assert by_label["All variants"][column["Pending"]] == str(VALID_CONTACTS)
    assert by_label["All variants"][column["Done"]] == "0"
    for name, voice in (("A", "普通话-高"), ("B", "普通话-低")):
        assert by_label[name][column["Voice"]] == voice and by_label[name][column["Script"]] == "到货通知"
        assert by_label[name][column["Calls"]] == str(calls_per_variant[name])
        assert by_label[name][column["Answer rate"]] == "—"

    screenshot = tmp_path / "campaign-report-after-launch.png"

    def screenshot_of_one_page(driver) -> bool:
        """A full-height screenshot, taken again if the page's own refresh replaced it meanwhile."""
        page = driver.find_element(By.TAG_NAME, "html")
        driver.set_window_size(1400, driver.execute_script("return document.body.scrollHeight") + 120)
        return driver.save_screenshot(str(screenshot)) and not EC.staleness_of(page)(driver)

    WebDriverWait(browser, 15, ignored_exceptions=[StaleElementReferenceException]).until(
        screenshot_of_one_page
    )
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 20_000
