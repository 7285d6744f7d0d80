"""A recorded voice: uploaded recordings for the fixed words of a message, a synthesis voice for the variables,
joined at one loudness; checked on upload, keyed by its recordings, rendered through the real pipeline."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from campaigns.launch import LaunchError, launch_campaign
from campaigns.models import Call
from synthesis import actions
from synthesis.audio import AudioError, Waveform, gated_rms_dbfs, read_info
from synthesis.engines import EngineError, VoiceSpec, get_engine
from synthesis.engines.recorded import Piece, cover, join, recordings_digest
from synthesis.frontend.marks import mark
from synthesis.models import RenderedAudio
from tests.voices.test_validation import speech_like
from voices.actions import preview_voice, store_recordings
from voices.models import SpeakerConsent, Voice, VoiceRecording


def level(x: np.ndarray, rate: int) -> float:
    return gated_rms_dbfs(np.asarray(x, dtype=np.float64), rate)


def wav_bytes(samples: np.ndarray, rate: int = 48000) -> bytes:
    path = Path(f"/tmp/herald-recording-{rate}-{len(samples)}.wav")
    sf.write(path, samples, rate, subtype="PCM_16")
    return path.read_bytes()


# --- covering a text with recordings ------------------------------------------------------------------------


def kinds(pieces: list[Piece]) -> list[tuple[str, str]]:
    return [(p.kind, p.text) for p in pieces]


def test_a_whole_message_recording_covers_it_alone():
    text = "您好，您的快递明天送达，确认请按1。"
    assert kinds(cover(text, ["您好", text, "确认请按1。"])) == [("recording", text)]


def test_the_fixed_parts_are_recordings_and_the_marked_variables_are_spoken():
    name, order = mark("单晓东", "name"), mark("SF1234567890", "digits")
    text = f"您好{name}，您的订单{order}将于明天送达，确认请按1。"
    pieces = cover(text, ["您好", "，您的订单", "将于明天送达，确认请按1。"])
    assert kinds(pieces) == [
        ("recording", "您好"), ("speech", name), ("recording", "，您的订单"), ("speech", order),
        ("recording", "将于明天送达，确认请按1。"),
    ]


def test_the_cover_records_the_most_characters_with_the_fewest_recordings():
    text = "您的订单将于明天送达"
    # Greedy from the left would take 您的订单 and leave 将于明天送达 to the fill voice.
    assert kinds(cover(text, ["您的订单", "订单将于明天送达", "您的"])) == [
        ("recording", "您的"), ("recording", "订单将于明天送达"),
    ]
    assert kinds(cover(text, ["您的", "订单", "将于明天送达", "您的订单"])) == [
        ("recording", "您的订单"), ("recording", "将于明天送达"),
    ]


def test_a_recording_never_speaks_part_of_a_variable():
    order = mark("SF123", "digits")
    assert kinds(cover(f"订单{order}", ["订单", "123", "SF123"])) == [("recording", "订单"), ("speech", order)]


def test_what_is_left_between_recordings_is_a_pause_when_it_is_only_punctuation():
    pieces = cover("您好。 确认请按1", ["您好", "确认请按1"])
    assert [p.kind for p in pieces] == ["recording", "pause", "recording"]
    assert pieces[1].seconds == pytest.approx(0.30)
    assert cover("您好，确认", ["您好", "确认"])[1].seconds == pytest.approx(0.15)


# --- joining ------------------------------------------------------------------------------------------------


def test_spoken_parts_are_brought_to_the_recordings_level_and_nothing_clicks():
    rate = 48000
    recording = Waveform(speech_like(1.0, rate=rate, seed=1), rate)
    quiet = Waveform(0.1 * speech_like(0.8, rate=16000, seed=2), 16000)  # ~20 dB quieter, another rate
    out = join([Piece("recording", "您好", recording=0), Piece("speech", "张伟")], {0: recording}, [quiet])
    assert out.sample_rate == rate  # the highest rate of the pieces
    assert level(quiet.samples, 16000) < level(recording.samples, rate) - 15
    boundary = len(recording.samples)  # speech-like noise has sound to its edges: nothing was trimmed
    spoken = out.samples[boundary:]
    assert len(spoken) == pytest.approx(0.8 * rate, abs=rate * 0.01)
    assert abs(level(spoken, rate) - level(recording.samples, rate)) < 0.5
    for edge in (0, boundary - 1, boundary, len(out.samples) - 1):  # faded in and out at every joint
        assert abs(out.samples[edge]) < 0.01


def test_silence_around_a_piece_is_trimmed_and_pauses_are_inserted():
    rate = 16000
    sound = speech_like(0.5, rate=rate, seed=3)
    padded = Waveform(np.concatenate([np.zeros(rate), sound, np.zeros(rate)]), rate)
    out = join([Piece("recording", "a", recording=0), Piece("pause", "。", seconds=0.3),
                Piece("recording", "a", recording=0)], {0: padded}, [])
    kept = 2 * (0.5 + 2 * 0.030) + 0.3  # each piece: its sound and 30 ms either side, the pause between
    assert out.duration == pytest.approx(kept, abs=0.03)


# --- the engine, with the embedded engine as the fill voice -------------------------------------------------


@pytest.fixture
def recordings(tmp_path) -> list[tuple[str, str]]:
    made = []
    for i, text in enumerate(["您好", "，您的订单明天送达。"]):
        path = tmp_path / f"r{i}.wav"
        sf.write(path, speech_like(0.6 + 0.4 * i, rate=44100, seed=10 + i), 44100, subtype="PCM_16")
        made.append((text, str(path)))
    return made


FILL = VoiceSpec(voice_id=1, language="zh", parameters={"voice": "cmn"})


def test_the_engine_speaks_recordings_and_fills_the_variables(recordings):
    engine = get_engine("recorded")
    voice = VoiceSpec(voice_id=2, language="zh", recordings=tuple(recordings), fill=FILL, fill_engine="embedded")
    whole, filled = engine.synthesize(voice, ["您好，您的订单明天送达。", f"您好{mark('张伟', 'name')}，您的订单明天送达。"])
    assert whole.sample_rate == filled.sample_rate == 44100
    first = sf.read(recordings[0][1], dtype="float32")[0]
    # Noise-like recordings have sound to their edges: each is kept whole, "，" is part of the second one.
    assert whole.duration == pytest.approx(0.6 + 1.0, abs=0.01)
    assert filled.duration > whole.duration + 0.2  # the name, spoken by eSpeak between them
    np.testing.assert_allclose(filled.samples[1000:20000], first[1000:20000], atol=1e-6)  # the recording itself


def test_without_a_fill_voice_an_unrecorded_part_fails_with_the_words_named(recordings):
    voice = VoiceSpec(voice_id=2, language="zh", recordings=tuple(recordings))
    engine = get_engine("recorded")
    (wave,) = engine.synthesize(voice, ["您好，您的订单明天送达。"])  # recorded whole: no fill voice needed
    assert wave.duration > 1.0
    with pytest.raises(EngineError, match="no recording says “张伟”") as failed:
        engine.synthesize(voice, [f"您好{mark('张伟', 'name')}，您的订单明天送达。"])
    assert failed.value.permanent


def test_a_text_of_punctuation_alone_fails_with_that_said(recordings):
    voice = VoiceSpec(voice_id=2, language="zh", recordings=tuple(recordings), fill=FILL, fill_engine="embedded")
    (result,) = get_engine("recorded").synthesize_each(voice, ["。！"])
    assert isinstance(result, AudioError) and "only punctuation" in str(result)


def test_a_recorded_voice_takes_no_parameters_of_its_own():
    with pytest.raises(EngineError, match="takes no engine parameters"):
        get_engine("recorded").describe_parameters(VoiceSpec(voice_id=1, language="zh", parameters={"rate": 170}))


# --- in the database: keys, consent, the pipeline, the admin ------------------------------------------------


@pytest.fixture
def recorded(db, settings, tmp_path) -> Voice:
    settings.MEDIA_ROOT = tmp_path / "media"
    fill = Voice.objects.create(name="fill", parameters={"voice": "cmn"})
    voice = Voice.objects.create(name="店长录音", engine=Voice.Engine.RECORDED, fill_voice=fill)
    for i, text in enumerate(["您好", "，您的订单", "明天送达。"]):
        recording = VoiceRecording(voice=voice, text=text)
        recording.audio.save(f"r{i}.wav", ContentFile(wav_bytes(speech_like(0.5, rate=48000, seed=20 + i))), save=True)
    store_recordings(voice)
    return voice


def test_recordings_are_digested_and_every_key_follows_them_and_the_fill_voice(recorded):
    recording = recorded.recordings.get(text="您好")
    assert len(recording.sha256) == 64 and recording.duration == pytest.approx(0.5)
    key = actions.keyer_for(recorded).key("您好")
    recording.audio.save("again.wav", ContentFile(wav_bytes(speech_like(0.5, rate=48000, seed=99))), save=True)
    store_recordings(recorded)
    recorded.refresh_from_db()
    changed = actions.keyer_for(recorded).key("您好")
    assert changed != key
    fill = recorded.fill_voice
    fill.parameters = {"voice": "cmn", "pitch": 70}
    fill.save()
    recorded.refresh_from_db()
    assert actions.keyer_for(recorded).key("您好") != changed


def test_a_recorded_voice_needs_the_consent_its_cloned_fill_voice_needs(recorded):
    assert not recorded.needs_consent and recorded.is_usable()  # the embedded fill voice is synthetic
    cloned = Voice.objects.create(name="cloned", engine=Voice.Engine.GPT_SOVITS)
    recorded.fill_voice = cloned
    assert recorded.needs_consent and not recorded.is_usable()
    SpeakerConsent.objects.create(voice=cloned, speaker_name="李娜", signed_on="2026-12-01", document="c.pdf")
    assert recorded.is_usable() and recorded.active_consent().speaker_name == "李娜"


def test_a_campaign_in_a_recorded_voice_renders_each_callee_from_recordings_and_fill(recorded, make_campaign,
                                                                                      django_capture_on_commit_callbacks):
    campaign = make_campaign(2)  # 您好{name}，您的订单{order_id}明天送达。
    campaign.variants.update(voice=recorded)
    with django_capture_on_commit_callbacks(execute=False):
        launch_campaign(campaign)
    keys = list(campaign.calls.values_list("audio_id", flat=True))
    summary = actions.render(keys)
    assert sorted(summary.rendered) == sorted(keys) and not summary.failed
    assert set(campaign.calls.values_list("state", flat=True)) == {Call.State.READY}
    for row in RenderedAudio.objects.filter(render_key__in=keys):
        assert row.engine == "recorded" and row.original_sample_rate == 48000
        # three recordings of 0.5 s and two spoken values (a name, an order number read digit by digit)
        assert row.duration > 1.5 + 1.0
        assert read_info(Path(settings.MEDIA_ROOT) / row.original_file)["IGNR"] == (
            "recorded speech with synthetic parts by fill"
        )


def test_a_launch_is_refused_for_a_recorded_voice_with_nothing_to_say(recorded, make_campaign):
    recorded.recordings.all().delete()
    recorded.fill_voice = None
    recorded.save()
    campaign = make_campaign(1)
    campaign.variants.update(voice=recorded)
    with pytest.raises(LaunchError, match="has no recordings and no fill voice"):
        launch_campaign(campaign)


def test_the_preview_names_the_words_no_recording_says(recorded):
    recorded.fill_voice = None
    recorded.save()
    assert preview_voice(recorded, "您好，您的订单明天送达。").url
    preview = preview_voice(recorded, "您好，您的包裹明天送达。")
    assert not preview.url and "no recording says “，您的包裹”" in preview.problem


RECORDING_FORMS = {
    "recordings-INITIAL_FORMS": "0", "recordings-MIN_NUM_FORMS": "0", "recordings-MAX_NUM_FORMS": "1000",
}


def change_form(voice: Voice, rows: list[dict]) -> dict:
    data = {"name": voice.name, "language": voice.language, "engine": voice.engine, "parameters": "{}",
            "source": "trained", "base_version": "v2ProPlus", "fill_voice": voice.fill_voice_id or "",
            "recordings-TOTAL_FORMS": str(len(rows)), **RECORDING_FORMS}
    for i, row in enumerate(rows):
        data.update({f"recordings-{i}-{k}": v for k, v in row.items()})
    return data


def test_the_admin_takes_good_recordings_and_names_what_is_wrong_with_bad_ones(admin_client, db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    fill = Voice.objects.create(name="fill", parameters={"voice": "cmn"})
    add = {"name": "录音", "language": "zh", "engine": "recorded", "parameters": "{}", "fill_voice": fill.pk,
           "consents-TOTAL_FORMS": "0", "consents-INITIAL_FORMS": "0", "consents-MIN_NUM_FORMS": "0",
           "consents-MAX_NUM_FORMS": "1000"}
    assert admin_client.post(reverse("admin:voices_voice_add"), add).status_code == 302
    voice = Voice.objects.get(name="录音")
    page = reverse("admin:voices_voice_change", args=[voice.pk])
    good = SimpleUploadedFile("hello.wav", wav_bytes(speech_like(0.7, rate=48000, seed=5)))
    silent = SimpleUploadedFile("silent.wav", wav_bytes(np.zeros(48000, dtype=np.float32)))
    broken = SimpleUploadedFile("notes.wav", b"RIFF not really audio")
    response = admin_client.post(page, change_form(voice, [
        {"text": "您好", "audio": good}, {"text": "再见", "audio": silent}, {"text": "谢谢", "audio": broken},
    ]))
    assert response.status_code == 200  # nothing saved: each bad row says what is wrong with it
    body = response.content.decode()
    assert "“silent.wav” is silent or almost silent" in body
    assert re.search("“notes.wav” cannot be read as audio", body)
    assert not VoiceRecording.objects.exists()

    good.seek(0)
    response = admin_client.post(page, change_form(voice, [{"text": "  您好 ", "audio": good}]))
    assert response.status_code == 302, response.content.decode()[:2000]
    recording = VoiceRecording.objects.get(voice=voice)
    assert recording.text == "您好" and recording.duration == pytest.approx(0.7) and len(recording.sha256) == 64
    voice.refresh_from_db()
    assert voice.weights_digest == recordings_digest([("您好", recording.sha256)])


def test_a_fill_voice_must_be_a_synthesis_voice_in_the_same_language(admin_client, recorded):
    english = Voice.objects.create(name="english", language="en")
    response = admin_client.post(reverse("admin:voices_voice_change", args=[recorded.pk]),
                                 {**change_form(recorded, []), "fill_voice": english.pk})
    assert response.status_code == 200
    assert "speaks English, but this voice's recordings are Mandarin Chinese" in html.unescape(response.content.decode())
    other = Voice.objects.create(name="other recorded", engine=Voice.Engine.RECORDED)
    response = admin_client.post(reverse("admin:voices_voice_change", args=[recorded.pk]),
                                 {**change_form(recorded, []), "fill_voice": other.pk})
    assert "fill_voice" in response.context["adminform"].form.errors  # not even offered
