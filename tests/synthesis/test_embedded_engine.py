"""The embedded eSpeak NG engine and the engine registry (pure, no database)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")

from synthesis.audio import Waveform, to_telephony  # noqa: E402
from synthesis.engines import (  # noqa: E402
    ENGINES,
    embedded,
    engine_version,
    get_engine,
)
from synthesis.engines.base import EngineError, VoiceSpec  # noqa: E402
from synthesis.engines.embedded import EmbeddedEngine  # noqa: E402

DELIVERY_ZH = "您好张先生，您的订单 SF1234567890 将于明天下午3点送达，确认请按1，改期请按2"
SHORT_ZH = "您好，您的快递明天下午送达"  # 13 characters
SHORT_EN = "Your parcel will arrive tomorrow afternoon."  # 6 words


def _voice(language="zh-CN", **parameters) -> VoiceSpec:
    return VoiceSpec(voice_id=1, language=language, parameters=parameters)


def _rms(wave: Waveform) -> float:
    return float(np.sqrt(np.mean(wave.samples.astype(np.float64) ** 2)))


@pytest.fixture(scope="module")
def engine() -> EmbeddedEngine:
    return get_engine("embedded")


def test_chinese_and_english_render_audible_speech(engine):
    zh, en = (
        engine.synthesize(_voice("zh-CN"), [SHORT_ZH])[0],
        engine.synthesize(_voice("en-US"), [SHORT_EN])[0],
    )
    for wave in (zh, en):
        assert isinstance(wave, Waveform)
        assert wave.sample_rate == 22050
        assert wave.samples.dtype == np.float32
        assert _rms(wave) > 0.02  # clearly audible, not a click
        assert np.max(np.abs(wave.samples)) <= 1.0
    assert 13 * 0.1 <= zh.duration <= 13 * 0.4 + 0.5  # ~0.1-0.4 s per character
    assert 1.0 <= en.duration <= 5.0

    full = engine.synthesize(_voice("zh-CN"), [DELIVERY_ZH])[0]
    assert 5.0 <= full.duration <= 20.0 and _rms(full) > 0.02
    phone = to_telephony(full)
    assert phone.sample_rate == 8000 and phone.duration > 5.0


def test_batches_keep_order_and_match_single_renders(engine):
    voice = _voice("en-US")
    a, b, a_again = engine.synthesize(voice, [SHORT_EN, "Press one to confirm.", SHORT_EN])
    assert a.samples.tobytes() == a_again.samples.tobytes()
    assert a.samples.tobytes() != b.samples.tobytes()
    assert engine.synthesize(voice, [SHORT_EN])[0].samples.tobytes() == a.samples.tobytes()
    assert engine.synthesize(voice, []) == []


def test_output_is_bit_identical_for_the_same_input(engine):
    # libespeak-ng keeps state between utterances and seeds its noise from time(): the engine reloads a
    # fresh library instance per utterance and fixes the seed, so the cache's "same key = same bytes" holds.
    zh = _voice("zh-CN")
    breathy = _voice("en-US", voice="en-us+whisper")  # uses the noise generator
    first = engine.synthesize(zh, [DELIVERY_ZH])[0].samples.tobytes()
    first_breathy = engine.synthesize(breathy, [SHORT_EN])[0].samples.tobytes()
    engine.synthesize(_voice("en-US", rate=300), [SHORT_EN])  # something else in between
    time.sleep(1.05)  # on purpose: the next second, so a different time() seed inside the library
    assert engine.synthesize(zh, [DELIVERY_ZH])[0].samples.tobytes() == first
    assert engine.synthesize(breathy, [SHORT_EN])[0].samples.tobytes() == first_breathy


def test_concurrent_renders_are_serialised_and_identical(engine):
    voice = _voice("zh-CN")
    expected = engine.synthesize(voice, [SHORT_ZH])[0].samples.tobytes()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(lambda _: engine.synthesize(voice, [SHORT_ZH])[0].samples.tobytes(), range(8))
        )
    assert all(r == expected for r in results)


def test_different_voices_and_parameters_give_different_audio(engine):
    base = engine.synthesize(_voice("en-US"), [SHORT_EN])[0]
    slow = engine.synthesize(_voice("en-US", rate=110), [SHORT_EN])[0]
    fast = engine.synthesize(_voice("en-US", rate=320), [SHORT_EN])[0]
    assert slow.duration > base.duration * 1.3 > fast.duration * 1.3
    variants = [
        engine.synthesize(_voice("en-US", **params), [SHORT_EN])[0].samples.tobytes()
        for params in ({}, {"pitch": 20}, {"pitch": 80}, {"range": 5}, {"voice": "en-us+f3"}, {"voice": "en"})
    ]
    assert len(set(variants)) == len(variants)
    mandarin = engine.synthesize(_voice("zh-CN"), [SHORT_ZH])[0].samples.tobytes()
    cantonese = engine.synthesize(_voice("zh-HK"), [SHORT_ZH])[0].samples.tobytes()
    assert mandarin != cantonese


def test_describe_parameters_normalises_and_fills_defaults(engine):
    assert engine.describe_parameters(_voice("zh-CN")) == {
        "voice": "cmn",
        "rate": 175,
        "pitch": 50,
        "range": 50,
    }
    assert engine.describe_parameters(_voice("zh"))["voice"] == "cmn"
    assert engine.describe_parameters(_voice("en"))["voice"] == "en-us"
    assert engine.describe_parameters(_voice("en-GB"))["voice"] == "en"
    assert engine.describe_parameters(_voice("fr-FR"))["voice"] == "fr"
    assert engine.describe_parameters(_voice("zh-CN", voice=" EN-US+f3 ", rate=200, pitch=0, range=99)) == {
        "voice": "en-us+f3",
        "rate": 200,
        "pitch": 0,
        "range": 99,
    }


@pytest.mark.parametrize(
    ("language", "parameters", "message"),
    [
        ("zh-CN", {"rate": 50}, "between 80 and 450"),
        ("zh-CN", {"rate": 451}, "between 80 and 450"),
        ("zh-CN", {"rate": "fast"}, "must be an integer"),
        ("zh-CN", {"rate": 175.0}, "must be an integer"),
        ("zh-CN", {"pitch": True}, "must be an integer"),
        ("zh-CN", {"pitch": 100}, "between 0 and 99"),
        ("zh-CN", {"range": -1}, "between 0 and 99"),
        ("zh-CN", {"speed": 1.2}, "unknown eSpeak parameter"),
        ("zh-CN", {"voice": "nosuchvoice"}, "no voice 'nosuchvoice'"),
        ("zh-CN", {"voice": "en-us+nosuchvariant"}, "unknown eSpeak voice variant"),
        ("zh-CN", {"voice": "../../etc/passwd"}, "invalid eSpeak voice name"),
        ("zh-CN", {"voice": ""}, "non-empty string"),
        ("", {}, "no language"),
        ("xx-YY", {}, "no voice 'xx'"),
    ],
)
def test_bad_parameters_are_permanent_errors(engine, language, parameters, message):
    with pytest.raises(EngineError, match=message) as excinfo:
        engine.synthesize(_voice(language, **parameters), [SHORT_ZH])
    assert excinfo.value.permanent is True


def test_bad_texts_are_permanent_errors(engine):
    for texts, message in (
        ([""], "empty text"),
        (["   \n"], "empty text"),
        (["a\x00b"], "NUL"),
        ("hello", "list"),
    ):
        with pytest.raises(EngineError, match=message) as excinfo:
            engine.synthesize(_voice("en-US"), texts)
        assert excinfo.value.permanent is True


def test_registry_returns_one_instance_per_process():
    assert ENGINES["embedded"] is EmbeddedEngine
    barrier = threading.Barrier(8)

    def grab(_):
        barrier.wait()
        return get_engine("embedded")

    with ThreadPoolExecutor(max_workers=8) as pool:
        instances = list(pool.map(grab, range(8)))
    assert all(instance is instances[0] for instance in instances)
    assert get_engine("embedded") is instances[0]
    assert instances[0].name == "embedded"


def test_engine_version_names_the_library():
    version = engine_version("embedded")
    assert version.startswith("espeak-ng-1.")
    assert version.endswith("+norm2")  # Herald's text processing is part of the version, so of the render key
    assert version == EmbeddedEngine.version == get_engine("embedded").version


def test_unknown_engine_is_a_clear_permanent_error():
    for call in (get_engine, engine_version):
        with pytest.raises(
            EngineError, match=r"unknown synthesis engine 'gpt-sovits-typo' \(available: embedded"
        ):
            call("gpt-sovits-typo")
    with pytest.raises(EngineError) as excinfo:
        get_engine("")
    assert excinfo.value.permanent is True


def test_engine_error_survives_pickling():
    error = pickle.loads(pickle.dumps(EngineError("GPU out of memory", permanent=False)))
    assert isinstance(error, EngineError)
    assert (str(error), error.permanent) == ("GPU out of memory", False)


def test_importing_the_registry_loads_no_native_library():
    code = (
        "import synthesis.engines, synthesis.engines.embedded\n"
        "maps = open('/proc/self/maps').read()\n"
        "assert 'espeak' not in maps, 'libespeak-ng loaded at import'\n"
        "import sys; assert 'django' not in sys.modules, 'django imported'\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, timeout=60, cwd=Path(__file__).resolve().parents[2]
    )


def test_file_copy_fallback_without_memfd(engine, monkeypatch):
    monkeypatch.setattr(embedded, "_memfd_copy", lambda lib_path: None)
    monkeypatch.setitem(embedded._state, "copy_path", None)
    voice = _voice("en-US", voice="en-us+f3")
    first = engine.synthesize(voice, [SHORT_EN])[0].samples.tobytes()
    copy = Path(embedded._state["copy_path"])
    assert copy.is_file() and copy.parent.name.startswith("herald-espeak-")
    assert engine.synthesize(voice, [SHORT_EN])[0].samples.tobytes() == first


# --- streaming ------------------------------------------------------------------------------------------------

THREE_SENTENCES_EN = "Hello Mister Zhang. Your parcel arrives tomorrow afternoon. Press one to confirm."


@pytest.mark.parametrize(
    ("language", "text", "parameters"),
    [
        ("en-US", THREE_SENTENCES_EN, {}),
        ("en-US", "Your code is 4 4 7 1! Please keep your phone on?", {"voice": "en-us+whisper"}),  # noise seeded
        ("en-US", SHORT_EN, {}),  # one sentence: one chunk
        ("zh-CN", DELIVERY_ZH, {}),
    ],
)
def test_the_stream_joined_is_the_render_sample_for_sample(engine, language, text, parameters):
    # Exact, not within a tolerance: the stream is the same single utterance on a fresh library instance, only
    # handed over sentence by sentence.
    voice = _voice(language, **parameters)
    (whole,) = engine.synthesize(voice, [text])
    chunks = list(engine.stream(voice, text))
    assert all(c.sample_rate == whole.sample_rate for c in chunks)
    assert np.concatenate([c.samples for c in chunks]).tobytes() == whole.samples.tobytes()
    if text == SHORT_EN:
        assert len(chunks) == 1


def test_the_stream_yields_each_sentence_as_a_chunk(engine):
    chunks = list(engine.stream(_voice("en-US"), THREE_SENTENCES_EN))
    assert len(chunks) == 3
    alone = [engine.synthesize(_voice("en-US"), [s])[0] for s in THREE_SENTENCES_EN.split(". ")]
    for chunk, sentence in zip(chunks, alone, strict=True):
        # Said in one utterance, a sentence is cut where eSpeak starts the next: about as long as said alone
        # (give or take the pause between them), and it carries speech, not only a pause.
        assert abs(chunk.duration - sentence.duration) < 0.6
        assert _rms(chunk) > 0.02


def test_closing_the_stream_stops_the_library_and_frees_it(engine):
    text = " ".join(f"This is sentence number {i}." for i in range(1, 40))
    stream = engine.stream(_voice("en-US"), text)
    first = next(stream)
    assert first.duration > 0.5
    stream.close()
    assert not embedded._lock.locked()
    assert not [t for t in threading.enumerate() if t.name == "espeak-stream"]
    # the library is free and fresh for the next text
    (again,) = engine.synthesize(_voice("en-US"), [SHORT_EN])
    assert again.samples.tobytes() == engine.synthesize(_voice("en-US"), [SHORT_EN])[0].samples.tobytes()


def test_the_stream_fails_like_the_render(engine):
    for voice, text, message in (
        (_voice("en-US"), "   ", "empty text"),
        (_voice("en-US"), "a\x00b", "NUL"),
        (_voice("en-US", voice="nosuchvoice"), SHORT_EN, "no voice 'nosuchvoice'"),
        (_voice("en-US", rate=10), SHORT_EN, "between 80 and 450"),
    ):
        with pytest.raises(EngineError, match=message) as excinfo:
            next(engine.stream(voice, text))
        assert excinfo.value.permanent is True
    assert not embedded._lock.locked()
