"""Carrier outcomes heard in the far end's audio: SIT tones and recorded announcements ("您拨打的号码是空号").

Carriers answer a dead number with audio rather than a clean SIP code: a Special Information Tone (three rising
tones), a recording, often both, as early media (183) or after a 200. Two listeners, fed the received G.711
payloads (or 8 kHz linear samples) one packet at a time, in order:

SitDetector. Telcordia GR-1162 codes the SIT's first two tones as low/high frequency (913.8/985.2 Hz, then
1370.6/1428.5 Hz) and short/long duration (274/380 ms); the third is 1776.7 Hz. The eight codes name the cause
(IC intercept, VC vacant code, NC no circuit, RO reorder, IO and two reserved ones; "unassigned" for the
lengths no code uses, e.g. a tone shortened by lost packets); a SIT that keeps to ITU-T E.180's wider limits
(950/1400/1800 Hz ±50, 330±70 ms) but not to the coded frequencies is reported as "E180". The audio is cut into
20 ms windows every 10 ms; each window's spectrum (Hann, 512-point resolution, only the bins near the band, by
one matrix product) gives its strongest peak between 850 and 1950 Hz and the share of the window's energy in
that peak's main lobe. A window holds a tone when that share is at least TONE_SHARE (speech, music, noise and
DTMF's two tones spread theirs) and the tone is louder than LEVEL_DBFS. A run of such windows at one frequency
(within RUN_SPREAD, one odd window forgiven) is a segment, its frequency the mean of its windows' interpolated
peaks; three segments in a row, each within the gaps and lengths the standards allow, at the three expected
frequencies, are a SIT. Ringback (450/425 Hz) lies below the band; a single steady tone is one segment, never
three rising ones.

AnnouncementMatcher. A library of reference recordings, each with the outcome it means, is fingerprinted as a
compact feature matrix: per 20 ms frame (32 ms Hann window) the log energies of BANDS mel-spaced bands between
250 and 3400 Hz, high-passed along time per band (each band minus its own recent average, so a constant gain,
the line's tilt and the speaker's long-term spectrum cancel), as a unit vector (EPSILON keeps steady noise
frames small). Every received frame is compared (one matrix product) with every frame of every reference, and
the products are summed along diagonals: each diagonal is one alignment of one reference with the stream, so
the reference is found wherever it starts (leading ringback, silence or SIT, a looped recording, audio that
joins up to MAX_LATE_S into it). A diagonal's score is its mean product over the reference's speech frames
(its pauses are not scored). A reference matches once a diagonal holds MIN_ACTIVE_S of its speech with a score
of at least THRESHOLD, MARGIN above the best diagonal of every reference meaning another outcome, on the whole
diagonal or on its recent products (carriers' recordings share openings and endings: "您拨打的电话已关机" and
"...已停机" part ways only at the end). The figures these were tuned on (bench/announce.py, tuning seeds): with
1 s of speech, greetings and prompts sharing an opening with an announcement ("您好，您的电话已转入语音信箱")
scored up to 0.55 while true matches scored from 0.48; with 2 s, negatives stayed below 0.36 and matches above
0.47. So a match needs 2 s of the recording's speech and usually comes 2.5-4.5 s into it.
Why a sliding correlation rather than landmark hashing (Shazam-style peak pairs, not built here): the library
is small (tens of recordings), so comparing every frame with all of them costs little, and a dense score
degrades smoothly under G.711, 10 dB SNR noise and level changes, where peak pairs of 8 kHz speech would have
to be found again exactly.

Written here rather than taken from a library: audio fingerprinting packages on PyPI (dejavu, audfprint,
chromaprint) are music-oriented, want a database or a C library, and none listens incrementally at 8 kHz. This
is numpy only, no Django. Cost: see bench/announce.py (µs per 20 ms packet).
"""

from __future__ import annotations

import math
import os
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from telephony.sip import g711

RATE = 8000
ULAW, ALAW = 0, 8  # payload types
BATCH = 800  # samples (100 ms): both listeners work on five packets at once (numpy's per-call cost), so a
# result comes up to 80 ms after the packet that completes it; flush() at the end of the audio
_DECODE = {
    ULAW: np.array([g711.ulaw_to_linear(code) for code in range(256)], dtype=np.float64),
    ALAW: np.array([g711.alaw_to_linear(code) for code in range(256)], dtype=np.float64),
}
_FULL_SCALE_POWER = 32768.0**2 / 2  # a full-scale sine's power


def decode(payload: bytes, pt: int) -> np.ndarray:
    """A G.711 payload (μ-law for PT 0, A-law for PT 8) as linear samples (float64, full scale ±32768)."""
    try:
        table = _DECODE[pt]
    except KeyError:
        raise ValueError(f"payload type {pt} is not G.711 (0 μ-law or 8 A-law)") from None
    return table.take(np.frombuffer(payload, dtype=np.uint8))


# ---------------------------------------------------------------------------------------------------------------
# SIT tones

SIT_LOW_1, SIT_HIGH_1 = 913.8, 985.2
SIT_LOW_2, SIT_HIGH_2 = 1370.6, 1428.5
SIT_THIRD = 1776.7
SHORT_MS, LONG_MS = 274.0, 380.0
TOLERANCE = 0.015  # a tone may be this far off its nominal frequency; RUN_SPREAD leaves room for our estimate
FREQUENCY_SLACK = 0.01  # measurement error allowed on top of TOLERANCE (the coded pairs are 4% apart)
SEGMENT_MS = (215.0, 450.0)  # a segment's measured length: short and long, ±5%, and our ±20 ms of edges
SHORT_BELOW_MS = (SHORT_MS + LONG_MS) / 2
MAX_GAP_MS = 60.0  # between segments: Telcordia allows 4 ms, E.180 30 ms; a window on each side is lost
E180 = ((900.0, 1000.0), (1350.0, 1450.0), (1750.0, 1850.0))  # E.180's three tones, 330±70 ms
E180_MS = (240.0, 420.0)
LEVEL_DBFS = -42.0  # a tone's power against a full-scale sine: -35 dBFS SITs, with room for line loss
TONE_SHARE = 0.6  # of a window's energy in its peak's main lobe
RUN_SPREAD = 0.02  # a window continues a segment while its peak is this close to the segment's mean

# (first tone low/high, long?), (second tone low/high, long?) -> code (Telcordia SR-2275 / GR-1162)
SIT_CODES = {
    (("L", False), ("L", False)): "IC",  # intercept: vacant number, changed number
    (("H", True), ("L", False)): "VC",  # vacant code
    (("H", True), ("H", True)): "NC",  # no circuit (intra-LATA)
    (("L", True), ("L", True)): "NC",  # no circuit (inter-LATA)
    (("L", False), ("H", True)): "RO",  # reorder (intra-LATA)
    (("H", False), ("L", True)): "RO",  # reorder (inter-LATA)
    (("L", True), ("H", False)): "IO",  # ineffective other (reserved)
    (("H", False), ("H", False)): "reserved",
}

_SIT_HOP = 80  # 10 ms
_SIT_WINDOW = 160  # 20 ms
_SIT_FFT = 512
_SIT_BIN = RATE / _SIT_FFT  # Hz per bin
_SIT_LOBE = int(math.ceil(2 * RATE / _SIT_WINDOW / _SIT_BIN))  # a Hann window's main lobe: ±2 bins of 50 Hz
_SIT_SEARCH = (int(850 / _SIT_BIN), int(math.ceil(1950 / _SIT_BIN)))
_SIT_HANN = np.hanning(_SIT_WINDOW + 2)[1:-1]  # (160,)
# Only the bins around the band are needed: a DFT by one matrix product (cheaper than an FFT at this size).
_SIT_FIRST, _SIT_STOP = _SIT_SEARCH[0] - _SIT_LOBE - 1, _SIT_SEARCH[1] + _SIT_LOBE + 1
_SIT_ANGLES = 2 * np.pi * np.outer(np.arange(_SIT_WINDOW), np.arange(_SIT_FIRST, _SIT_STOP)) / _SIT_FFT
_SIT_BASIS = np.concatenate((np.cos(_SIT_ANGLES), -np.sin(_SIT_ANGLES)), axis=1) * _SIT_HANN[:, None]  # (160, 2K)
_SIT_BINS = _SIT_STOP - _SIT_FIRST
_SIT_MIN_POWER = _FULL_SCALE_POWER * 10 ** (LEVEL_DBFS / 10)


@dataclass(frozen=True)
class Sit:
    """A Special Information Tone heard: its code, where it began and ended (seconds of audio fed), and its
    three segments' measured frequencies (Hz) and lengths (ms)."""

    code: str  # IC, VC, NC, RO, IO, reserved; unassigned (coded frequencies, lengths no code uses); E180
    start: float
    end: float
    frequencies: tuple[float, float, float]
    durations_ms: tuple[float, float, float]


@dataclass
class _Segment:
    first: int  # window index
    last: int
    frequencies: list[float]

    @property
    def frequency(self) -> float:
        return float(np.mean(self.frequencies))

    @property
    def duration_ms(self) -> float:
        return ((self.last - self.first) * _SIT_HOP + _SIT_WINDOW) * 1000.0 / RATE


class SitDetector:
    """One call's SIT listener: feed it each received packet, in order; it returns a Sit when one ends."""

    def __init__(self) -> None:
        self._samples = np.zeros(0)  # samples not yet in a window's hop
        self._window = 0  # index of the next window
        self._run: _Segment | None = None
        self._missed = 0  # windows without the run's tone since its last one
        self._segments: list[_Segment] = []  # the last three finished segments
        self._pending: list[np.ndarray] = []  # samples held back until a batch is full
        self._pending_size = 0

    def feed(self, payload: bytes, pt: int) -> Sit | None:
        """The SIT that became certain with this G.711 payload (μ-law for PT 0, A-law for PT 8), if any."""
        return self.feed_samples(decode(payload, pt))

    def feed_samples(self, samples: np.ndarray) -> Sit | None:
        """As feed(), for 8 kHz linear samples (full scale ±32768)."""
        self._pending.append(np.asarray(samples, dtype=np.float64))
        self._pending_size += self._pending[-1].size
        if self._pending_size < BATCH:
            return None
        return self.flush()

    def flush(self) -> Sit | None:
        """Listen to the samples held back for the next batch now (at the end of the audio)."""
        buffer = np.concatenate((self._samples, *self._pending))
        self._pending, self._pending_size = [], 0
        count = (buffer.size - _SIT_WINDOW) // _SIT_HOP + 1 if buffer.size >= _SIT_WINDOW else 0
        self._samples = buffer[count * _SIT_HOP :]
        if count <= 0:
            return None
        starts = np.arange(count) * _SIT_HOP
        frames = buffer[starts[:, None] + np.arange(_SIT_WINDOW)]  # (W, 160)
        found = None
        for frequency in _tone_frequencies(frames):
            sit = self._step(frequency)
            found = found or sit
        return found

    def _step(self, frequency: float | None) -> Sit | None:
        index = self._window
        self._window += 1
        run = self._run
        if run is not None and frequency is not None and abs(frequency / run.frequency - 1) <= RUN_SPREAD:
            run.last = index
            run.frequencies.append(frequency)
            self._missed = 0
            return None
        if run is not None and frequency is None and self._missed == 0 and len(run.frequencies) > 2:
            self._missed = 1  # one odd window (a noise burst) inside a tone does not end it
            return None
        sit = self._close()
        if frequency is not None:
            self._run = _Segment(index, index, [frequency])
        return sit

    def _close(self) -> Sit | None:
        run, self._run, self._missed = self._run, None, 0
        if run is None or len(run.frequencies) < 3:
            return None
        self._segments = [*self._segments[-2:], run]
        if len(self._segments) < 3:
            return None
        sit = _classify(self._segments)
        if sit is not None:
            self._segments = []
        return sit


# The gate in front of the detector (SitListener): one packet in GATE_EVERY is looked at for a tone near a SIT
# frequency; SIT segments last 274 ms or more, so every segment is looked at at least twice.
GATE_EVERY = 5
GATE_HISTORY = 75  # packets (1.5 s) kept to replay into the detector when the gate opens: a whole SIT
GATE_HANGOVER = 50  # packets (1 s) without a tone before the detector is put away again
GATE_SHARE = 0.35  # of a packet's energy near one SIT frequency
_GATE_FREQUENCIES = [f * k for f in (SIT_LOW_1, SIT_HIGH_1, SIT_LOW_2, SIT_HIGH_2, SIT_THIRD) for k in (0.985, 1, 1.015)]
_GATE_T = np.arange(160) / RATE
_GATE_HANN = np.hanning(162)[1:-1]
_GATE_BASIS = np.concatenate(
    [np.cos(2 * np.pi * np.outer(_GATE_T, _GATE_FREQUENCIES)), np.sin(2 * np.pi * np.outer(_GATE_T, _GATE_FREQUENCIES))],
    axis=1,
) * _GATE_HANN[:, None]
_GATE_SUM = float(_GATE_HANN.sum())  # a windowed sine of amplitude A projects to A × _GATE_SUM / 2


def _tonal(samples: np.ndarray) -> bool:
    """Whether a 20 ms packet carries a tone near a SIT frequency, loud enough to be one (cheap: one small
    matrix product)."""
    if samples.size != 160:
        return False
    power = float(samples @ samples) / samples.size
    if power < _SIT_MIN_POWER:
        return False
    projection = samples @ _GATE_BASIS
    k = len(_GATE_FREQUENCIES)
    tone_power = 2 * float((projection[:k] ** 2 + projection[k:] ** 2).max()) / _GATE_SUM**2  # A² / 2
    return tone_power / power >= GATE_SHARE


class SitListener:
    """SitDetector behind a cheap gate, for calls whose audio rarely holds a SIT: the detector (~60 µs a packet)
    runs only from a packet with a tone near a SIT frequency until a second passes without one, after replaying
    the last 1.5 s into it; the gate looks at one packet in five (~10 µs). Feed every packet, in order."""

    def __init__(self) -> None:
        self._history: deque[tuple[bytes, int]] = deque(maxlen=GATE_HISTORY)
        self._count = 0
        self._detector: SitDetector | None = None
        self._quiet = 0
        self.opened = 0  # times the gate opened (for benchmarks and tests)

    def feed(self, payload: bytes, pt: int) -> Sit | None:
        self._history.append((payload, pt))
        self._count += 1
        looked = self._count % GATE_EVERY == 0
        if self._detector is None:
            if not looked or not _tonal(decode(payload, pt)):
                return None
            self.opened += 1
            self._detector, self._quiet = SitDetector(), 0
            found = None
            for old_payload, old_pt in self._history:
                found = self._detector.feed(old_payload, old_pt) or found
            return found
        found = self._detector.feed(payload, pt)
        if looked:
            self._quiet = 0 if _tonal(decode(payload, pt)) else self._quiet + GATE_EVERY
            if self._quiet >= GATE_HANGOVER:
                found = self._detector.flush() or found
                self._detector = None
        return found

    def flush(self) -> Sit | None:
        return self._detector.flush() if self._detector is not None else None


def _tone_frequencies(frames: np.ndarray) -> list[float | None]:
    """Each window's tone (interpolated peak frequency) in the SIT band, or None."""
    energy = (frames * frames).mean(axis=1)  # (W,)
    result: list[float | None] = [None] * len(frames)
    loud = np.flatnonzero(energy * TONE_SHARE >= _SIT_MIN_POWER)  # quieter windows cannot hold a tone
    if loud.size == 0:
        return result
    windowed = frames[loud]  # (L, 160)
    parts = windowed @ _SIT_BASIS  # (L, 2K): the bins' real, then imaginary parts
    power = parts[:, :_SIT_BINS] ** 2 + parts[:, _SIT_BINS:] ** 2  # (L, K) bins _SIT_FIRST.._SIT_STOP-1
    cumulative = np.concatenate((np.zeros((loud.size, 1)), power.cumsum(axis=1)), axis=1)  # (L, K+1)
    lo, hi = _SIT_SEARCH[0] - _SIT_FIRST, _SIT_SEARCH[1] - _SIT_FIRST
    peaks = lo + power[:, lo:hi].argmax(axis=1)  # (L,)
    rows = np.arange(loud.size)
    lobe = cumulative[rows, peaks + _SIT_LOBE + 1] - cumulative[rows, peaks - _SIT_LOBE]  # (L,)
    total = (windowed * windowed) @ (_SIT_HANN**2) * _SIT_FFT / 2  # (L,) the half spectrum's power (Parseval)
    share = lobe / np.maximum(total, 1e-12)
    tone = (share >= TONE_SHARE) & (energy[loud] * share >= _SIT_MIN_POWER)
    if not tone.any():
        return result
    a, b, c = (np.log(power[rows, peaks + k] + 1e-12) for k in (-1, 0, 1))
    curve = a - 2 * b + c
    shift = np.where(curve < 0, 0.5 * (a - c) / np.where(curve < 0, curve, -1.0), 0.0)  # parabola through the peak
    frequencies = (_SIT_FIRST + peaks + shift) * _SIT_BIN
    for n, frequency in zip(loud[tone].tolist(), frequencies[tone].tolist(), strict=True):
        result[n] = frequency
    return result


def _nearest(frequency: float, low: float, high: float) -> str | None:
    """"L" or "H": the nominal tone `frequency` is closest to, if it is within the tolerance of it."""
    off, name = min((abs(frequency / low - 1), "L"), (abs(frequency / high - 1), "H"))
    return name if off <= TOLERANCE + FREQUENCY_SLACK else None


def _classify(segments: list[_Segment]) -> Sit | None:
    first, second, third = segments
    gaps = [(b.first - a.last) * _SIT_HOP * 1000.0 / RATE - _SIT_WINDOW * 1000.0 / RATE for a, b in
            ((first, second), (second, third))]
    if max(gaps) > MAX_GAP_MS:
        return None
    frequencies = (first.frequency, second.frequency, third.frequency)
    durations = (first.duration_ms, second.duration_ms, third.duration_ms)
    start = first.first * _SIT_HOP / RATE
    end = (third.last * _SIT_HOP + _SIT_WINDOW) / RATE
    one = _nearest(frequencies[0], SIT_LOW_1, SIT_HIGH_1)
    two = _nearest(frequencies[1], SIT_LOW_2, SIT_HIGH_2)
    three = abs(frequencies[2] / SIT_THIRD - 1) <= TOLERANCE + FREQUENCY_SLACK
    lengths_ok = all(SEGMENT_MS[0] <= d <= SEGMENT_MS[1] for d in durations)
    if one and two and three and lengths_ok:
        long_one, long_two = durations[0] >= SHORT_BELOW_MS, durations[1] >= SHORT_BELOW_MS
        code = SIT_CODES.get(((one, long_one), (two, long_two)), "unassigned")  # a SIT, its cause not coded
        return Sit(code, start, end, frequencies, durations)  # type: ignore[arg-type]
    in_e180 = all(lo <= f <= hi for f, (lo, hi) in zip(frequencies, E180, strict=True))
    if in_e180 and all(E180_MS[0] - 20 <= d <= E180_MS[1] + 20 for d in durations):
        return Sit("E180", start, end, frequencies, durations)  # type: ignore[arg-type]
    return None


# ---------------------------------------------------------------------------------------------------------------
# Announcements

OUTCOMES = ("invalid_number", "suspended", "powered_off", "unreachable", "busy")
BANDS = 16
FRAME = 160  # hop: 20 ms, one packet
WINDOW = 256  # 32 ms
BAND_RANGE = (250.0, 3400.0)
FLOOR_DBFS = -70.0  # band power floor: digital silence and G.711's idle noise look alike
SMOOTHING = 0.12  # per frame: a band's recent average follows it with a time constant of ~170 ms
EPSILON = 0.6  # log10 units: frames that change less than this (steady noise, held vowels) count less
ACTIVE_DB = 35.0  # a reference frame within this of its loudest frame is speech (its pauses are not scored)
THRESHOLD = 0.42
MARGIN = 0.12
MEMORY_S = 1.0  # recent products: weighed by exp(-age / MEMORY_S), to see where two recordings part ways
MIN_ACTIVE_S = 2.0  # of the reference's speech aligned before a match may be declared (80% of a shorter one)
MIN_RIVAL_S = 0.3  # of a rival's speech aligned before it holds a match back
MAX_LATE_S = 0.5  # the audio may join a recording this far in (or at its next loop)
MIN_CLIP_S, MAX_CLIP_S = 0.8, 30.0
MAX_LIBRARY_S = 1200.0  # all references together: bounds each packet's cost (bench/announce.py)


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _band_matrix() -> np.ndarray:
    edges_mel = np.linspace(_mel(BAND_RANGE[0]), _mel(BAND_RANGE[1]), BANDS + 2)
    edges = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)
    bins = np.arange(WINDOW // 2 + 1) * RATE / WINDOW
    matrix = np.zeros((bins.size, BANDS))
    for b in range(BANDS):
        lo, mid, hi = edges[b], edges[b + 1], edges[b + 2]
        rising = (bins - lo) / (mid - lo)
        falling = (hi - bins) / (hi - mid)
        matrix[:, b] = np.clip(np.minimum(rising, falling), 0.0, None)
    return matrix / matrix.sum(axis=0)  # (129, 16): each band the mean power of its bins


_BANDS = _band_matrix()
_HANN = np.hanning(WINDOW + 2)[1:-1]
_ANGLES = 2 * np.pi * np.outer(np.arange(WINDOW), np.arange(WINDOW // 2 + 1)) / WINDOW
_DFT = np.concatenate((np.cos(_ANGLES), -np.sin(_ANGLES)), axis=1) * _HANN[:, None]  # (256, 258): as rfft, faster
_FLOOR = _FULL_SCALE_POWER * 10 ** (FLOOR_DBFS / 10) * (_HANN**2).sum()


class _Fingerprinter:
    """Incremental feature frames: samples in, one unit vector (BANDS,) and one log energy per 20 ms out."""

    def __init__(self) -> None:
        self._samples = np.zeros(WINDOW - FRAME)  # the window reaches back 12 ms before the first hop
        self._average: np.ndarray | None = None

    def feed(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        buffer = np.concatenate((self._samples, np.asarray(samples, dtype=np.float64)))
        count = (buffer.size - WINDOW) // FRAME + 1 if buffer.size >= WINDOW else 0
        if count <= 0:
            self._samples = buffer
            return np.zeros((0, BANDS)), np.zeros(0)
        self._samples = buffer[count * FRAME :]
        if count == 1:
            frames = buffer[None, :WINDOW]  # (1, 256)
        else:
            frames = buffer[(np.arange(count) * FRAME)[:, None] + np.arange(WINDOW)]  # (T, 256)
        parts = frames @ _DFT  # (T, 258)
        bins = WINDOW // 2 + 1
        bands = np.log10((parts[:, :bins] ** 2 + parts[:, bins:] ** 2) @ _BANDS + _FLOOR)  # (T, 16)
        vectors = np.empty_like(bands)
        average = bands[0].copy() if self._average is None else self._average
        for t in range(count):  # a band's recent average: one line of recursion per frame
            vectors[t] = bands[t] - average
            average += SMOOTHING * (bands[t] - average)
        self._average = average
        norms = np.sqrt((vectors * vectors).sum(axis=1, keepdims=True))  # (T, 1)
        return vectors / (norms + EPSILON), bands.mean(axis=1)


def fingerprint(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A whole clip's feature frames (T, BANDS) and each frame's weight (T,): 1 for speech, 0 for its pauses."""
    vectors, energy = _Fingerprinter().feed(np.concatenate((samples, np.zeros(WINDOW))))
    active = energy >= energy.max() - ACTIVE_DB / 10 if energy.size else energy.astype(bool)
    return vectors, active.astype(np.float64)


class LibraryError(ValueError):
    """The reference library cannot be used; the message names the entry and what is wrong."""


@dataclass(frozen=True)
class Reference:
    """One carrier recording: its name, the outcome it means and its fingerprint."""

    name: str
    outcome: str
    seconds: float
    vectors: np.ndarray  # (T, BANDS)
    weights: np.ndarray  # (T,)


def reference_from_samples(name: str, outcome: str, samples: np.ndarray) -> Reference:
    """A Reference from 8 kHz linear samples (full scale ±32768); checks the outcome and the length."""
    if not isinstance(name, str) or not name.strip():
        raise LibraryError(f"a reference needs a name, got {name!r}")
    if outcome not in OUTCOMES:
        raise LibraryError(f"{name}: unknown outcome {outcome!r}; expected one of {', '.join(OUTCOMES)}")
    samples = np.asarray(samples, dtype=np.float64)
    seconds = samples.size / RATE
    if not MIN_CLIP_S <= seconds <= MAX_CLIP_S:
        raise LibraryError(f"{name}: {seconds:.2f} s long; a reference must last {MIN_CLIP_S}-{MAX_CLIP_S:g} s")
    if not np.any(np.abs(samples) >= 32768 * 10 ** (-50 / 20)):
        raise LibraryError(f"{name}: the recording is silent (nothing louder than -50 dBFS)")
    vectors, weights = fingerprint(samples)
    if weights.sum() * FRAME / RATE < MIN_ACTIVE_S:
        raise LibraryError(f"{name}: less than {MIN_ACTIVE_S:g} s of sound above its pauses; too short to match")
    return Reference(name.strip(), outcome, seconds, vectors, weights)


def load_library(entries: Iterable[tuple[str, str, str | os.PathLike[str]]]) -> list[Reference]:
    """References from (name, outcome, WAV path) entries; LibraryError names the first bad one."""
    references: list[Reference] = []
    names: set[str] = set()
    for entry in entries:
        try:
            name, outcome, path = entry
        except (TypeError, ValueError):
            raise LibraryError(f"a library entry is (name, outcome, WAV path), got {entry!r}") from None
        if name in names:
            raise LibraryError(f"{name}: two references have this name")
        names.add(name)
        samples = read_wav(path, name=name)
        references.append(reference_from_samples(name, outcome, samples))
    if not references:
        raise LibraryError("the library has no references")
    total = sum(r.seconds for r in references)
    if total > MAX_LIBRARY_S:
        raise LibraryError(f"the library holds {total:.0f} s of audio; at most {MAX_LIBRARY_S:g} s (each packet "
                           f"is compared with all of it)")
    return references


def load_library_dir(directory: str | os.PathLike[str]) -> list[Reference]:
    """References from a directory with one folder per outcome holding WAVs: `powered_off/mobile.wav` is the
    reference "powered_off/mobile"; LibraryError for unknown folders, other files or no WAV at all."""
    root = Path(directory)
    if not root.is_dir():
        raise LibraryError(f"{root}: not a directory")
    entries = []
    for folder in sorted(root.iterdir()):
        if folder.name.startswith("."):
            continue
        if not folder.is_dir() or folder.name not in OUTCOMES:
            raise LibraryError(f"{folder}: expected only folders named for outcomes ({', '.join(OUTCOMES)})")
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                continue
            if path.suffix.lower() != ".wav" or not path.is_file():
                raise LibraryError(f"{path}: not a .wav file")
            entries.append((f"{folder.name}/{path.stem}", folder.name, path))
    if not entries:
        raise LibraryError(f"{root}: no WAV files in its outcome folders")
    return load_library(entries)


_MAX_WAV_BYTES = 16 * 1024 * 1024


def read_wav(path: str | os.PathLike[str], *, name: str | None = None) -> np.ndarray:
    """A mono WAV (PCM 8/16/24/32-bit, float, μ-law or A-law) as 8 kHz linear samples (full scale ±32768);
    other rates are resampled with soxr."""
    label = name or str(path)
    try:
        size = os.path.getsize(path)
        if size > _MAX_WAV_BYTES:
            raise LibraryError(f"{label}: {path} is {size} bytes; a reference WAV is at most {_MAX_WAV_BYTES}")
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise LibraryError(f"{label}: cannot read {path} ({exc.strerror or exc})") from None
    samples, rate = parse_wav(data, name=f"{label} ({path})")
    if rate != RATE:
        try:
            import soxr  # optional here: only references at other rates need it
        except ImportError:
            raise LibraryError(f"{label}: {path} is {rate} Hz and soxr is not installed to resample it; "
                               f"convert it to 8000 Hz") from None
        samples = soxr.resample(samples, rate, RATE, quality="HQ")
    return samples


def parse_wav(data: bytes, *, name: str = "audio") -> tuple[np.ndarray, int]:
    """A mono WAV's samples (float64, full scale ±32768) and its rate; LibraryError says what is wrong."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise LibraryError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    fmt = body = None
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if chunk == b"fmt ":
            fmt = data[offset + 8 : offset + 8 + size]
        elif chunk == b"data":
            body = data[offset + 8 : offset + 8 + size]
        offset += 8 + size + (size & 1)
    if fmt is None or len(fmt) < 16:
        raise LibraryError(f"{name}: no valid fmt chunk")
    if body is None:
        raise LibraryError(f"{name}: no data chunk")
    code, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if code == 0xFFFE and len(fmt) >= 26:
        code = struct.unpack_from("<H", fmt, 24)[0]
    if channels != 1:
        raise LibraryError(f"{name}: {channels} channels; a reference must be mono")
    if not 4000 <= rate <= 192000:
        raise LibraryError(f"{name}: sample rate {rate} Hz is not an audio rate")
    if code == 7 and bits == 8:
        samples = _DECODE[ULAW].take(np.frombuffer(body, dtype=np.uint8))
    elif code == 6 and bits == 8:
        samples = _DECODE[ALAW].take(np.frombuffer(body, dtype=np.uint8))
    elif code == 1 and bits == 8:
        samples = (np.frombuffer(body, dtype=np.uint8).astype(np.float64) - 128) * 256
    elif code == 1 and bits == 16:
        samples = np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2").astype(np.float64)
    elif code == 1 and bits == 24:
        raw = np.frombuffer(body[: len(body) // 3 * 3], dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        samples = (np.where(value >= 1 << 23, value - (1 << 24), value) / 256).astype(np.float64)
    elif code == 1 and bits == 32:
        samples = np.frombuffer(body[: len(body) // 4 * 4], dtype="<i4").astype(np.float64) / 65536
    elif code == 3 and bits in (32, 64):
        kind = "<f4" if bits == 32 else "<f8"
        samples = np.frombuffer(body[: len(body) // (bits // 8) * (bits // 8)], dtype=kind).astype(np.float64)
        if not np.all(np.isfinite(samples)):
            raise LibraryError(f"{name}: the float samples hold NaN or infinity")
        samples = samples * 32768
    else:
        raise LibraryError(f"{name}: encoding {code} with {bits} bits; expected PCM, float, μ-law or A-law")
    if samples.size == 0:
        raise LibraryError(f"{name}: the data chunk is empty")
    return samples, rate


@dataclass(frozen=True)
class Match:
    """A reference heard: which one, the outcome it means, its score, when it was decided (seconds of audio
    fed) and where in the audio the reference began (negative when the audio joined it late)."""

    name: str
    outcome: str
    score: float
    at: float
    started: float


class AnnouncementMatcher:
    """One call's announcement listener: feed it each received packet, in order; it returns a Match once."""

    def __init__(self, references: list[Reference], *, threshold: float = THRESHOLD, margin: float = MARGIN,
                 min_active_s: float = MIN_ACTIVE_S) -> None:
        if not references:
            raise LibraryError("the matcher needs at least one reference")
        self.references = list(references)
        self.threshold, self.margin = threshold, margin
        # A diagonal is scored once it holds min_active_s of its reference's speech (a short clip: 80% of it).
        needed = [min(min_active_s * RATE / FRAME, 0.8 * r.weights.sum()) for r in references]
        self._min_rival = MIN_RIVAL_S * RATE / FRAME
        self._max_late = round(MAX_LATE_S * RATE / FRAME)
        lengths = np.array([r.vectors.shape[0] for r in references])
        self._offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))  # (R,) each reference's first row
        self._lengths = lengths
        self._positions = np.concatenate([np.arange(n) for n in lengths])  # (M,) each row's frame in its reference
        self._late_until = int(lengths.max())
        self._matrix = np.concatenate([r.vectors for r in references]).astype(np.float32)  # (M, BANDS)
        weights = np.concatenate([r.weights for r in references])  # (M,)
        self._min_active = np.repeat(needed, lengths)  # (M,)
        self._added = np.stack([weights] * 4).astype(np.float32)  # (4, M): what a frame adds (rows 0, 2 times
        # its products). Row m of the state is the diagonal that has reached row m's reference frame j now (it
        # began j frames ago): its products and active frames weighed by age, then the same unweighed.
        self._state = np.zeros((4, weights.size), dtype=np.float32)  # float32: sums of at most ~1500 products
        recent = math.exp(-FRAME / RATE / MEMORY_S)
        self._decay = np.array([[recent], [recent], [1.0], [1.0]], dtype=np.float32)
        self._outcome_of = np.array([OUTCOMES.index(r.outcome) for r in references])
        self._features = _Fingerprinter()
        self._frame = 0
        self.best: tuple[float, str] = (0.0, "")  # the best score so far and its reference (for tuning)
        self.scores = np.zeros(len(references))  # each reference's best diagonal after the last frame
        self.match: Match | None = None
        self._pending: list[np.ndarray] = []  # samples held back until a batch is full
        self._pending_size = 0

    def feed(self, payload: bytes, pt: int) -> Match | None:
        """The Match that became certain with this G.711 payload (μ-law for PT 0, A-law for PT 8), if any."""
        return self.feed_samples(decode(payload, pt))

    def feed_samples(self, samples: np.ndarray) -> Match | None:
        """As feed(), for 8 kHz linear samples (full scale ±32768). Returns the Match once, then None."""
        if self.match is not None:
            return None
        self._pending.append(np.asarray(samples, dtype=np.float64))
        self._pending_size += self._pending[-1].size
        if self._pending_size < BATCH:
            return None
        return self.flush()

    def flush(self) -> Match | None:
        """Listen to the samples held back for the next batch now (at the end of the audio)."""
        if self.match is not None or not self._pending:
            return None
        vectors, _ = self._features.feed(np.concatenate(self._pending))
        self._pending, self._pending_size = [], 0
        products = self._matrix @ vectors.T.astype(np.float32)  # (M, T): each frame against every reference frame
        for n in range(vectors.shape[0]):
            found = self._step(products[:, n])
            if found is not None:
                self.match = found
                return found
        return None

    def _step(self, products: np.ndarray) -> Match | None:
        t = self._frame
        self._frame += 1
        state = self._state
        state[:, 1:] = state[:, :-1]  # every diagonal moves on one frame; a reference's last spills into
        state[:, self._offsets] = 0.0  # the next one's first row, where a new diagonal begins instead
        state *= self._decay
        self._added[0::2] = self._added[1] * products  # (2, M)
        state += self._added
        means = state[2] / np.maximum(state[3], 1e-9)  # each diagonal's score: its mean product
        counts = state[3]
        if t < self._late_until:  # a diagonal that began long before the audio did has missed too much of it
            counts = np.where(self._positions <= t + self._max_late, counts, 0.0)
        best = np.maximum.reduceat(np.where(counts >= self._min_active, means, -1.0), self._offsets)  # (R,)
        self.scores = best
        top = int(best.argmax())
        if best[top] > self.best[0]:
            self.best = (float(best[top]), self.references[top].name)
        if best[top] < self.threshold:
            return None
        # The best reference of every other outcome must trail by the margin, on the whole diagonal (recordings
        # that end alike: "...用户忙，请稍后再拨" / "...用户无法接通，请稍后再拨") or on its recent products
        # (recordings that begin alike and part ways: "您拨打的电话已关机" / "...已停机"). A rival needs less of
        # itself heard to hold a match back: it may have begun later than the leader (its own opening first).
        others = self._outcome_of != self._outcome_of[top]
        if others.any():
            rival = counts >= self._min_rival
            whole = np.maximum.reduceat(np.where(rival, means, -1.0), self._offsets)[others].max()
            recent = state[0] / np.maximum(state[1], 1e-9)
            lead = np.maximum.reduceat(np.where(counts >= self._min_active, recent, -1.0), self._offsets)[top]
            lately = np.maximum.reduceat(np.where(rival, recent, -1.0), self._offsets)[others].max()
            if best[top] - whole < self.margin and lead - lately < self.margin:
                return None
        reference = self.references[top]
        first = int(self._offsets[top])
        rows = np.where(counts[first : first + self._lengths[top]] >= self._min_active[first : first + self._lengths[top]],
                        means[first : first + self._lengths[top]], -1.0)
        j = int(rows.argmax())  # the winning diagonal is at this frame of the reference: it began j frames ago
        return Match(reference.name, reference.outcome, float(best[top]), (t + 1) * FRAME / RATE,
                     (t - j) * FRAME / RATE)
