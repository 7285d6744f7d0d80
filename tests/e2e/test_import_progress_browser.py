"""A big CSV import in headless Chromium: while the file is being imported, the page shows how far it got (lines
read, then contacts saved), and then the import's own page as before."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.urls import reverse

from campaigns.models import ContactList
from tests.conftest import CHROMIUM, CHROMIUM_MISSING, headless_chromium

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=CHROMIUM_MISSING)]

ROWS = 50_000
PASSWORD = "correct horse battery"


@pytest.fixture
def watching_browser(tmp_path: Path) -> Iterator:
    """Chromium whose commands do not wait for a page to load: the test reads the import page while it posts."""
    driver = headless_chromium(tmp_path, "--window-size=1400,1100", page_load_strategy="none")
    yield driver
    driver.quit()


def test_a_big_import_shows_its_progress(live_server, watching_browser, django_user_model, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = watching_browser
    wait = WebDriverWait(browser, 30)

    def loaded() -> None:
        wait.until(lambda d: d.execute_script("return document.readyState") == "complete")

    django_user_model.objects.create_superuser("staff", "staff@example.test", PASSWORD)
    contact_list = ContactList.objects.create(name="双十一")
    path = tmp_path / "big.csv"
    path.write_text("手机号,订单号\n" + "".join(f"138{i:08d},SF{i:010d}\n" for i in range(ROWS)), encoding="utf-8")

    browser.get(f"{live_server.url}{reverse('admin:login')}?next={reverse('admin:campaigns_contactlist_import')}")
    loaded()
    browser.find_element(By.NAME, "username").send_keys("staff")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    login = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait.until(lambda d: login.id != d.find_element(By.TAG_NAME, "html").id)
    loaded()
    browser.find_element(By.CSS_SELECTOR, f"select[name='contact_list'] option[value='{contact_list.pk}']").click()
    browser.find_element(By.CSS_SELECTOR, "input[type=file][name='file']").send_keys(str(path))
    assert not browser.find_element(By.ID, "import-progress").is_displayed()
    # The driver waits for a posting page's answer before its next command, so the page notes for the test what
    # its progress box showed (sessionStorage outlives the navigation to the import's own page).
    browser.execute_script("""
        const box = document.getElementById("import-progress"), seen = [];
        const note = () => {
            const bar = box.querySelector("progress");
            const state = [bar.getAttribute("value") || "", box.innerText.trim()];
            if (state[1] && JSON.stringify(seen[seen.length - 1]) !== JSON.stringify(state)) {
                seen.push(state);
                sessionStorage.setItem("progress-seen", JSON.stringify(seen));
            }
        };
        new MutationObserver(note).observe(box, {subtree: true, childList: true, characterData: true, attributes: true});
    """)
    browser.find_element(By.CSS_SELECTOR, "#contact_import_form input[type=submit]").click()
    loaded()
    wait.until(lambda d: "/contactimport/" in d.current_url)
    shown = json.loads(browser.execute_script("return sessionStorage.getItem('progress-seen')") or "[]")
    words = [text for _, text in shown]
    assert words[0] == "Uploading the file…", shown
    reading = [t for t in words if t.startswith("Reading the file: line ")]
    saving = [t for t in words if t.startswith("Saving contacts: ")]
    assert reading or saving, shown  # at least one look while it worked, with its figures
    for text in reading + saving:
        done, total = (int(n.replace(",", "")) for n in re.findall(r"[\d,]+", text)[-2:])
        assert 0 < done <= total and total in (ROWS, ROWS + 1)
    loaded()
    message = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "ul.messagelist li")).text
    assert message == f"Imported big.csv: {ROWS} created, 0 updated, 0 merged, 0 rejected."
    assert contact_list.contacts.count() == ROWS
    print(f"\nimport of {ROWS:,} rows: the page showed {len(words)} states, {words[1]!r} … {words[-1]!r}")
