"""SIT tones and carrier announcements heard in received G.711 audio (telephony/sip/announce.py).

The audio is what a trunk would send: eSpeak NG speech (the embedded engine, offline) and exact tones, through
G.711 with line noise, fed 20 ms packet by 20 ms packet. Accuracy on a labelled set is bench/announce.py's job;
these check the behaviours one by one."""

from __future__ import annotations

import functools
import struct
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from synthesis.audio import to_telephony
from synthesis.engines.base import VoiceSpec
from synthesis.engines.embedded import EmbeddedEngine
from telephony.sip import g711
from telephony.sip.announce import (
    AnnouncementMatcher,
    LibraryError,
    Sit,
    SitDetector,
    SitListener,
    decode,
    load_library,
    load_library_dir,
    reference_from_samples,
)

RATE = 8000
VOICE = {"voice": "cmn+f2", "pitch": 60, "rate": 165}
CLIPS = {
    "invalid_number": "您好，您拨打的号码是空号，请查证后再拨。",
    "suspended": "您好，您拨打的电话已停机。",
    "powered_off": "您好，您拨打的电话已关机。",
    "unreachable": "您好，您拨打的电话暂时无法接通，请稍后再拨。",
}


@functools.cache
def speech(text: str, voice: tuple = tuple(sorted(VOICE.items()))) -> np.ndarray:
    wave_ = EmbeddedEngine().synthesize(VoiceSpec(0, "zh-CN", dict(voice)), [text])[0]
    return np.asarray(to_telephony(wave_).samples, dtype=np.float64) * 32768


@functools.cache
def _tables() -> tuple[np.ndarray, np.ndarray]:
    ulaw = np.array([g711.linear_to_ulaw(s) for s in range(-32768, 32768)], dtype=np.uint8)
    alaw = np.array([g711.linear_to_alaw(s) for s in range(-32768, 32768)], dtype=np.uint8)
    return ulaw, alaw


def packets(samples: np.ndarray, pt: int = 0) -> list[bytes]:
    """Linear samples as the 20 ms G.711 payloads a trunk sends."""
    codes = _tables()[pt == 8][np.clip(np.round(samples), -32768, 32767).astype(np.int64) + 32768]
    codes = np.concatenate((codes, np.full(-codes.size % 160, codes[-1], np.uint8)))
    return [codes[i : i + 160].tobytes() for i in range(0, codes.size, 160)]


def at_level(samples: np.ndarray, dbfs: float) -> np.ndarray:
    """Scaled so its loud parts sit at `dbfs` RMS."""
    frames = samples[: samples.size // 160 * 160].reshape(-1, 160)
    power = (frames**2).mean(axis=1)
    rms = np.sqrt(power[power >= power.max() / 1000].mean())
    return samples * 32768 * 10 ** (dbfs / 20) / rms


def noisy(samples: np.ndarray, dbfs: float, seed: int = 0) -> np.ndarray:
    return samples + np.random.default_rng(seed).standard_normal(samples.size) * 32768 * 10 ** (dbfs / 20)


def tone(frequency: float, ms: float, peak_dbfs: float = -20.0) -> np.ndarray:
    t = np.arange(int(ms * RATE / 1000)) / RATE
    return 32768 * 10 ** (peak_dbfs / 20) * np.sin(2 * np.pi * frequency * t)


def silence(ms: float) -> np.ndarray:
    return np.zeros(int(ms * RATE / 1000))


def sits_in(samples: np.ndarray, pt: int = 0) -> list[Sit]:
    detector = SitDetector()
    heard = [sit for p in packets(samples, pt) if (sit := detector.feed(p, pt)) is not None]
    return heard + ([last] if (last := detector.flush()) else [])


# (first tone, long?), (second tone, long?) for each code Telcordia assigns
CODES = {
    "IC": ((913.8, False), (1370.6, False)),
    "VC": ((985.2, True), (1370.6, False)),
    "NC": ((985.2, True), (1428.5, True)),
    "RO": ((913.8, False), (1428.5, True)),
    "IO": ((913.8, True), (1428.5, False)),
    "reserved": ((985.2, False), (1428.5, False)),
}


def sit(code: str, *, peak_dbfs: float, off: float = 0.0, stretch: float = 1.0) -> np.ndarray:
    (f1, long1), (f2, long2) = CODES[code]
    lengths = [(380 if long1 else 274) * stretch, (380 if long2 else 274) * stretch, 380 * stretch]
    frequencies = [f1 * (1 + off), f2 * (1 + off), 1776.7 * (1 + off)]
    return np.concatenate([tone(f, ms, peak_dbfs) for f, ms in zip(frequencies, lengths, strict=True)])


@pytest.mark.parametrize("code", sorted(CODES))
@pytest.mark.parametrize(("peak_dbfs", "off", "stretch", "pt"), [
    (-10.0, 0.015, 1.05, 0), (-35.0, -0.015, 0.95, 8), (-35.0, 0.015, 1.0, 0), (-22.0, 0.0, 1.0, 8),
])
def test_each_sit_code_is_named_at_any_level_and_within_the_tolerances(code, peak_dbfs, off, stretch, pt):
    audio = np.concatenate((silence(500), sit(code, peak_dbfs=peak_dbfs, off=off, stretch=stretch), silence(400)))
    heard = sits_in(noisy(audio, peak_dbfs - 25), pt)

    assert [s.code for s in heard] == [code]
    assert heard[0].start == pytest.approx(0.5, abs=0.03)
    assert heard[0].frequencies[2] == pytest.approx(1776.7 * (1 + off), rel=0.006)


def test_the_inter_lata_codes_and_an_itu_sit_are_recognised():
    def three(f1, ms1, f2, ms2, f3=1776.7, ms3=380):
        return np.concatenate((tone(f1, ms1), tone(f2, ms2), tone(f3, ms3), silence(300)))

    assert [s.code for s in sits_in(three(913.8, 380, 1370.6, 380))] == ["NC"]
    assert [s.code for s in sits_in(three(985.2, 274, 1370.6, 380))] == ["RO"]
    # ITU-T E.180: 950, 1400, 1800 Hz, 330 ms each with short gaps: a SIT, its cause not coded
    e180 = np.concatenate((tone(950, 330), silence(20), tone(1400, 330), silence(20), tone(1800, 330), silence(300)))
    assert [s.code for s in sits_in(e180)] == ["E180"]
    # the coded frequencies with lengths no code uses (long-short-long on low-high is IO's; high-long then
    # high-short is none): still a SIT, its cause unknown
    assert [s.code for s in sits_in(three(985.2, 380, 1428.5, 274))] == ["unassigned"]


def test_a_sit_before_an_announcement_is_heard_once_per_repeat():
    announcement = at_level(speech(CLIPS["invalid_number"]), -20)
    audio = np.concatenate([np.concatenate((sit("IC", peak_dbfs=-22), silence(200), announcement))] * 2)

    heard = sits_in(noisy(audio, -50))

    assert [s.code for s in heard] == ["IC", "IC"]
    assert heard[1].start == pytest.approx(heard[0].start + audio.size / 2 / RATE, abs=0.03)


def test_no_sit_in_speech_music_dtmf_ringback_or_lone_tones():
    rng = np.random.default_rng(5)
    t = np.arange(5 * RATE) / RATE
    ringback_cn = 0.3 * 32768 * np.sin(2 * np.pi * 450 * t) * ((t % 5) < 1)
    ringback_eu = 0.3 * 32768 * np.sin(2 * np.pi * 425 * t) * ((t % 5) < 1)
    keys = np.concatenate([np.concatenate((tone(r, 300) + tone(c, 300), silence(100)))
                           for r, c in [(941, 1336), (852, 1477), (697, 1209), (770, 1336), (941, 1477)]])
    melody = np.concatenate([tone(f, 350) + tone(2 * f, 350, -30) for f in (880, 987.8, 1318.5, 1396.9, 1760, 1975.5)])
    scale = np.concatenate([tone(f, 300) for f in (985.2, 1370.6, 1776.7)[::-1]])  # the SIT's tones, falling
    long_tones = np.concatenate((tone(985.2, 900), tone(1428.5, 900), tone(1776.7, 900)))  # too long
    lone = tone(1776.7, 3000)
    talk = [at_level(speech(text), -15) for text in (*CLIPS.values(), "喂？你好，哪位？", "您好，我现在不方便接听电话，请在提示音后留言。")]
    for audio in (ringback_cn, ringback_eu, keys, melody, scale, long_tones, lone, *talk,
                  rng.standard_normal(3 * RATE) * 3000):
        assert sits_in(noisy(audio, -50)) == []


@functools.cache
def library(tmp: Path) -> list:
    for outcome, text in CLIPS.items():
        write_wav(tmp / outcome / "mobile.wav", speech(text))
    return load_library_dir(tmp)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        data = np.repeat(samples, channels) if channels > 1 else samples
        f.writeframes(np.clip(np.round(data), -32768, 32767).astype("<i2").tobytes())


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    return library(tmp_path_factory.mktemp("library"))


def heard(references, audio: np.ndarray, pt: int = 0):
    matcher = AnnouncementMatcher(references)
    matches = [m for p in packets(audio, pt) if (m := matcher.feed(p, pt)) is not None]
    return matches + ([last] if (last := matcher.flush()) else [])


def test_the_library_directory_is_read_outcome_by_outcome(references):
    assert sorted((r.name, r.outcome) for r in references) == sorted(
        (f"{outcome}/mobile", outcome) for outcome in CLIPS)


@pytest.mark.parametrize("outcome", sorted(CLIPS))
def test_an_announcement_is_matched_through_g711_noise_gain_and_a_late_join(references, outcome):
    late = int(0.3 * RATE)
    audio = at_level(speech(CLIPS[outcome]), -28)[late:]  # the early media began 300 ms into the recording
    matches = heard(references, noisy(np.concatenate((audio, silence(500))), -28 - 15, seed=3), pt=8)

    assert [(m.name, m.outcome) for m in matches] == [(f"{outcome}/mobile", outcome)]
    assert matches[0].started == pytest.approx(-0.3, abs=0.03)
    assert matches[0].at <= audio.size / RATE + 0.1  # before the recording ends


def test_an_announcement_after_ringback_and_a_sit_is_matched_where_it_starts(references):
    t = np.arange(int(1.7 * RATE)) / RATE
    ringback = 0.1 * 32768 * np.sin(2 * np.pi * 450 * t) * (t < 1.0)
    lead = np.concatenate((ringback, sit("IC", peak_dbfs=-20), silence(150)))
    audio = np.concatenate((lead, at_level(speech(CLIPS["invalid_number"]), -18), silence(300)))
    matches = heard(references, noisy(audio, -40, seed=4))

    assert [m.outcome for m in matches] == ["invalid_number"]
    assert matches[0].started == pytest.approx(lead.size / RATE, abs=0.03)
    assert matches[0].score >= 0.45


def test_answers_greetings_and_other_sounds_never_match(references):
    other_voice = (("pitch", 40), ("rate", 160), ("voice", "cmn"))
    talk = ["喂？", "你好。", "喂，你好，哪位？", "您好，我现在不方便接听电话，请在提示音后留言。",
            "您好，您的电话已转入语音信箱，请在嘀声后留言。", "您好，这里是顺丰快递，您的包裹明天上午送达，确认请按一。"]
    sounds = [at_level(speech(text, voice), -20) for text in talk for voice in (tuple(sorted(VOICE.items())), other_voice)]
    t = np.arange(5 * RATE) / RATE
    sounds += [0.3 * 32768 * np.sin(2 * np.pi * 450 * t) * ((t % 5) < 1), silence(4000),
               np.concatenate([tone(f, 250) + tone(f * 1.5, 250) for f in (262, 330, 392, 523, 659, 784) * 3])]
    for audio in sounds:
        assert heard(references, noisy(np.concatenate((audio, silence(1000))), -45)) == []


def test_a_matcher_reports_once():
    clip = speech(CLIPS["powered_off"])
    matcher = AnnouncementMatcher([reference_from_samples("off", "powered_off", clip)])
    results = [matcher.feed(p, 0) for p in packets(np.concatenate((clip, clip, clip)))]

    assert [m.name for m in results if m] == ["off"] and matcher.match is not None


def wav_bytes(code: int, bits: int, data: bytes, rate: int = RATE, channels: int = 1) -> bytes:
    fmt = struct.pack("<HHIIHH", code, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    return (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE" + b"fmt "
            + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)


def test_library_loading_names_what_is_wrong(tmp_path):
    clip = speech(CLIPS["suspended"])
    good = tmp_path / "good.wav"
    write_wav(good, clip)

    def error(entries) -> str:
        with pytest.raises(LibraryError) as caught:
            load_library(entries)
        return str(caught.value)

    (tmp_path / "text.wav").write_text("hello")
    assert "not a WAV file" in error([("a", "suspended", tmp_path / "text.wav")])
    assert "cannot read" in error([("a", "suspended", tmp_path / "missing.wav")])
    write_wav(tmp_path / "stereo.wav", clip, channels=2)
    assert "2 channels" in error([("a", "suspended", tmp_path / "stereo.wav")])
    assert "unknown outcome 'dead'" in error([("a", "dead", good)])
    assert "two references" in error([("a", "suspended", good), ("a", "busy", good)])
    write_wav(tmp_path / "short.wav", clip[:2000])
    assert "0.25 s long" in error([("a", "suspended", tmp_path / "short.wav")])
    write_wav(tmp_path / "quiet.wav", np.zeros(16000))
    assert "silent" in error([("a", "suspended", tmp_path / "quiet.wav")])
    (tmp_path / "odd.wav").write_bytes(wav_bytes(2, 4, b"\0" * 8000))  # ADPCM
    assert "encoding 2 with 4 bits" in error([("a", "suspended", tmp_path / "odd.wav")])
    assert "no references" in error([])
    assert "(name, outcome, WAV path)" in error([("a", "suspended")])


def test_a_reference_at_another_rate_is_resampled_or_refused_without_soxr(tmp_path, monkeypatch):
    clip = speech(CLIPS["unreachable"])
    import soxr

    write_wav(tmp_path / "wide.wav", soxr.resample(clip, RATE, 16000), rate=16000)
    [reference] = load_library([("wide", "unreachable", tmp_path / "wide.wav")])
    matcher = AnnouncementMatcher([reference])
    assert any(matcher.feed(p, 0) for p in packets(clip))  # the 8 kHz recording matches its 16 kHz reference

    monkeypatch.setitem(sys.modules, "soxr", None)  # as if soxr were not installed
    with pytest.raises(LibraryError, match="16000 Hz and soxr is not installed"):
        load_library([("wide", "unreachable", tmp_path / "wide.wav")])


def test_g711_and_pcm_reference_files_load_alike(tmp_path):
    clip = speech(CLIPS["powered_off"])
    (tmp_path / "ulaw.wav").write_bytes(wav_bytes(7, 8, b"".join(packets(clip, 0))))
    (tmp_path / "alaw.wav").write_bytes(wav_bytes(6, 8, b"".join(packets(clip, 8))))
    write_wav(tmp_path / "pcm.wav", clip)
    references = load_library([(name, "powered_off", tmp_path / f"{name}.wav") for name in ("ulaw", "alaw", "pcm")])

    assert [r.name for r in references] == ["ulaw", "alaw", "pcm"]
    for reference in references:  # each one recognises the recording played over the other law
        matcher = AnnouncementMatcher([reference])
        assert [m.name for p in packets(clip, 8) if (m := matcher.feed(p, 8))] == [reference.name]


def test_a_library_directory_holds_only_outcome_folders_of_wavs(tmp_path):
    def error(directory) -> str:
        with pytest.raises(LibraryError) as caught:
            load_library_dir(directory)
        return str(caught.value)

    assert "not a directory" in error(tmp_path / "nowhere")
    assert "no WAV files" in error(tmp_path)
    (tmp_path / "dead").mkdir()
    assert "expected only folders named for outcomes" in error(tmp_path)
    (tmp_path / "dead").rmdir()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    assert "not a .wav file" in error(tmp_path)


def test_only_g711_payload_types_decode():
    assert decode(b"\xff\x7f", 0).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="payload type 18 is not G.711"):
        decode(b"\0" * 10, 18)


def _through_listener(samples: np.ndarray, pt: int = 0) -> tuple[list[Sit], SitListener]:
    listener = SitListener()
    heard = [s for p in packets(samples, pt) if (s := listener.feed(p, pt)) is not None]
    return heard + ([last] if (last := listener.flush()) else []), listener


@pytest.mark.parametrize("code", sorted(CODES))
@pytest.mark.parametrize(("peak_dbfs", "off", "pt", "lead_ms"), [(-35.0, 0.015, 8, 0), (-12.0, -0.015, 0, 130)])
def test_the_gated_listener_hears_every_code_the_detector_hears(code, peak_dbfs, off, pt, lead_ms):
    """The gate looks at one packet in five; every alignment of the SIT against it (lead) still opens it in
    time, and the replayed history holds the SIT's beginning."""
    audio = noisy(np.concatenate((silence(lead_ms + 400), sit(code, peak_dbfs=peak_dbfs, off=off), silence(600))),
                  peak_dbfs - 25)  # fmt: skip
    heard, listener = _through_listener(audio, pt)
    assert [s.code for s in heard] == [code] and listener.opened >= 1


def test_the_gate_stays_shut_for_speech_and_noise_and_opens_once_per_sit():
    talk = np.concatenate([at_level(speech(text), -15) for text in ("喂？你好，哪位？", CLIPS["suspended"])])
    heard, listener = _through_listener(noisy(talk, -50))
    assert heard == [] and listener.opened <= 2  # a vowel may brush a SIT frequency; the detector then says no
    twice = np.concatenate([sit("NC", peak_dbfs=-20), silence(2500), sit("RO", peak_dbfs=-20), silence(1500)])
    heard, listener = _through_listener(noisy(twice, -50))
    assert [s.code for s in heard] == ["NC", "RO"] and listener.opened == 2
