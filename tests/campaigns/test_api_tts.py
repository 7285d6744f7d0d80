"""POST /api/v1/tts as an IVR uses it: tokens and scopes, every field checked, voices that cannot speak, and the
real path: a Celery worker renders with eSpeak NG and streams the audio back through Redis while the web answers."""

from __future__ import annotations

import io
import json
import re
import time
from datetime import date

import numpy as np
import pytest
import redis
import soundfile as sf
import soxr
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from campaigns import tokens
from campaigns.api_tts import MAX_TEXT_CHARS
from campaigns.models import ApiAuditEntry
from synthesis.actions import voice_spec
from synthesis.engines import get_engine
from synthesis.streaming import MAX_QUEUED_CHUNKS
from tests.wait import wait_until
from voices.models import SpeakerConsent, Voice

TWO_SENTENCES = "Your parcel arrives tomorrow afternoon. Press one to confirm, or two to choose another day."


def bearer(plain: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plain}"}


def speak(client: Client, body: object, plain: str | None):
    headers = bearer(plain) if plain else {}
    return client.post(reverse("api:tts"), json.dumps(body), content_type="application/json", headers=headers)


def ivr_user(username: str = "ivr", *, can_view_voices: bool = True) -> User:
    user = User.objects.create_user(username)
    if can_view_voices:
        user.user_permissions.add(Permission.objects.get(codename="view_voice"))
    return user


@pytest.fixture
def ivr(db) -> str:
    """A read token of a user who may view voices: what the IVR is given."""
    return tokens.create_token(name="IVR", user=ivr_user())[1]


@pytest.fixture
def robot(db) -> Voice:
    return Voice.objects.create(name="Robot", language="en", engine="embedded")


@pytest.fixture
def stream_redis() -> redis.Redis:
    return redis.Redis.from_url(django_settings.TTS_REDIS_URL)


def cancel_keys(client: redis.Redis) -> set[bytes]:
    return set(client.scan_iter("herald:tts:*:cancel"))


def direct_render(voice: Voice, text: str, rate: int) -> np.ndarray:
    """What the voice says for `text`, rendered here in one piece and resampled in one piece to `rate`, as 16-bit."""
    (wave,) = get_engine(voice.engine).synthesize(voice_spec(voice), [text])
    resampled = soxr.resample(wave.samples, wave.sample_rate, rate, quality="HQ")
    return np.clip(np.rint(np.clip(resampled, -1, 1) * 32768.0), -32768, 32767).astype(np.int16)


# --- who may ask ------------------------------------------------------------------------------------------------


def test_without_a_token_401(client, robot):
    response = speak(client, {"voice": robot.pk, "text": "Hello."}, None)
    assert response.status_code == 401
    assert "Missing Authorization header" in response.json()["error"]
    assert response["WWW-Authenticate"] == 'Bearer realm="herald"'


def test_a_token_without_the_read_scope_or_a_user_without_the_voice_permission_403(client, robot):
    write_only = tokens.create_token(name="Writer", user=ivr_user("writer"), scopes=["write"])[1]
    response = speak(client, {"voice": robot.pk, "text": "Hello."}, write_only)
    assert response.status_code == 403
    assert response.json()["error"] == (
        "This token's scopes are 'write'; POST needs the 'read' scope: ask an admin for a token with it."
    )
    no_permission = tokens.create_token(name="BI", user=ivr_user("bi", can_view_voices=False))[1]
    response = speak(client, {"voice": robot.pk, "text": "Hello."}, no_permission)
    assert response.status_code == 403
    assert response.json()["error"] == "This user needs the voices.view_voice permission to speak with a voice."


# --- what it checks before any work -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"voice": None}, "voice", "This field is required."),
        ({"voice": "Robot"}, "voice", "A valid integer is required."),
        ({"voice": 0}, "voice", "greater than or equal to 1"),
        ({"text": None}, "text", "This field is required."),
        ({"text": "   "}, "text", "may not be blank"),
        ({"text": "x" * (MAX_TEXT_CHARS + 1)}, "text", "The text is 1,001 characters; the limit is 1,000"),
        ({"format": "mp3"}, "format", '"mp3" is not a format: use "wav" or "pcm".'),
        ({"sample_rate": 44100}, "sample_rate", "44100 is not a sample rate here: use 8000, 16000, 32000."),
        ({"sample_rate": "16k"}, "sample_rate", "16k is not a sample rate here"),
        ({"samplerate": 8000}, "samplerate", "Unknown field: the fields are voice, text, format, sample_rate."),
    ],
)
def test_each_bad_field_is_400_naming_it(client, ivr, robot, change, field, words):
    body = {"voice": robot.pk, "text": "Hello.", **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = speak(client, body, ivr)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error.startswith(f"{field}: ") and words in error
    assert field in response.json()["fields"]


def test_a_body_that_is_not_a_json_object_is_400(client, ivr):
    response = client.post(reverse("api:tts"), "voice=1", content_type="application/json", headers=bearer(ivr))
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    response = speak(client, ["voice", 1], ivr)
    assert response.status_code == 400 and "Expected a dictionary" in response.json()["error"]


def test_an_unknown_voice_is_404(client, ivr, robot):
    response = speak(client, {"voice": robot.pk + 100, "text": "Hello."}, ivr)
    assert response.status_code == 404
    assert response.json() == {"error": f"No voice with id {robot.pk + 100}."}


def test_a_voice_that_cannot_speak_is_409_with_the_reason(client, ivr):
    cloned = Voice.objects.create(name="Ms Li", language="zh", engine="gpt-sovits")
    response = speak(client, {"voice": cloned.pk, "text": "您好。"}, ivr)
    assert response.status_code == 409
    assert response.json()["error"] == (
        f"Voice {cloned.pk} (Ms Li) cannot speak: it is a cloned voice without a valid speaker consent: "
        "record the speaker's consent first."
    )
    # With the consent, what is missing in this installation is named: here the GPT-SoVITS text frontend.
    SpeakerConsent.objects.create(voice=cloned, speaker_name="李娜", signed_on=date(2026, 11, 1), document="c.pdf")
    response = speak(client, {"voice": cloned.pk, "text": "您好。"}, ivr)
    assert response.status_code == 409
    assert "text frontend is not installed here" in response.json()["error"]
    recorded = Voice.objects.create(name="Desk", language="zh", engine="recorded")
    response = speak(client, {"voice": recorded.pk, "text": "您好。"}, ivr)
    assert response.status_code == 409
    assert "has no recordings and no fill voice" in response.json()["error"]


def test_without_redis_to_stream_through_503(client, ivr, robot, settings):
    settings.TTS_REDIS_URL = ""
    response = speak(client, {"voice": robot.pk, "text": "Hello."}, ivr)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "streamed speech needs Redis" in response.json()["error"]


def test_no_worker_answering_is_504_after_the_wait_and_the_request_is_cancelled(
    client, ivr, robot, settings, stream_redis
):
    settings.TTS_WAIT_SECONDS = 1.0
    before = cancel_keys(stream_redis)
    started = time.monotonic()
    response = speak(client, {"voice": robot.pk, "text": "Hello."}, ivr)
    waited = time.monotonic() - started
    assert response.status_code == 504
    assert response.json()["error"].startswith("no synthesis worker took the request within 1 s")
    assert waited >= 1.0
    assert waited < 10  # generous: the wait itself is the setting's second
    # A worker that takes the message late finds the cancel flag (and the message has expired anyway).
    assert len(cancel_keys(stream_redis) - before) == 1


def test_the_endpoint_is_in_the_openapi_schema(client):
    schema = client.get("/api/v1/schema?format=json").json()
    operation = schema["paths"]["/api/v1/tts"]["post"]
    assert {"200", "400", "401", "403", "404", "409", "502", "503", "504"} <= set(operation["responses"])
    assert set(operation["responses"]["200"]["content"]) == {"audio/wav", "audio/L16"}
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = schema["components"]["schemas"][ref.split("/")[-1]]
    assert set(body["properties"]) == {"voice", "text", "format", "sample_rate"}
    assert sorted(body["required"]) == ["text", "voice"]


# --- the real path: a Celery worker, Redis, eSpeak NG -----------------------------------------------------------


@pytest.fixture
def worker(celery_worker, settings):
    settings.TTS_WAIT_SECONDS = 30.0  # only a broken run waits this long: this machine is shared and busy
    return celery_worker


def test_speech_streams_sentence_by_sentence_at_each_rate_as_a_direct_render(client, ivr, robot, worker):
    for audio_format, rate in (("wav", 8000), ("wav", 16000), ("wav", 32000), ("pcm", 8000)):
        response = speak(client, {"voice": robot.pk, "text": TWO_SENTENCES, "format": audio_format,
                                  "sample_rate": rate}, ivr)
        assert response.status_code == 200, response.content
        assert response["Cache-Control"] == "no-store" and response["X-Accel-Buffering"] == "no"
        chunks = list(response.streaming_content)
        assert len(chunks) >= 2  # the first sentence came on its own, before the second
        body = b"".join(chunks)
        if audio_format == "wav":
            assert response["Content-Type"] == "audio/wav"
            assert body[:4] == b"RIFF" and body[4:8] == b"\xff\xff\xff\xff" and body[40:44] == b"\xff\xff\xff\xff"
            samples, read_rate = sf.read(io.BytesIO(body), dtype="int16")
            assert read_rate == rate
        else:
            assert response["Content-Type"] == f"audio/L16;rate={rate};channels=1"
            samples = np.frombuffer(body, dtype=">i2")  # RFC 2586: network byte order
        expected = direct_render(robot, TWO_SENTENCES, rate)
        # Same length, and each sample within one 16-bit step of the whole text rendered at once and resampled at
        # once (a streamed soxr resample, flushed at the end, is the one-shot resample; measured: equal).
        assert len(samples) == len(expected)
        assert np.max(np.abs(samples.astype(np.int32) - expected)) <= 1
    entry = ApiAuditEntry.objects.filter(path="/api/v1/tts").latest("pk")
    assert (entry.status, entry.object_ids, entry.summary) == (200, [robot.pk], "speech: 91 characters, pcm at 8000 Hz")
    assert "parcel" not in worker.log_path.read_text()  # counts and times in the worker's log, never the text


def test_an_engine_error_before_any_audio_is_a_json_error(client, ivr, worker):
    broken = Voice.objects.create(name="Broken", language="en", engine="embedded", parameters={"voice": "nosuchvoice"})
    response = speak(client, {"voice": broken.pk, "text": TWO_SENTENCES}, ivr)
    assert response.status_code == 502
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response.json() == {"error": "eSpeak NG has no voice 'nosuchvoice'"}


def test_a_client_that_goes_away_cancels_and_the_worker_stops(client, ivr, robot, worker, stream_redis):
    sentences = [f"This is sentence {i}." for i in range(1, 48)]
    text = " ".join(sentences)
    assert len(text) <= MAX_TEXT_CHARS and len(sentences) > MAX_QUEUED_CHUNKS + 5
    before = cancel_keys(stream_redis)
    response = speak(client, {"voice": robot.pk, "text": text, "format": "pcm", "sample_rate": 8000}, ivr)
    assert response.status_code == 200
    audio = iter(response.streaming_content)
    next(audio), next(audio)
    response.close()  # what the WSGI server does when the client hangs up: the body's generator is closed

    (cancel_key,) = cancel_keys(stream_redis) - before
    tag = cancel_key.decode().split(":")[2][:8]
    line = wait_until(
        lambda: re.search(rf"speech {re.escape(tag)}: .*", worker.log_path.read_text()),
        lambda: f"the worker to stop:\n{worker.log_path.read_text()[-3000:]}",
    ).group(0)
    assert "cancelled by the client" in line
    # It stopped where the unread chunks filled up, far short of the text's 47 sentences.
    chunks = int(re.search(r"; (\d+) chunks", line).group(1))
    assert 2 <= chunks <= MAX_QUEUED_CHUNKS + 3
    assert not stream_redis.exists(cancel_key.decode().removesuffix(":cancel"))


# --- the admin preview's "Listen as it is made": the same path, for staff in the admin ----------------------


def staff_client(*, can_change: bool = True) -> Client:
    user = User.objects.create_user("editor", is_staff=True)
    codenames = ["view_voice", "change_voice"] if can_change else ["view_voice"]
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_preview_streams_the_sentence_at_phone_rate(robot, worker):
    client = staff_client()
    url = reverse("admin:voices_voice_preview_stream", args=[robot.pk])
    page = client.get(reverse("admin:voices_voice_preview", args=[robot.pk]))
    assert f'data-url="{url}"' in page.content.decode()  # the page's button plays this URL
    response = client.get(url, {"text": TWO_SENTENCES})
    assert response.status_code == 200 and response["Content-Type"] == "audio/wav"
    chunks = list(response.streaming_content)
    assert len(chunks) >= 2
    samples, rate = sf.read(io.BytesIO(b"".join(chunks)), dtype="int16")
    assert rate == 8000
    assert np.max(np.abs(samples.astype(np.int32) - direct_render(robot, TWO_SENTENCES, 8000))) <= 1


def test_the_admin_preview_stream_says_what_is_wrong(robot, db):
    client = staff_client()
    url = reverse("admin:voices_voice_preview_stream", args=[robot.pk])
    empty = client.get(url, {"text": "  "})
    assert empty.status_code == 400 and "1 to 500 characters" in empty.content.decode()
    assert client.get(url, {"text": "x" * 501}).status_code == 400
    cloned = Voice.objects.create(name="Clone", language="en", engine="gpt-sovits")
    refused = client.get(reverse("admin:voices_voice_preview_stream", args=[cloned.pk]), {"text": "Hello."})
    assert refused.status_code == 409 and "cannot be previewed" in refused.content.decode()
    assert client.get(reverse("admin:voices_voice_preview_stream", args=[99999]), {"text": "Hi."}).status_code == 404
    assert staff_client_without_change(robot).status_code == 403


def staff_client_without_change(voice: Voice):
    User.objects.filter(username="editor").delete()
    return staff_client(can_change=False).get(
        reverse("admin:voices_voice_preview_stream", args=[voice.pk]), {"text": "Hello."})
