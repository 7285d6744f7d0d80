"""In-band DTMF (telephony/sip/dtmf.py) on synthesised G.711 audio, and the RTP receive path that picks between
it and RFC 4733 events.

Every signal goes through a G.711 encoder first (synthesis.audio's μ-law, or the A-law table), so quantisation is
always part of the test. Levels are a sine's peak relative to full scale (dBFS), as dtmf.LEVEL_DBFS counts them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np
import pytest

from synthesis.audio import gated_rms_dbfs, mulaw_encode, to_telephony
from synthesis.engines import get_engine
from synthesis.engines.base import VoiceSpec
from telephony.sip import dtmf, g711, rtp, sdp

RATE = 8000
ALL_KEYS = "0123456789*#ABCD"
DELIVERY_ZH = "您好张先生，您的订单 SF1234567890 将于明天下午3点送达，确认请按1，改期请按2，重听请按星号。"
_ALAW = np.array([g711.linear_to_alaw(sample) for sample in range(-32768, 32768)], dtype=np.uint8)


def frequencies(key: str) -> tuple[float, float]:
    (row,) = [index for index, keys in enumerate(dtmf.KEYS) if key in keys]
    return dtmf.ROWS[row], dtmf.COLUMNS[dtmf.KEYS[row].index(key)]


def tone(key: str, ms: float, *, level: float = -10.0, twist: float = 0.0, shift: float = 0.0) -> np.ndarray:
    """A keypad's two tones: each `level` dBFS, the column `twist` dB above the row, both `shift` (a fraction) off."""
    low, high = frequencies(key)
    t = np.arange(round(RATE * ms / 1000)) / RATE
    amplitude = 10 ** (level / 20)
    return amplitude * (
        np.sin(2 * np.pi * low * (1 + shift) * t) + 10 ** (twist / 20) * np.sin(2 * np.pi * high * (1 + shift) * t + 1.0)
    )


def silence(ms: float) -> np.ndarray:
    return np.zeros(round(RATE * ms / 1000))


def presses(keys: str, *, ms: float = 60, gap: float = 60, **kwargs) -> np.ndarray:
    return np.concatenate([silence(gap), *(np.concatenate((tone(key, ms, **kwargs), silence(gap))) for key in keys)])


def encode(samples: np.ndarray, pt: int = dtmf.ULAW) -> bytes:
    if pt == dtmf.ULAW:
        return mulaw_encode(samples)
    linear = np.clip(np.round(samples * 32768), -32768, 32767).astype(np.int64)
    return _ALAW[linear + 32768].tobytes()


def heard(samples: np.ndarray, *, pt: int = dtmf.ULAW, packet: int = rtp.SAMPLES) -> str:
    """The keys a fresh detector reports for `samples`, fed as G.711 payloads of `packet` bytes."""
    payload = encode(samples, pt)
    detector = dtmf.DtmfDetector()
    return "".join(detector.feed(payload[i : i + packet], pt) for i in range(0, len(payload), packet))


# --- keys ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pt", [dtmf.ULAW, dtmf.ALAW], ids=["pcmu", "pcma"])
def test_every_key_is_heard_once(pt):
    assert heard(presses(ALL_KEYS), pt=pt) == ALL_KEYS


@pytest.mark.parametrize("packet", [80, 100, 240, 333])
def test_packet_size_does_not_matter(packet):
    assert heard(presses("159#", ms=45, gap=45), packet=packet) == "159#"


def test_a_long_press_counts_once():
    assert heard(np.concatenate((tone("7", 2000), silence(50)))) == "7"


@pytest.mark.parametrize("offset", range(0, 80, 7))  # samples: where the tone starts within a 10 ms half
def test_40_ms_counts_at_any_alignment_20_ms_never(offset):
    """Q.24's bounds (at least 40 ms must count, 20 ms or less must not); 25-35 ms count at some alignments."""
    for key in ALL_KEYS:
        assert heard(np.concatenate((np.zeros(offset), tone(key, 40), silence(60)))) == key
        assert heard(np.concatenate((np.zeros(offset), tone(key, 20), silence(60)))) == ""


@pytest.mark.parametrize("offset", range(0, 80, 11))
def test_the_same_key_twice_after_a_30_ms_pause_counts_twice(offset):
    for level in (-10.0, -30.0):
        signal = np.concatenate((np.zeros(offset), tone("5", 60, level=level), silence(30), tone("5", 60, level=level),
                                 silence(40)))
        assert heard(signal) == "55"


def test_a_10_ms_drop_out_inside_a_press_is_bridged():
    signal = np.concatenate((tone("3", 200), silence(60)))
    signal[800:880] = 0  # 10 ms of nothing, 100 ms in
    assert heard(signal) == "3"


def test_twist_limits():
    for key in ALL_KEYS:
        assert heard(presses(key, twist=-7.0)) == key  # column 7 dB weaker (normal twist)
        assert heard(presses(key, twist=-9.0)) == ""
        assert heard(presses(key, twist=3.0)) == key  # column 3 dB louder (reverse twist)
        assert heard(presses(key, twist=5.0)) == ""


def test_level_limits():
    assert heard(presses(ALL_KEYS, level=-34.0)) == ALL_KEYS
    assert heard(presses(ALL_KEYS, level=-3.5)) == ALL_KEYS  # both tones near full scale together: clipped peaks
    assert heard(presses(ALL_KEYS, level=-42.0)) == ""


def test_keypad_frequency_tolerance():
    """A keypad may be 1.5% off (ITU-T Q.23); a tone half way between two keys is neither."""
    for shift in (-0.015, 0.015):
        assert heard(presses(ALL_KEYS, shift=shift)) == ALL_KEYS
    t = np.arange(800) / RATE
    between = 0.3 * (np.sin(2 * np.pi * (697 + 770) / 2 * t) + np.sin(2 * np.pi * 1209 * t))
    assert heard(np.concatenate((between, silence(50)))) == ""


def test_keys_through_white_noise():
    rng = np.random.default_rng(19)
    signal = presses(ALL_KEYS, level=-20.0)
    noise = rng.normal(0.0, 10 ** ((-20.0 - 15.0) / 20), signal.size)  # 15 dB under the two tones together
    assert heard(signal + noise) == ALL_KEYS
    assert heard(rng.normal(0.0, 0.1, RATE * 3)) == ""  # loud noise alone


# --- what must not count ----------------------------------------------------------------------------------


def vowel(f0: float, formants: Iterable[tuple[float, float]], seconds: float = 1.0, *, vibrato: float = 0.02,
          level: float = -12.0) -> np.ndarray:
    """A sung or spoken vowel: a glottal harmonic series (falling 6 dB an octave) shaped by formant resonances,
    its pitch wobbling by `vibrato` at 5 Hz."""
    t = np.arange(round(RATE * seconds)) / RATE
    pitch = f0 * (1 + vibrato * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    out = np.zeros_like(t)
    for k in range(1, int(3600 // f0) + 1):
        f = k * f0
        gain = 1.0 / k
        for centre, bandwidth in formants:
            gain /= abs(complex(1 - (f / centre) ** 2, f * bandwidth / centre**2))
        out += gain * np.sin(k * phase + 0.3 * k * k)
    return out * 10 ** (level / 20) / np.max(np.abs(out))


VOWELS = {  # formant (frequency, bandwidth) pairs
    "a": [(730, 90), (1090, 110), (2440, 170)],
    "i": [(270, 60), (2290, 100), (3010, 150)],
    "u": [(300, 60), (870, 90), (2240, 150)],
    "o": [(570, 80), (840, 90), (2410, 160)],
    "e": [(530, 70), (1840, 110), (2480, 160)],
    "on a key": [(697, 80), (1209, 90), (2500, 200)],  # formants right on key 1's tones
}


@pytest.mark.parametrize("f0", [98.0, 120.0, 174.25, 210.0, 232.33])  # 174.25: 4 x and 7 x land on 1's tones
@pytest.mark.parametrize("name", VOWELS)
def test_vowels_are_not_keys(name, f0):
    for vibrato in (0.0, 0.02):
        assert heard(vowel(f0, VOWELS[name], vibrato=vibrato)) == "", (name, f0, vibrato)


def glide(start: float, rate: float) -> np.ndarray:
    """One second of a sine gliding from `start` at `rate` Hz a second (kept within the phone band)."""
    frequency = np.clip(start + rate * np.arange(RATE) / RATE, 300, 3400)
    return np.sin(2 * np.pi * np.cumsum(frequency) / RATE)


def test_sweeps_are_not_keys():
    assert heard(0.4 * glide(300, 3100)) == ""
    # Two tones gliding at once cross key pairs, but never stay on one: apart, or together but fast.
    # (Two pure tones gliding together slower than ~3 kHz/s can hold a key's pair long enough to be one.)
    for (start1, rate1), (start2, rate2) in [((600, -1000), (1200, 1500)), ((600, 2000), (1200, -2000)),
                                             ((600, 4000), (1200, 6000))]:
        assert heard(0.3 * (glide(start1, rate1) + glide(start2, rate2))) == "", (rate1, rate2)


def note(frequency: float, seconds: float = 0.6) -> np.ndarray:
    """A plucked-string-like note: five harmonics falling 1/k, decaying."""
    t = np.arange(round(RATE * seconds)) / RATE
    return sum(np.sin(2 * np.pi * k * frequency * t) / k for k in range(1, 6)) * np.exp(-2 * t)


CHORDS = {
    "C major": (261.63, 329.63, 392.00),
    "A minor 7": (440.00, 523.25, 659.26, 783.99),
    "F5 + E6, near key 2's tones": (698.46, 1318.51),
    "F5 + D6, near key 1's tones": (698.46, 1174.66),
    "G5 + E6 + C7": (783.99, 1318.51, 2093.00),
}


@pytest.mark.parametrize("name", CHORDS)
def test_music_like_chords_are_not_keys(name):
    chord = sum(note(f) for f in CHORDS[name])
    assert heard(0.5 * chord / np.max(np.abs(chord))) == ""


@functools.cache
def rendered_clip() -> np.ndarray:
    """The project's own delivery prompt from the embedded voice, as a call plays it (8 kHz, -20 dBFS speech)."""
    wave = get_engine("embedded").synthesize(VoiceSpec(voice_id=1, language="zh-CN"), [DELIVERY_ZH])[0]
    return to_telephony(wave).samples.astype(np.float64)


def test_our_rendered_clip_is_not_keys():
    clip = rendered_clip()
    assert clip.size > RATE * 4
    assert heard(clip) == ""
    assert heard(clip * 3.0) == ""  # 10 dB louder: a hot echo


@pytest.mark.parametrize("ms", [60, 100])
def test_keys_over_the_echo_of_our_clip_at_minus_10_db(ms):
    """On a real line the far end's audio carries an echo of what we play: keys must come through it."""
    signal = presses(ALL_KEYS * 2, ms=ms, gap=80, level=-13.0)
    clip = rendered_clip()
    echo = np.resize(clip, signal.size)
    tone_rms = 10 ** (-13.0 / 20)  # two sines of peak a: RMS a
    echo *= 10 ** (-10 / 20) * tone_rms / 10 ** (gated_rms_dbfs(clip, RATE) / 20)
    assert heard(signal + echo) == ALL_KEYS * 2


# --- the RTP receive path ---------------------------------------------------------------------------------


def answer(*lines: str) -> sdp.Media:
    body = "\r\n".join(["v=0", "o=far 1 1 IN IP4 192.0.2.9", "s=-", "c=IN IP4 192.0.2.9", "t=0 0", *lines, ""])
    return sdp.parse(body.encode())


def stream(media: sdp.Media) -> tuple[rtp.RtpStream, list[str]]:
    keys: list[str] = []
    receiver = rtp.RtpStream()
    receiver.answered = True
    receiver.listen_for_keys(media.event_pts)
    receiver.on_digits = keys.append
    return receiver, keys


def event(pt: int, key: str, ts: int, seq: int, *, end: bool) -> bytes:
    payload = bytes([rtp.EVENTS.index(key), 0x80 if end else 0x00, 0, 160])
    return rtp.pack(pt, seq, ts, 0x1234, payload)


def test_events_count_on_our_offered_type_and_on_the_answered_one():
    media = answer("m=audio 30000 RTP/AVP 0 96", "a=rtpmap:96 telephone-event/8000")
    assert media.event_pt == 96 and media.event_pts == {96, sdp.TELEPHONE_EVENT}
    receiver, keys = stream(media)
    for seq, (pt, key) in enumerate([(sdp.TELEPHONE_EVENT, "1"), (96, "2")]):
        receiver.datagram_received(event(pt, key, 1000 * seq, 2 * seq, end=False), ("192.0.2.9", 30000))
        receiver.datagram_received(event(pt, key, 1000 * seq, 2 * seq + 1, end=True), ("192.0.2.9", 30000))
    assert keys == ["1", "2"] and receiver.tones is None


def test_a_type_the_far_end_uses_for_audio_is_never_events():
    # It answers 101 as a (dynamic) codec of its own: RFC 4733 payloads on 101 would be its audio, not keys.
    media = answer("m=audio 30000 RTP/AVP 0 101 96", "a=rtpmap:101 opus/48000/2", "a=rtpmap:96 telephone-event/8000")
    assert media.event_pts == {96}
    nonsense = answer("m=audio 30000 RTP/AVP 0 8", "a=rtpmap:0 telephone-event/8000")  # 0 is PCMU, whatever it says
    assert nonsense.event_pts == {sdp.TELEPHONE_EVENT}
    receiver, keys = stream(media)
    receiver.datagram_received(event(101, "1", 0, 0, end=True), ("192.0.2.9", 30000))
    receiver.datagram_received(event(0, "1", 0, 1, end=True), ("192.0.2.9", 30000))  # μ-law bytes, not an event
    assert keys == [] and receiver.decoder.flush() == ""


def test_without_telephone_event_the_keys_come_from_the_audio():
    media = answer("m=audio 30000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000")
    assert media.event_pts == frozenset()
    receiver, keys = stream(media)
    assert receiver.tones is not None
    payload = encode(presses("19"))
    for seq, start in enumerate(range(0, len(payload), rtp.SAMPLES)):
        packet = rtp.pack(0, seq, seq * rtp.SAMPLES, 0x1234, payload[start : start + rtp.SAMPLES])
        receiver.datagram_received(packet, ("192.0.2.9", 30000))
        receiver.datagram_received(event(101, "5", 0, seq, end=True), ("192.0.2.9", 30000))  # not negotiated
    assert "".join(keys) == "19"
    # A re-INVITE that brings telephone-event switches to events (never both: a key would count twice).
    receiver.listen_for_keys(answer("m=audio 30000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000").event_pts)
    assert receiver.tones is None and receiver.event_pts == {101}
