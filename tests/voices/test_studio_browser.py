"""The voice studio page in headless Chromium: the agent records in the browser, the recording is uploaded by
the page's own form, and the page shows what became of it."""

from __future__ import annotations

import os
import time

import pytest
from django.urls import reverse

from tests.conftest import CHROMIUM, CHROMIUM_MISSING
from voices.models import VoiceDraft

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=CHROMIUM_MISSING)]


def test_a_recording_made_in_the_studio_page_is_uploaded_and_listed(
    live_server, transactional_db, django_user_model, chromium_with_fake_microphone, settings, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    settings.MEDIA_ROOT = str(tmp_path / "media")
    django_user_model.objects.create_superuser("staff", "staff@example.com", "correct horse battery")
    draft = VoiceDraft.objects.create(name="客服李娜", speaker_name="李娜", company="顺达快递")
    studio = reverse("admin:voices_voicedraft_change", args=[draft.pk])
    driver = chromium_with_fake_microphone
    driver.get(f"{live_server.url}{reverse('admin:login')}?next={studio}")
    driver.find_element(By.NAME, "username").send_keys("staff")
    driver.find_element(By.NAME, "password").send_keys("correct horse battery")
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(driver, 15).until(lambda d: d.current_url == f"{live_server.url}{studio}")
    assert "1. Speech" in driver.find_element(By.ID, "recordings").text

    recorder = driver.find_element(By.CSS_SELECTOR, "#recordings .herald-recorder")
    recorder.find_element(By.CSS_SELECTOR, "button.herald-record").click()
    WebDriverWait(driver, 15).until(lambda _: recorder.get_attribute("data-state") == "recording")
    time.sleep(2.5)  # Chromium's fake microphone plays its test beeps meanwhile
    recorder.find_element(By.CSS_SELECTOR, "button.herald-stop").click()
    WebDriverWait(driver, 15).until(lambda _: recorder.get_attribute("data-state") == "done")
    seconds = float(recorder.get_attribute("data-seconds"))
    driver.find_element(By.CSS_SELECTOR, "#recordings input[type=submit]").click()

    WebDriverWait(driver, 30).until(lambda _: draft.recordings.exists())
    recording = draft.recordings.get()
    assert recording.original_name.startswith("recording-") and recording.original_name.endswith(".wav")
    assert abs(recording.duration_s - seconds) < 0.1  # the whole recording arrived, decoded at its length
    listed = driver.find_element(By.ID, "recordings").text
    assert recording.original_name in listed and f"{recording.duration_s:.1f} s" in listed
    # Beeps are not speech: either the checks' verdict is on the page, in words, or the beeps gave clips.
    assert (recording.problem in listed) if recording.problem else draft.clips.exists()
