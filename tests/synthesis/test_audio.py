"""synthesis.audio: μ-law, WAV files, telephony post-processing (pure, no database)."""

from __future__ import annotations

import dataclasses
import os
import struct

import numpy as np
import pytest
import soundfile as sf

from synthesis import audio
from synthesis.audio import (
    AudioError,
    Waveform,
    gated_rms_dbfs,
    load_audio,
    mulaw_decode,
    mulaw_encode,
    read_mulaw_wav,
    to_telephony,
    write_mulaw_wav,
    write_wav,
)

RNG_SEED = 20240611


def _reference_ulaw(pcm16: int) -> int:
    """Scalar G.711 μ-law compression as in the ITU-T G.191 reference code (14-bit magnitude, bias 33)."""
    absno = ((~pcm16) >> 2) + 33 if pcm16 < 0 else (pcm16 >> 2) + 33
    absno = min(absno, 0x1FFF)
    i, segno = absno >> 6, 1
    while i:
        segno += 1
        i >>= 1
    code = ((8 - segno) << 4) | (15 - ((absno >> segno) & 0x0F))
    return code | 0x80 if pcm16 >= 0 else code


def _reference_expand(code: int) -> int:
    """Scalar G.711 μ-law expansion to 16-bit linear (G.191)."""
    sign = -1 if code < 0x80 else 1
    mantissa = ~code & 0xFF
    exponent = (mantissa >> 4) & 0x07
    step = 4 << (exponent + 1)
    return sign * ((0x80 << exponent) + step * (mantissa & 0x0F) + step // 2 - 4 * 33)


def _speech_like(seconds: float, rate: int, level_dbfs: float, seed: int = RNG_SEED) -> np.ndarray:
    """Noise bursts shaped like syllables (4 Hz) with pauses, band-limited roughly to the voice band."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    noise = rng.standard_normal(n)
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(n, 1 / rate)
    spectrum[(freqs < 200) | (freqs > 3500)] = 0
    noise = np.fft.irfft(spectrum, n)
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    envelope[(t % 1.5) > 1.1] = 0  # word pauses
    x = noise * envelope
    active = np.abs(envelope) > 0.25
    return x * (10 ** (level_dbfs / 20) / np.sqrt(np.mean(x[active] ** 2)))


def _active_rms_dbfs(x: np.ndarray, rate: int) -> float:
    """Independent level check: RMS of the 20 ms frames within 25 dB of the loudest frame."""
    frame = int(0.02 * rate)
    usable = len(x) // frame * frame
    power = np.mean(x[:usable].astype(np.float64).reshape(-1, frame) ** 2, axis=1)
    loud = power[power > power.max() * 10 ** (-25 / 10)]
    return 10 * np.log10(np.mean(loud))


# --- μ-law ------------------------------------------------------------------------------------------------------


def test_mulaw_known_code_points():
    assert mulaw_encode(np.array([0.0])) == b"\xff"
    assert mulaw_encode(np.array([-0.0])) == b"\xff"
    assert mulaw_encode(np.array([1.0])) == b"\x80"  # max positive
    assert mulaw_encode(np.array([-1.0])) == b"\x00"  # max negative
    assert mulaw_encode(np.array([5.0, -5.0])) == b"\x80\x00"  # beyond full scale: clipped
    assert mulaw_encode(np.array([-1e-6])) == b"\x7f"  # "negative zero"
    assert mulaw_encode(np.array([0, 32767, -32768], dtype=np.int16)) == b"\xff\x80\x00"
    decoded = mulaw_decode(b"\x80\x00\xff\x7f\xfe\x7e")
    assert decoded.dtype == np.float32
    assert (decoded * 32768).astype(int).tolist() == [32124, -32124, 0, 0, 8, -8]


def test_mulaw_encoder_is_byte_exact_with_g711_reference():
    pcm = np.arange(-32768, 32768, dtype=np.int32)
    expected = bytes(_reference_ulaw(int(v)) for v in pcm)
    assert mulaw_encode(pcm.astype(np.int16)) == expected
    assert mulaw_encode(pcm / 32768.0) == expected  # float path quantises identically


def test_mulaw_decoder_matches_reference_table():
    codes = bytes(range(256))
    expected = np.array([_reference_expand(c) for c in codes]) / 32768.0
    np.testing.assert_array_equal(mulaw_decode(codes), expected.astype(np.float32))
    # every code (but negative zero) survives decode -> encode unchanged
    again = mulaw_encode(mulaw_decode(codes))
    assert [a for a, b in zip(again, codes, strict=True) if a != b] == [0xFF]  # 0x7F -> 0.0 -> 0xFF


def test_mulaw_round_trip_error_bounds():
    x = np.linspace(-1.0, 1.0, 400_001)
    y = mulaw_decode(mulaw_encode(x)).astype(np.float64)
    in_range = np.abs(x) <= 32124 / 32768
    error = np.abs(y - x)
    assert np.all(error[in_range] <= np.abs(x[in_range]) / 32 + 2e-4)  # 4-bit mantissa: ≤ half a step
    assert error.max() < 0.02  # clipping at ±32124/32768
    t = np.arange(8000) / 8000
    sine = 0.5 * np.sin(2 * np.pi * 440 * t)
    noise = mulaw_decode(mulaw_encode(sine)) - sine
    snr = 10 * np.log10(np.mean(sine**2) / np.mean(noise**2))
    assert snr > 35  # G.711 gives ~38 dB on a loud sine


def test_mulaw_handles_empty_and_rejects_bad_dtype():
    assert mulaw_encode(np.array([], dtype=np.float32)) == b""
    assert mulaw_decode(b"").size == 0
    with pytest.raises(AudioError):
        mulaw_encode(np.array(["a"]))


# --- Waveform ---------------------------------------------------------------------------------------------------


def test_waveform_is_an_immutable_value():
    source = np.zeros(800, dtype=np.float64)
    wave = Waveform(source, 8000)
    assert wave.samples.dtype == np.float32
    assert wave.duration == pytest.approx(0.1)
    source[0] = 1.0
    assert wave.samples[0] == 0.0  # copied
    with pytest.raises(ValueError):
        wave.samples[0] = 1.0  # read-only
    with pytest.raises(dataclasses.FrozenInstanceError):
        wave.sample_rate = 16000  # type: ignore[misc]
    with pytest.raises(AudioError):
        Waveform(np.zeros((10, 2)), 8000)
    with pytest.raises(AudioError):
        Waveform(np.array([0.0, np.nan]), 8000)
    with pytest.raises(AudioError):
        Waveform(np.zeros(10), 0)


# --- WAV files --------------------------------------------------------------------------------------------------


def test_mulaw_wav_is_read_by_libsndfile(tmp_path):
    rng = np.random.default_rng(RNG_SEED)
    samples = np.clip(rng.standard_normal(8001) * 0.2, -1, 1).astype(np.float32)  # odd length: pad byte
    path = tmp_path / "prompt.wav"
    write_mulaw_wav(path, Waveform(samples, 8000))

    info = sf.info(str(path))
    assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == (
        "WAV",
        "ULAW",
        8000,
        1,
        len(samples),
    )
    decoded, rate = sf.read(str(path), dtype="int16")
    assert rate == 8000
    np.testing.assert_array_equal(decoded, (mulaw_decode(mulaw_encode(samples)) * 32768).astype(np.int16))
    as_float, _ = sf.read(str(path), dtype="float32")
    assert np.max(np.abs(as_float - samples)) < 0.02

    raw = path.read_bytes()
    assert raw[:4] == b"RIFF" and raw[8:12] == b"WAVE"
    assert struct.unpack_from("<I", raw, 4)[0] == len(raw) - 8
    assert raw[12:16] == b"fmt " and struct.unpack_from("<I", raw, 16)[0] == 18
    assert struct.unpack_from("<HHIIHHH", raw, 20) == (7, 1, 8000, 8000, 1, 8, 0)
    assert raw[38:42] == b"fact" and struct.unpack_from("<II", raw, 42) == (4, len(samples))
    assert raw[50:54] == b"data" and struct.unpack_from("<I", raw, 54)[0] == len(samples)
    assert len(raw) == 58 + len(samples) + 1

    payload, rate = read_mulaw_wav(path)
    assert rate == 8000 and payload == mulaw_encode(samples)


def test_write_mulaw_wav_requires_telephony_rate(tmp_path):
    with pytest.raises(AudioError, match="8000 Hz"):
        write_mulaw_wav(tmp_path / "x.wav", Waveform(np.zeros(100), 22050))
    assert list(tmp_path.iterdir()) == []


def test_read_mulaw_wav_rejects_corrupt_files_clearly(tmp_path):
    good = tmp_path / "good.wav"
    write_mulaw_wav(good, Waveform(np.full(400, 0.1), 8000))
    raw = good.read_bytes()

    cases = {
        "garbage.wav": (b"this is not a wav file at all", "RIFF/WAVE"),
        "truncated.wav": (raw[:-100], "truncated"),
        "header-only.wav": (raw[:30], "truncated|too short"),
        "nodata.wav": (raw[:50], "no data chunk"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(AudioError, match=message) as excinfo:
            read_mulaw_wav(path)
        assert name in str(excinfo.value)

    pcm = tmp_path / "pcm.wav"
    write_wav(pcm, Waveform(np.full(400, 0.1), 8000))
    with pytest.raises(AudioError, match="format tag 1"):
        read_mulaw_wav(pcm)
    with pytest.raises(AudioError, match="missing.wav"):
        read_mulaw_wav(tmp_path / "missing.wav")


def test_write_wav_and_load_audio_round_trip(tmp_path):
    t = np.arange(22050) / 22050
    tone = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    path = tmp_path / "orig.wav"
    write_wav(path, Waveform(tone, 22050))
    info = sf.info(str(path))
    assert (info.subtype, info.samplerate, info.channels) == ("PCM_16", 22050, 1)
    loaded = load_audio(path)
    assert loaded.sample_rate == 22050
    assert np.max(np.abs(loaded.samples - tone)) < 1e-4

    write_wav(path, Waveform(np.full(10, 1.5), 8000))  # out of range: clipped, not wrapped around
    assert load_audio(path).samples.min() > 0.99

    stereo = tmp_path / "stereo.wav"
    sf.write(str(stereo), np.stack([tone, np.zeros_like(tone)], axis=1), 22050)
    np.testing.assert_allclose(load_audio(stereo).samples, tone / 2, atol=1e-4)


def test_load_audio_errors_name_the_file(tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(AudioError, match="corrupt.wav"):
        load_audio(bad)
    with pytest.raises(AudioError, match="absent.wav"):
        load_audio(tmp_path / "absent.wav")


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path):
    path = tmp_path / "prompt.wav"
    wave = Waveform(np.full(800, 0.25), 8000)
    write_mulaw_wav(path, wave)
    write_mulaw_wav(path, wave)  # overwrite
    write_wav(tmp_path / "orig.wav", wave)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orig.wav", "prompt.wav"]
    before = path.read_bytes()

    def failing_writer(fh):
        fh.write(b"RIFF partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        audio._atomic_write(path, failing_writer)
    assert path.read_bytes() == before  # readers never see a half-written file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orig.wav", "prompt.wav"]
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o644)


# --- to_telephony -----------------------------------------------------------------------------------------------


def test_to_telephony_hits_loudness_target_on_speech_like_input():
    for rate, level in ((22050, -35.0), (16000, -8.0), (8000, -28.0)):
        wave = Waveform(_speech_like(4.0, rate, level), rate)
        phone = to_telephony(wave)
        assert phone.sample_rate == 8000 and phone.samples.dtype == np.float32
        assert gated_rms_dbfs(phone.samples, 8000) == pytest.approx(-20.0, abs=1.0)
        assert _active_rms_dbfs(phone.samples, 8000) == pytest.approx(-20.0, abs=1.0)
        assert np.max(np.abs(phone.samples)) <= 10 ** (-1 / 20)
    quieter = to_telephony(Waveform(_speech_like(3.0, 22050, -20.0), 22050), target_rms_dbfs=-26.0)
    assert _active_rms_dbfs(quieter.samples, 8000) == pytest.approx(-26.0, abs=1.0)


def test_to_telephony_never_exceeds_the_peak_ceiling():
    rate = 22050
    rng = np.random.default_rng(RNG_SEED)
    clipped = np.clip(_speech_like(3.0, rate, -3.0) * 8, -1, 1)  # hard-clipped, very loud
    spiky = _speech_like(3.0, rate, -40.0)
    spiky[rng.integers(0, len(spiky), 20)] = 1.0  # clicks: needs far more than 6 dB of limiting
    full_sine = np.sin(2 * np.pi * 1000 * np.arange(rate) / rate)
    for samples in (clipped, spiky, full_sine):
        for ceiling in (-1.0, -3.0):
            phone = to_telephony(Waveform(samples, rate), peak_dbfs=ceiling)
            assert np.max(np.abs(phone.samples)) <= 10 ** (ceiling / 20)
    sine_out = to_telephony(Waveform(full_sine, rate))
    assert gated_rms_dbfs(sine_out.samples, 8000) == pytest.approx(-20.0, abs=0.5)  # no limiting needed


def test_to_telephony_removes_dc_and_trims_silence():
    rate = 16000
    t = np.arange(int(0.5 * rate)) / rate
    burst = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.4  # with a DC offset
    silence = np.full(2 * rate, 0.4)
    phone = to_telephony(Waveform(np.concatenate([silence, burst, silence]), rate))
    # 2 s of silence cut to 150 ms each side (plus up to one 20 ms analysis frame of filter spread per side)
    assert phone.duration == pytest.approx(0.5 + 2 * 0.150, abs=0.05)
    assert abs(float(np.mean(phone.samples))) < 0.01
    loud = np.flatnonzero(np.abs(phone.samples) > 0.05)
    assert 0.1 <= loud[0] / 8000 <= 0.2
    assert 0.1 <= (len(phone.samples) - loud[-1]) / 8000 <= 0.2

    # No silence at the edges: padded with exactly 150 ms of digital silence on each side.
    tight = to_telephony(Waveform(0.3 * np.sin(2 * np.pi * 440 * t), rate))
    assert tight.duration == pytest.approx(0.5 + 0.3, abs=0.01)
    assert not np.any(tight.samples[:1000]) and not np.any(tight.samples[-1000:])


def test_to_telephony_rejects_silent_and_empty_input():
    with pytest.raises(AudioError, match="empty"):
        to_telephony(Waveform(np.zeros(0), 22050))
    with pytest.raises(AudioError, match="silent"):
        to_telephony(Waveform(np.zeros(22050), 22050))
    rng = np.random.default_rng(RNG_SEED)
    with pytest.raises(AudioError, match="silent"):
        to_telephony(Waveform(rng.standard_normal(22050) * 1e-5, 22050))  # -100 dBFS hiss
    with pytest.raises(AudioError, match="silent"):
        to_telephony(Waveform(np.full(22050, 0.5), 22050))  # pure DC is silence too


# --- streamed speech: PCM chunk by chunk, a WAV header without a length -----------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000, 32000, 22050])
def test_pcm_stream_joins_chunks_as_one_resample_of_the_whole(rate):
    import soxr

    rng = np.random.default_rng(RNG_SEED)
    whole = (rng.standard_normal(60_000) * 0.2).astype(np.float32)
    stream = audio.PcmStream(rate)
    pieces = [stream.feed(Waveform(part, 22050)) for part in np.split(whole, [7, 22_238, 41_000])]
    pieces.append(stream.finish())
    joined = np.frombuffer(b"".join(pieces), dtype="<i2")
    expected = whole if rate == 22050 else soxr.resample(whole, 22050, rate, quality="HQ")
    # One soxr stream fed in pieces and flushed gives what one resample of the whole gives: same length, and the
    # same samples within one 16-bit step (float rounding at the conversion; soxr 1.1 gives them exactly).
    assert len(joined) == len(expected)
    assert np.max(np.abs(joined.astype(np.int32) - np.rint(np.clip(expected, -1, 1) * 32768).clip(-32768, 32767))) <= 1
    with pytest.raises(AudioError, match="one rate"):
        stream.feed(Waveform(whole[:100], 16000))


def test_pcm16_round_trips_an_engines_own_16_bit_samples_and_clips():
    samples = np.array([-32768, -1, 0, 1, 12345, 32767], dtype=np.int16)
    assert audio.pcm16(samples.astype(np.float32) / 32768.0) == samples.astype("<i2").tobytes()
    assert np.frombuffer(audio.pcm16(np.array([-1.5, 1.0, 1.5])), dtype="<i2").tolist() == [-32768, 32767, 32767]


def test_a_wav_of_unknown_length_is_read_to_its_end():
    import io
    import wave

    pcm = np.arange(-800, 800, dtype="<i2").tobytes()
    data = audio.streaming_wav_header(16000) + pcm
    assert len(audio.streaming_wav_header(16000)) == 44
    samples, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert rate == 16000 and samples.tobytes() == pcm
    with wave.open(io.BytesIO(data)) as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (16000, 1, 2)
        assert reader.readframes(10**9) == pcm
