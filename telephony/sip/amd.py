"""Answering-machine detection on a SIP call's received audio, in Twilio's words (AnsweredBy).

A person answering a phone says a short word or two ("喂？", "你好，哪位？") and waits for us; a voicemail
greeting talks on ("您好，我现在不方便接听电话，请在提示音后留言…") and ends in a beep or in silence. So, 20 ms at a
time after the answer:

- a voice activity gate: frame energy against the line's noise floor (the quietest frame of the last two
  seconds), so line noise at 10-30 dB below the voice does not count as speech;
- words: runs of speech of at least MIN_WORD_MS, gaps shorter than GAP_MS bridged;
- the decision: speech adding up to more than GREETING_MS before a pause of AFTER_GREETING_MS is a machine
  ("machine_start"); a greeting that short followed by that pause is a person ("human"); nothing said for
  INITIAL_SILENCE_MS is "unknown" (some people wait silently: Herald treats unknown as a person); still
  undecided after MAX_DECIDE_MS is "unknown" too; a fax's calling tone (CNG, 1100 Hz) before any speech is "fax";
- with wait_for_end (Twilio's DetectMessageEnd), after a machine: the greeting's end, where a voicemail should
  begin: a beep (one steady tone of 300-3000 Hz for BEEP_MIN_MS or more, reported when it stops:
  "machine_end_beep"), or END_SILENCE_MS of silence after the last word ("machine_end_silence"), or
  END_LIMIT_MS after the answer whatever came ("machine_end_other").

Thresholds were set on the tuning seeds of bench/amd_set.py; bench/amd.py reports on held-out seeds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from telephony.sip.announce import decode

FRAME = 160  # samples: one 20 ms packet
FRAME_MS = 20
FLOOR_FRAMES = 100  # the noise floor: the quietest frame of the last 2 s (speech always pauses within that)
SPEECH_OVER_FLOOR_DB = 9.0
SPEECH_MIN_DB = -48.0  # dBFS: quieter than this is never speech
MIN_WORD_MS = 100
GAP_MS = 200
GREETING_MS = 2400  # speech before a pause: a person's hello is shorter, a greeting longer
AFTER_GREETING_MS = 1000
INITIAL_SILENCE_MS = 5000
MAX_DECIDE_MS = 10000
END_SILENCE_MS = 1500
END_LIMIT_MS = 30000
BEEP_MIN_MS = 160
BEEP_BAND = (300.0, 3000.0)
BEEP_PURITY = 0.75  # the share of a frame's power within ±2 bins of its peak
BEEP_DRIFT_HZ = 40.0
CNG_HZ, CNG_TOLERANCE_HZ, CNG_MIN_MS = 1100.0, 40.0, 400
_FFT = 256
_WINDOW = np.hanning(FRAME)
_FREQS = np.fft.rfftfreq(_FFT, 1 / 8000)

HUMAN, UNKNOWN, MACHINE_START, FAX = "human", "unknown", "machine_start", "fax"
END_BEEP, END_SILENCE, END_OTHER = "machine_end_beep", "machine_end_silence", "machine_end_other"


@dataclass
class Decision:
    answered_by: str
    at_ms: int  # since the answer
    reason: str


class AmdDetector:
    def __init__(self, *, wait_for_end: bool = False) -> None:
        self.wait_for_end = wait_for_end
        self.levels: deque[float] = deque(maxlen=FLOOR_FRAMES)
        self.floor = 0.0
        self.ms = 0
        self.speech_ms = 0  # speech of the current greeting
        self.words = 0
        self.run_ms = 0  # the current run of speech frames
        self.quiet_ms = 0  # the current run of non-speech frames
        self.heard = False  # any word yet
        self.in_word = False
        self.tone_ms = 0
        self.tone_hz = 0.0  # the current steady tone's frequency
        self.beep_hz = 0.0  # the last steady tone's, once it stops (the beep that ended a greeting)
        self.decision: Decision | None = None  # human / unknown / machine_start / fax
        self.end: Decision | None = None  # with wait_for_end, once a machine's greeting ended

    @property
    def done(self) -> bool:
        """Nothing more to listen for."""
        if self.decision is None:
            return False
        if self.decision.answered_by != MACHINE_START or not self.wait_for_end:
            return True
        return self.end is not None

    def feed_payload(self, payload: bytes, pt: int) -> Decision | None:
        return self.feed(decode(payload, pt))

    def feed(self, samples: np.ndarray) -> Decision | None:
        """One 20 ms frame of linear samples (full scale ±32768); the decision it brought, if any."""
        if self.done:
            return None
        self.ms += FRAME_MS
        power = float(np.mean(samples * samples)) if samples.size else 0.0
        level = 10 * np.log10(power / 32768.0**2 + 1e-12)
        self.levels.append(level)
        self.floor = min(self.levels)
        tone = self._tone(samples, power, level)
        speech = level >= max(self.floor + SPEECH_OVER_FLOOR_DB, SPEECH_MIN_DB)
        if self.decision is None:
            return self._decide(speech, tone)
        return self._find_end(speech, tone)

    def _tone(self, samples: np.ndarray, power: float, level: float) -> float:
        """The frequency of the steady tone that fills this frame, or 0.0."""
        if samples.size != FRAME or level < max(self.floor + SPEECH_OVER_FLOOR_DB, SPEECH_MIN_DB):
            return 0.0
        spectrum = np.abs(np.fft.rfft(samples * _WINDOW, _FFT)) ** 2
        peak = int(np.argmax(spectrum))
        total = float(spectrum.sum())
        if total <= 0 or not BEEP_BAND[0] <= _FREQS[peak] <= BEEP_BAND[1]:
            return 0.0
        near = float(spectrum[max(0, peak - 2) : peak + 3].sum())
        if near < BEEP_PURITY * total:
            return 0.0
        # The peak's frequency between bins (a parabola through its neighbours): ~5 Hz, enough to hold a tone.
        if 0 < peak < spectrum.size - 1:
            a, b, c = np.log(spectrum[peak - 1 : peak + 2] + 1e-12)
            offset = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c != 0 else 0.0
            return float(_FREQS[peak] + offset * (_FREQS[1] - _FREQS[0]))
        return float(_FREQS[peak])

    def _steady(self, tone: float) -> int:
        """Milliseconds the current tone has lasted (0 when this frame holds none)."""
        if tone and self.tone_ms and abs(tone - self.tone_hz) <= BEEP_DRIFT_HZ:
            self.tone_ms += FRAME_MS
        elif tone:
            self.tone_ms, self.tone_hz = FRAME_MS, tone
        else:
            self.tone_ms = 0
        return self.tone_ms

    def _words(self, speech: bool) -> None:
        if speech:
            self.run_ms += FRAME_MS
            self.quiet_ms = 0
            if self.run_ms >= MIN_WORD_MS and not self.in_word:
                self.in_word, self.heard = True, True
                self.words += 1
                self.speech_ms += self.run_ms - FRAME_MS  # the frames that made it a word
            if self.in_word:
                self.speech_ms += FRAME_MS
        else:
            self.quiet_ms += FRAME_MS
            if self.quiet_ms >= GAP_MS:
                self.in_word, self.run_ms = False, 0

    def _decide(self, speech: bool, tone: float) -> Decision | None:
        steady = self._steady(tone)
        if not self.heard and abs(self.tone_hz - CNG_HZ) <= CNG_TOLERANCE_HZ and steady >= CNG_MIN_MS:
            return self._decided(FAX, "a fax calling tone (1100 Hz)")
        self._words(speech and not (tone and abs(tone - CNG_HZ) <= CNG_TOLERANCE_HZ))  # a fax tone is no word
        if self.speech_ms > GREETING_MS:
            return self._decided(MACHINE_START, f"{self.speech_ms} ms of speech before any pause: a greeting")
        if self.heard and self.quiet_ms >= AFTER_GREETING_MS:
            return self._decided(HUMAN, f"{self.speech_ms} ms of speech ({self.words} words), then a pause")
        if not self.heard and self.ms >= INITIAL_SILENCE_MS:
            return self._decided(UNKNOWN, f"nothing said in {INITIAL_SILENCE_MS} ms")
        if self.ms >= MAX_DECIDE_MS:
            return self._decided(UNKNOWN, f"undecided after {MAX_DECIDE_MS} ms")
        return None

    def _decided(self, answered_by: str, reason: str) -> Decision:
        self.decision = Decision(answered_by, self.ms, reason)
        if answered_by == MACHINE_START:
            self.tone_ms = 0
        return self.decision

    def _find_end(self, speech: bool, tone: float) -> Decision | None:
        before = self.tone_ms
        steady = self._steady(tone)
        if before >= BEEP_MIN_MS and not steady:  # a beep just stopped: the voicemail starts now
            return self._ended(END_BEEP, f"a {self.beep_hz:.0f} Hz beep of {before} ms")
        if steady:
            self.beep_hz = self.tone_hz
            self.quiet_ms = 0
            return None
        self._words(speech)
        if self.quiet_ms >= END_SILENCE_MS:
            return self._ended(END_SILENCE, f"{END_SILENCE_MS} ms of silence after the greeting")
        if self.ms >= END_LIMIT_MS:
            return self._ended(END_OTHER, f"no end of the greeting within {END_LIMIT_MS} ms")
        return None

    def _ended(self, answered_by: str, reason: str) -> Decision:
        self.end = Decision(answered_by, self.ms, reason)
        return self.end
