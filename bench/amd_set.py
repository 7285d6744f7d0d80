"""A labelled synthetic set for answering-machine detection, generated from seeds (no downloads).

People ("human"): the short answers people give a ringing phone ("喂？", "你好，哪位？", a "喂？…喂？" after a
pause, a few longer ones such as "喂，你好，我是小李，哪位？"), sometimes after a second or two of silence, and
some who say nothing at all (labelled "silent": the right answer is unknown, which Herald treats as a person).
Machines ("machine"): voicemail greetings, carriers' and people's own ("您好，我现在不方便接听电话，请在提示音后留言…"),
two sentences sometimes, ending in a beep (300-3000 Hz, 0.2-1.0 s; 70%), in silence (20%) or cut short by the
line (10%); the greeting's end (where a voicemail should start) is known to the millisecond. Every example
goes through the same route as bench/announce_set.py's: clock drift, spectral tilt, level -10..-30 dBFS, line
noise at 10-30 dB SNR, μ-law or A-law. Voices: the eSpeak NG voices of the announcement set and others.

Seeds: telephony/sip/amd.py's thresholds were set on TUNE (0..299); bench/amd.py reports on HELD_OUT
(2000..2599), never looked at while tuning.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import announce_set  # noqa: E402

RATE = 8000
TUNE = range(0, 300)
HELD_OUT = range(2000, 2600)

HUMAN = [
    "喂？", "你好。", "喂，你好。", "喂，哪位？", "你好，哪位？", "嗯，你说。", "喂，谁呀？", "哎，你好。", "喂，请讲。",
    "是我，什么事？", "对，是我。", "喂？你好？",
]
LONG_HUMAN = ["喂，你好，我是小李，哪位？", "喂，你好，请问你找谁？"]
GREETINGS = [
    "您好，我现在不方便接听电话，请在提示音后留言。",
    "你好，我是小王，现在无法接听，请留言，谢谢。",
    "您好，您的电话已转入语音信箱，请在嘀声后留言。",
    "您拨打的用户不方便接听，请在提示音后留言，谢谢。",
    "你好，这里是张记餐厅，我们的营业时间是上午十点到晚上十点，请留下您的姓名和电话。",
    "您好，欢迎致电，现在是非工作时间，请在听到提示音后留言，我们会尽快给您回电。",
    "喂，你好，我是李明，我现在不在，有事请留言。",
    "对不起，机主暂时无法接听您的电话，请在嘟声后留言。",
]
SECOND_SENTENCES = ["留言结束后请挂机。", "谢谢您的来电。", "如有急事请拨打我的手机。"]


@dataclass(frozen=True)
class Example:
    seed: int
    label: str  # "human", "silent" (nobody speaks) or "machine"
    text: str
    end: str  # machines: "beep", "silence" or "cut"; "" otherwise
    end_ms: float  # machines ending in a beep or silence: ms from the answer to the end of the beep / the words
    pt: int
    payloads: list[bytes]


def _voices() -> list[tuple]:
    voices = [params for params, _ in announce_set.CARRIERS.values()] + announce_set.OTHER_VOICES
    return [announce_set._voice_key(v) for v in voices]


def _beep(rng: np.random.Generator) -> np.ndarray:
    frequency = float(rng.choice([425.0, 800.0, 1000.0, 1400.0, 2000.0])) * rng.uniform(0.98, 1.02)
    seconds = rng.uniform(0.2, 1.0)
    t = np.arange(int(seconds * RATE)) / RATE
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)
    return np.sin(2 * np.pi * frequency * t) * ramp


def example(seed: int) -> Example:
    """One labelled answered call's received audio (from the answer on), fully determined by its seed."""
    rng = np.random.default_rng([seed, 31])
    pt = int(rng.choice([0, 8]))
    level = rng.uniform(-30, -10)
    voices = _voices()
    voice = voices[int(rng.integers(len(voices)))]
    lead = np.zeros(int(rng.uniform(0.0, 1.5 if rng.uniform() < 0.8 else 2.5) * RATE))
    kind = rng.uniform()
    end, end_ms = "", 0.0
    if kind < 0.45:  # a person
        long_ = rng.uniform() < 0.15
        text = str((LONG_HUMAN if long_ else HUMAN)[int(rng.integers(len(LONG_HUMAN if long_ else HUMAN)))])
        speech = announce_set._render(text, voice)
        if not long_ and rng.uniform() < 0.35:  # "喂？" … "喂？" again
            speech = np.concatenate((speech, np.zeros(int(rng.uniform(0.9, 2.0) * RATE)), speech))
        audio = np.concatenate((lead, speech, np.zeros(int(3.0 * RATE))))
        label = "human"
    elif kind < 0.52:  # picks up and says nothing
        audio, label, text = np.zeros(int(7.0 * RATE)), "silent", ""
        audio[0] = 1.0
    else:  # a voicemail greeting
        text = str(GREETINGS[int(rng.integers(len(GREETINGS)))])
        if rng.uniform() < 0.3:
            text += str(SECOND_SENTENCES[int(rng.integers(len(SECOND_SENTENCES)))])
        speech = announce_set._render(text, voice)
        ending = rng.uniform()
        gap = np.zeros(int(rng.uniform(0.2, 0.7) * RATE))
        if ending < 0.7:
            end, beep = "beep", _beep(rng) * np.sqrt(2) * announce_set._active_rms(speech) * rng.uniform(0.5, 1.5)
            audio = np.concatenate((lead, speech, gap, beep))
            end_ms = 1000 * audio.size / RATE
            audio = np.concatenate((audio, np.zeros(int(4.0 * RATE))))
        elif ending < 0.9:
            end = "silence"
            audio = np.concatenate((lead, speech))
            end_ms = 1000 * audio.size / RATE
            audio = np.concatenate((audio, np.zeros(int(4.0 * RATE))))
        else:
            end = "cut"
            audio = np.concatenate((lead, speech))
        label = "machine"
    channel = announce_set._channel(rng, audio, level, speechlike=label != "silent")
    return Example(seed, label, text, end, end_ms, pt, announce_set.encode(channel, pt))
