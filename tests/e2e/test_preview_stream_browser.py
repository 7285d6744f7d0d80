"""The voice preview's "Listen as it is made" in headless Chromium: a real synthesis worker says the sentence and
the page's player plays it as it arrives; a sentence that cannot be said shows why under the player."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.urls import reverse

from tests.conftest import CHROMIUM, CHROMIUM_MISSING, headless_chromium
from voices.models import Voice

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=CHROMIUM_MISSING)]

PASSWORD = "correct horse battery"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:
    driver = headless_chromium(tmp_path, "--window-size=1400,1000", "--autoplay-policy=no-user-gesture-required")
    yield driver
    driver.quit()


def test_listening_as_it_is_made_plays_the_streamed_sentence(live_server, celery_worker, browser, django_user_model,
                                                             settings):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    settings.TTS_WAIT_SECONDS = 30.0
    wait = WebDriverWait(browser, 60)
    django_user_model.objects.create_superuser("staff", "staff@example.test", PASSWORD)
    robot = Voice.objects.create(name="Robot", language="en", engine="embedded")
    page = reverse("admin:voices_voice_preview", args=[robot.pk])
    browser.get(f"{live_server.url}{reverse('admin:login')}?next={page}")
    browser.find_element(By.NAME, "username").send_keys("staff")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait.until(lambda d: d.find_elements(By.ID, "preview-stream"))
    assert not browser.find_elements(By.TAG_NAME, "audio")  # no player before anything is asked

    text = browser.find_element(By.NAME, "text")
    text.clear()
    text.send_keys("Your parcel arrives tomorrow. Press one to confirm.")
    browser.find_element(By.ID, "preview-stream").click()
    # The player starts on the streamed WAV and plays through it: its clock moves, no media error.
    wait.until(lambda d: d.execute_script(
        "const a = document.getElementById('preview-stream-audio'); return a && (a.error || a.currentTime > 0.5)"))
    state = browser.execute_script(
        "const a = document.getElementById('preview-stream-audio'); return [a.error && a.error.code, a.currentTime,"
        " a.src]")
    assert state[0] is None and state[1] > 0.5, state
    assert "/preview/stream/?text=Your%20parcel" in state[2]

    text.clear()  # nothing to say: the reason under the player, from the same URL
    browser.find_element(By.ID, "preview-stream").click()
    problem = wait.until(lambda d: d.find_element(By.ID, "preview-stream-problem").text)
    assert problem == "Type a sentence of 1 to 500 characters to hear."
