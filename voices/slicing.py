"""Training audio for a Herald-trained voice: decode, slice into sentence-sized clips, check, pick a reference.

Pure (numpy + soundfile + soxr): no Django, no app imports, so the training worker and the admin's upload
check call the same code. The pipeline for one recording of an agent's speech::

    wav, sr = load_speech(upload_bytes)        # float32 mono at 32 kHz, or AudioProblem in plain words
    clips = prepare_clips(wav, sr)             # sliced at pauses, level-normalised, each with its problem
    ref = pick_reference(clips)                # index of a usable 3-10 s clip, or None

Why hand-written: the slicing is the official GPT-SoVITS slicer's behaviour (its webui defaults: -34 dB,
4 s minimum, 300 ms minimum pause, 10 ms hop, at most 500 ms of silence kept at a cut) rewritten on numpy
with a vectorised RMS and an explicit list of pauses instead of a frame-by-frame state machine, so that the
training data we cut matches what the official recipe would cut without depending on librosa or scipy.
The level normalisation is the official slice_audio one (peak 0.9, alpha 0.25). The clip checks (short,
long, clipped, silent, noisy) are ours: the official pipeline trains on whatever it is given.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 32000  # what the official pipeline slices and trains SoVITS at (wav32k)

# Slicer defaults: the official webui's values.
THRESHOLD_DB = -34.0
MIN_LENGTH_MS = 4000
MIN_INTERVAL_MS = 300
HOP_SIZE_MS = 10
MAX_SIL_KEPT_MS = 500
# The official training keeps clips of 0.6-54 s, but a clip should hold a sentence or two: ASR (and so the
# transcript staff check) is most reliable under ~15 s, batches pad to the longest clip, and one minute of
# speech gives more training items. A longer stretch without a pause is cut at its quietest frame.
MAX_LENGTH_MS = 12000

# Level normalisation of each clip (official slice_audio defaults).
NORMALISE_MAX = 0.9
NORMALISE_ALPHA = 0.25

# Clip checks. Below 1.5 s a clip is a word or two: its ASR transcript is unreliable and one phoneme more or
# less swings the phones-per-second ratio the official GPT training filters on (3-25/s).
MIN_CLIP_SECONDS = 1.5
# Anything the slicer makes is at most MAX_LENGTH_MS; this only catches clips cut elsewhere (the official
# hard limit is 54 s; past ~20 s the transcript check and training batches suffer).
MAX_CLIP_SECONDS = 20.0
CLIPPED_AT = 0.999  # |sample| at or above this counts as clipped (int16 full scale reads 0.99997)
MAX_CLIPPED_SHARE = 0.001  # more than 0.1% of samples at full scale: audible distortion the model would learn
MIN_SPEECH_DBFS = -40.0  # the speech level (loud frames) below this: too quiet to train on
MIN_SNR_DB = 15.0  # speech this little above the background: the model learns the noise too
_FRAME_SECONDS = 0.020  # analysis frame for the level and noise estimates
_SPEECH_PERCENTILE = 95  # the "speech level": loud frames, not the peak sample
_NOISE_PERCENTILE = 10  # the "background": the quietest frames (pauses between syllables and words)
_FLOOR_DBFS = -120.0  # digital silence reads as this, so a clean clip's SNR stays finite

# GPT-SoVITS inference refuses a reference outside 3-10 s; a small margin keeps resampling rounding inside.
MIN_REFERENCE_SECONDS = 3.05
MAX_REFERENCE_SECONDS = 9.95
BEST_REFERENCE_SECONDS = (5.0, 8.0)  # long enough for the timbre, short enough for the prompt not to dominate
_SNR_ENOUGH_DB = 40.0  # beyond this, more SNR does not make a better reference

MAX_SECONDS = 600.0
MAX_INPUT_RATE = 192000  # read from the header before any decoding
MAX_INPUT_CHANNELS = 8


class AudioProblem(ValueError):
    """The upload cannot be used as speech; the message says why in words meant for staff."""


@dataclass(frozen=True)
class Slice:
    """A stretch of the recording in samples: ``wav[start:end]``."""

    start: int
    end: int


@dataclass(frozen=True, eq=False)
class PreparedClip:
    """One sliced clip, normalised for training, with its check result and measurements."""

    start_s: float
    end_s: float
    audio: np.ndarray  # (T,) float32 at 32 kHz, level-normalised
    duration_s: float
    problem: str | None  # why it cannot be used, in words; None when usable
    snr_db: float
    peak: float  # before normalisation


def load_speech(
    data: bytes | str | os.PathLike, *, max_seconds: float = MAX_SECONDS
) -> tuple[np.ndarray, int]:
    """Decode a WAV/FLAC/OGG file (bytes or path) to float32 mono at 32 kHz, or raise AudioProblem."""
    if isinstance(data, bytes | bytearray | memoryview):
        if len(data) == 0:
            raise AudioProblem("empty: the file has no bytes at all")
        source: io.BytesIO | str = io.BytesIO(bytes(data))
    else:
        path = Path(data)
        if not path.is_file():
            raise AudioProblem(f"unreadable: there is no file at {path}")
        if path.stat().st_size == 0:
            raise AudioProblem("empty: the file has no bytes at all")
        source = str(path)
    try:
        with sf.SoundFile(source) as f:
            rate, channels, frames = f.samplerate, f.channels, f.frames
            # Read the header before decoding: a small compressed file can declare hours of sound.
            if not 0 < rate <= MAX_INPUT_RATE or not 0 < channels <= MAX_INPUT_CHANNELS:
                raise AudioProblem(
                    f"unreadable: {rate} Hz with {channels} channel(s) is not a microphone recording "
                    f"(at most {MAX_INPUT_CHANNELS} channels at {MAX_INPUT_RATE} Hz)"
                )
            if 0 < frames < 2**62 and frames > max_seconds * rate:
                raise AudioProblem(
                    f"too long: {_minutes(frames / rate)} of audio; at most {_minutes(max_seconds)} is accepted"
                )
            # Decoded and downmixed ten seconds at a time, so memory holds one mono copy, not every channel;
            # a stream whose header gives no length is stopped one block past the limit.
            limit, blocks, count = max_seconds * rate, [], 0
            for block in f.blocks(blocksize=10 * rate, dtype="float32", always_2d=True):  # (T, C)
                blocks.append(block.mean(axis=1) if channels > 1 else block[:, 0].copy())
                count += block.shape[0]
                if count > limit:
                    break
    except AudioProblem:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioProblem(
            f"not audio: it could not be read as WAV, FLAC or OGG ({_first_line(exc)})"
        ) from exc
    except OSError as exc:
        raise AudioProblem(f"unreadable: {_first_line(exc)}") from exc
    if count == 0:
        raise AudioProblem("empty: the file is audio but holds no samples")
    if count > limit:
        raise AudioProblem(f"too long: more than {_minutes(max_seconds)} of audio; at most that is accepted")
    mono = np.concatenate(blocks)  # (T,)
    if not np.isfinite(mono).all():
        raise AudioProblem("unreadable: the file contains invalid (non-finite) samples")
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32), SAMPLE_RATE


def frame_rms(wav: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """RMS of centred, zero-padded frames every ``hop`` samples (librosa's framing, as the official slicer)."""
    padded = np.pad(wav.astype(np.float64), (frame // 2, frame // 2))
    count = (padded.shape[0] - frame) // hop + 1
    if count <= 0:
        return np.zeros(0)
    energy = np.concatenate(([0.0], np.cumsum(padded**2)))
    starts = np.arange(count) * hop
    power = (energy[starts + frame] - energy[starts]) / frame  # (N,)
    return np.sqrt(np.maximum(power, 0.0))


def _silent_runs(silent: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True as (first, one past last) frame indices."""
    edges = np.diff(np.concatenate(([0], silent.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def _quietest(rms: np.ndarray, lo: int, hi: int) -> int:
    """Index of the quietest frame in rms[lo:hi] (the first one on ties)."""
    return lo + int(np.argmin(rms[lo:hi]))


def slice_speech(
    wav: np.ndarray,
    sr: int,
    *,
    threshold_db: float = THRESHOLD_DB,
    min_length_ms: int = MIN_LENGTH_MS,
    min_interval_ms: int = MIN_INTERVAL_MS,
    hop_size_ms: int = HOP_SIZE_MS,
    max_sil_kept_ms: int = MAX_SIL_KEPT_MS,
    max_length_ms: int | None = MAX_LENGTH_MS,
) -> list[Slice]:
    """Cut mono speech at its pauses (the official GPT-SoVITS slicer's rules), then split over-long pieces."""
    if not min_length_ms >= min_interval_ms >= hop_size_ms or max_sil_kept_ms < hop_size_ms:
        raise ValueError(
            "need min_length_ms >= min_interval_ms >= hop_size_ms and max_sil_kept_ms >= hop_size_ms"
        )
    n = int(wav.shape[0])
    if n == 0:
        return []
    hop = round(sr * hop_size_ms / 1000)
    interval_samples = sr * min_interval_ms / 1000
    window = min(round(interval_samples), 4 * hop)
    # All in frames from here on. As in the official slicer, a clip reaches min_length counting up to the end
    # of the pause that closes it; the cut falls inside that pause, so a clip can be shorter by that much.
    min_length = round(sr * min_length_ms / 1000 / hop)
    min_interval = round(interval_samples / hop)
    kept = round(sr * max_sil_kept_ms / 1000 / hop)
    rms = frame_rms(wav, window, hop)  # (N,)
    total = rms.shape[0]

    # Each pause that is cut becomes a (left, right) frame range removed from the audio.
    cuts: list[tuple[int, int]] = []
    clip_start = 0
    for first, end in _silent_runs(rms < 10 ** (threshold_db / 20)):
        if end == total:  # trailing silence: cut it if long enough, keeping at most `kept` frames of it
            if total - first >= min_interval:
                cuts.append((_quietest(rms, first, min(total, first + kept) + 1), total + 1))
            break
        leading = first == 0 and end > kept
        long_pause_in_long_clip = end - first >= min_interval and end - clip_start >= min_length
        if not (leading or long_pause_in_long_clip):
            continue  # too short a pause, or the clip so far too short: the pause stays inside the clip
        length = end - first
        if length <= kept:  # short pause: cut at one point, its quietest frame
            at = _quietest(rms, first, end + 1)
            cut = (0, at) if first == 0 else (at, at)
        else:
            # Longer pause: keep at most `kept` frames of silence on each side, cut at the quietest frames.
            left = _quietest(rms, first, first + kept + 1)
            right = _quietest(rms, end - kept, end + 1)
            if first == 0:
                cut = (0, right)
            elif length <= 2 * kept:  # the two kept margins overlap: use their common quietest frame too
                middle = _quietest(rms, end - kept, first + kept + 1)
                cut = (min(left, middle), max(right, middle))
            else:
                cut = (left, right)
        cuts.append(cut)
        clip_start = cut[1]

    if not cuts:
        pieces = [(0, total)]
    else:
        pieces = [(0, cuts[0][0])] if cuts[0][0] > 0 else []
        pieces += [(a[1], b[0]) for a, b in zip(cuts, cuts[1:], strict=False)]
        if cuts[-1][1] < total:
            pieces.append((cuts[-1][1], total))
    if max_length_ms is not None:
        limit = round(sr * max_length_ms / 1000 / hop)
        pieces = [part for piece in pieces for part in _split_long(rms, piece, limit, min_length)]
    slices = [Slice(min(a * hop, n), min(b * hop, n)) for a, b in pieces]
    return [s for s in slices if s.end > s.start]


def _split_long(
    rms: np.ndarray, piece: tuple[int, int], limit: int, min_length: int
) -> list[tuple[int, int]]:
    """Cut a piece longer than ``limit`` frames at its quietest frames, no part shorter than ``min_length``."""
    start, end = piece
    parts = []
    shortest = min(min_length, limit // 2)
    while end - start > limit:
        # The first part must fit the limit and leave a remainder that is not a fragment.
        at = _quietest(rms, start + shortest, min(start + limit, end - shortest) + 1)
        parts.append((start, at))
        start = at
    parts.append((start, end))
    return parts


def normalise(clip: np.ndarray) -> np.ndarray:
    """Mix a peak-normalised copy (peak 0.9) into the clip, a quarter to three quarters (official slice_audio)."""
    clip = clip.astype(np.float32)
    peak = float(np.abs(clip).max()) if clip.size else 0.0
    if peak == 0.0:
        return clip.copy()
    if peak > 1.0:  # resampling can overshoot full scale a little: bring it back first
        clip, peak = clip / peak, 1.0
    return (clip / peak * (NORMALISE_MAX * NORMALISE_ALPHA) + (1 - NORMALISE_ALPHA) * clip).astype(np.float32)


def levels(clip: np.ndarray, sr: int) -> tuple[float, float]:
    """(speech level, background level) in dBFS: loud and quiet percentiles of 20 ms frame RMS."""
    frame = max(1, round(sr * _FRAME_SECONDS))
    rms = frame_rms(clip, frame, frame // 2)
    if rms.size == 0:
        return _FLOOR_DBFS, _FLOOR_DBFS
    db = 20 * np.log10(np.maximum(rms, 10 ** (_FLOOR_DBFS / 20)))
    return float(np.percentile(db, _SPEECH_PERCENTILE)), float(np.percentile(db, _NOISE_PERCENTILE))


def assess(clip: np.ndarray, sr: int) -> str | None:
    """Why a clip (before normalisation) cannot be trained on, as a sentence for staff; None when usable."""
    duration = clip.shape[0] / sr
    if duration < MIN_CLIP_SECONDS:
        return f"too short: {duration:.1f} s of audio (needs at least {MIN_CLIP_SECONDS:.1f} s)"
    if duration > MAX_CLIP_SECONDS:
        return f"too long: {duration:.1f} s without a pause (at most {MAX_CLIP_SECONDS:.0f} s)"
    speech, background = levels(clip, sr)
    if speech < MIN_SPEECH_DBFS:
        return (
            f"silent: the speech level is only {speech:.0f} dBFS (needs {MIN_SPEECH_DBFS:.0f} dBFS): "
            "speak closer to the microphone or raise its gain"
        )
    clipped = float(np.mean(np.abs(clip) >= CLIPPED_AT))
    if clipped > MAX_CLIPPED_SHARE:
        return (
            f"clipped: {100 * clipped:.1f}% of the samples are at full scale (at most {100 * MAX_CLIPPED_SHARE:.1f}%): "
            "lower the microphone gain"
        )
    snr = speech - background
    if snr < MIN_SNR_DB:
        return (
            f"too noisy: speech is only {snr:.0f} dB above the background (needs {MIN_SNR_DB:.0f} dB): "
            "record in a quieter room"
        )
    return None


def prepare_clips(wav: np.ndarray, sr: int) -> list[PreparedClip]:
    """Slice a recording, check each clip on its own and normalise it for training."""
    hop = round(sr * HOP_SIZE_MS / 1000)
    loudest = float(frame_rms(wav, 4 * hop, hop).max()) if wav.size else 0.0  # what the slicer compares
    if loudest < 10 ** (THRESHOLD_DB / 20):
        # The slicer would take it all for one pause and hand back a fragment: say what is really wrong.
        level = 20 * np.log10(max(loudest, 10 ** (_FLOOR_DBFS / 20)))
        raise AudioProblem(
            f"silent: no speech found; the loudest moment is {level:.0f} dBFS and speech must reach "
            f"{THRESHOLD_DB:.0f} dBFS: speak closer to the microphone or raise its gain"
        )
    clips = []
    for piece in slice_speech(wav, sr):
        raw = wav[piece.start : piece.end]  # (T,)
        speech, background = levels(raw, sr)
        clips.append(
            PreparedClip(
                start_s=piece.start / sr,
                end_s=piece.end / sr,
                audio=normalise(raw),
                duration_s=raw.shape[0] / sr,
                problem=assess(raw, sr),
                snr_db=speech - background,
                peak=float(np.abs(raw).max()),
            )
        )
    return clips


def pick_reference(clips: list[PreparedClip]) -> int | None:
    """Index of the best usable 3-10 s clip for the voice's reference (clean, ideally 5-8 s), or None."""
    lo, hi = BEST_REFERENCE_SECONDS
    best, best_score = None, -np.inf
    for index, clip in enumerate(clips):
        if clip.problem is not None or not MIN_REFERENCE_SECONDS <= clip.duration_s <= MAX_REFERENCE_SECONDS:
            continue
        # One second outside 5-8 s costs as much as 5 dB of SNR.
        off = max(lo - clip.duration_s, clip.duration_s - hi, 0.0)
        score = min(clip.snr_db, _SNR_ENOUGH_DB) - 5.0 * off
        if score > best_score:
            best, best_score = index, score
    return best


def write_wav(clip: np.ndarray, sr: int) -> bytes:
    """The clip as a 16-bit PCM WAV file."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(clip, -1.0, 1.0), sr, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _minutes(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
