"""Operators' carrier announcements in the admin: each upload checked as the matcher will use it, the library the
SIP calls listen for rebuilt when clips change, and a clip uploaded here recognised in a call."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from telephony import announcements
from telephony.models import CarrierAnnouncement
from telephony.providers.base import Dial
from telephony.providers.sip import SipProvider
from telephony.sip.types import NO_ANSWER
from tests.telephony.conftest import CALLER_ID, PHONE
from tests.telephony.sip.test_announce import CLIPS, at_level, noisy, silence, speech
from tests.telephony.sip.test_carrier_announcements import dial
from tests.telephony.test_sip_provider import account, audio  # noqa: F401

pytestmark = pytest.mark.django_db


def wav_bytes(samples: np.ndarray, rate: int = 8000, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        data = np.repeat(samples, channels) if channels > 1 else samples
        f.writeframes(np.clip(np.round(data), -32768, 32767).astype("<i2").tobytes())
    return out.getvalue()


def upload(admin_client, name: str, data: bytes, outcome: str = "powered_off", **fields):
    from django.core.files.uploadedfile import SimpleUploadedFile

    form = {"name": name, "carrier": "China Mobile", "outcome": outcome, "enabled": "on",
            "audio": SimpleUploadedFile(f"{name}.wav", data, content_type="audio/wav")} | fields  # fmt: skip
    return admin_client.post("/admin/telephony/carrierannouncement/add/", form)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.ANNOUNCEMENT_DIR = ""
    announcements._cache = None


def test_an_uploaded_announcement_is_recognised_in_a_call(admin_client, account, audio, settings):  # noqa: F811
    response = upload(admin_client, "cmcc/powered-off", wav_bytes(speech(CLIPS["powered_off"])))
    assert response.status_code == 302, response.content.decode()[-2000:]
    clip = CarrierAnnouncement.objects.get()
    assert 1.5 < clip.seconds < 5 and clip.outcome == "powered_off"

    dial_ = Dial(attempt_id=1, to=PHONE, caller_id=CALLER_ID, audio_url="",
                 audio_path=f"{settings.MEDIA_ROOT}/{audio.telephony_file}")  # fmt: skip
    references = SipProvider(account).call_spec(dial_, "abc").announcements
    assert [reference.name for reference in references] == ["cmcc/powered-off"]

    # The carrier plays it in early media, under line noise: the call ends as the carrier said.
    heard = noisy(np.concatenate((silence(200), at_level(speech(CLIPS["powered_off"]), -26), silence(1500))), -46)
    result, _ = dial(heard, announcements=references)
    assert (result.outcome, result.announcement, result.announcement_name) == (
        NO_ANSWER, "powered_off", "cmcc/powered-off",
    )  # fmt: skip

    # Switched off: calls no longer listen for it.
    CarrierAnnouncement.objects.update(enabled=False)
    assert announcements.library() == ()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not audio at all", "not a WAV file (no RIFF/WAVE header)"),
        (wav_bytes(np.zeros(8000 * 3)), "the recording is silent"),
        (wav_bytes(np.full(800, 8000.0)), "0.10 s long; a reference must last 0.8-30 s"),
        (wav_bytes(np.zeros(8000), channels=2), "2 channels; a reference must be mono"),
    ],
)
def test_a_recording_the_matcher_cannot_use_is_refused_saying_why(admin_client, data, message):
    response = upload(admin_client, "bad", data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not CarrierAnnouncement.objects.exists()


def test_a_recording_at_another_rate_is_resampled(admin_client):
    samples = speech(CLIPS["suspended"])
    resampled = np.interp(np.arange(samples.size * 2) / 2, np.arange(samples.size), samples)
    response = upload(admin_client, "cu/suspended", wav_bytes(resampled, rate=16000), outcome="suspended")
    assert response.status_code == 302
    assert abs(CarrierAnnouncement.objects.get().seconds - samples.size / 8000) < 0.01


def test_the_library_may_not_outgrow_what_each_packet_is_compared_with(admin_client, monkeypatch):
    monkeypatch.setattr("telephony.admin.MAX_LIBRARY_S", 5.0)
    assert upload(admin_client, "one", wav_bytes(speech(CLIPS["powered_off"]))).status_code == 302
    response = upload(admin_client, "two", wav_bytes(speech(CLIPS["unreachable"])), outcome="unreachable")
    assert response.status_code == 200
    assert "at most 5 s (every packet of every call is compared with all of them)" in response.content.decode()


def test_a_clip_whose_file_is_gone_is_left_out_not_the_library(admin_client, settings, caplog):
    assert upload(admin_client, "one", wav_bytes(speech(CLIPS["powered_off"]))).status_code == 302
    assert upload(admin_client, "two", wav_bytes(speech(CLIPS["unreachable"])), outcome="unreachable").status_code == 302
    gone = CarrierAnnouncement.objects.get(name="one")
    (settings.MEDIA_ROOT / gone.audio.name).unlink()
    assert [reference.name for reference in announcements.library()] == ["two"]
    assert "carrier announcement one left out" in caplog.text


def test_with_a_recogniser_calls_listen_for_the_built_in_and_the_operators_phrases(account, audio, settings, monkeypatch):  # noqa: F811
    from telephony.models import AnnouncementKeyword
    from telephony.sip.keywords import DEFAULT_KEYWORDS

    dial_ = Dial(attempt_id=1, to=PHONE, caller_id=CALLER_ID, audio_url="",
                 audio_path=f"{settings.MEDIA_ROOT}/{audio.telephony_file}")  # fmt: skip
    assert SipProvider(account).call_spec(dial_, "abc").transcribe is None  # no model configured: no words

    class Recogniser:
        def transcribe(self, clip, sr=32000):
            return f"{sr}:{len(clip)}"

    monkeypatch.setattr(announcements, "transcriber", lambda: Recogniser())
    AnnouncementKeyword.objects.create(phrase="已欠费", outcome="suspended")
    AnnouncementKeyword.objects.create(phrase="旧说法", outcome="busy", enabled=False)
    spec = SipProvider(account).call_spec(dial_, "abc")
    assert spec.transcribe(np.zeros(80)) == "8000:80"  # handed 8 kHz audio
    assert spec.keywords == (*DEFAULT_KEYWORDS, ("suspended", "已欠费"))


def test_an_asr_model_that_cannot_load_leaves_calls_without_words(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("HERALD_ASR_MODEL_DIR", str(tmp_path))  # an empty directory: no model files
    monkeypatch.setattr(announcements, "_transcriber", None)
    assert announcements.transcriber() is None and announcements.listening() == {}
    assert "not recognised by their words" in caplog.text


def test_the_phrases_are_kept_in_the_admin(admin_client):
    response = admin_client.post(
        "/admin/telephony/announcementkeyword/add/", {"phrase": "已欠费", "outcome": "suspended", "enabled": "on"}
    )
    assert response.status_code == 302
    assert admin_client.get("/admin/telephony/announcementkeyword/").status_code == 200
