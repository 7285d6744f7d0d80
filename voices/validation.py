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
from django.conf import settings
from django.utils.translation import gettext, gettext_lazy, gettext_noop

from synthesis.audio import gated_rms_dbfs
from synthesis.engines import EngineError, VoiceSpec, get_engine
from synthesis.gptsovits import basemodels
from voices.models import Voice

# The official GPT-SoVITS inference refuses reference clips outside 3-10 s.
MIN_REFERENCE_SECONDS = 3.0
MAX_REFERENCE_SECONDS = 10.0
MIN_REFERENCE_RATE = 16000
# Read from the header before any audio is decoded: a small compressed file can declare hours of sound.
MAX_REFERENCE_RATE = 192000
MAX_REFERENCE_CHANNELS = 2
MAX_REFERENCE_SAMPLES = int(MAX_REFERENCE_SECONDS * MAX_REFERENCE_RATE) * MAX_REFERENCE_CHANNELS  # 15 MB float32
UNKNOWN_LENGTH = 2**63 - 1  # libsndfile's SF_COUNT_MAX: the header does not say how long the audio is
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

NO_TORCH = gettext_noop(
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


def _size(upload: Any) -> int | None:
    """Bytes in a path, stored file or upload, found without reading any of it (None: cannot tell)."""
    try:
        if isinstance(upload, str | os.PathLike):
            return os.stat(upload).st_size
        return int(upload.size)
    except (AttributeError, OSError, TypeError, ValueError):
        return None  # opening it will say what is wrong


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def _cap(size: int) -> str:
    return f"{size / 1024 / 1024:.4g} MB"


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
    "gpt": (
        "gpt_weights",
        gettext_lazy("GPT weights (.ckpt)"),
        gettext_lazy("the .ckpt file from the GPT_weights_v2 folder of GPT-SoVITS v2"),
    ),
    "sovits": (
        "sovits_weights",
        gettext_lazy("SoVITS weights (.pth)"),
        gettext_lazy("the .pth file from the SoVITS_weights_v2 folder of GPT-SoVITS v2"),
    ),
}
_VERB_FIRST = ("is ", "contains ", "has ", "does ", "cannot ")


def _friendly_checkpoint_problem(kind: str, upload_name: str, problem: str, why: str | None = None) -> str:
    """`problem` is the loader's own (English) words, matched below; `why`, when given, says it for the reader."""
    _, label, wanted = _SLOTS[kind]
    if why is None:
        if problem.startswith("its "):
            why = problem
        elif problem.startswith(_VERB_FIRST):
            why = gettext("it %(problem)s") % {"problem": problem}
        else:
            why = gettext("it has a problem (%(problem)s)") % {"problem": problem}
    if "was expected" in problem:
        advice = gettext(
            "The two files look swapped: put the .ckpt file under GPT weights and the .pth file under SoVITS weights."
        )
    elif "Herald runs" in problem:
        advice = gettext("Upload %(wanted)s instead, or train the voice again with GPT-SoVITS v2.") % {"wanted": wanted}
    elif "truncated" in problem or "corrupted" in problem or "bytes" in problem:
        advice = gettext("The upload is damaged or incomplete: upload the file again.")
    else:
        advice = gettext("Upload %(wanted)s.") % {"wanted": wanted}
    return gettext("The %(label)s file “%(name)s” cannot be used: %(why)s. %(advice)s") % {
        "label": label, "name": upload_name, "why": why, "advice": advice,
    }


def check_checkpoint(upload: Any, *, kind: str) -> list[Problem]:
    """Load a GPT (`kind="gpt"`) or SoVITS (`kind="sovits"`) file strictly, as the synthesis worker will."""
    field, label, wanted = _SLOTS[kind]
    if not upload:
        return [Problem(field, gettext("The %(label)s file is missing: upload %(wanted)s.") % {
            "label": label, "wanted": wanted,
        })]
    size, cap = _size(upload), settings.MAX_CHECKPOINT_UPLOAD_BYTES
    if size is not None and size > cap:
        return [Problem(
            field,
            gettext(
                "The %(label)s file “%(name)s” is %(size)s; at most %(cap)s is accepted (GPT-SoVITS files are under "
                "200 MB). Upload %(wanted)s; if this is the right file, ask an administrator to raise "
                "HERALD_MAX_CHECKPOINT_UPLOAD_MB."
            ) % {"label": label, "name": _name(upload), "size": _megabytes(size), "cap": _cap(cap), "wanted": wanted},
        )]
    try:
        # torch: web processes may run without it; only a weights upload needs it, so it loads here.
        from synthesis.gptsovits.checkpoint import CheckpointError
        from synthesis.gptsovits.loading import load_gpt, load_sovits
    except ImportError:
        return [Problem(field, gettext("The %(label)s file was not checked: %(why)s.") % {
            "label": label, "why": gettext(NO_TORCH),
        })]
    load = load_gpt if kind == "gpt" else load_sovits
    name = _name(upload)
    try:
        with local_path(upload) as path:
            load(path)
    except CheckpointError as exc:
        return [Problem(field, _friendly_checkpoint_problem(kind, name, exc.problem))]
    except (RuntimeError, ValueError, KeyError, TypeError, OSError) as exc:
        why = gettext("it cannot be loaded (%(error)s)") % {"error": exc}
        return [Problem(field, _friendly_checkpoint_problem(kind, name, f"cannot be loaded ({exc})", why))]
    return []


def check_base_models(version: str) -> list[Problem]:
    """An instant voice speaks with the base models: they must be in place where this server can see them.

    Files are listed and compared with the manifest, not hashed (the synthesis workers hash them at start).
    """
    field = "base_version"
    base = basemodels.base_dir()
    if base is None:
        return [Problem(
            field,
            gettext(
                "This server has no GPT-SoVITS base models (%(setting)s is not set), so the instant voice could not "
                "be checked here. The synthesis workers need them to render it."
            ) % {"setting": basemodels.ENV_BASE},
            WARNING,
        )]
    found = basemodels.problems(base, version, verify=False)
    if found:
        more = gettext("; … (%(count)s in all)") % {"count": len(found)}
        shown = "; ".join(found[:4]) + (more if len(found) > 4 else "")
        return [Problem(
            field,
            gettext(
                "The %(version)s base models in %(folder)s are incomplete: %(problems)s. Copy the official "
                "pretrained_models files there (README, “GPT-SoVITS voices”, instant voices) or pick another version."
            ) % {"version": version, "folder": base, "problems": shown},
        )]
    return []


# --- reference clip ----------------------------------------------------------------------------------------


def _silent_fraction(mono: np.ndarray, rate: int) -> float:
    frame = max(1, round(0.020 * rate))
    n = len(mono) // frame
    if n == 0:
        return 1.0
    power = np.mean(mono[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1)
    return float(np.mean(power < 10.0 ** (SILENT_FRAME_DBFS / 10.0)))


def _length_problem(field: str, duration: float) -> Problem | None:
    if duration < MIN_REFERENCE_SECONDS:
        return Problem(
            field,
            gettext(
                "The reference clip is %(duration)s seconds long; GPT-SoVITS needs %(min)s to %(max)s seconds. "
                "Upload a longer clip (one or two full sentences)."
            ) % {
                "duration": f"{duration:.1f}",
                "min": f"{MIN_REFERENCE_SECONDS:.0f}",
                "max": f"{MAX_REFERENCE_SECONDS:.0f}",
            },
        )
    if duration > MAX_REFERENCE_SECONDS:
        return Problem(
            field,
            gettext(
                "The reference clip is %(duration)s seconds long; GPT-SoVITS accepts at most %(max)s seconds. "
                "Cut it to %(min)s-%(max)s seconds and shorten the transcript to match."
            ) % {
                "duration": f"{duration:.1f}",
                "min": f"{MIN_REFERENCE_SECONDS:.0f}",
                "max": f"{MAX_REFERENCE_SECONDS:.0f}",
            },
        )
    return None


def _header_problems(field: str, name: str, *, frames: int, rate: int, channels: int) -> list[Problem]:
    """What the clip's header alone rules out; any of these and its audio is never decoded."""
    problems = []
    if channels > MAX_REFERENCE_CHANNELS:
        problems.append(Problem(
            field,
            gettext(
                "The reference clip “%(name)s” has %(channels)s channels; at most %(max)s (mono or stereo) "
                "are accepted. Export it again as mono."
            ) % {"name": name, "channels": channels, "max": MAX_REFERENCE_CHANNELS},
        ))
    if frames == UNKNOWN_LENGTH:
        problems.append(Problem(
            field,
            gettext(
                "The reference clip “%(name)s” does not say how long it is (its header has no length, as in some "
                "streamed recordings). Open it in an audio editor and export it again as WAV or FLAC."
            ) % {"name": name},
        ))
    elif rate > 0 and (length := _length_problem(field, frames / rate)):
        problems.append(length)
    if rate > MAX_REFERENCE_RATE:
        problems.append(Problem(
            field,
            gettext(
                "The reference clip is sampled at %(rate)s Hz; at most %(max)s Hz is accepted. Export it "
                "again at 16 to 48 kHz."
            ) % {"rate": rate, "max": MAX_REFERENCE_RATE},
        ))
    elif rate < MIN_REFERENCE_RATE:
        problems.append(Problem(
            field,
            gettext(
                "The reference clip is sampled at %(rate)s Hz, too low for cloning; at least %(min)s Hz is "
                "needed. Upload the original recording, not a phone-line or compressed copy."
            ) % {"rate": rate, "min": MIN_REFERENCE_RATE},
        ))
    return problems


def check_reference_clip(upload: Any) -> ClipReport:
    """The clip GPT-SoVITS imitates: readable, 3-10 s, at least 16 kHz, not clipped, not mostly silence.

    The size of the file and then its header are checked before any audio is decoded, so a file that declares
    hours of sound costs no memory; the decode reads at most the frames that passed those checks.
    """
    import soundfile as sf

    field = "reference_audio"
    if not upload:
        return ClipReport(
            [Problem(field, gettext("The reference clip is missing: upload 3 to 10 seconds of the speaker talking."))],
            None,
        )
    name = _name(upload)
    size, cap = _size(upload), settings.MAX_REFERENCE_UPLOAD_BYTES
    if size is not None and size > cap:
        return ClipReport(
            [
                Problem(
                    field,
                    gettext(
                        "The reference clip “%(name)s” is %(size)s; at most %(cap)s is accepted, and 3 to "
                        "%(max)s seconds of speech is far less (10 seconds of 48 kHz stereo WAV is "
                        "under 4 MB). Upload only the clip, as WAV or FLAC."
                    ) % {
                        "name": name,
                        "size": _megabytes(size),
                        "cap": _cap(cap),
                        "max": f"{MAX_REFERENCE_SECONDS:.0f}",
                    },
                )
            ],
            None,
        )
    try:
        with local_path(upload) as path, sf.SoundFile(os.fspath(path)) as audio:
            frames, rate, channels = audio.frames, audio.samplerate, audio.channels
            if frames == 0:
                return ClipReport([Problem(field, _empty_clip(name))], None)
            refused = _header_problems(field, name, frames=frames, rate=rate, channels=channels)
            if refused:
                known = frames != UNKNOWN_LENGTH and rate > 0
                return ClipReport(refused, frames / rate if known else None)
            # The checks above keep frames × channels within MAX_REFERENCE_SAMPLES; the bound holds regardless.
            data = audio.read(frames=min(frames, MAX_REFERENCE_SAMPLES // channels), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as exc:
        return ClipReport(
            [
                Problem(
                    field,
                    gettext(
                        "The reference clip “%(name)s” cannot be read as audio (%(error)s). Upload a WAV or FLAC "
                        "recording."
                    ) % {"name": name, "error": exc},
                )
            ],
            None,
        )
    if data.shape[0] == 0:
        return ClipReport([Problem(field, _empty_clip(name))], None)
    duration = data.shape[0] / rate
    # Decoded audio shorter than its header said (a damaged file) is judged by what was actually there.
    problems = [length] if (length := _length_problem(field, duration)) else []
    clipped = float(np.mean(np.abs(data) >= CLIPPED_AT))
    if clipped > MAX_CLIPPED_FRACTION:
        problems.append(Problem(
            field,
            gettext(
                "The reference clip is clipped (distorted): %(clipped)s of its samples hit full scale (at most "
                "%(max)s is acceptable). Record it again with lower input gain."
            ) % {"clipped": f"{clipped:.1%}", "max": f"{MAX_CLIPPED_FRACTION:.1%}"},
        ))
    mono = data.mean(axis=1, dtype=np.float64)
    level = gated_rms_dbfs(mono, rate)
    silent = _silent_fraction(mono, rate)
    if level == float("-inf"):
        problems.append(Problem(field, gettext("The reference clip is silent: no speech was found in it. Upload a "
                                               "recording of the speaker talking.")))
    elif level < MIN_SPEECH_LEVEL_DBFS:
        problems.append(Problem(
            field,
            gettext(
                "The reference clip is almost silent: its speech level is %(level)s dBFS (at least "
                "%(min)s dBFS is needed). Record it again closer to the microphone."
            ) % {"level": f"{level:.0f}", "min": f"{MIN_SPEECH_LEVEL_DBFS:.0f}"},
        ))
    elif silent > MAX_SILENT_FRACTION:
        problems.append(Problem(
            field,
            gettext(
                "The reference clip is mostly silence: %(silent)s of it is silent (at most %(max)s). "
                "Trim the pauses so the clip is mostly the speaker talking."
            ) % {"silent": f"{silent:.0%}", "max": f"{MAX_SILENT_FRACTION:.0%}"},
        ))
    return ClipReport(problems, duration)


MAX_RECORDING_SECONDS = 120.0
MIN_RECORDING_RATE = 8000
MAX_RECORDING_RATE = 48000


def check_recording(upload: Any, *, field: str = "audio") -> list[Problem]:
    """A recorded voice's recording: readable WAV/FLAC, mono or stereo, 8-48 kHz, up to 2 minutes, with sound in
    it and not clipped. Size and header are checked before any audio is decoded."""
    import soundfile as sf

    if not upload:
        return [Problem(field, gettext("Upload the recording: a WAV or FLAC file of the speaker saying the text."))]
    name = _name(upload)
    size, cap = _size(upload), settings.MAX_REFERENCE_UPLOAD_BYTES
    if size is not None and size > cap:
        return [Problem(field, gettext(
            "The recording “%(name)s” is %(size)s; at most %(cap)s is accepted. Upload it as mono WAV or FLAC."
        ) % {"name": name, "size": _megabytes(size), "cap": _cap(cap)})]
    try:
        with local_path(upload) as path, sf.SoundFile(os.fspath(path)) as audio:
            frames, rate, channels = audio.frames, audio.samplerate, audio.channels
            if frames == UNKNOWN_LENGTH or channels > MAX_REFERENCE_CHANNELS or not (
                MIN_RECORDING_RATE <= rate <= MAX_RECORDING_RATE
            ):
                return [Problem(field, gettext(
                    "The recording “%(name)s” is %(channels)s channel(s) at %(rate)s Hz%(unknown)s; mono or stereo at "
                    "8 to 48 kHz, with its length in the header, is accepted. Export it again as WAV or FLAC."
                ) % {"name": name, "channels": channels, "rate": rate,
                     "unknown": gettext(", of unknown length") if frames == UNKNOWN_LENGTH else ""})]
            if frames / rate > MAX_RECORDING_SECONDS:
                return [Problem(field, gettext(
                    "The recording “%(name)s” is %(duration)s seconds long; at most %(max)s seconds is accepted. "
                    "Cut it into the parts of the message."
                ) % {"name": name, "duration": f"{frames / rate:.0f}", "max": f"{MAX_RECORDING_SECONDS:.0f}"})]
            data = audio.read(frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as exc:
        return [Problem(field, gettext(
            "The recording “%(name)s” cannot be read as audio (%(error)s). Upload a WAV or FLAC recording."
        ) % {"name": name, "error": exc})]
    if data.shape[0] == 0:
        return [Problem(field, gettext("The recording “%(name)s” contains no sound at all: it is empty.") % {"name": name})]
    level = gated_rms_dbfs(data.mean(axis=1, dtype=np.float64), rate)
    if level < MIN_SPEECH_LEVEL_DBFS:
        return [Problem(field, gettext(
            "The recording “%(name)s” is silent or almost silent (speech level %(level)s dBFS, at least %(min)s "
            "dBFS is needed). Record it again closer to the microphone."
        ) % {"name": name, "level": "-∞" if level == float("-inf") else f"{level:.0f}",
             "min": f"{MIN_SPEECH_LEVEL_DBFS:.0f}"})]
    clipped = float(np.mean(np.abs(data) >= CLIPPED_AT))
    if clipped > MAX_CLIPPED_FRACTION:
        return [Problem(field, gettext(
            "The recording “%(name)s” is clipped (distorted): %(clipped)s of its samples hit full scale. Record it "
            "again with lower input gain."
        ) % {"name": name, "clipped": f"{clipped:.1%}"})]
    return []


def check_fill_voice(fill: Any, *, language: str, field: str = "fill_voice") -> list[Problem]:
    """A recorded voice's fill voice: a synthesis voice (not another recorded one) in the same language."""
    if fill is None:
        return []
    if fill.engine == Voice.Engine.RECORDED:
        return [Problem(field, gettext(
            "The fill voice must be a synthesis voice (embedded or GPT-SoVITS): “%(voice)s” is itself a recorded voice."
        ) % {"voice": fill.name})]
    if language and fill.language != language:
        return [Problem(field, gettext(
            "The fill voice “%(voice)s” speaks %(its)s, but this voice's recordings are %(ours)s: choose a fill voice "
            "in the same language."
        ) % {"voice": fill.name, "its": fill.get_language_display(), "ours": Voice.Language(language).label})]
    return []


def _empty_clip(name: str) -> str:
    return gettext("The reference clip “%(name)s” contains no sound at all: it is empty.") % {"name": name}


_SPOKEN = re.compile(r"\w")


def check_transcript(text: str, *, duration: float | None, language: str = "zh") -> list[Problem]:
    """The transcript exists and could plausibly be what is said in a clip of `duration` seconds."""
    field = "reference_text"
    spoken = len(_SPOKEN.findall(unicodedata.normalize("NFC", text or "")))
    if not (text or "").strip():
        return [Problem(
            field, gettext("The transcript is empty: type exactly what the speaker says in the reference clip.")
        )]
    if spoken < MIN_TRANSCRIPT_CHARS:
        return [Problem(
            field,
            gettext(
                "The transcript has only %(count)s character(s); type exactly what the speaker says in the reference "
                "clip."
            ) % {"count": spoken},
        )]
    if not duration:
        return []
    rate = spoken / duration
    fastest = MAX_CHARS_PER_SECOND.get((language or "").split("-")[0], DEFAULT_MAX_CHARS_PER_SECOND)
    if rate > fastest:
        return [Problem(
            field,
            gettext(
                "The transcript has %(count)s characters for a %(duration)s-second clip (%(rate)s per second; people "
                "rarely say more than %(fastest)s per second). Check it is the exact words of this clip, nothing more."
            ) % {"count": spoken, "duration": f"{duration:.1f}", "rate": f"{rate:.0f}", "fastest": f"{fastest:.0f}"},
            WARNING,
        )]
    if rate < MIN_CHARS_PER_SECOND:
        return [Problem(
            field,
            gettext(
                "The transcript has only %(count)s characters for a %(duration)s-second clip. Check it contains every "
                "word said in the clip."
            ) % {"count": spoken, "duration": f"{duration:.1f}"},
            WARNING,
        )]
    return []


# --- engine parameters -------------------------------------------------------------------------------------


def check_parameters(engine: str, *, language: str, parameters: Any) -> list[Problem]:
    """The engine accepts these parameters (the same validation a render does)."""
    field = "parameters"
    if not isinstance(parameters, Mapping):
        return [Problem(field, gettext('Parameters must be a JSON object like {"rate": 170}, not %(value)s.') % {
            "value": repr(parameters),
        })]
    spec = VoiceSpec(voice_id=0, language=language, parameters=dict(parameters))
    try:
        get_engine(engine).describe_parameters(spec)
    except EngineError as exc:
        if not exc.permanent:
            return [Problem(
                field,
                gettext("The parameters could not be checked on this server (%(error)s).") % {"error": exc.message},
                WARNING,
            )]
        return [Problem(field, _invalid_parameters(exc.message))]
    except ImportError:
        return []  # GPT-SoVITS without torch: check_checkpoint already says so
    except (TypeError, ValueError) as exc:
        return [Problem(field, _invalid_parameters(exc))]
    return []


def _invalid_parameters(error: Any) -> str:
    return gettext("The parameters are not valid: %(error)s. Fix them or leave the box as {}.") % {"error": error}


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
    source: str = "trained",
    base_version: str = "v2ProPlus",
    fill_voice: Any = None,
) -> list[Problem]:
    """Every problem with a voice as it would be saved; files may be paths, stored files or fresh uploads."""


    problems = check_parameters(engine, language=language, parameters=parameters)
    if engine == Voice.Engine.RECORDED:
        problems += check_fill_voice(fill_voice, language=language)
    if engine == Voice.Engine.GPT_SOVITS:
        if source == Voice.Source.INSTANT:
            problems += check_base_models(base_version)
        else:
            problems += check_checkpoint(gpt_weights, kind="gpt")
            problems += check_checkpoint(sovits_weights, kind="sovits")
        clip = check_reference_clip(reference_audio)
        problems += clip.problems
        problems += check_transcript(reference_text, duration=clip.duration, language=language)
    return problems
