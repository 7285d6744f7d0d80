"""The whole flow of operations staff, in the Chinese admin, in a real headless Chromium (issue 21's "done when").

A staff member who chose 简体中文 imports a CSV with a repeated number and bad rows, downloads the rejected rows,
fixes and uploads them again, writes a script with a variable the list lacks (caught on save and on the
Preflight page, before launch), fixes it, reads the sample messages, places a test call to their own phone
(through the local Twilio sandbox), launches, watches the dashboard while a real Celery worker renders and
dials, reads the report and downloads every export. Every page on the way is checked for English left in it
(tests/test_untranslated_pages.py's scan) and kept as a screenshot under var/screenshots/ for people to review.

The account and the two voices are set up through the ORM: their forms are walked through in
test_admin_flow_browser.py, and are not what operations staff do each day.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import pytest
import requests
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from campaigns.demo import daytime_zone
from campaigns.dialer import sweep
from campaigns.models import Call, Campaign, Contact, ContactList, ScriptTemplate
from sandbox.twilio import TwilioSandbox
from synthesis.models import RenderedAudio
from telephony.actions import set_auth_token
from telephony.models import TelephonyAccount
from tests.conftest import CHROMIUM, CHROMIUM_MISSING
from tests.test_admin_browser import _screenshot
from tests.test_untranslated_pages import TYPED, untranslated
from tests.wait import wait_until
from voices.models import Voice

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=CHROMIUM_MISSING)]

PASSWORD = "correct horse battery"
STAFF_PHONE = "13912345678"
# Line 4 repeats line 2's number (one call saying both orders); lines 5 and 6 are rejected: a number too short to
# be Chinese, and letters for a number. The time zone column names one where it is early afternoon now: the
# 08:00–21:00 callee-local cap is real, and the test runs at any hour.
CSV_ROWS = [
    ("张三", "13800138000", "SF1001"),
    ("李四", "13900139001", "SF1002"),
    ("张三", "+86 138 0013 8000", "SF1007"),
    ("赵六", "12345", "SF1004"),
    ("钱七", "一三八", "SF1005"),
]
FIXED = {"12345": "13700137002", "一三八": "15000150003"}
SCRIPT_MISSING = "您好{name}，您的订单{订单号}明天送达，应付{金额}元，确认请按1。"
SCRIPT = "您好{name}，您的订单{订单号}明天送达，确认请按1。"


def test_operations_staff_run_a_campaign_in_chinese(
    live_server, celery_worker, django_user_model, browser, tmp_path: Path, twilio_account_credentials, settings
):
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    sid, token = twilio_account_credentials
    sandbox = TwilioSandbox(
        {sid: token}, seed=5, answer=1.0, busy=0, no_answer=0, machine=0, failed=0, digits={"1": 0.6},
        time_scale=0.002,
    ).start()  # fmt: skip
    account = TelephonyAccount.objects.create(
        name="主账户", account_sid=sid, api_base_url=sandbox.url, caller_ids=["+862161234567"],
        calls_per_second=20, max_concurrent_calls=8,
    )  # fmt: skip
    set_auth_token(account, token)
    for name, pitch in (("客服小张", 60), ("客服小李", 35)):
        Voice.objects.create(name=name, parameters={"voice": "cmn", "pitch": pitch})
    django_user_model.objects.create_superuser("运营", "ops@example.test", PASSWORD)

    browser.implicitly_wait(0)
    wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
    pages_seen: dict[str, list[str]] = {}

    def find(css: str):
        return wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def load_by(action) -> None:
        page = browser.find_element(By.TAG_NAME, "html")
        action()
        wait.until(EC.staleness_of(page))
        wait.until(lambda d: d.execute_script("return document.readyState") == "complete")

    def clickable(css: str):
        for attempt in range(3):
            try:
                return wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, css)))
            except WebDriverException as exc:  # Chromium's word for a stale node, which Selenium does not map
                if "does not belong to the document" not in str(exc) or attempt == 2:
                    raise

    def click(css: str) -> None:
        load_by(clickable(css).click)

    def open_page(path: str) -> None:
        browser.get(f"{live_server.url}{path}")
        wait.until(lambda d: d.execute_script("return document.readyState") == "complete")

    def type_into(name: str, text: str) -> None:
        field = find(f"[name='{name}']")
        field.clear()
        field.send_keys(text)

    def pick_time(name: str, value: str) -> None:
        field = find(f"input[type='time'][name='{name}']")
        browser.execute_script("arguments[0].value = arguments[1];", field, value)

    def messages(level: str) -> list[str]:
        return [li.text for li in browser.find_elements(By.CSS_SELECTOR, f"ul.messagelist li.{level}")]

    def reviewed(name: str) -> None:
        """A screenshot for people, and the page's English for the test: none may be left."""
        pages_seen[name] = untranslated(browser.page_source, allowed=frozenset(TYPED.get(name, ())))
        _screenshot(browser, f"zh-flow-{name}")
        browser.set_window_size(1400, 1000)

    def session() -> requests.Session:
        """The browser's login, for downloads (headless Chromium saves files where a test cannot wait on them)."""
        http = requests.Session()
        for cookie in browser.get_cookies():
            http.cookies.set(cookie["name"], cookie["value"])
        return http

    # 1. Log in and choose Chinese (admin → Language).
    browser.set_window_size(1400, 1000)
    open_page(f"{reverse('admin:login')}?next={reverse('language')}")
    type_into("username", "运营")
    type_into("password", PASSWORD)
    click("input[type=submit]")
    Select(find("select[name='language']")).select_by_value("zh-hans")
    click("input[type=submit]")
    assert messages("success") == ["后台现在以简体中文显示。"]
    reviewed("home")

    # 2. A contact list, and the CSV imported into it: one repeated number, two bad rows.
    open_page(reverse("admin:campaigns_contactlist_add"))
    type_into("name", "今晚的订单")
    type_into("default_region", "CN")
    click("input[name='_continue']")
    contact_list = ContactList.objects.get(name="今晚的订单")
    click(f"a[href^='{reverse('admin:campaigns_contactlist_import')}']")
    assert Select(find("select[name='contact_list']")).first_selected_option.text == "今晚的订单"
    assert find("input[name='duplicates'][value='combine']").is_selected()  # one call per number, every order said
    reviewed("import")
    upload = tmp_path / "订单.csv"
    tz = daytime_zone(timezone.now())
    lines = ["姓名,手机号,订单号,时区", *(f"{name},{phone},{order},{tz}" for name, phone, order in CSV_ROWS)]
    upload.write_bytes(("\r\n".join(lines) + "\r\n").encode("gbk"))  # as Excel on Chinese Windows saves it
    find("input[type=file][name='file']").send_keys(str(upload))
    click("form[enctype] input[type=submit]")
    assert messages("warning") == ["已导入 订单.csv：新建 2 条，更新 0 条，合并 1 条，拒绝 2 条。"], messages("warning")
    merged = [tr.text for tr in browser.find_elements(By.CSS_SELECTOR, "#merged-rows tbody tr")]
    assert len(merged) == 1 and "SF1007" in merged[0], merged
    rejected = browser.find_elements(By.CSS_SELECTOR, "#rejected-rows tbody tr")
    assert len(rejected) == 2
    reviewed("import-record")
    assert Contact.objects.get(contact_list=contact_list, phone="+8613800138000").fields["订单号"] == "SF1001、SF1007"

    # 3. The rejected rows downloaded, fixed as one would in Excel, and uploaded again.
    download = session().get(find("a#rejected-csv").get_attribute("href"), timeout=10)
    assert download.status_code == 200 and download.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(download.content.decode("utf-8-sig"))))
    assert rows[0] == ["rejected_reason", "姓名", "手机号", "订单号", "时区"] and len(rows) == 3
    fixed = tmp_path / "订单-改.csv"
    with fixed.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(rows[0])
        for reason, name, phone, order, zone in rows[1:]:
            assert reason  # each row says why it was refused
            writer.writerow(["", name, FIXED[phone], order, zone])
    open_page(reverse("admin:campaigns_contactlist_import") + f"?contact_list={contact_list.pk}")
    Select(find("select[name='contact_list']")).select_by_visible_text("今晚的订单")
    find("input[type=file][name='file']").send_keys(str(fixed))
    click("form[enctype] input[type=submit]")
    assert messages("success") == ["已导入 订单-改.csv：新建 2 条，更新 0 条，合并 0 条，拒绝 0 条。"], messages("success")
    assert contact_list.contacts.count() == 4

    # 4. A script that uses a column the list lacks ({金额}): the campaign's save refuses it, before any launch.
    open_page(reverse("admin:campaigns_scripttemplate_add"))
    type_into("name", "到货通知")
    type_into("text", SCRIPT_MISSING)
    click("input[name='_save']")
    script = ScriptTemplate.objects.get()
    open_page(reverse("admin:campaigns_campaign_add"))
    reviewed("campaign-form")
    type_into("name", "到货通知 A/B")
    Select(find("select[name='contact_list']")).select_by_visible_text("今晚的订单")
    Select(find("select[name='telephony_account']")).select_by_visible_text(str(account))
    type_into("caller_id", "+862161234567")
    pick_time("window_start", "00:00")
    pick_time("window_end", "23:59")
    for row, voice in enumerate(("客服小张", "客服小李")):
        if row:
            find("tr.add-row a, .add-row a").click()
        type_into(f"variants-{row}-name", "AB"[row])
        Select(find(f"select[name='variants-{row}-voice']")).select_by_visible_text(voice)
        Select(find(f"select[name='variants-{row}-script']")).select_by_visible_text("到货通知")
        type_into(f"variants-{row}-weight", "1")
    click("input[name='_continue']")
    # Refused on save: no contact could hear the message. The form keeps what was typed.
    assert "请更正以下错误" in find("p.errornote").text
    error = find(".inline-group .errorlist, .errorlist.nonform").text
    assert "{金额}" in error and "不是名单中的列" in error and "全部 4 个联系人" in error, error
    assert not Campaign.objects.exists()
    reviewed("campaign-missing-variable")

    # The script fixed in a tab of its own, then the same form saved again.
    form_tab = browser.current_window_handle
    browser.switch_to.new_window("tab")
    open_page(reverse("admin:campaigns_scripttemplate_change", args=[script.pk]))
    type_into("text", SCRIPT)
    click("input[name='_save']")
    assert messages("success"), messages("error")
    browser.close()
    browser.switch_to.window(form_tab)
    click("input[name='_continue']")
    errors = [e.find_element(By.XPATH, "..").text for e in browser.find_elements(By.CSS_SELECTOR, ".errorlist")]
    assert not browser.find_elements(By.CSS_SELECTOR, ".errornote"), errors
    campaign = Campaign.objects.get()
    click(f".object-tools a[href='{reverse('admin:campaigns_campaign_preflight', args=[campaign.pk])}']")
    assert not browser.find_elements(By.CSS_SELECTOR, "#gaps")
    assert find("#planned").text == "4"
    samples = [tr.text for tr in browser.find_elements(By.CSS_SELECTOR, "#samples tbody tr")]
    assert any("张三" in s and "您的订单SF1001、SF1007明天送达" in s for s in samples), samples

    # 5. A test call to the staff member's own phone: rendered first by the worker, then placed.
    type_into("number", STAFF_PHONE)
    click("#test-call input[type=submit]")
    assert messages("error") and "正在合成" in messages("error")[0], messages("error")
    wait_until(lambda: not RenderedAudio.objects.exclude(state=RenderedAudio.State.READY).exists(),
               "the test call's audio to be rendered", timeout=120, interval=0.5)  # fmt: skip
    type_into("number", STAFF_PHONE)
    click("#test-call input[type=submit]")
    assert messages("success") and "+86139****5678" in messages("success")[0], messages("success") + messages("error")
    assert sandbox.wait_idle(20)
    assert [c["to"] for c in sandbox.calls()] == ["+8613912345678"]
    reviewed("preflight")

    # 6. Launch from the list of campaigns.
    open_page(reverse("admin:campaigns_campaign_changelist"))
    find(f"input.action-select[value='{campaign.pk}']").click()
    Select(find("select[name='action']")).select_by_value("launch")
    click("button[name='index']")
    assert messages("error") == [] and messages("success"), messages("error")
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING and campaign.calls.count() == 4

    # 7. The dashboard while the worker renders and dials (what beat does, the sweep, runs here).
    open_page(reverse("dashboard"))
    reviewed("dashboard-running")

    def completed() -> bool:
        sweep()
        campaign.refresh_from_db()
        assert celery_worker.poll() is None, celery_worker.log_path.read_text()[-3000:]
        return campaign.status == Campaign.Status.COMPLETED

    wait_until(completed, lambda: f"the campaign to complete: {list(campaign.calls.values_list('state', flat=True))}",
               timeout=180, interval=0.3)  # fmt: skip
    assert sandbox.wait_idle(20)
    assert not campaign.calls.exclude(state=Call.State.DONE).exists()
    open_page(reverse("dashboard"))
    reviewed("dashboard")

    # 8. The report, its hours, and every download they offer.
    open_page(reverse("admin:campaigns_campaign_report", args=[campaign.pk]))
    find("table#report")
    assert "已完成" in find("#report-live > p strong").text
    reviewed("report")
    downloads = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, ".object-tools a")]
    click(f".object-tools a[href='{reverse('admin:campaigns_campaign_heatmap', args=[campaign.pk])}']")
    find("table#heatmap")
    reviewed("hours")
    downloads += [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, ".object-tools a")]
    open_page(reverse("admin:voices_voice_report"))  # the voices across campaigns, and their downloads
    find("#content-main table")
    reviewed("voices-report")
    downloads += [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, ".object-tools a")]
    exports = sorted({url for url in downloads if ".csv" in url or "xlsx" in url or "format=" in url})
    assert len(exports) >= 6, exports
    http = session()
    for url in exports:
        response = http.get(url, timeout=10)
        assert response.status_code == 200, url
        if "xlsx" in url:
            sheet = load_workbook(io.BytesIO(response.content)).active
            assert sheet.max_row > 1, url
            header = [cell.value for cell in sheet[1]]
        else:
            lines = response.content.decode("utf-8-sig").splitlines()
            assert len(lines) > 1, url
            header = next(csv.reader(lines[:1]))
        assert not [name for name in header if re.search(r"[a-z]+_[a-z_]+", name)], (url, header)  # named in Chinese
    open_page(reverse("admin:campaigns_call_log", args=[campaign.calls.order_by("pk")[0].pk]))
    reviewed("call-log")

    assert {name: left for name, left in pages_seen.items() if left} == {}
