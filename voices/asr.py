"""Offline speech recognition for training clips and the spoken-consent check (sherpa-onnx, local models only).

Pure: no Django, no app imports; sherpa-onnx is imported only when a model is loaded, so a web process
without it still imports this module (and `words_match`).

Why sherpa-onnx (with a Paraformer-zh or SenseVoice model) and not faster-whisper:
- torch stays as pinned: sherpa-onnx's two wheels (~15 MB together, onnxruntime linked in) depend on nothing
  at all; faster-whisper brings CTranslate2 (~40 MB), PyAV, tokenizers, huggingface-hub and onnxruntime.
- Chinese accuracy: Paraformer-zh is the recogniser the official GPT-SoVITS recipe uses for Chinese (through
  FunASR), and SenseVoice is of the same family; Whisper small/medium make more character errors on
  Mandarin and sometimes answer in traditional characters or translate.
- No network: a model is a directory of files (model.onnx or model.int8.onnx, tokens.txt) that staff put on
  the training worker; nothing here knows a hub or downloads anything. faster-whisper's convenience is
  loading models by name from a hub, which we would have to switch off.
- CPU is enough: a 4-12 s clip decodes in well under a second with the int8 Paraformer on one core.

The model's kind is read from tokens.txt: SenseVoice's vocabulary has language tags such as ``<|zh|>``,
Paraformer's has none.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr

ENV_VARIABLE = "HERALD_ASR_MODEL_DIR"
ASR_RATE = 16000  # both model families take 16 kHz
MODEL_FILES = ("model.int8.onnx", "model.onnx")  # int8 first: a quarter of the size, same accuracy on CPU
TOKENS_FILE = "tokens.txt"
MATCH_THRESHOLD = 0.8  # 1 - CER: a mis-heard word or two in a consent sentence passes, a different one fails


class ASRUnavailable(ValueError):
    """No usable ASR model: the message names the missing file or the loading failure."""


@dataclass(frozen=True)
class ModelFiles:
    """Where a recogniser's files are and which kind it is."""

    model: Path
    tokens: Path
    kind: str  # "sense_voice" | "paraformer"


def find_model(directory: str | os.PathLike) -> ModelFiles:
    """The model and tokens files in ``directory`` and the model's kind, or ASRUnavailable saying what is missing."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ASRUnavailable(f"ASR model directory {folder} does not exist")
    model = next((folder / name for name in MODEL_FILES if (folder / name).is_file()), None)
    if model is None:
        raise ASRUnavailable(f"ASR model directory {folder} has no {' or '.join(MODEL_FILES)}")
    tokens = folder / TOKENS_FILE
    if not tokens.is_file():
        raise ASRUnavailable(f"ASR model directory {folder} has no {TOKENS_FILE}")
    try:
        vocabulary = tokens.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ASRUnavailable(f"{tokens} cannot be read: {exc}") from exc
    if not vocabulary.strip():
        raise ASRUnavailable(f"{tokens} is empty")
    kind = "sense_voice" if re.search(r"^<\|zh\|>\s", vocabulary, re.MULTILINE) else "paraformer"
    return ModelFiles(model=model, tokens=tokens, kind=kind)


class Transcriber:
    """A loaded offline recogniser: ``transcribe(clip_32k) -> text``. Load once per worker process."""

    def __init__(self, recognizer: Any, files: ModelFiles) -> None:
        self._recognizer = recognizer
        self.files = files

    @classmethod
    def from_environment(cls) -> Transcriber | None:
        """The recogniser in $HERALD_ASR_MODEL_DIR, or None when it is not set (staff type transcripts)."""
        directory = os.environ.get(ENV_VARIABLE, "").strip()
        return cls.load(directory) if directory else None

    @classmethod
    def load(cls, directory: str | os.PathLike, *, num_threads: int = 2) -> Transcriber:
        """Load the recogniser in ``directory``; ASRUnavailable names the missing file or the failure."""
        files = find_model(directory)
        try:
            import sherpa_onnx  # the `asr` extra: only processes that transcribe need it
        except ImportError as exc:
            raise ASRUnavailable("sherpa-onnx is not installed: install Herald with the `asr` extra") from exc
        common = {"tokens": str(files.tokens), "num_threads": num_threads, "sample_rate": ASR_RATE}
        try:
            if files.kind == "sense_voice":
                recognizer = sherpa_onnx.OfflineRecognizer.from_sense_voice(
                    model=str(files.model), use_itn=True, language="auto", **common
                )
            else:
                recognizer = sherpa_onnx.OfflineRecognizer.from_paraformer(
                    paraformer=str(files.model), **common
                )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ASRUnavailable(f"the {files.kind} model in {files.model} failed to load: {exc}") from exc
        return cls(recognizer, files)

    def transcribe(self, clip: np.ndarray, sr: int = 32000) -> str:
        """The text spoken in a mono float clip (32 kHz unless ``sr`` says otherwise)."""
        samples = np.asarray(clip, dtype=np.float32)
        if sr != ASR_RATE:
            samples = soxr.resample(samples, sr, ASR_RATE, quality="HQ").astype(np.float32)
        stream = self._recognizer.create_stream()
        stream.accept_waveform(ASR_RATE, samples)
        self._recognizer.decode_stream(stream)
        return stream.result.text.strip()


# --- the spoken-consent check -------------------------------------------------------------------------

_CN_DIGITS = dict(zip("零〇一二两三四五六七八九", (0, 0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9), strict=True))
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_NEGATIONS_ZH = frozenset("不没别未勿非无")
_NEGATIONS_EN = frozenset({"not", "no", "dont", "don", "never", "refuse"})
_CN_NUMBER = re.compile(f"[{''.join(_CN_DIGITS)}{''.join(_CN_UNITS)}万]+")


def _chinese_number(run: str) -> str:
    """'二〇二六' -> '2026', '一百零五' -> '105', '三万五千' -> '35000'; a run with no digit stays as it is."""
    if not any(ch in _CN_DIGITS for ch in run):
        return run  # a lone 十/百/万 is more often part of a word than a number
    if not any(ch in _CN_UNITS or ch == "万" for ch in run):
        return "".join(str(_CN_DIGITS[ch]) for ch in run)  # read digit by digit: years, phone numbers
    total = section = digit = 0
    for ch in run:
        if ch in _CN_DIGITS:
            digit = _CN_DIGITS[ch]
        elif ch in _CN_UNITS:
            section += (digit or 1) * _CN_UNITS[ch]
            digit = 0
        else:  # 万
            total += (section + digit or 1) * 10000
            section = digit = 0
    return str(total + section + digit)


def normalise_text(text: str) -> str:
    """Lower-case letters and digits only: full-width folded, punctuation and spaces gone, 二十 -> 20."""
    return "".join(_units(text))


def _units(text: str) -> list[str]:
    """Normalised text as units to report: a Latin word or number whole, every other letter on its own."""
    text = _CN_NUMBER.sub(lambda m: _chinese_number(m.group()), unicodedata.normalize("NFKC", text).lower())
    units = []
    for piece in re.findall(r"[a-z0-9]+|\S", text):
        kept = "".join(ch for ch in piece if unicodedata.category(ch)[0] in "LN")
        if kept:
            units.append(kept)
    return units


def _alignment(expected: str, heard: str) -> tuple[int, list[bool], str]:
    """Edit distance; per character of ``expected`` whether the alignment loses it; what ``heard`` adds."""
    n, m = len(expected), len(heard)
    cost = [[i + j if i == 0 or j == 0 else 0 for j in range(m + 1)] for i in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            same = expected[i - 1] == heard[j - 1]
            cost[i][j] = min(cost[i - 1][j] + 1, cost[i][j - 1] + 1, cost[i - 1][j - 1] + (0 if same else 1))
    lost, extra, i, j = [False] * n, [], n, m
    # Walk back preferring "not heard" on ties, so a missing tail is reported as the tail, not as scattered
    # characters matched against look-alikes further on.
    while i > 0 or j > 0:
        if i > 0 and cost[i][j] == cost[i - 1][j] + 1:
            lost[i - 1] = True  # not heard at all
            i -= 1
        elif i > 0 and j > 0 and expected[i - 1] == heard[j - 1] and cost[i][j] == cost[i - 1][j - 1]:
            i, j = i - 1, j - 1
        elif i > 0 and j > 0 and cost[i][j] == cost[i - 1][j - 1] + 1:
            lost[i - 1] = True  # misheard as something else
            extra.append(heard[j - 1])
            i, j = i - 1, j - 1
        else:
            extra.append(heard[j - 1])  # something heard that the sentence does not have
            j -= 1
    return cost[n][m], lost, "".join(reversed(extra))


def words_match(expected: str, heard: str) -> tuple[bool, float, str]:
    """Whether ``heard`` says ``expected`` (1 - CER >= 0.8 after normalising), the score and a sentence why."""
    units = _units(expected)
    target, said = "".join(units), normalise_text(heard)
    if not target:
        return False, 0.0, "the consent sentence to compare with is empty"
    if not said:
        return False, 0.0, "nothing was heard in the recording"
    distance, lost, extra = _alignment(target, said)
    score = max(0.0, 1.0 - distance / len(target))  # 1 - CER; extra words heard count against it too
    # One added 不 or "not" turns consent into refusal for a single character of error: never a match.
    negations = sorted(
        {ch for ch in extra if ch in _NEGATIONS_ZH} | (set(_units(heard)) & _NEGATIONS_EN) - set(units)
    )
    if negations:
        said_words = ", ".join(f"“{w}”" for w in negations)
        return (
            False,
            score,
            f"does not match: the recording adds a negation the consent sentence does not have: {said_words}",
        )
    ok = score >= MATCH_THRESHOLD
    # Name what was lost as the expected text's own units (a Latin word whole), adjacent ones joined.
    phrases, run, at = [], [], 0
    for unit in units:
        if any(lost[at : at + len(unit)]):
            run.append(unit)
        elif run:
            phrases.append(_join(run))
            run = []
        at += len(unit)
    if run:
        phrases.append(_join(run))
    verdict = "matches" if ok else f"does not match (needs {100 * MATCH_THRESHOLD:.0f}%)"
    if not phrases:
        more = "" if distance == 0 else f", but with extra words: “{extra}”"
        return ok, score, f"{verdict}: all of the consent sentence was heard (score {100 * score:.0f}%{more})"
    missing = ", ".join(f"“{p}”" for p in phrases)
    return (
        ok,
        score,
        f"{verdict}: {100 * score:.0f}% of the consent sentence heard; missing or misheard: {missing}",
    )


def _join(units: list[str]) -> str:
    """Units back into text: Latin words with spaces between, Chinese characters without."""
    text = ""
    for unit in units:
        if text and unit[0].isascii() and text[-1].isascii():
            text += " "
        text += unit
    return text
