"""The voice admin: uploads are checked before anything is saved; staff can hear a voice before using it."""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from tests.voices.test_validation import GPT, SOVITS, speech_like, write_clip
from voices.models import Voice

pytestmark = pytest.mark.django_db

NO_CONSENT_FORMS = {
    "consents-TOTAL_FORMS": "0",
    "consents-INITIAL_FORMS": "0",
    "consents-MIN_NUM_FORMS": "0",
    "consents-MAX_NUM_FORMS": "1000",
}
TRANSCRIPT = "您好，您的包裹明天上午送达。"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def upload(path: Path, name: str | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name or path.name, path.read_bytes())


def cloned_voice_form(tmp_path: Path, **overrides) -> dict:
    data = {
        "name": "Ms Li",
        "language": "zh",
        "engine": "gpt-sovits",
        "parameters": "{}",
        "reference_text": TRANSCRIPT,
        "reference_audio": upload(write_clip(tmp_path / "li.wav", speech_like(5.0))),
        "gpt_weights": upload(GPT),
        "sovits_weights": upload(SOVITS),
        **NO_CONSENT_FORMS,
    }
    data.update(overrides)
    return data


def stored_files(media_root: Path) -> list[Path]:
    return [p for p in media_root.rglob("*") if p.is_file()] if media_root.exists() else []


def test_valid_embedded_voice_is_saved(admin_client):
    response = admin_client.post(
        reverse("admin:voices_voice_add"),
        {"name": "Robot", "language": "en", "engine": "embedded", "parameters": '{"rate": 170}', **NO_CONSENT_FORMS},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    voice = Voice.objects.get(name="Robot")
    assert voice.parameters == {"rate": 170} and voice.weights_digest == ""


def test_invalid_embedded_parameters_are_a_form_error(admin_client):
    response = admin_client.post(
        reverse("admin:voices_voice_add"),
        {"name": "Robot", "language": "en", "engine": "embedded", "parameters": '{"rate": 1000}', **NO_CONSENT_FORMS},
    )
    assert response.status_code == 200
    assert "parameters" in response.context["adminform"].form.errors
    assert "must be between 80 and 450, got 1000" in response.content.decode()
    assert not Voice.objects.exists()


def test_valid_cloned_voice_is_saved_with_a_digest_that_follows_its_files(admin_client, tmp_path, media_root):
    response = admin_client.post(reverse("admin:voices_voice_add"), cloned_voice_form(tmp_path))
    assert response.status_code == 302, response.content.decode()[:3000]
    voice = Voice.objects.get(name="Ms Li")
    assert len(voice.weights_digest) == 64
    assert Path(voice.sovits_weights.path).read_bytes() == SOVITS.read_bytes()

    page = admin_client.get(reverse("admin:voices_voice_change", args=[voice.pk])).content.decode()
    assert "No valid consent: this voice cannot be used in a campaign." in page
    assert reverse("admin:voices_voice_preview", args=[voice.pk]) in page

    # A new transcript (the files unchanged) changes the digest, so old renders are not reused.
    data = cloned_voice_form(tmp_path, reference_text="您好，您的快递明天上午送达。")
    for name in ("reference_audio", "gpt_weights", "sovits_weights"):
        del data[name]
    response = admin_client.post(reverse("admin:voices_voice_change", args=[voice.pk]), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    before = voice.weights_digest
    voice.refresh_from_db()
    assert len(voice.weights_digest) == 64 and voice.weights_digest != before


@pytest.mark.parametrize(
    ("overrides", "field", "expected"),
    [
        ({"gpt_weights": "SOVITS", "sovits_weights": "GPT"}, "gpt_weights", "look swapped"),
        ({"gpt_weights": "V3"}, "gpt_weights", "GPT-SoVITS v3"),
        ({"sovits_weights": "TRUNCATED"}, "sovits_weights", "truncated or corrupted"),
        ({"sovits_weights": "HTML"}, "sovits_weights", "not a PyTorch checkpoint"),
        ({"reference_audio": "SHORT"}, "reference_audio", "is 2.0 seconds long"),
        ({"reference_text": ""}, "reference_text", "The transcript is empty"),
    ],
    ids=["swapped", "v3", "truncated", "html", "short-clip", "no-transcript"],
)
def test_invalid_upload_shows_the_problem_and_saves_nothing(admin_client, tmp_path, media_root, overrides, field,
                                                            expected):
    files = {
        "SOVITS": lambda: upload(SOVITS),
        "GPT": lambda: upload(GPT),
        "V3": lambda: SimpleUploadedFile("voice.ckpt", b"02" + GPT.read_bytes()[2:]),
        "TRUNCATED": lambda: SimpleUploadedFile("voice.pth", SOVITS.read_bytes()[:500_000]),
        "HTML": lambda: SimpleUploadedFile("voice.pth", b"<!DOCTYPE html><html><body>Sign in</body></html>" * 4),
        "SHORT": lambda: upload(write_clip(tmp_path / "short.wav", speech_like(2.0))),
    }
    data = cloned_voice_form(tmp_path, **{k: files[v]() if v in files else v for k, v in overrides.items()})
    response = admin_client.post(reverse("admin:voices_voice_add"), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert expected in " ".join(errors.get(field, [])), errors
    assert expected in html.unescape(response.content.decode())
    assert not Voice.objects.exists()
    assert stored_files(media_root) == []


def audio_src(page: str) -> str:
    match = re.search(r'<audio controls[^>]*src="([^"]+)"', page)
    assert match, page[-3000:]
    return html.unescape(match.group(1))


def test_preview_of_an_embedded_voice_plays_signed_audio(admin_client, client):
    voice = Voice.objects.create(name="Robot", language="en", engine="embedded")
    url = reverse("admin:voices_voice_preview", args=[voice.pk])
    form = admin_client.get(url).content.decode()
    assert "delivered tomorrow" in form and "Synthetic voice: no speaker consent needed." in form

    page = admin_client.post(url, {"text": "Your parcel arrives tomorrow morning."}).content.decode()
    src = urlsplit(audio_src(page))
    response = client.get(f"{src.path}?{src.query}")  # anonymous, like the browser's audio element
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/wav"
    assert b"".join(response.streaming_content)[:4] == b"RIFF"


def test_preview_of_a_cloned_voice_says_why_it_cannot_render(admin_client):
    voice = Voice.objects.create(name="Ms Li", language="zh", engine="gpt-sovits", reference_text=TRANSCRIPT)
    url = reverse("admin:voices_voice_preview", args=[voice.pk])
    assert "包裹" in admin_client.get(url).content.decode()
    page = admin_client.post(url, {"text": "您好，您的包裹明天送达。"}).content.decode()
    assert "<audio" not in page
    assert "text frontend" in page and "not installed" in page
    assert "No valid consent: this voice cannot be used in a campaign." in page


def test_change_page_names_the_speaker_who_consented(admin_client, admin_user):
    from datetime import date

    voice = Voice.objects.create(name="Ms Li", language="zh", engine="gpt-sovits")
    voice.consents.create(speaker_name="Li Hua", signed_on=date(2026, 3, 1), document="voices/consent/li.pdf")
    page = admin_client.get(reverse("admin:voices_voice_change", args=[voice.pk])).content.decode()
    assert "Consent signed by Li Hua on 2026-03-01." in page
    assert "No valid consent" not in page


def test_staff_add_a_cloned_voice_and_preview_it_with_the_frontend_configured(
    admin_client, client, tmp_path, monkeypatch
):
    """The whole onboarding in the admin: upload, validate, preview (tiny BERT/HuBERT stand in for the real)."""
    from tests.frontend.tiny_models import write_tiny_bert, write_tiny_hubert

    preview_text = "您好，您的包裹明天送达。"
    monkeypatch.setenv("HERALD_BERT_DIR", str(write_tiny_bert(tmp_path / "bert", TRANSCRIPT + preview_text)))
    monkeypatch.setenv("HERALD_HUBERT_DIR", str(write_tiny_hubert(tmp_path / "hubert")))
    response = admin_client.post(
        reverse("admin:voices_voice_add"), cloned_voice_form(tmp_path, parameters='{"max_steps": 40}')
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    voice = Voice.objects.get(name="Ms Li")
    assert voice.weights_digest
    page = admin_client.post(
        reverse("admin:voices_voice_preview", args=[voice.pk]), {"text": preview_text}
    ).content.decode()
    src = urlsplit(audio_src(page))
    audio = client.get(f"{src.path}?{src.query}")
    assert audio.status_code == 200 and b"".join(audio.streaming_content)[:4] == b"RIFF"
