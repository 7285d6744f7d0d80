"""Training-audio slicing and checks on synthetic speech: sentences of harmonic 'syllables' with pauses."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import soxr

from voices.slicing import (
    SAMPLE_RATE,
    AudioProblem,
    PreparedClip,
    assess,
    load_speech,
    normalise,
    pick_reference,
    prepare_clips,
    slice_speech,
    write_wav,
)

SR = SAMPLE_RATE


def sentence(seconds: float, rng: np.random.Generator, *, level: float = 0.25) -> np.ndarray:
    """Speech-like: a gliding 110-220 Hz voice with 5 harmonics, syllables at ~4/s that fade to nothing."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(110, 220) * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    syllables = np.sin(np.pi * rng.uniform(3.5, 4.5) * t) ** 2  # zero at both ends of the sentence
    return (level / 1.5 * voice * syllables).astype(np.float32)


def recording(sentences: list[float], pauses: list[float], seed: int = 0) -> tuple[np.ndarray, list[tuple]]:
    """Sentences separated by pauses over a faint room tone; returns the audio and each sentence's span."""
    rng = np.random.default_rng(seed)
    parts, spans, at = [np.zeros(int(0.8 * SR), np.float32)], [], int(0.8 * SR)
    for length, pause in zip(sentences, pauses, strict=True):
        speech = sentence(length, rng)
        spans.append((at, at + speech.shape[0]))
        parts += [speech, np.zeros(int(pause * SR), np.float32)]
        at += speech.shape[0] + int(pause * SR)
    wav = np.concatenate(parts)
    wav += rng.normal(0, 10 ** (-70 / 20), wav.shape[0]).astype(np.float32)  # -70 dBFS room tone
    return wav, spans


def minute_of_speech(seed: int = 0) -> tuple[np.ndarray, list[tuple]]:
    rng = np.random.default_rng(seed)
    lengths = [float(x) for x in rng.uniform(1.5, 5.5, 30)]
    pauses = [float(x) for x in rng.uniform(0.35, 1.5, 30)]
    lengths[-1] = 5.0  # the last clip is whatever follows the last cut: long enough here to pass 4 s
    while sum(lengths) + sum(pauses) > 62:
        lengths.pop(-2), pauses.pop(-2)
    return recording(lengths, pauses, seed)


def test_a_minute_of_speech_slices_into_4s_clips_at_pauses_keeping_at_most_500ms_silence():
    wav, spans = minute_of_speech()
    assert 55 < wav.shape[0] / SR < 63
    slices = slice_speech(wav, SR)
    assert len(slices) >= 5
    hop = SR // 100
    for piece in slices:
        assert 4.0 <= (piece.end - piece.start) / SR <= 12.0
        inside = [s for s in spans if piece.start < s[1] and s[0] < piece.end]
        # No sentence is cut in two: every one lies wholly in one clip (within the fade-in/out of a syllable).
        for a, b in inside:
            assert a >= piece.start - 4 * hop and b <= piece.end + 4 * hop
        lead = inside[0][0] - piece.start
        tail = piece.end - inside[-1][1]
        assert lead <= 0.5 * SR + hop and tail <= 0.5 * SR + hop, (lead / SR, tail / SR)
    covered = [s for s in spans if any(p.start <= s[0] + 4 * hop and s[1] - 4 * hop <= p.end for p in slices)]
    assert covered == spans  # nothing spoken is lost
    assert all(a.end <= b.start for a, b in zip(slices, slices[1:], strict=False))


def test_a_long_stretch_without_pauses_is_split_at_its_quietest_moments():
    rng = np.random.default_rng(3)
    wav = np.concatenate([sentence(30.0, rng), np.zeros(SR // 2, np.float32)])
    slices = slice_speech(wav, SR)
    assert len(slices) >= 3
    assert all(4.0 <= (s.end - s.start) / SR <= 12.0 for s in slices[:-1])
    assert (slices[-1].end - slices[-1].start) / SR >= 4.0
    # Each cut falls in a syllable gap (the envelope's near-zero), not mid-syllable.
    for a, b in zip(slices, slices[1:], strict=False):
        assert a.end == b.start
        assert np.abs(wav[a.end - 160 : a.end + 160]).max() < 0.05
    unsplit = slice_speech(wav, SR, max_length_ms=None)
    assert len(unsplit) == 1


def test_each_bad_clip_gets_its_own_reason_and_leaves_the_others_alone():
    lengths, pauses = [5.0, 4.5, 5.5, 4.8, 5.2, 4.6, 0.4], [0.8, 1.0, 0.9, 1.1, 0.7, 1.2, 0.6]
    clean, spans = recording(lengths, pauses, seed=7)
    bad = clean.copy()
    a, b = spans[1]
    bad[a:b] = np.clip(bad[a:b] * 6, -1, 1)  # shouted into the microphone
    # A fan runs through sentence 3, from the middle of the pause before it to the middle of the one after.
    a, b = (spans[2][1] + spans[3][0]) // 2, (spans[3][1] + spans[4][0]) // 2
    bad[a:b] += np.random.default_rng(1).normal(0, 0.05, b - a).astype(np.float32)

    good_clips, bad_clips = prepare_clips(clean, SR), prepare_clips(bad, SR)
    assert len(good_clips) == len(bad_clips) == 7
    problems = [c.problem for c in bad_clips]
    assert problems[1].startswith("clipped: ") and "% of the samples are at full scale" in problems[1]
    assert problems[3].startswith("too noisy: speech is only ") and "(needs 15 dB)" in problems[3]
    assert problems[6].startswith("too short: ") and "(needs at least 1.5 s)" in problems[6]
    assert good_clips[6].problem == problems[6]
    assert all(good_clips[index].problem is None for index in range(6))
    for index in (0, 2, 4, 5):
        assert problems[index] is None and bad_clips[index].snr_db > 30
    for index in (0, 1, 5):  # clips away from the fan are cut exactly as before, to the sample
        assert (bad_clips[index].start_s, bad_clips[index].end_s) == (
            good_clips[index].start_s,
            good_clips[index].end_s,
        )
    np.testing.assert_array_equal(bad_clips[0].audio, good_clips[0].audio)
    np.testing.assert_array_equal(bad_clips[5].audio, good_clips[5].audio)
    assert bad_clips[3].snr_db < 15 and bad_clips[1].peak == pytest.approx(1.0)


def test_assess_names_the_measured_number_for_each_problem():
    rng = np.random.default_rng(11)
    speech = sentence(5.0, rng)
    assert assess(speech, SR) is None
    assert assess(speech[:SR], SR) == "too short: 1.0 s of audio (needs at least 1.5 s)"
    assert assess(np.tile(speech, 5), SR) == "too long: 25.0 s without a pause (at most 20 s)"
    quiet = speech * 10 ** (-40 / 20)  # the sentence's loud frames are at -17 dBFS: now -57
    assert assess(quiet, SR).startswith("silent: the speech level is only -57 dBFS (needs -40 dBFS)")
    assert assess(np.zeros(3 * SR, np.float32), SR).startswith("silent: the speech level is only -120 dBFS")
    clipped = np.clip(speech * 4, -1, 1)
    assert assess(clipped, SR).startswith("clipped: ")
    noisy = speech + rng.normal(0, 0.04, speech.shape[0]).astype(np.float32)
    message = assess(noisy, SR)
    assert message.startswith("too noisy: speech is only ") and message.endswith("record in a quieter room")
    measured = int(message.split("only ")[1].split(" dB")[0])
    assert 3 <= measured < 15


def test_a_recording_with_no_speech_at_all_is_refused_in_words():
    with pytest.raises(AudioProblem, match=r"^silent: no speech found; the loudest moment is -\d+ dBFS"):
        prepare_clips(sentence(10.0, np.random.default_rng(0)) * 0.01, SR)


def test_normalise_mixes_a_quarter_of_peak_normalised_audio():
    clip = np.array([0.0, 0.2, -0.4, 0.1], np.float32)
    out = normalise(clip)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, clip / 0.4 * 0.9 * 0.25 + 0.75 * clip, rtol=1e-6)
    assert np.abs(out).max() == pytest.approx(0.9 * 0.25 + 0.75 * 0.4)
    assert np.abs(normalise(np.array([0.5, -1.6], np.float32))).max() == pytest.approx(0.975)
    assert not normalise(np.zeros(4, np.float32)).any()


def _clip(duration: float, snr: float, problem: str | None = None) -> PreparedClip:
    return PreparedClip(0.0, duration, np.zeros(1, np.float32), duration, problem, snr, 0.5)


def test_pick_reference_takes_a_clean_3_to_10s_clip_preferring_5_to_8s():
    wav, _ = minute_of_speech(seed=4)
    clips = prepare_clips(wav, SR)
    index = pick_reference(clips)
    assert index is not None
    assert clips[index].problem is None and 3.0 <= clips[index].duration_s <= 10.0

    assert pick_reference([_clip(2.5, 40), _clip(11, 40), _clip(6, 40, "too noisy: ...")]) is None
    assert pick_reference([_clip(9.5, 35), _clip(6.0, 35), _clip(3.2, 35)]) == 1
    assert pick_reference([_clip(6.0, 18), _clip(7.0, 32)]) == 1  # cleaner wins within 5-8 s
    assert pick_reference([]) is None


def _wav_bytes(samples: np.ndarray, rate: int, **kwargs) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, **kwargs)
    return buffer.getvalue()


def soxr_reference(samples: np.ndarray) -> np.ndarray:
    return soxr.resample(samples.astype(np.float32), 44100, SAMPLE_RATE, quality="HQ")


def test_load_speech_decodes_downmixes_and_resamples_to_32k(tmp_path):
    t = np.arange(44100 * 2) / 44100
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 300 * t), 0.1 * np.sin(2 * np.pi * 300 * t)], axis=1)
    wav, sr = load_speech(_wav_bytes(stereo, 44100, format="WAV", subtype="PCM_16"))
    assert sr == 32000 and wav.dtype == np.float32 and wav.ndim == 1
    assert wav.shape[0] == 64000
    assert np.abs(wav[1000:-1000]).max() == pytest.approx(0.3, abs=0.01)  # the mean of both channels
    path = tmp_path / "speech.flac"
    path.write_bytes(_wav_bytes(stereo[:, 0], 44100, format="FLAC"))
    from_path, _ = load_speech(path)
    assert from_path.shape[0] == 64000
    ogg, _ = load_speech(_wav_bytes(stereo, 44100, format="OGG", subtype="VORBIS"))
    assert ogg.shape[0] == 64000 and np.abs(ogg[1000:-1000]).max() == pytest.approx(0.3, abs=0.03)
    long_mono = np.tile(stereo[:, 0], 12)  # 24 s: read in several blocks, joined in order
    joined, _ = load_speech(_wav_bytes(long_mono, 44100, format="WAV", subtype="FLOAT"))
    assert joined.shape[0] == 24 * 32000
    np.testing.assert_allclose(joined[:: 32000 * 5], soxr_reference(long_mono)[:: 32000 * 5], atol=1e-4)


def test_load_speech_says_what_is_wrong_in_words(tmp_path):
    with pytest.raises(AudioProblem, match=r"^not audio: it could not be read as WAV, FLAC or OGG"):
        load_speech(b"Dear Sir, please find attached my voice.\n" * 20)
    with pytest.raises(AudioProblem, match=r"^empty: the file is audio but holds no samples$"):
        load_speech(_wav_bytes(np.zeros(0, np.float32), 32000, format="WAV", subtype="PCM_16"))
    with pytest.raises(AudioProblem, match=r"^empty: the file has no bytes at all$"):
        load_speech(b"")
    with pytest.raises(AudioProblem, match=r"^unreadable: there is no file at "):
        load_speech(tmp_path / "missing.wav")
    with pytest.raises(AudioProblem, match=r"^too long: 5 s of audio; at most 3 s is accepted$"):
        load_speech(_wav_bytes(np.zeros(5 * 8000, np.float32), 8000, format="WAV"), max_seconds=3)
    with pytest.raises(AudioProblem, match=r"^unreadable: 384000 Hz with 1 channel\(s\) is not a microphone"):
        load_speech(_wav_bytes(np.zeros(100, np.float32), 384000, format="WAV"))
    truncated = _wav_bytes(np.zeros(8000, np.float32), 8000, format="WAV", subtype="PCM_16")[:30]
    with pytest.raises(AudioProblem, match=r"^(not audio|empty): "):
        load_speech(truncated)


def test_write_wav_is_16bit_pcm_that_reads_back():
    clip = normalise(sentence(3.0, np.random.default_rng(2)))
    data = write_wav(clip, SR)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    info = sf.info(io.BytesIO(data))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (SR, 1, "PCM_16", clip.shape[0])
    back, _ = load_speech(data)
    np.testing.assert_allclose(back, clip, atol=1 / 32767)
