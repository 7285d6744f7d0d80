"""Telephony audio: waveforms, phone-line post-processing, G.711 μ-law and WAV files (pure Python + numpy).

Nothing here imports Django. The pipeline for one rendered prompt is::

    wave = engine.synthesize(...)[0]          # float32 mono at the engine's rate
    write_wav(orig_path, wave)                # the engine-rate original (16-bit PCM)
    phone = to_telephony(wave)                # 8 kHz, level-normalised, peak-safe, trimmed
    write_mulaw_wav(tel_path, phone)          # G.711 μ-law WAV, what the phone network plays

Loudness: we normalise the *gated RMS* (the RMS of the frames that contain signal, ignoring pauses), which is
essentially ITU-T P.56 "active speech level", the measure telephony level plans are written in. We do not
implement full ITU-R BS.1770 (LUFS): its K-weighting (a ~38 Hz high-pass and a +4 dB shelf above ~1.5 kHz) was
designed for full-band programme material; on 300-3400 Hz speech it amounts to an almost constant offset, and
its 400 ms gating blocks are coarse for prompts lasting a few seconds. A gated RMS is simpler, predictable and
what the phone band actually cares about.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

TELEPHONY_RATE = 8000

# Post-processing constants (changing any of them changes the output bytes: bump keys.OUTPUT_FORMAT).
_FRAME_SECONDS = 0.020  # analysis frame for gating and trimming
_ABSOLUTE_GATE_DBFS = -70.0  # frames quieter than this never count as signal
_RELATIVE_GATE_DB = -20.0  # ... nor frames this far below the mean level of the signal frames
_SILENT_BELOW_DBFS = -60.0  # loudest frame below this: the input is treated as silence
_TRIM_RANGE_DB = 45.0  # for trimming, a frame is "sound" within this range of the loudest frame
_EDGE_SECONDS = 0.150  # leading/trailing margin kept (or padded with zeros) around the sound
_HIGHPASS_HZ = 150.0  # gentle (2nd-order, zero-phase) high-pass: DC, hum, rumble below the phone band
_HIGHPASS_ORDER = 2
_LIMITER_SECONDS = 0.010  # limiter attack/hold/release window
_LIMITER_MAX_DB = 6.0  # beyond this much gain reduction, lower the whole prompt instead of squashing peaks


class AudioError(ValueError):
    """The audio cannot be processed (silent, empty, corrupt, wrong format). Retrying will not help."""


@dataclass(frozen=True, eq=False)
class Waveform:
    """Mono audio: float32 samples nominally in [-1, 1] at ``sample_rate`` Hz.

    The samples are copied into a read-only float32 array on construction, so a Waveform is a value that
    nothing can change behind the cache's back.
    """

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        samples = np.array(self.samples, dtype=np.float32, copy=True)
        if samples.ndim != 1:
            raise AudioError(f"a Waveform is mono: expected a 1-D sample array, got shape {samples.shape}")
        if not np.all(np.isfinite(samples)):
            raise AudioError("audio samples contain NaN or infinity")
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int | np.integer):
            raise AudioError(f"sample rate must be an integer, got {self.sample_rate!r}")
        if self.sample_rate <= 0:
            raise AudioError(f"sample rate must be positive, got {self.sample_rate}")
        samples.setflags(write=False)
        object.__setattr__(self, "samples", samples)
        object.__setattr__(self, "sample_rate", int(self.sample_rate))

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"Waveform({len(self.samples)} samples, {self.sample_rate} Hz, {self.duration:.3f} s)"


# ---------------------------------------------------------------------------------------------------------------
# Levels


def _db_to_lin(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def frame_power(x: np.ndarray, frame: int) -> np.ndarray:
    """Mean square of consecutive frames (the last, partial frame zero-padded)."""
    n_frames = max(1, -(-len(x) // frame))
    padded = np.zeros(n_frames * frame, dtype=np.float64)
    padded[: len(x)] = x
    return np.mean(padded.reshape(n_frames, frame) ** 2, axis=1)


def gated_rms_dbfs(samples: np.ndarray, sample_rate: int) -> float:
    """Level of the signal part of ``samples`` in dBFS (a full-scale sine reads -3 dBFS).

    Two gates, in the spirit of BS.1770 but without K-weighting: 20 ms frames below -70 dBFS are dropped,
    then frames more than 20 dB below the mean of the remaining ones. Returns ``-inf`` for silence.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return float("-inf")
    power = frame_power(x, max(1, round(_FRAME_SECONDS * sample_rate)))
    active = power > 10.0 ** (_ABSOLUTE_GATE_DBFS / 10.0)
    if not active.any():
        return float("-inf")
    relative = power > np.mean(power[active]) * 10.0 ** (_RELATIVE_GATE_DB / 10.0)
    gated = power[active & relative]
    return float(10.0 * np.log10(np.mean(gated)))


def peak_dbfs(samples: np.ndarray) -> float:
    """Sample peak in dBFS (``-inf`` for silence)."""
    x = np.asarray(samples)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return 20.0 * np.log10(peak) if peak > 0 else float("-inf")


# ---------------------------------------------------------------------------------------------------------------
# Telephony post-processing


def _highpass(x: np.ndarray, rate: int) -> np.ndarray:
    """Zero-phase Butterworth-magnitude high-pass, applied in the frequency domain (no per-sample loop)."""
    if len(x) < 2:
        return x - np.mean(x)
    pad = rate // 4  # room for the filter's (symmetric) impulse response, so nothing wraps around
    n_fft = 1 << int(np.ceil(np.log2(len(x) + pad)))
    spectrum = np.fft.rfft(x, n_fft)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    r = (freqs / _HIGHPASS_HZ) ** _HIGHPASS_ORDER
    gain = r / np.sqrt(1.0 + r * r)  # |H| = 1 / sqrt(1 + (fc/f)^2n): 0 at DC, -3 dB at fc, ~1 in the band
    return np.fft.irfft(spectrum * gain, n_fft)[: len(x)]


def _trim_and_pad(x: np.ndarray, rate: int) -> np.ndarray:
    """Keep the sound plus exactly ``_EDGE_SECONDS`` before and after it (original audio, or zero padding)."""
    frame = max(1, round(_FRAME_SECONDS * rate))
    power = frame_power(x, frame)
    loudest = float(np.max(power))
    floor = max(loudest * 10.0 ** (-_TRIM_RANGE_DB / 10.0), 10.0 ** (_ABSOLUTE_GATE_DBFS / 10.0))
    sound = np.flatnonzero(power > floor)
    start = int(sound[0]) * frame
    end = min(len(x), (int(sound[-1]) + 1) * frame)
    edge = round(_EDGE_SECONDS * rate)
    head = x[max(0, start - edge) : start]
    tail = x[end : end + edge]
    return np.concatenate([np.zeros(edge - len(head)), head, x[start:end], tail, np.zeros(edge - len(tail))])


def _limit(x: np.ndarray, ceiling: float, rate: int) -> np.ndarray:
    """Smooth look-ahead peak limiter guaranteeing ``max |y| <= ceiling`` (vectorised, no sample loop).

    The per-sample gain needed is ``g = min(1, ceiling / |x|)``. A running minimum over a window W followed by a
    W-long moving average (aligned so each averaged window only sees minima that include the sample itself)
    yields a smooth gain that never exceeds ``g`` anywhere: linear ramps of W samples instead of hard clipping.
    """
    magnitude = np.abs(x)
    peak = float(np.max(magnitude)) if x.size else 0.0
    if peak <= ceiling:
        return x
    # More than _LIMITER_MAX_DB of reduction would be audible pumping: lower everything, limit the rest.
    worst = ceiling / peak
    floor_gain = _db_to_lin(-_LIMITER_MAX_DB)
    if worst < floor_gain:
        x = x * (worst / floor_gain)
        magnitude = np.abs(x)
    with np.errstate(divide="ignore"):
        need = np.minimum(1.0, ceiling / np.maximum(magnitude, 1e-300))
    window = max(1, round(_LIMITER_SECONDS * rate))
    ones = np.ones(window - 1)
    held = np.lib.stride_tricks.sliding_window_view(np.concatenate([ones, need, ones]), window).min(axis=1)
    csum = np.concatenate([[0.0], np.cumsum(held)])
    smooth = (csum[window : window + len(x)] - csum[: len(x)]) / window
    y = x * np.minimum(smooth, need)  # the min only absorbs floating-point rounding in the moving average
    return np.clip(y, -ceiling, ceiling)


def to_telephony(wave: Waveform, *, target_rms_dbfs: float = -20.0, peak_dbfs: float = -1.0) -> Waveform:
    """Prepare a rendered prompt for an 8 kHz phone call.

    Steps: remove DC; resample to 8 kHz (soxr, high quality); gentle zero-phase high-pass at 150 Hz (the
    phone band starts around 300 Hz; the resampler already band-limits the top to 4 kHz); trim leading and
    trailing silence so that exactly 150 ms of margin remains at each end (padding with zeros where the
    engine left less); normalise the gated RMS (active speech level) to ``target_rms_dbfs``; finally a smooth
    peak limiter guarantees that no sample exceeds ``peak_dbfs``.

    Raises AudioError for empty or silent input.
    """
    if not isinstance(wave, Waveform):
        raise AudioError(f"expected a Waveform, got {type(wave).__name__}")
    if peak_dbfs > 0:
        raise AudioError(f"peak_dbfs must be <= 0 dBFS, got {peak_dbfs}")
    if target_rms_dbfs >= peak_dbfs:
        raise AudioError(
            f"target level {target_rms_dbfs} dBFS must be below the peak ceiling {peak_dbfs} dBFS"
        )
    x = np.asarray(wave.samples, dtype=np.float64)
    if x.size == 0:
        raise AudioError("audio is empty: the engine produced no samples")

    x = x - np.mean(x)
    if wave.sample_rate != TELEPHONY_RATE:
        import soxr

        x = soxr.resample(x, wave.sample_rate, TELEPHONY_RATE, quality="HQ")
        if x.size == 0:
            raise AudioError(f"audio is too short to resample ({len(wave.samples)} samples)")
    x = _highpass(x, TELEPHONY_RATE)

    power = frame_power(x, round(_FRAME_SECONDS * TELEPHONY_RATE))
    if float(np.max(power)) < 10.0 ** (_SILENT_BELOW_DBFS / 10.0):
        raise AudioError(
            f"audio is silent: loudest 20 ms is {10 * np.log10(max(float(np.max(power)), 1e-30)):.1f} dBFS "
            f"(needs at least {_SILENT_BELOW_DBFS:.0f} dBFS)"
        )
    x = _trim_and_pad(x, TELEPHONY_RATE)

    level = gated_rms_dbfs(x, TELEPHONY_RATE)
    x = x * _db_to_lin(target_rms_dbfs - level)
    ceiling = _db_to_lin(peak_dbfs)
    x = _limit(x, ceiling, TELEPHONY_RATE)
    # Rounding to float32 must not push a sample past the ceiling: clip to the largest float32 <= ceiling.
    ceiling32 = np.float32(ceiling)
    if float(ceiling32) > ceiling:
        ceiling32 = np.nextafter(ceiling32, np.float32(0))
    return Waveform(np.clip(x.astype(np.float32), -ceiling32, ceiling32), TELEPHONY_RATE)


# ---------------------------------------------------------------------------------------------------------------
# G.711 μ-law (ITU-T G.711 / the G.191 reference algorithm: 14-bit linear input, bias 33 (0x84 at 16-bit
# scale), 8 segments, bits inverted). Table driven, so encoding and decoding are single numpy indexing ops.


def _build_mulaw_tables() -> tuple[np.ndarray, np.ndarray]:
    # Encoder: one code for every 14-bit two's-complement input value -8192..8191.
    q = np.arange(-8192, 8192, dtype=np.int32)
    magnitude = np.where(q < 0, ~q, q) + 33  # ~q == -q - 1: the negative range maps onto 0..8191 too
    magnitude = np.minimum(magnitude, 0x1FFF)
    top = magnitude >> 6  # 0..127
    segment = np.sum(top[:, None] >= (1 << np.arange(7))[None, :], axis=1)  # bit length of `top`: 0..7
    mantissa = (magnitude >> (segment + 1)) & 0x0F
    code = (segment << 4) | mantissa
    encode = np.where(q >= 0, code ^ 0xFF, code ^ 0x7F).astype(np.uint8)

    # Decoder: 16-bit linear value (the standard table: 0x80 -> 32124, 0x00 -> -32124, 0xFF/0x7F -> 0).
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    t = (((u & 0x0F) << 3) + 0x84) << exponent
    linear = np.where(u & 0x80, 0x84 - t, t - 0x84)
    decode = (linear / 32768.0).astype(np.float32)
    encode.setflags(write=False)
    decode.setflags(write=False)
    return encode, decode


_MULAW_ENCODE, _MULAW_DECODE = _build_mulaw_tables()


def mulaw_encode(x: np.ndarray) -> bytes:
    """Encode float samples in [-1, 1] (values beyond are clipped) to G.711 μ-law bytes.

    The float is first quantised to 14-bit linear (``floor(x * 8192)``), exactly like a 16-bit PCM sample
    ``floor(x * 32768)`` shifted right by two, so the result matches the standard encoder byte for byte.
    int16 arrays are accepted as 16-bit PCM.
    """
    a = np.asarray(x)
    if a.dtype == np.int16:
        q = a.astype(np.int32) >> 2
    elif np.issubdtype(a.dtype, np.floating):
        scaled = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=1.0, neginf=-1.0) * 8192.0
        q = np.floor(np.clip(scaled, -8192.0, 8191.0)).astype(np.int32)
    else:
        raise AudioError(f"mulaw_encode needs float samples (or int16 PCM), got {a.dtype}")
    return _MULAW_ENCODE[q.ravel() + 8192].tobytes()


def mulaw_decode(b: bytes | bytearray | memoryview) -> np.ndarray:
    """Decode G.711 μ-law bytes to float32 samples (the 16-bit standard values divided by 32768)."""
    codes = np.frombuffer(bytes(b), dtype=np.uint8)
    return _MULAW_DECODE[codes]


# ---------------------------------------------------------------------------------------------------------------
# Files

WAVE_FORMAT_MULAW = 7
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE


def _atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Write via a temporary file in the target's directory, fsync, then rename over the target.

    Readers see either the old file or the complete new one, never a partial file; on any error the temporary
    file is removed. OSError (missing directory, disk full) propagates unchanged: it is not an audio problem.
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


def info_chunk(info: dict[str, str]) -> bytes:
    """A RIFF LIST/INFO chunk (e.g. ISFT software, ICMT comment): metadata players and carriers ignore."""
    body = b"INFO"
    for key, value in info.items():
        if len(key) != 4 or not key.isascii():
            raise ValueError(f"RIFF INFO ids are four ASCII characters, got {key!r}")
        text = value.encode("utf-8") + b"\x00"
        body += key.encode() + struct.pack("<I", len(text)) + text + b"\x00" * (len(text) & 1)
    return b"LIST" + struct.pack("<I", len(body)) + body


def read_info(path: str | os.PathLike[str]) -> dict[str, str]:
    """The LIST/INFO entries of a WAV file (empty when it has none)."""
    raw = Path(path).read_bytes()
    info: dict[str, str] = {}
    pos = 12
    while pos + 8 <= len(raw):
        chunk_id, (size,) = raw[pos : pos + 4], struct.unpack_from("<I", raw, pos + 4)
        if chunk_id == b"LIST" and raw[pos + 8 : pos + 12] == b"INFO":
            sub, end = pos + 12, pos + 8 + size
            while sub + 8 <= end:
                key, (length,) = raw[sub : sub + 4].decode("ascii", "replace"), struct.unpack_from("<I", raw, sub + 4)
                info[key] = raw[sub + 8 : sub + 8 + length].rstrip(b"\x00").decode("utf-8", "replace")
                sub += 8 + length + (length & 1)
        pos += 8 + size + (size & 1)
    return info


def _mulaw_wav_bytes(payload: bytes, sample_rate: int, info: dict[str, str] | None = None) -> bytes:
    n = len(payload)
    pad = n & 1
    fmt = struct.pack(
        "<HHIIHHH",
        WAVE_FORMAT_MULAW,  # wFormatTag
        1,  # nChannels
        sample_rate,  # nSamplesPerSec
        sample_rate,  # nAvgBytesPerSec (1 byte per sample)
        1,  # nBlockAlign
        8,  # wBitsPerSample
        0,  # cbSize
    )
    chunks = (
        b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"fact"
        + struct.pack("<II", 4, n)
        + b"data"
        + struct.pack("<I", n)
        + payload
        + b"\x00" * pad
        + (info_chunk(info) if info else b"")
    )
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def write_mulaw_wav(path: str | os.PathLike[str], wave: Waveform, *, info: dict[str, str] | None = None) -> None:
    """Write an 8 kHz mono G.711 μ-law WAV (format tag 7, 18-byte fmt chunk, fact chunk, optional LIST/INFO
    metadata after the audio), atomically."""
    if wave.sample_rate != TELEPHONY_RATE:
        raise AudioError(
            f"a μ-law telephony file must be {TELEPHONY_RATE} Hz, got {wave.sample_rate} Hz (use to_telephony)"
        )
    if len(wave.samples) == 0:
        raise AudioError("refusing to write an empty μ-law WAV")
    data = _mulaw_wav_bytes(mulaw_encode(wave.samples), wave.sample_rate, info)
    _atomic_write(path, lambda fh: fh.write(data))


def read_mulaw_wav(path: str | os.PathLike[str]) -> tuple[bytes, int]:
    """Return the μ-law payload and sample rate of a mono μ-law WAV, validating its header.

    Raises AudioError, naming the file, when it is missing, not RIFF/WAVE, not mono 8-bit μ-law, or truncated.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise AudioError(f"cannot read μ-law WAV {os.fspath(path)!r}: {exc.strerror or exc}") from exc

    def bad(why: str) -> AudioError:
        return AudioError(f"{os.fspath(path)!r} is not a usable μ-law WAV: {why}")

    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise bad("missing RIFF/WAVE header")
    fmt: tuple[int, int, int, int, int] | None = None
    pos = 12
    while pos + 8 <= len(raw):
        chunk_id = raw[pos : pos + 4]
        (size,) = struct.unpack_from("<I", raw, pos + 4)
        body_start = pos + 8
        body_end = body_start + size
        if chunk_id == b"fmt ":
            if size < 16 or body_end > len(raw):
                raise bad(f"fmt chunk is {size} bytes (truncated or too short)")
            tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from(
                "<HHIIHH", raw, body_start
            )
            if tag == _WAVE_FORMAT_EXTENSIBLE and size >= 40:
                (tag,) = struct.unpack_from(
                    "<H", raw, body_start + 24
                )  # first two bytes of the SubFormat GUID
            fmt = (tag, channels, rate, block_align, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise bad("data chunk before fmt chunk")
            tag, channels, rate, block_align, bits = fmt
            if tag != WAVE_FORMAT_MULAW:
                raise bad(f"format tag {tag}, expected {WAVE_FORMAT_MULAW} (μ-law)")
            if channels != 1:
                raise bad(f"{channels} channels, expected mono")
            if bits != 8 or block_align != 1:
                raise bad(f"{bits} bits per sample / block align {block_align}, expected 8 / 1")
            if rate <= 0:
                raise bad(f"sample rate {rate}")
            if body_end > len(raw):
                raise bad(
                    f"data chunk declares {size} bytes but only {len(raw) - body_start} are present (truncated)"
                )
            if size == 0:
                raise bad("data chunk is empty")
            return raw[body_start:body_end], rate
        pos = body_end + (size & 1)  # chunks are word aligned
    raise bad("no data chunk" if fmt is not None else "no fmt chunk")


def write_wav(
    path: str | os.PathLike[str], wave: Waveform, *, subtype: str = "PCM_16", info: dict[str, str] | None = None
) -> None:
    """Write ``wave`` at its own sample rate as a WAV (16-bit PCM by default, or ``"FLOAT"``), atomically, with
    optional LIST/INFO metadata appended."""
    import soundfile as sf

    samples = np.asarray(wave.samples, dtype=np.float32)
    if subtype.startswith("PCM"):
        samples = np.clip(samples, -1.0, 1.0)  # libsndfile wraps around instead of clipping by default
    buffer = io.BytesIO()
    sf.write(buffer, samples, wave.sample_rate, subtype=subtype, format="WAV")
    data = buffer.getvalue()
    if info:  # appended as one more RIFF chunk; the RIFF size grows with it
        extra = info_chunk(info)
        data = data[:4] + struct.pack("<I", len(data) - 8 + len(extra)) + data[8:] + extra
    _atomic_write(path, lambda fh: fh.write(data))


def load_audio(path: str | os.PathLike[str]) -> Waveform:
    """Read any format libsndfile understands, mixed down to mono float32 at the file's own rate."""
    import soundfile as sf

    try:
        data, rate = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as exc:
        raise AudioError(f"cannot read audio file {os.fspath(path)!r}: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioError(f"audio file {os.fspath(path)!r} contains no samples")
    return Waveform(data.mean(axis=1, dtype=np.float64).astype(np.float32), int(rate))


# ---------------------------------------------------------------------------------------------------------------
# Streamed speech: 16-bit PCM made chunk by chunk, and a WAV header for audio of unknown length

UNKNOWN_WAV_SIZE = 0xFFFFFFFF


def streaming_wav_header(sample_rate: int) -> bytes:
    """The 44-byte header of a 16-bit mono PCM WAV whose length is not known yet (it is being made).

    The RIFF and data sizes are 0xFFFFFFFF, the largest a RIFF size can say: readers take the data to run to the
    end of the stream (libsndfile, so soundfile, clamps it to what is there; Python's ``wave`` reads every frame
    but reports 2**31 - 1 of them from ``getnframes``; FFmpeg warns "Ignoring maximum wav data size" and reads to
    the end). Zero, the other convention, is refused by ``wave``.
    """
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)  # PCM, mono, 16-bit
    return (
        b"RIFF" + struct.pack("<I", UNKNOWN_WAV_SIZE) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", UNKNOWN_WAV_SIZE)
    )


def pcm16(samples: np.ndarray) -> bytes:
    """Float samples as signed 16-bit little-endian PCM: ×32768 rounded, clipped (the inverse of /32768, so an
    engine's own 16-bit samples come back unchanged)."""
    scaled = np.rint(np.asarray(samples, dtype=np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype("<i2").tobytes()


class PcmStream:
    """Consecutive Waveforms of one sample rate as 16-bit PCM at ``sample_rate``, resampled by one soxr stream
    (high quality, as ``to_telephony``), so the joins between chunks are the same as in one resample of the
    whole: no clicks, no lost samples. ``finish()`` flushes what the resampler holds back."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.input_rate: int | None = None
        self._resampler = None

    def feed(self, wave: Waveform) -> bytes:
        """The PCM bytes of one more chunk (the resampler may keep a few milliseconds back until the next)."""
        if self.input_rate is None:
            self.input_rate = wave.sample_rate
            if wave.sample_rate != self.sample_rate:
                import soxr

                self._resampler = soxr.ResampleStream(
                    wave.sample_rate, self.sample_rate, 1, dtype="float32", quality="HQ"
                )
        elif wave.sample_rate != self.input_rate:
            raise AudioError(
                f"a streamed chunk at {wave.sample_rate} Hz follows chunks at {self.input_rate} Hz: "
                "an engine streams at one rate"
            )
        samples = wave.samples
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(np.asarray(samples, dtype=np.float32))
        return pcm16(samples)

    def finish(self) -> bytes:
        """The last bytes: what the resampler still holds."""
        if self._resampler is None:
            return b""
        return pcm16(self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
