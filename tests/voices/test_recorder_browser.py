"""The browser recorder in a real headless Chromium with its fake microphone: record, stop, and the file input
holds a 16-bit PCM WAV of the recording that an ordinary form would upload.

The page is a tiny static one served from the test on http://127.0.0.1 (a secure context, as getUserMedia
needs), with the recorder script copied next to it.
"""

from __future__ import annotations

import base64
import functools
import io
import os
import shutil
import struct
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import soundfile as sf

from tests.conftest import CHROMIUM, CHROMIUM_MISSING

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=CHROMIUM_MISSING)]

RECORDER_JS = Path(__file__).resolve().parents[2] / "voices" / "static" / "voices" / "recorder.js"
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>recorder</title></head><body>
<form id="form" method="post" enctype="multipart/form-data">
  <input type="file" id="id_audio" name="audio" accept="audio/wav">
  <div class="herald-recorder" data-input="id_audio" data-max-seconds="MAX_SECONDS"></div>
</form>
<script>
  window.changes = 0;
  document.getElementById("id_audio").addEventListener("change", function () { window.changes += 1; });
</script>
<script src="recorder.js"></script>
</body></html>
"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test's output is for the test's findings
        pass


@pytest.fixture
def page_url(tmp_path: Path) -> Iterator[str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(PAGE.replace("MAX_SECONDS", "120"), encoding="utf-8")
    (site / "short.html").write_text(PAGE.replace("MAX_SECONDS", "1"), encoding="utf-8")
    shutil.copy(RECORDER_JS, site / "recorder.js")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    server.server_close()


def _wait_for_state(driver, root, state: str, timeout: float = 15.0) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda _: root.get_attribute("data-state") in (state, "error"))
    assert root.get_attribute("data-state") == state, driver.find_element(
        "css selector", ".herald-status"
    ).text


def test_recording_puts_a_pcm_wav_of_the_right_length_into_the_file_input(
    chromium_with_fake_microphone, page_url
):
    driver = chromium_with_fake_microphone
    driver.get(page_url)
    root = driver.find_element("css selector", ".herald-recorder")
    record = root.find_element("css selector", "button.herald-record")
    stop = root.find_element("css selector", "button.herald-stop")
    assert (record.text, stop.text, stop.get_attribute("disabled")) == ("Record", "Stop", "true")

    record.click()
    _wait_for_state(driver, root, "recording")
    time.sleep(1.5)  # let it record; what is checked below is the length it reports, not this sleep
    assert root.find_element("css selector", ".herald-time").text in {"0:01", "0:02"}
    stop.click()
    _wait_for_state(driver, root, "done")

    seconds = float(root.get_attribute("data-seconds"))
    assert 1.0 <= seconds <= 5.0
    found = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const input = document.getElementById("id_audio");
        const file = input.files[0];
        const bytes = new Uint8Array(await file.arrayBuffer());
        let text = "";
        for (let i = 0; i < bytes.length; i += 8192) text += String.fromCharCode(...bytes.subarray(i, i + 8192));
        done({count: input.files.length, name: file.name, type: file.type, data: btoa(text),
              changes: window.changes, preview: document.querySelector(".herald-preview").src});
        """
    )
    assert found["count"] == 1 and found["changes"] == 1
    assert found["name"].startswith("recording-") and found["name"].endswith(".wav")
    assert found["type"] == "audio/wav" and found["preview"].startswith("blob:")

    data = base64.b64decode(found["data"])
    riff, size, wave, fmt, fmt_size, pcm, channels, rate, byte_rate, align, bits = struct.unpack(
        "<4sI4s4sIHHIIHH", data[:36]
    )
    assert (riff, wave, fmt, fmt_size, pcm, channels, bits) == (b"RIFF", b"WAVE", b"fmt ", 16, 1, 1, 16)
    assert size == len(data) - 8 and byte_rate == 2 * rate and align == 2
    assert 8000 <= rate <= 96000
    assert data[36:40] == b"data"
    (data_size,) = struct.unpack("<I", data[40:44])
    assert data_size == len(data) - 44
    frames = data_size // 2
    assert frames / rate == pytest.approx(seconds, abs=0.001)

    samples, read_rate = sf.read(io.BytesIO(data), dtype="int16")
    assert read_rate == rate and samples.shape == (frames,)
    assert abs(samples).max() > 100  # the fake microphone's beeps are in it, not silence


def test_recording_stops_by_itself_at_the_maximum_length(chromium_with_fake_microphone, page_url):
    driver = chromium_with_fake_microphone
    driver.get(page_url.replace("index.html", "short.html"))
    root = driver.find_element("css selector", ".herald-recorder")
    root.find_element("css selector", "button.herald-record").click()
    _wait_for_state(driver, root, "done")  # nobody presses Stop
    assert 1.0 <= float(root.get_attribute("data-seconds")) < 1.1
    assert driver.execute_script("return document.getElementById('id_audio').files.length") == 1
    assert root.find_element("css selector", "button.herald-stop").get_attribute("disabled") == "true"
