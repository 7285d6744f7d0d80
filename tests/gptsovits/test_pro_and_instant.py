"""v2Pro voices and instant (zero-shot) voices, end to end: a campaign renders through the synthesis action
the workers run, with the speaker-verification model and the base-model directory the workers use."""

from __future__ import annotations

import gzip
import html
import io
import shutil
from pathlib import Path

import pytest
import torch
from django.core.files import File

from synthesis.engines.base import EngineError
from synthesis.gptsovits import basemodels
from synthesis.gptsovits.basemodels import BaseModelError, base_pair, write_manifest
from synthesis.gptsovits.checkpoint import read_checkpoint
from tests.gptsovits.conftest import TRANSCRIPT

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
V2 = SHARED / "gptsovits"
PRO = SHARED / "gptsovits-v2pro"


@pytest.fixture(scope="module")
def sv_checkpoint(tmp_path_factory) -> Path:
    """The SV model as the official folder holds it: a plain (not gzip'd) torch.save file."""
    path = tmp_path_factory.mktemp("sv") / "pretrained_eres2netv2w24s4ep4.ckpt"
    with gzip.open(PRO / "sv.ckpt.gz", "rb") as source, path.open("wb") as target:
        shutil.copyfileobj(source, target, 1 << 20)
    return path


@pytest.fixture(scope="module")
def pro_sovits(tmp_path_factory) -> Path:
    """The shared v2Pro weights with a louder vocoder output layer, saved with the 05 marker as my_save2 does.

    The shared file's random vocoder peaks at 1.3e-3 (-58 dBFS), which the render pipeline rightly refuses
    as silence; scaling conv_post brings it to speech level without changing anything else.
    """
    checkpoint = read_checkpoint(PRO / "sovits.pth", kind="sovits")
    weights = dict(checkpoint.weights)
    weights["dec.conv_post.weight"] = weights["dec.conv_post.weight"] * 400
    buffer = io.BytesIO()
    torch.save({"weight": weights, "config": checkpoint.config, "info": "louder"}, buffer)
    path = tmp_path_factory.mktemp("pro") / "voice_e8_s96.pth"
    path.write_bytes(b"05" + buffer.getvalue()[2:])
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory, models, sv_checkpoint, pro_sovits) -> Path:
    """A base directory in the official pretrained_models layout (small stand-ins) with its SHA256SUMS."""
    root = tmp_path_factory.mktemp("pretrained_models")
    bert, hubert = models
    files = {
        "s1v3.ckpt": V2 / "gpt.ckpt",
        "v2Pro/s2Gv2Pro.pth": pro_sovits,
        basemodels.SV_MODEL: sv_checkpoint,
    }
    for relative, source in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).symlink_to(source)
    shutil.copytree(bert, root / basemodels.BERT_DIR)
    shutil.copytree(hubert, root / basemodels.HUBERT_DIR)
    write_manifest(root)
    return root


def _cloned_voice(voice, reference_clip, **files):
    from voices.models import SpeakerConsent

    voice.engine = voice.Engine.GPT_SOVITS
    voice.parameters = {"max_steps": 40}
    voice.reference_text = TRANSCRIPT
    for field, source in {**files, "reference_audio": reference_clip}.items():
        with Path(source).open("rb") as fh:
            getattr(voice, field).save(Path(source).name, File(fh), save=False)
    voice.save()
    SpeakerConsent.objects.create(voice=voice, speaker_name="李娜", signed_on="2026-11-01", document="c.pdf")
    return voice


def _render_campaign(campaign) -> list[str]:
    from campaigns.launch import launch_campaign
    from campaigns.models import Call
    from synthesis import actions
    from synthesis.models import RenderedAudio

    launch_campaign(campaign)
    keys = list(campaign.calls.values_list("audio_id", flat=True))
    assert keys
    summary = actions.render(keys)
    assert sorted(summary.rendered) == sorted(set(keys)), summary
    for row in RenderedAudio.objects.filter(render_key__in=keys):
        assert row.engine == "gpt-sovits" and row.original_sample_rate == 32000 and row.sample_rate == 8000
    assert set(Call.objects.filter(audio_id__in=keys).values_list("state", flat=True)) == {Call.State.READY}
    return keys


@pytest.mark.django_db
def test_a_v2pro_voice_renders_campaign_audio(
    configured, reference_clip, sv_checkpoint, pro_sovits, make_campaign, settings, tmp_path, monkeypatch
):
    from synthesis.engines import get_engine

    monkeypatch.setenv("HERALD_GPTSOVITS_SV_MODEL", str(sv_checkpoint))
    settings.MEDIA_ROOT = tmp_path
    campaign = make_campaign(2, text="您好{name}，您的订单明天下午送达。")
    voice = _cloned_voice(
        campaign.variants.first().voice, reference_clip, gpt_weights=V2 / "gpt.ckpt", sovits_weights=pro_sovits
    )
    campaign.variants.update(voice=voice)
    _render_campaign(campaign)
    models = get_engine("gpt-sovits").models
    assert models.speaker() is models.speaker()  # one resident SV model, shared by every Pro voice
    resident = [v for v in models._voices.values() if v.sovits.config.version == "v2Pro"]
    assert len(resident) == 1 and resident[0].sovits.config.gin_channels == 256


@pytest.mark.django_db
def test_instant_voices_render_with_the_shared_base_pair(
    models, reference_clip, base, make_campaign, settings, tmp_path, monkeypatch
):
    from synthesis.engines import get_engine
    from voices.actions import save_voice
    from voices.models import Voice

    for name in ("HERALD_BERT_DIR", "HERALD_HUBERT_DIR", "HERALD_GPTSOVITS_SV_MODEL"):
        monkeypatch.delenv(name, raising=False)  # everything comes from the base directory
    monkeypatch.setenv("HERALD_GPTSOVITS_BASE_DIR", str(base))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings.MEDIA_ROOT = tmp_path
    campaign = make_campaign(4, text="您好{name}，您的订单明天下午送达。")
    first, second = [v.voice for v in campaign.variants.order_by("name")]
    for voice in (first, second):
        voice.source, voice.base_version = Voice.Source.INSTANT, Voice.BaseVersion.V2_PRO
        _cloned_voice(voice, reference_clip)
        save_voice(voice)
        assert voice.weights_digest and not voice.gpt_weights and not voice.sovits_weights
    engine_models = get_engine("gpt-sovits").models
    loads = engine_models.loads
    _render_campaign(campaign)
    assert engine_models.loads - loads <= 1  # both voices spoke with one resident base pair


def test_the_base_directory_names_each_missing_or_altered_file(base, tmp_path):
    copy = tmp_path / "base"
    shutil.copytree(base, copy, symlinks=False)
    assert base_pair(copy, "v2Pro").sovits == copy / "v2Pro/s2Gv2Pro.pth"
    with (copy / "s1v3.ckpt").open("r+b") as fh:  # one flipped byte
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    (copy / basemodels.SV_MODEL).unlink()
    with pytest.raises(BaseModelError) as err:
        base_pair(copy, "v2Pro")
    message = str(err.value)
    assert "s1v3.ckpt does not match its sha256" in message
    assert f"{basemodels.SV_MODEL} is missing" in message
    assert "v2ProPlus" in " ".join(basemodels.problems(copy, "v2ProPlus"))  # not there at all
    (copy / "SHA256SUMS").unlink()
    assert "SHA256SUMS cannot be read" in basemodels.problems(copy, "v2Pro")[0]


@pytest.mark.django_db
def test_an_instant_voice_without_base_models_is_refused_at_launch_and_render(
    configured, reference_clip, make_campaign, settings, tmp_path, monkeypatch
):
    from campaigns.launch import LaunchError, launch_campaign
    from synthesis import actions
    from voices.models import Voice

    monkeypatch.setenv("HERALD_GPTSOVITS_BASE_DIR", str(tmp_path / "nothing-here"))
    settings.MEDIA_ROOT = tmp_path
    campaign = make_campaign(1, text="您好{name}。")
    voice = campaign.variants.first().voice
    voice.source = Voice.Source.INSTANT
    _cloned_voice(voice, reference_clip)
    with pytest.raises(EngineError, match="SHA256SUMS cannot be read") as err:
        actions.voice_spec(voice)
    assert err.value.permanent
    with pytest.raises(LaunchError, match="v2ProPlus base models in .*nothing-here are incomplete: .*SHA256SUMS"):
        launch_campaign(campaign)
    monkeypatch.delenv("HERALD_GPTSOVITS_BASE_DIR")
    with pytest.raises(LaunchError, match=r"base models are incomplete: no base directory is set \(HERALD_GPTSOVITS_BASE_DIR\)"):
        launch_campaign(campaign)
    with pytest.raises(EngineError, match=r"no base directory is set \(HERALD_GPTSOVITS_BASE_DIR\)"):
        actions.voice_spec(voice)


@pytest.mark.django_db
def test_staff_make_an_instant_voice_in_the_admin_and_preview_it(admin_client, client, base, settings, tmp_path,
                                                                 monkeypatch):
    """No weight files: 'instant' next to 'trained', the clip and its transcript, then Preview speaks."""
    from urllib.parse import urlsplit

    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    from tests.voices.test_validation import speech_like, write_clip
    from tests.voices.test_voice_admin import NO_CONSENT_FORMS, audio_src
    from voices.models import Voice

    for name in ("HERALD_BERT_DIR", "HERALD_HUBERT_DIR", "HERALD_GPTSOVITS_SV_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HERALD_GPTSOVITS_BASE_DIR", str(base))
    settings.MEDIA_ROOT = tmp_path / "media"
    clip = write_clip(tmp_path / "li.wav", speech_like(5.0))
    form = {
        "name": "Ms Li (instant)", "language": "zh", "engine": "gpt-sovits", "parameters": '{"max_steps": 40}',
        "source": "instant", "base_version": "v2Pro", "reference_text": TRANSCRIPT,
        "reference_audio": SimpleUploadedFile("li.wav", clip.read_bytes()), **NO_CONSENT_FORMS,
    }
    page = admin_client.get(reverse("admin:voices_voice_add")).content.decode()
    assert 'value="instant"' in page and 'value="trained"' in page
    response = admin_client.post(reverse("admin:voices_voice_add"), form)
    assert response.status_code == 302, response.content.decode()[-2000:]
    voice = Voice.objects.get(name="Ms Li (instant)")
    assert voice.is_instant and not voice.gpt_weights and voice.weights_digest
    page = admin_client.post(
        reverse("admin:voices_voice_preview", args=[voice.pk]), {"text": "您好，您的订单明天下午送达。"}
    ).content.decode()
    src = urlsplit(audio_src(page))
    audio = client.get(f"{src.path}?{src.query}")
    assert audio.status_code == 200 and b"".join(audio.streaming_content)[:4] == b"RIFF"
    # The same form for a v2ProPlus instant voice is refused: this base directory has no v2ProPlus pair.
    refused = admin_client.post(reverse("admin:voices_voice_add"), {
        **form, "name": "Plus", "base_version": "v2ProPlus",
        "reference_audio": SimpleUploadedFile("li.wav", clip.read_bytes()),
    })
    assert refused.status_code == 200
    assert "v2Pro/s2Gv2ProPlus.pth is missing" in html.unescape(refused.content.decode())


def test_a_pro_voice_without_the_speaker_model_says_what_to_set(configured, reference_clip, monkeypatch):
    from synthesis.engines.base import VoiceSpec
    from synthesis.engines.gptsovits import GptSovitsEngine

    monkeypatch.delenv("HERALD_GPTSOVITS_SV_MODEL", raising=False)
    monkeypatch.delenv("HERALD_GPTSOVITS_BASE_DIR", raising=False)
    spec = VoiceSpec(
        voice_id=5, language="zh", parameters={"max_steps": 20},
        weights={"gpt": str(V2 / "gpt.ckpt"), "sovits": str(PRO / "sovits.pth")},
        reference_audio=str(reference_clip), reference_text=TRANSCRIPT,
    )
    with pytest.raises(EngineError, match="speaker-verification model .* not configured; set HERALD_GPTSOVITS_BASE_DIR") as err:
        GptSovitsEngine(device="cpu").synthesize(spec, ["您好。"])
    assert err.value.permanent
