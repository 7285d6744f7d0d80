"""In-band DTMF: the keys a callee presses, heard as tones (ITU-T Q.23) in the G.711 audio it sends.

For trunks that negotiate no telephone-event (RFC 4733), the keys exist only as sound. Written here rather than
taken from a library: the DTMF decoders on PyPI run per-sample Python or wrap C (spandsp) we would have to ship;
this is a page of numpy.

How it listens. The audio is cut into 10 ms halves (80 samples); a window is two adjacent halves (20 ms, every
10 ms). One matrix product gives each half's sums at the eight DTMF frequencies (each probed on it and TOLERANCE
either side, the best of the three counting) and at their second harmonics: a bank of Goertzel filters,
evaluated at once rather than sample by sample (the same numbers); a window's sums are its halves', the second
turned by the phase it starts at. Windows quieter than two tones at the minimum level (the far end listening)
cost only their energy. A window holds a key when
- its strongest row tone and strongest column tone are both louder than LEVEL_DBFS;
- their twist is within limits: the column up to REVERSE_TWIST_DB above the row, or up to NORMAL_TWIST_DB below;
- together they carry at least TONE_SHARE of the window's energy (speech, music and noise spread theirs);
- each stands GROUP_MARGIN_DB above the other tones of its group (no chord, no tone between two keys);
- their second harmonics are HARMONIC_DB or more below them (voiced sound has harmonics, a keypad does not).
A window is full when each tone is as strong in both its halves (within EVEN). A key counts after MIN_WINDOWS
full windows of it (at least ~40 ms of tone always does; 20 ms, whatever its level, never; one odd window inside
a run is forgiven), once per press: the next key needs GAP_WINDOWS windows without one first (a pause of 30 ms
does it; a drop-out of 10 ms inside a tone is bridged).
"""

from __future__ import annotations

import numpy as np

from telephony.sip import g711

RATE = 8000
HALF = 80  # samples: 10 ms, the hop; a window is two halves
ROWS = (697.0, 770.0, 852.0, 941.0)
COLUMNS = (1209.0, 1336.0, 1477.0, 1633.0)
KEYS = ("123A", "456B", "789C", "*0#D")  # KEYS[row][column]
LEVEL_DBFS = -38.0  # each tone's peak, relative to a full-scale sine; Q.24 asks for -25 dBm0 (~-28 dBFS)
NORMAL_TWIST_DB = 8.0  # column weaker than the row (lines lose the high group first)
REVERSE_TWIST_DB = 4.0  # column louder than the row
TONE_SHARE = 0.7  # of the window's energy in the two tones
GROUP_MARGIN_DB = 6.0
HARMONIC_DB = 8.0  # a column tone next to a row's second harmonic leaks up to -13 dB into it (-9 with reverse twist)
MIN_WINDOWS = 2
EVEN = 0.5  # a full window: each tone's power in one half at least this much of its power in the other
GAP_WINDOWS = 3
ULAW, ALAW = 0, 8  # payload types

TOLERANCE = 0.015  # a keypad's tones may be this far off (Q.23); each tone is also probed there
_TONES = np.array([*ROWS, *COLUMNS])
_FREQUENCIES = np.concatenate([_TONES * (1 - TOLERANCE), _TONES, _TONES * (1 + TOLERANCE), 2 * _TONES])  # (32,)
_OMEGA = 2 * np.pi * _FREQUENCIES / RATE  # (32,) radians a sample
# Scaled so that a window's |sum|^2 is the power (A^2 / 2) of a sine of peak A at that frequency filling it.
_BASIS = np.exp(-1j * np.outer(np.arange(HALF), _OMEGA)) * np.sqrt(2.0) / (2 * HALF)  # (80, 32) one half's sums
_TURN = np.exp(-1j * _OMEGA * HALF)  # (32,) a window's second half starts this much further round
_WHERE = {key: (row, column) for row, keys in enumerate(KEYS) for column, key in enumerate(keys)}
_DECODE = {
    ULAW: np.array([g711.ulaw_to_linear(code) for code in range(256)], dtype=np.float64),
    ALAW: np.array([g711.alaw_to_linear(code) for code in range(256)], dtype=np.float64),
}
_MIN_POWER = (32768.0 * 10 ** (LEVEL_DBFS / 20)) ** 2 / 2
_NORMAL_TWIST = 10 ** (NORMAL_TWIST_DB / 10)
_REVERSE_TWIST = 10 ** (REVERSE_TWIST_DB / 10)
_GROUP_MARGIN = 10 ** (GROUP_MARGIN_DB / 10)
_HARMONIC = 10 ** (-HARMONIC_DB / 10)
_GATE = 2 * _MIN_POWER  # a window quieter than two tones at the minimum level holds no key


def window_key(powers: list[float], mean_power: float) -> str:
    """The key one window holds ("" for none); `powers`: the 8 tones' and their second harmonics' powers."""
    rows, columns = powers[0:4], powers[4:8]
    low, high = max(rows), max(columns)
    if low < _MIN_POWER or high < _MIN_POWER or low + high < TONE_SHARE * mean_power:
        return ""
    if low > high * _NORMAL_TWIST or high > low * _REVERSE_TWIST:
        return ""
    row, column = rows.index(low), columns.index(high)
    if sorted(rows)[2] * _GROUP_MARGIN > low or sorted(columns)[2] * _GROUP_MARGIN > high:
        return ""
    if powers[8 + row] > low * _HARMONIC or powers[12 + column] > high * _HARMONIC:
        return ""
    return KEYS[row][column]


class DtmfDetector:
    """One call's in-band key detector: feed it each received packet's payload, in order; it returns the keys."""

    def __init__(self) -> None:
        self._samples = np.zeros(HALF)  # the last whole half, then any samples short of the next one
        self._key = ""  # the key of the current run of windows
        self._full = 0  # how many of them the tones filled
        self._quiet = GAP_WINDOWS  # windows without a key since the last one
        self._armed = True  # a new key may count

    def feed(self, payload: bytes, pt: int) -> str:
        """The keys that became certain with this G.711 payload (μ-law for PT 0, A-law for PT 8)."""
        samples = np.concatenate((self._samples, _DECODE[pt].take(np.frombuffer(payload, dtype=np.uint8))))
        count = samples.size // HALF
        self._samples = samples[(count - 1) * HALF :]
        if count < 2:
            return ""
        halves = samples[: count * HALF].reshape(count, HALF)  # (H+1, 80): the half before, then the new ones
        energy = (halves * halves).sum(axis=1).tolist()  # (H+1,)
        means = [(before + now) / (2 * HALF) for before, now in zip(energy, energy[1:], strict=False)]  # (H,)
        if max(means) < _GATE:  # quiet: no window can hold a key (the common case, so kept cheap)
            return "".join(self._step("", False) for _ in means)
        sums = halves @ _BASIS  # (H+1, 32) complex
        windows = sums[:-1] + _TURN * sums[1:]  # (H, 32) each window: its first half's sums, then its second's
        keys = ""
        for n, probes in enumerate((windows.real**2 + windows.imag**2).tolist()):  # (32,) each window's probes
            tones = [max(probes[i], probes[i + 8], probes[i + 16]) for i in range(8)]  # the best probe of each
            key = window_key(tones + probes[24:], means[n])
            full = bool(key) and all(_even(sums[n, i], sums[n + 1, i]) for i in _centres(key))
            keys += self._step(key, full)
        return keys

    def _step(self, key: str, full: bool) -> str:
        """One window's key ("" for none) and whether the tones filled it (both halves alike)."""
        if not key:
            self._quiet += 1
            if self._quiet > 1:  # one window without the key (a noisy one) does not end its run
                self._key, self._full = "", 0
            if self._quiet >= GAP_WINDOWS:
                self._armed = True
            return ""
        self._quiet = 0
        if key != self._key:
            self._key, self._full = key, 0
        self._full += full
        if not self._armed or self._full < MIN_WINDOWS:
            return ""
        self._armed = False
        return key


def _centres(key: str) -> tuple[int, int]:
    row, column = _WHERE[key]
    return 8 + row, 12 + column  # the probes right on its two tones


def _even(first: complex, second: complex) -> bool:
    a, b = abs(first) ** 2, abs(second) ** 2
    return min(a, b) >= EVEN * max(a, b)
