"""Script text to audio through the whole GPT-SoVITS path: frontend, tiny BERT/HuBERT, small v2 checkpoints.

And a campaign render with a cloned voice, through the same synthesis action the workers run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from django.core.files import File

from synthesis.engines import engine_problem
from synthesis.engines.base import VoiceSpec
from synthesis.engines.gptsovits import GptSovitsEngine
from tests.gptsovits.conftest import SCRIPT, TRANSCRIPT

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "gptsovits"


def spec(reference_clip: Path) -> VoiceSpec:
    return VoiceSpec(
        voice_id=9, language="zh", parameters={"max_steps": 40},
        weights={"gpt": str(SHARED / "gpt.ckpt"), "sovits": str(SHARED / "sovits.pth")},
        reference_audio=str(reference_clip), reference_text=TRANSCRIPT,
    )


def test_scripts_render_from_text_once_the_frontend_is_configured(configured, reference_clip):
    assert engine_problem("gpt-sovits") is None
    engine = GptSovitsEngine(device="cpu")
    waves = engine.synthesize(spec(reference_clip), [SCRIPT, "您好。"])
    assert [w.sample_rate for w in waves] == [32000, 32000]
    assert len(waves[0].samples) > len(waves[1].samples) > 0  # two sentences + a pause vs one short one
    again = engine.synthesize(spec(reference_clip), [SCRIPT])
    assert np.array_equal(again[0].samples, waves[0].samples)  # same text, same voice: same samples


def test_launch_is_refused_until_the_frontend_models_are_configured(monkeypatch):
    monkeypatch.delenv("HERALD_BERT_DIR", raising=False)
    assert "HERALD_BERT_DIR" in engine_problem("gpt-sovits")


@pytest.mark.django_db
def test_a_cloned_voice_renders_campaign_audio(configured, reference_clip, make_campaign, settings, tmp_path):
    from campaigns.launch import launch_campaign
    from campaigns.models import Call
    from synthesis import actions
    from synthesis.models import RenderedAudio
    from voices.models import SpeakerConsent, Voice

    settings.MEDIA_ROOT = tmp_path
    campaign = make_campaign(2, text="您好{name}，您的订单明天下午送达。")
    voice = campaign.variants.first().voice
    voice.engine = Voice.Engine.GPT_SOVITS
    voice.parameters = {"max_steps": 40}
    voice.reference_text = TRANSCRIPT
    for field, source in (("gpt_weights", SHARED / "gpt.ckpt"), ("sovits_weights", SHARED / "sovits.pth"),
                          ("reference_audio", reference_clip)):
        with source.open("rb") as fh:
            getattr(voice, field).save(source.name, File(fh), save=False)
    voice.save()
    SpeakerConsent.objects.create(voice=voice, speaker_name="李娜", signed_on="2026-11-01", document="c.pdf")
    campaign.variants.update(voice=voice)  # both variants speak with the cloned voice
    launch_campaign(campaign)
    keys = list(campaign.calls.filter(variant__voice=voice).values_list("audio_id", flat=True))
    assert keys
    summary = actions.render(keys)
    assert sorted(summary.rendered) == sorted(keys), summary
    for row in RenderedAudio.objects.filter(render_key__in=keys):
        assert row.engine == "gpt-sovits" and row.original_sample_rate == 32000 and row.sample_rate == 8000
    assert set(Call.objects.filter(audio_id__in=keys).values_list("state", flat=True)) == {Call.State.READY}
    shutil.rmtree(tmp_path / "audio", ignore_errors=True)
