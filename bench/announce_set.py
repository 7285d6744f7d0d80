"""A labelled synthetic set for carrier announcements and SIT tones, generated from seeds (no downloads).

    python bench/announce_set.py --out DIR [--seeds 1000:1400]   # writes DIR/library and DIR/examples

Announcements: three carriers' recordings of the five outcomes ("您拨打的号码是空号", "已停机", "已关机", "暂时无法
接通", "正在通话中"), each carrier in its own wording and its own eSpeak NG voice (the embedded engine, offline):
these clean 8 kHz clips are the reference library (library()). An example (example(seed)) plays one of them as a
call would carry it: a start offset (the audio joins up to 400 ms late, or after up to 1.2 s of ringback or
silence), sometimes a SIT first (any code, 0-6 dB below the announcement, frequencies ±1.5%, lengths ±5%), sometimes looped
twice, then the route's variation (a clock off by up to ±0.3%, a random spectral tilt, a level of -10..-30
dBFS), line noise at 10-30 dB SNR, and G.711 μ-law or A-law. Negatives ("none"): short human answers ("喂？",
"你好"...), voicemail greetings (one opening like a carrier's: "您拨打的用户不方便接听..."), our own prompts,
silence with line noise, Chinese (450 Hz) and 425 Hz and US ringback, music-like tones and DTMF, through the same
channel. Voices of negatives are drawn from the carriers' voices and others.

Seeds: bench/announce.py tunes on 0..399 (TUNE) and reports on 1000..1599 (HELD_OUT), which the thresholds in
telephony/sip/announce.py were never looked at against.
"""

from __future__ import annotations

import argparse
import functools
import json
import struct
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synthesis.audio import to_telephony  # noqa: E402
from synthesis.engines.base import VoiceSpec  # noqa: E402
from synthesis.engines.embedded import EmbeddedEngine  # noqa: E402
from telephony.sip import g711  # noqa: E402
from telephony.sip.announce import SIT_CODES, SIT_HIGH_1, SIT_HIGH_2, SIT_LOW_1, SIT_LOW_2, SIT_THIRD  # noqa: E402

RATE = 8000
TUNE = range(0, 400)
HELD_OUT = range(1000, 1600)

CARRIERS: dict[str, tuple[dict, dict[str, str]]] = {
    "mobile": ({"voice": "cmn+f2", "pitch": 62, "rate": 165}, {
        "invalid_number": "您好，您拨打的号码是空号，请查证后再拨。",
        "suspended": "您好，您拨打的电话已停机。",
        "powered_off": "您好，您拨打的电话已关机。",
        "unreachable": "您好，您拨打的电话暂时无法接通，请稍后再拨。",
        "busy": "您好，您拨打的电话正在通话中，请稍后再拨。",
    }),
    "unicom": ({"voice": "cmn", "pitch": 42, "rate": 155}, {
        "invalid_number": "对不起，您所拨打的号码不存在，请核对后再拨。",
        "suspended": "对不起，您拨打的用户已停机。",
        "powered_off": "对不起，您拨打的用户已关机。",
        "unreachable": "对不起，您拨打的用户暂时无法接通。",
        "busy": "对不起，您拨打的用户正忙，请稍后再拨。",
    }),
    "telecom": ({"voice": "cmn+f4", "pitch": 55, "rate": 180}, {
        "invalid_number": "您拨的号码是空号，请查证后再拨。",
        "suspended": "您拨打的号码已暂停服务。",
        "powered_off": "您拨打的用户已关机，请稍后再拨。",
        "unreachable": "您拨打的用户无法接通，请稍后再拨。",
        "busy": "用户忙，请稍后再拨。",
    }),
}
HUMAN = ["喂？", "你好。", "喂，你好，哪位？", "喂，哪位啊？", "你好，请讲。", "嗯，你说。", "喂，谁呀？", "是我，什么事？"]
GREETINGS = [
    "您好，我现在不方便接听电话，请在提示音后留言。",
    "你好，我是小王，现在无法接听，请留言，谢谢。",
    "您好，您的电话已转入语音信箱，请在嘀声后留言。",
    "您拨打的用户不方便接听，请在提示音后留言，谢谢。",
]
PROMPTS = ["您好，这里是顺丰快递，您的包裹将于明天上午送达，确认请按一。", "您好，您预约的体检在周五上午九点，改期请按二。"]
OTHER_VOICES = [{"voice": "cmn+m3", "pitch": 35, "rate": 170}, {"voice": "cmn+f3", "pitch": 70, "rate": 190},
                {"voice": "cmn+m1", "pitch": 48, "rate": 150}]
NEGATIVE_KINDS = ("human", "greeting", "prompt", "silence", "ringback", "music", "dtmf")


@dataclass(frozen=True)
class Example:
    seed: int
    label: str  # an outcome, or "none"
    kind: str  # "announcement" or a negative kind
    reference: str  # the reference played ("" for negatives)
    sit: str  # the SIT code played first ("" for none)
    pt: int  # 0 μ-law, 8 A-law
    payloads: list[bytes]  # 20 ms G.711 packets
    announcement_start: float  # seconds into the audio where the announcement (or SIT) begins; -x: joined late


@functools.cache
def _render(text: str, voice: tuple) -> np.ndarray:
    wave_ = EmbeddedEngine().synthesize(VoiceSpec(0, "zh-CN", dict(voice)), [text])[0]
    phone = to_telephony(wave_)
    return np.asarray(phone.samples, dtype=np.float64) * 32768.0


def _voice_key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


@functools.cache
def library() -> list[tuple[str, str, np.ndarray]]:
    """The reference clips: (name, outcome, 8 kHz linear samples) per carrier and outcome."""
    return [(f"{carrier}/{outcome}", outcome, _render(text, _voice_key(params)))
            for carrier, (params, texts) in CARRIERS.items() for outcome, text in texts.items()]


def write_library(directory: Path) -> None:
    """The library as load_library_dir() reads it: <outcome>/<carrier>.wav, 16-bit PCM at 8 kHz."""
    for name, outcome, samples in library():
        carrier = name.split("/")[0]
        write_wav(directory / outcome / f"{carrier}.wav", samples)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.clip(np.round(samples), -32768, 32767).astype("<i2").tobytes())


def sit_tones(rng: np.random.Generator, code: str | None = None) -> tuple[str, np.ndarray]:
    """A SIT of `code` (or a random one): frequencies ±1.5%, lengths ±5%, at unit peak (scaled later)."""
    table = {v: k for k, v in SIT_CODES.items()}  # one (first, second) per code is enough
    code = code or str(rng.choice(sorted(table)))
    (f1, long1), (f2, long2) = table[code]
    plan = [((SIT_LOW_1, SIT_HIGH_1)[f1 == "H"], long1), ((SIT_LOW_2, SIT_HIGH_2)[f2 == "H"], long2),
            (SIT_THIRD, True)]
    parts = []
    for frequency, long_ in plan:
        seconds = (0.380 if long_ else 0.274) * rng.uniform(0.95, 1.05)
        t = np.arange(int(seconds * RATE)) / RATE
        parts.append(np.sin(2 * np.pi * frequency * rng.uniform(0.985, 1.015) * t + rng.uniform(0, 6.3)))
        parts.append(np.zeros(int(rng.uniform(0, 0.004) * RATE)))
    return code, np.concatenate(parts)


def ringback(rng: np.random.Generator, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    kind = rng.integers(3)
    if kind == 0:  # China: 450 Hz, 1 s on, 4 s off
        tone, on, period = np.sin(2 * np.pi * 450 * t), 1.0, 5.0
    elif kind == 1:  # Europe: 425 Hz, 1 s on, 4 s off
        tone, on, period = np.sin(2 * np.pi * 425 * t), 1.0, 5.0
    else:  # North America: 440 + 480 Hz, 2 s on, 4 s off
        tone, on, period = 0.5 * (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t)), 2.0, 6.0
    phase = rng.uniform(0, period)
    return tone * (((t + phase) % period) < on)


def music(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Notes with harmonics, vibrato and sometimes chords, 120-400 ms each, some within the SIT band."""
    parts = []
    while sum(p.size for p in parts) < seconds * RATE:
        n = int(rng.uniform(0.12, 0.4) * RATE)
        t = np.arange(n) / RATE
        note = np.zeros(n)
        for _ in range(rng.integers(1, 4)):
            f0 = 220 * 2 ** (rng.integers(0, 30) / 12)
            vibrato = 1 + 0.004 * np.sin(2 * np.pi * 5 * t) * rng.integers(0, 2)
            for h in range(1, 4):
                if f0 * h < 3800:
                    note += np.sin(2 * np.pi * f0 * h * vibrato * t) / h
        parts.append(note * np.minimum(1, np.minimum(t, t[::-1]) / 0.01))
    return np.concatenate(parts)[: int(seconds * RATE)]


def dtmf(rng: np.random.Generator, seconds: float) -> np.ndarray:
    rows, cols = (697, 770, 852, 941), (1209, 1336, 1477, 1633)
    parts = []
    while sum(p.size for p in parts) < seconds * RATE:
        t = np.arange(int(rng.uniform(0.06, 0.3) * RATE)) / RATE
        parts.append(np.sin(2 * np.pi * rng.choice(rows) * t) + np.sin(2 * np.pi * rng.choice(cols) * t))
        parts.append(np.zeros(int(rng.uniform(0.05, 0.3) * RATE)))
    return np.concatenate(parts)[: int(seconds * RATE)]


@functools.cache
def _ulaw_table() -> np.ndarray:
    return np.array([g711.linear_to_ulaw(s) for s in range(-32768, 32768)], dtype=np.uint8)


@functools.cache
def _alaw_table() -> np.ndarray:
    return np.array([g711.linear_to_alaw(s) for s in range(-32768, 32768)], dtype=np.uint8)


def encode(samples: np.ndarray, pt: int) -> list[bytes]:
    """Linear samples as 20 ms G.711 payloads (the last one padded with silence)."""
    pcm = np.clip(np.round(samples), -32768, 32767).astype(np.int64) + 32768
    codes = (_ulaw_table() if pt == 0 else _alaw_table())[pcm]
    codes = np.concatenate((codes, np.full((-codes.size) % 160, codes[-1] if codes.size else 0xFF, np.uint8)))
    return [codes[i : i + 160].tobytes() for i in range(0, codes.size, 160)]


def _active_rms(x: np.ndarray) -> float:
    frames = x[: x.size // 160 * 160].reshape(-1, 160)
    power = (frames**2).mean(axis=1)
    loud = power[power >= power.max() * 10 ** (-3.5)]
    return float(np.sqrt(loud.mean())) if loud.size else 1.0


def _channel(rng: np.random.Generator, x: np.ndarray, level_dbfs: float, *, speechlike: bool) -> np.ndarray:
    """The route: clock drift, spectral tilt, level, line noise (10-30 dB below the level)."""
    if speechlike:
        import soxr  # the bench's own dependency, as in synthesis.audio

        drift = rng.uniform(-0.003, 0.003)
        x = soxr.resample(x, RATE, RATE * (1 + drift), quality="HQ")
    tilt = rng.uniform(-0.5, 0.5)  # first-order: + brightens, - darkens
    x = np.concatenate(([x[0]], x[1:] - tilt * x[:-1])) if tilt > 0 else _lowpass(x, -tilt)
    rms = _active_rms(x) if np.any(x) else 1.0
    x = x * (32768 * 10 ** (level_dbfs / 20) / rms)
    snr = rng.uniform(10, 30)
    noise = rng.standard_normal(x.size)
    noise = np.convolve(noise, np.ones(3) / 3, mode="same")  # a little line colour
    noise *= 32768 * 10 ** ((level_dbfs - snr) / 20) / np.sqrt((noise**2).mean())
    return x + noise


def _lowpass(x: np.ndarray, a: float) -> np.ndarray:
    y = np.empty_like(x)
    acc = 0.0
    for i, v in enumerate(x.tolist()):  # a one-pole smoother; clips are seconds long
        acc = (1 - a) * v + a * acc
        y[i] = acc
    return y


def example(seed: int) -> Example:
    """One labelled call's received audio, fully determined by its seed."""
    rng = np.random.default_rng([seed, 19])
    pt = int(rng.choice([0, 8]))
    level = rng.uniform(-30, -10)
    sit = ""
    start = 0.0
    if rng.uniform() < 0.6:  # an announcement
        name, outcome, clip = library()[int(rng.integers(len(library())))]
        body = np.concatenate((clip, clip)) if rng.uniform() < 0.3 else clip
        if rng.uniform() < 0.3:  # up to 6 dB below the announcement (GR-1162: 2 dB), so -10..-36 dBFS
            sit, tones = sit_tones(rng)
            tones = tones * 10 ** (rng.uniform(-6, 0) / 20) * _active_rms(clip) * np.sqrt(2)
            body = np.concatenate((tones, np.zeros(int(rng.uniform(0, 0.3) * RATE)), body))
        lead_kind = rng.integers(3)
        if lead_kind == 0 and not sit:  # joined late (never into a SIT: a cut first tone is no SIT to name)
            cut = int(rng.uniform(0, 0.4) * RATE)
            body, start = body[cut:], -cut / RATE
        else:
            lead_s = rng.uniform(0, 1.2)
            lead = ringback(rng, lead_s) * _active_rms(clip) if lead_kind == 1 else np.zeros(int(lead_s * RATE))
            body, start = np.concatenate((lead[: int(lead_s * RATE)], body)), lead_s
        audio = np.concatenate((body, np.zeros(int(0.3 * RATE))))
        return Example(seed, outcome, "announcement", name, sit, pt,
                       encode(_channel(rng, audio, level, speechlike=True), pt), start)
    kind = NEGATIVE_KINDS[int(rng.integers(len(NEGATIVE_KINDS)))]
    voices = [params for params, _ in CARRIERS.values()] + OTHER_VOICES
    voice = _voice_key(voices[int(rng.integers(len(voices)))])
    seconds = rng.uniform(3, 6)
    if kind in ("human", "greeting", "prompt"):
        texts = {"human": HUMAN, "greeting": GREETINGS, "prompt": PROMPTS}[kind]
        speech = _render(str(texts[int(rng.integers(len(texts)))]), voice)
        if kind == "human" and rng.uniform() < 0.5:  # "喂？…喂？" after a pause
            speech = np.concatenate((speech, np.zeros(int(rng.uniform(0.5, 1.5) * RATE)), speech))
        audio = np.concatenate((np.zeros(int(rng.uniform(0, 0.8) * RATE)), speech, np.zeros(int(1.0 * RATE))))
    elif kind == "silence":
        audio = np.zeros(int(seconds * RATE))
        audio[0] = 1.0
    elif kind == "ringback":
        audio = ringback(rng, seconds)
    elif kind == "music":
        audio = music(rng, seconds)
    else:
        audio = dtmf(rng, seconds)
    return Example(seed, "none", kind, "", "", pt,
                   encode(_channel(rng, audio, level, speechlike=kind in ("human", "greeting", "prompt")), pt), 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", default=f"{HELD_OUT.start}:{HELD_OUT.stop}", help="first:stop")
    args = parser.parse_args()
    first, stop = (int(v) for v in args.seeds.split(":"))
    write_library(args.out / "library")
    labels = []
    for seed in range(first, stop):
        ex = example(seed)
        audio = np.concatenate([np.frombuffer(p, np.uint8) for p in ex.payloads])
        path = args.out / "examples" / f"{seed}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:  # G.711 as carried: μ-law (7) or A-law (6) WAV
            code = 7 if ex.pt == 0 else 6
            fmt = struct.pack("<HHIIHH", code, 1, RATE, RATE, 1, 8)
            data = audio.tobytes()
            f.write(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE")
            f.write(b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)
        labels.append({"seed": seed, "label": ex.label, "kind": ex.kind, "reference": ex.reference, "sit": ex.sit})
    (args.out / "labels.json").write_text(json.dumps(labels, ensure_ascii=False, indent=1))
    print(json.dumps({"examples": len(labels), "out": str(args.out)}))


if __name__ == "__main__":
    main()
