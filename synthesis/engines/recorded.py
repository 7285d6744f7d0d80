"""A recorded voice: messages spoken from a person's own uploaded recordings.

A recording says one exact text (a whole message, or a fixed part of a script such as "，您的订单" or
"将于明天送达，确认请按1，改期请按2。"). To say a text, the engine covers as much of it as it can with recordings
(the most characters, then the fewest pieces), has the voice's *fill voice* (any synthesis voice) speak what is
left (the variables: a name, an order number), and joins the pieces: each one trimmed to its sound, the
synthesised ones brought to the recordings' speech level (gated RMS), pauses where only punctuation was left,
and short fades at every joint so that nothing clicks. A text with a part no recording covers and no fill voice
to speak it fails with the part named.

Matching is exact on the normalised text (NFC, whitespace collapsed) and never enters a marked value
(⟪digits:SF1234567890⟫): a variable is always spoken by the fill voice with its reading hint, even when its value
happens to match a recording.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from synthesis.audio import AudioError, Waveform, frame_power, gated_rms_dbfs, load_audio
from synthesis.engines.base import Engine, EngineError, VoiceSpec
from synthesis.frontend.marks import CLOSE, OPEN, split_marks
from synthesis.keys import normalise_text

PAUSE_AFTER = {"。": 0.30, "！": 0.30, "？": 0.30, "…": 0.30, ".": 0.30, "!": 0.30, "?": 0.30}
PAUSE_OTHER = 0.15  # a comma, a colon, a dash left between two pieces
_EDGE_SECONDS = 0.030  # sound kept before and after each piece's trimmed sound
_FADE_SECONDS = 0.008  # fade in and out at every joint
_TRIM_RANGE_DB = 40.0  # a frame is sound within this range of the piece's loudest frame
_FRAME_SECONDS = 0.010


@dataclass(frozen=True)
class Piece:
    """One part of a text: a recording (by its index in the voice's list), words to synthesise, or a pause."""

    kind: str  # "recording" | "speech" | "pause"
    text: str
    recording: int = -1
    seconds: float = 0.0


def _is_pause(text: str) -> bool:
    """Only punctuation and spaces: nothing to say, a pause to leave."""
    return all(unicodedata.category(ch)[0] in "PZ" or ch.isspace() for ch in text)


def _pause(text: str) -> Piece:
    stripped = text.strip()
    seconds = max((PAUSE_AFTER.get(ch, PAUSE_OTHER) for ch in stripped), default=0.0)
    return Piece("pause", text, seconds=seconds)


def cover(text: str, recordings: list[str]) -> list[Piece]:
    """Split ``text`` into recordings, words to synthesise and pauses: the most characters recorded, then the
    fewest recordings. ``recordings`` are the recordings' texts (normalised here); the text may carry marked values,
    which no recording ever covers."""
    text = normalise_text(text)
    texts = [normalise_text(r) for r in recordings]
    n = len(text)
    # Marked values are spans no recording may touch: a mark's own characters and its value.
    blocked = np.zeros(n + 1, dtype=bool)
    position = 0
    while (start := text.find(OPEN, position)) != -1:
        end = text.find(CLOSE, start)
        end = n if end == -1 else end + 1
        blocked[start:end] = True
        position = end
    starts: dict[int, list[int]] = {}
    for index, recorded in enumerate(texts):
        if not recorded or OPEN in recorded:
            continue
        at = text.find(recorded)
        while at != -1:
            if not blocked[at : at + len(recorded)].any():
                starts.setdefault(at, []).append(index)
            at = text.find(recorded, at + 1)
    # best[i] = (characters recorded, -recordings used) for text[i:]; choice[i] = the recording starting there,
    # or -1 where text[i] is left to the fill voice.
    best: list[tuple[int, int]] = [(0, 0)] * (n + 1)
    choice = [-1] * (n + 1)
    for i in range(n - 1, -1, -1):
        best[i] = best[i + 1]
        for index in starts.get(i, ()):
            length = len(texts[index])
            option = (best[i + length][0] + length, best[i + length][1] - 1)
            if option > best[i]:
                best[i], choice[i] = option, index
    pieces: list[Piece] = []
    i, gap_start = 0, 0
    while i < n:
        if choice[i] == -1:
            i += 1
            continue
        if gap_start < i:
            pieces.append(_gap(text[gap_start:i]))
        pieces.append(Piece("recording", texts[choice[i]], recording=choice[i]))
        i += len(texts[choice[i]])
        gap_start = i
    if gap_start < n:
        pieces.append(_gap(text[gap_start:n]))
    return pieces


def _gap(text: str) -> Piece:
    return _pause(text) if _is_pause(split_marks(text)[0]) else Piece("speech", text)


# --- joining -------------------------------------------------------------------------------------------------


def _trim(x: np.ndarray, rate: int) -> np.ndarray:
    """The piece's sound, with a few ms either side; silence is kept out of the joints."""
    frame = max(1, round(_FRAME_SECONDS * rate))
    power = frame_power(x, frame)
    loudest = float(np.max(power))
    if loudest <= 0.0:
        return x[:0]
    sound = np.flatnonzero(power > loudest * 10.0 ** (-_TRIM_RANGE_DB / 10.0))
    edge = round(_EDGE_SECONDS * rate)
    start = max(0, int(sound[0]) * frame - edge)
    end = min(len(x), (int(sound[-1]) + 1) * frame + edge)
    return x[start:end]


def _fade(x: np.ndarray, rate: int) -> np.ndarray:
    n = min(len(x) // 2, round(_FADE_SECONDS * rate))
    if n == 0:
        return x
    y = np.array(x, dtype=np.float64)
    ramp = np.linspace(0.0, 1.0, n, endpoint=False)
    y[:n] *= ramp
    y[len(y) - n :] *= ramp[::-1]
    return y


def _resample(x: np.ndarray, rate: int, to: int) -> np.ndarray:
    if rate == to:
        return np.asarray(x, dtype=np.float64)
    import soxr

    return soxr.resample(np.asarray(x, dtype=np.float64), rate, to, quality="HQ")


def join(pieces: list[Piece], recorded: dict[int, Waveform], spoken: list[Waveform]) -> Waveform:
    """The message: pieces in order at the highest rate among them, synthesised speech at the recordings' level.

    ``recorded`` maps a recording's index to its audio; ``spoken`` holds one waveform per "speech" piece, in
    order."""
    waves = list(recorded.values()) + spoken
    if not waves:
        raise AudioError("nothing to say: the text is only punctuation")
    rate = max(w.sample_rate for w in waves)
    recorded_levels = [gated_rms_dbfs(w.samples, w.sample_rate) for w in recorded.values()]
    recorded_levels = [level for level in recorded_levels if level != float("-inf")]
    target = float(np.mean(recorded_levels)) if recorded_levels else None
    spoken_iter = iter(spoken)
    parts: list[np.ndarray] = []
    for piece in pieces:
        if piece.kind == "pause":
            parts.append(np.zeros(round(piece.seconds * rate)))
            continue
        wave = recorded[piece.recording] if piece.kind == "recording" else next(spoken_iter)
        x = _trim(np.asarray(wave.samples, dtype=np.float64), wave.sample_rate)
        if piece.kind == "speech" and target is not None and x.size:
            level = gated_rms_dbfs(x, wave.sample_rate)
            if level != float("-inf"):
                x = x * 10.0 ** ((target - level) / 20.0)
        parts.append(_fade(_resample(x, wave.sample_rate, rate), rate))
    samples = np.concatenate(parts) if parts else np.zeros(0)
    if samples.size == 0 or not np.any(samples):
        raise AudioError("the recorded message is silent: its recordings contain no sound")
    return Waveform(samples.astype(np.float32), rate)


class RecordedEngine(Engine):
    """Recordings for the fixed words, the fill voice's engine for the rest (see the module docstring)."""

    name: ClassVar[str] = "recorded"
    version: ClassVar[str] = "recorded-1"

    def describe_parameters(self, voice: VoiceSpec) -> dict[str, Any]:
        if voice.parameters:
            raise EngineError(
                "a recorded voice takes no engine parameters (its fill voice has its own): leave them as {}",
                permanent=True,
            )
        if voice.fill is not None:
            return {"fill": _fill_engine(voice).describe_parameters(voice.fill)}
        return {}

    def synthesize(self, voice: VoiceSpec, texts: list[str]) -> list[Waveform]:
        recordings = [text for text, _ in voice.recordings]
        plans = [cover(text, recordings) for text in texts]
        speech = [piece.text for plan in plans for piece in plan if piece.kind == "speech"]
        if speech and voice.fill is None:
            missing = next(piece.text for plan in plans for piece in plan if piece.kind == "speech")
            raise EngineError(
                f"no recording says “{split_marks(missing)[0]}”, and this recorded voice has no fill voice to "
                "speak what the recordings do not: add a recording of those words, or choose a fill voice",
                permanent=True,
            )
        spoken = _fill_engine(voice).synthesize(voice.fill, speech) if speech else []
        if len(spoken) != len(speech):
            raise EngineError(f"the fill voice returned {len(spoken)} waveforms for {len(speech)} texts", permanent=True)
        audio: dict[int, Waveform] = {}
        for plan in plans:
            for piece in plan:
                if piece.kind == "recording" and piece.recording not in audio:
                    audio[piece.recording] = _load(voice.recordings[piece.recording])
        out, position = [], 0
        for plan in plans:
            count = sum(piece.kind == "speech" for piece in plan)
            used = {p.recording: audio[p.recording] for p in plan if p.kind == "recording"}
            out.append(join(plan, used, spoken[position : position + count]))
            position += count
        return out


def _fill_engine(voice: VoiceSpec) -> Engine:
    from synthesis.engines import get_engine  # the registry imports this module

    if voice.fill_engine == RecordedEngine.name:
        raise EngineError("a recorded voice's fill voice must be a synthesis voice, not another recorded voice", permanent=True)
    return get_engine(voice.fill_engine)


def _load(recording: tuple[str, str]) -> Waveform:
    text, path = recording
    try:
        return load_audio(path)
    except AudioError as exc:
        raise EngineError(f"the recording of “{text}” cannot be read: {exc}", permanent=True) from exc


def recordings_digest(recordings: list[tuple[str, str]]) -> str:
    """sha256 over the recordings' texts and file digests (given as (text, sha256) pairs), in text order."""
    digest = hashlib.sha256(b"herald.recorded-voice.v1\x00")
    for text, sha in sorted(recordings):
        digest.update(normalise_text(text).encode("utf-8") + b"\x00" + sha.encode() + b"\x00")
    return digest.hexdigest()
