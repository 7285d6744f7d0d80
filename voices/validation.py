"""Checks a voice must pass before it is saved: checkpoint files, reference clip, transcript, parameters.

Pure checks: nothing is written, nothing is saved. Each returns a list of `Problem`s whose message is meant
for the staff member who uploaded the files, not for an engineer: what is wrong, the number found, and what
to do about it. Errors block saving; warnings are shown but let the voice be saved.

torch is imported only when a GPT-SoVITS file is checked, so web processes without the synthesis extra can
still run every other check (and say plainly that they cannot check the checkpoint files).
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# The official GPT-SoVITS inference refuses reference clips outside 3-10 s.
MIN_REFERENCE_SECONDS = 3.0
MAX_REFERENCE_SECONDS = 10.0
MIN_REFERENCE_RATE = 16000
CLIPPED_AT = 0.999  # |sample| at or above this counts as clipped (int16 full scale reads 0.99997)
MAX_CLIPPED_FRACTION = 0.001
MIN_SPEECH_LEVEL_DBFS = -45.0
SILENT_FRAME_DBFS = -50.0  # a 20 ms frame quieter than this is silence
MAX_SILENT_FRACTION = 0.60
MIN_TRANSCRIPT_CHARS = 2
# Fast speech: about 5-7 Mandarin characters a second; English about 15 letters a second. Above these the
# transcript probably belongs to another (longer) clip.
MAX_CHARS_PER_SECOND = {"zh": 12.0}
DEFAULT_MAX_CHARS_PER_SECOND = 20.0
MIN_CHARS_PER_SECOND = 0.5

NO_TORCH = (
    "this server cannot check GPT-SoVITS files: install the synthesis extra (pip install 'herald[synthesis]') "
    "on the web server, then save again"
)

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a voice; `field` names the form field it belongs to (None: the whole voice)."""

    field: str | None
    message: str
    severity: str = ERROR

    @property
    def blocking(self) -> bool:
        return self.severity == ERROR

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ClipReport:
    problems: list[Problem]
    duration: float | None  # None when the clip could not be read


# --- files: a path, a stored FieldFile or a fresh upload -----------------------------------------------------


def _name(upload: Any) -> str:
    return os.path.basename(str(getattr(upload, "name", None) or upload))


@contextmanager
def local_path(upload: Any) -> Iterator[Path]:
    """A filesystem path for a path, a Django File stored on disk, or an in-memory upload (copied to tmp)."""
    if isinstance(upload, str | os.PathLike):
        yield Path(upload)
        return
    temporary = getattr(upload, "temporary_file_path", None)
    if callable(temporary):
        yield Path(temporary())
        return
    if getattr(upload, "_committed", False):  # a FieldFile already in storage
        try:
            yield Path(upload.path)
            return
        except NotImplementedError:  # remote storage: fall through and copy it
            pass
    suffix = Path(_name(upload)).suffix
    with tempfile.NamedTemporaryFile(suffix=suffix) as copy:
        upload.open("rb")
        upload.seek(0)
        for chunk in upload.chunks():
            copy.write(chunk)
        copy.flush()
        upload.seek(0)
        yield Path(copy.name)


# --- GPT-SoVITS checkpoint files -----------------------------------------------------------------------------


_SLOTS = {
    "gpt": ("gpt_weights", "GPT weights (.ckpt)", "the .ckpt file from the GPT_weights_v2 folder of GPT-SoVITS v2"),
    "sovits": (
        "sovits_weights",
        "SoVITS weights (.pth)",
        "the .pth file from the SoVITS_weights_v2 folder of GPT-SoVITS v2",
    ),
}
_VERB_FIRST = ("is ", "contains ", "has ", "does ", "cannot ")


def _friendly_checkpoint_problem(kind: str, upload_name: str, problem: str) -> str:
    _, label, wanted = _SLOTS[kind]
    if problem.startswith("its "):
        why = problem
    elif problem.startswith(_VERB_FIRST):
        why = f"it {problem}"
    else:
        why = f"it has a problem ({problem})"
    if "was expected" in problem:
        advice = "The two files look swapped: put the .ckpt file under GPT weights and the .pth file under SoVITS weights."
    elif "Herald runs" in problem:
        advice = f"Upload {wanted} instead, or train the voice again with GPT-SoVITS v2."
    elif "truncated" in problem or "corrupted" in problem or "bytes" in problem:
        advice = "The upload is damaged or incomplete: upload the file again."
    else:
        advice = f"Upload {wanted}."
    return f"The {label} file “{upload_name}” cannot be used: {why}. {advice}"


def check_checkpoint(upload: Any, *, kind: str) -> list[Problem]:
    """Load a GPT (`kind="gpt"`) or SoVITS (`kind="sovits"`) file strictly, as the synthesis worker will."""
    field, label, wanted = _SLOTS[kind]
    if not upload:
        return [Problem(field, f"The {label} file is missing: upload {wanted}.")]
    try:
        from synthesis.gptsovits.checkpoint import CheckpointError
        from synthesis.gptsovits.loading import load_gpt, load_sovits
    except ImportError:
        return [Problem(field, f"The {label} file was not checked: {NO_TORCH}.")]
    load = load_gpt if kind == "gpt" else load_sovits
    name = _name(upload)
    try:
        with local_path(upload) as path:
            load(path)
    except CheckpointError as exc:
        return [Problem(field, _friendly_checkpoint_problem(kind, name, exc.problem))]
    except (RuntimeError, ValueError, KeyError, TypeError, OSError) as exc:
        return [Problem(field, _friendly_checkpoint_problem(kind, name, f"cannot be loaded ({exc})"))]
    return []


# --- reference clip ----------------------------------------------------------------------------------------


def _silent_fraction(mono: np.ndarray, rate: int) -> float:
    frame = max(1, round(0.020 * rate))
    n = len(mono) // frame
    if n == 0:
        return 1.0
    power = np.mean(mono[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1)
    return float(np.mean(power < 10.0 ** (SILENT_FRAME_DBFS / 10.0)))


def check_reference_clip(upload: Any) -> ClipReport:
    """The clip GPT-SoVITS imitates: readable, 3-10 s, at least 16 kHz, not clipped, not mostly silence."""
    import soundfile as sf

    from synthesis.audio import gated_rms_dbfs

    field = "reference_audio"
    if not upload:
        return ClipReport(
            [Problem(field, "The reference clip is missing: upload 3 to 10 seconds of the speaker talking.")], None
        )
    name = _name(upload)
    try:
        with local_path(upload) as path:
            data, rate = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as exc:
        return ClipReport(
            [
                Problem(
                    field,
                    f"The reference clip “{name}” cannot be read as audio ({exc}). Upload a WAV or FLAC recording.",
                )
            ],
            None,
        )
    if data.shape[0] == 0:
        return ClipReport([Problem(field, f"The reference clip “{name}” contains no sound at all: it is empty.")], None)
    problems = []
    duration = data.shape[0] / rate
    if duration < MIN_REFERENCE_SECONDS:
        problems.append(Problem(
            field,
            f"The reference clip is {duration:.1f} seconds long; GPT-SoVITS needs {MIN_REFERENCE_SECONDS:.0f} to "
            f"{MAX_REFERENCE_SECONDS:.0f} seconds. Upload a longer clip (one or two full sentences).",
        ))
    elif duration > MAX_REFERENCE_SECONDS:
        problems.append(Problem(
            field,
            f"The reference clip is {duration:.1f} seconds long; GPT-SoVITS accepts at most "
            f"{MAX_REFERENCE_SECONDS:.0f} seconds. Cut it to {MIN_REFERENCE_SECONDS:.0f}-{MAX_REFERENCE_SECONDS:.0f} "
            "seconds and shorten the transcript to match.",
        ))
    if rate < MIN_REFERENCE_RATE:
        problems.append(Problem(
            field,
            f"The reference clip is sampled at {rate} Hz, too low for cloning; at least {MIN_REFERENCE_RATE} Hz is "
            "needed. Upload the original recording, not a phone-line or compressed copy.",
        ))
    clipped = float(np.mean(np.abs(data) >= CLIPPED_AT))
    if clipped > MAX_CLIPPED_FRACTION:
        problems.append(Problem(
            field,
            f"The reference clip is clipped (distorted): {clipped:.1%} of its samples hit full scale (at most "
            f"{MAX_CLIPPED_FRACTION:.1%} is acceptable). Record it again with lower input gain.",
        ))
    mono = data.mean(axis=1, dtype=np.float64)
    level = gated_rms_dbfs(mono, rate)
    silent = _silent_fraction(mono, rate)
    if level == float("-inf"):
        problems.append(Problem(field, "The reference clip is silent: no speech was found in it. Upload a recording "
                                       "of the speaker talking."))
    elif level < MIN_SPEECH_LEVEL_DBFS:
        problems.append(Problem(
            field,
            f"The reference clip is almost silent: its speech level is {level:.0f} dBFS (at least "
            f"{MIN_SPEECH_LEVEL_DBFS:.0f} dBFS is needed). Record it again closer to the microphone.",
        ))
    elif silent > MAX_SILENT_FRACTION:
        problems.append(Problem(
            field,
            f"The reference clip is mostly silence: {silent:.0%} of it is silent (at most {MAX_SILENT_FRACTION:.0%}). "
            "Trim the pauses so the clip is mostly the speaker talking.",
        ))
    return ClipReport(problems, duration)


_SPOKEN = re.compile(r"\w")


def check_transcript(text: str, *, duration: float | None, language: str = "zh") -> list[Problem]:
    """The transcript exists and could plausibly be what is said in a clip of `duration` seconds."""
    field = "reference_text"
    spoken = len(_SPOKEN.findall(unicodedata.normalize("NFC", text or "")))
    if not (text or "").strip():
        return [Problem(field, "The transcript is empty: type exactly what the speaker says in the reference clip.")]
    if spoken < MIN_TRANSCRIPT_CHARS:
        return [Problem(
            field,
            f"The transcript has only {spoken} character(s); type exactly what the speaker says in the reference clip.",
        )]
    if not duration:
        return []
    rate = spoken / duration
    fastest = MAX_CHARS_PER_SECOND.get((language or "").split("-")[0], DEFAULT_MAX_CHARS_PER_SECOND)
    if rate > fastest:
        return [Problem(
            field,
            f"The transcript has {spoken} characters for a {duration:.1f}-second clip ({rate:.0f} per second; people "
            f"rarely say more than {fastest:.0f} per second). Check it is the exact words of this clip, nothing more.",
            WARNING,
        )]
    if rate < MIN_CHARS_PER_SECOND:
        return [Problem(
            field,
            f"The transcript has only {spoken} characters for a {duration:.1f}-second clip. Check it contains every "
            "word said in the clip.",
            WARNING,
        )]
    return []


# --- engine parameters -------------------------------------------------------------------------------------


def check_parameters(engine: str, *, language: str, parameters: Any) -> list[Problem]:
    """The engine accepts these parameters (the same validation a render does)."""
    from synthesis.engines import EngineError, VoiceSpec, get_engine

    field = "parameters"
    if not isinstance(parameters, Mapping):
        return [Problem(field, f"Parameters must be a JSON object like {{\"rate\": 170}}, not {parameters!r}.")]
    spec = VoiceSpec(voice_id=0, language=language, parameters=dict(parameters))
    try:
        get_engine(engine).describe_parameters(spec)
    except EngineError as exc:
        if not exc.permanent:
            return [Problem(field, f"The parameters could not be checked on this server ({exc.message}).", WARNING)]
        return [Problem(field, f"The parameters are not valid: {exc.message}. Fix them or leave the box as {{}}.")]
    except ImportError:
        return []  # GPT-SoVITS without torch: check_checkpoint already says so
    except (TypeError, ValueError) as exc:
        return [Problem(field, f"The parameters are not valid: {exc}. Fix them or leave the box as {{}}.")]
    return []


# --- a whole voice -----------------------------------------------------------------------------------------


def check_voice(
    *,
    engine: str,
    language: str,
    parameters: Any,
    reference_audio: Any = None,
    reference_text: str = "",
    gpt_weights: Any = None,
    sovits_weights: Any = None,
) -> list[Problem]:
    """Every problem with a voice as it would be saved; files may be paths, stored files or fresh uploads."""
    from voices.models import Voice

    problems = check_parameters(engine, language=language, parameters=parameters)
    if engine == Voice.Engine.GPT_SOVITS:
        problems += check_checkpoint(gpt_weights, kind="gpt")
        problems += check_checkpoint(sovits_weights, kind="sovits")
        clip = check_reference_clip(reference_audio)
        problems += clip.problems
        problems += check_transcript(reference_text, duration=clip.duration, language=language)
    return problems
