"""The embedded default voice: eSpeak NG (formant synthesis) through ctypes, from the espeakng-loader wheel.

No model, no GPU, ~1000x faster than real time; Mandarin ("cmn") and English ("en-us") among ~100 languages.

Determinism. The cache relies on "same key = same bytes", and libespeak-ng is *not* deterministic across calls
in one process: its wave generator keeps state between utterances (pitch-flutter phase, wave phase, echo
buffer...) that ``espeak_Terminate``/``espeak_Initialize`` do not reset, and ``espeak_Initialize`` seeds its
noise generator from ``time()`` (breathy variants such as ``+f3``/``+whisper`` differ from second to second).
So every utterance is rendered by a *fresh instance* of the library: we dlopen a private copy of
``libespeak-ng.so`` (an in-memory memfd copy on Linux, a temporary file elsewhere; private, so no other user
of espeakng-loader in this process, e.g. a phonemizer, can keep it loaded or share its global state),
initialise it, fix the noise seed with ``espeak_ng_SetRandSeed``, synthesise, terminate and dlclose it, which
discards all static state. Reloading costs ~3 ms per utterance.
A fresh instance is verified (``espeak_ng_GetSampleRate()`` is 0 before initialisation); if the platform ever
refuses to unload the library, a new uniquely named copy is loaded instead.

The library is global, not thread-safe state: every use is serialised by one process-wide lock. Nothing is
loaded at import time.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np

from synthesis.audio import Waveform
from synthesis.engines.base import Engine, EngineError, VoiceSpec
from synthesis.frontend.marks import spoken_text

log = logging.getLogger(__name__)

# speak_lib.h (eSpeak NG 1.52, API revision 12)
_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: PLAYBACK=0, RETRIEVAL=1, SYNCHRONOUS=2, SYNCH_PLAYBACK=3
_INITIALIZE_DONT_EXIT = 0x8000  # without it a bad data path calls exit() inside the library
_POS_CHARACTER = 1  # espeak_POSITION_TYPE
_CHARS_UTF8 = 1  # espeakCHARS_UTF8
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4  # espeak_PARAMETER
_EE_OK = 0
_BUFFER_MS = 200  # callback chunk length (only affects how the samples arrive, not the samples)
_RAND_SEED = 1  # fixed seed for the noise generator (aspiration, breathy variants)

_EVENT_LIST_TERMINATED, _EVENT_SENTENCE = 0, 2  # espeak_EVENT_TYPE


class _Event(ctypes.Structure):
    """espeak_EVENT: what the synthesis callback is told besides the samples (a list ending with type 0)."""

    class _Id(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # samples since the start of the text
        ("user_data", ctypes.c_void_p),
        ("id", _Id),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))

# Parameters
RATE_RANGE = (80, 450)  # words per minute (espeakRATE_MINIMUM..MAXIMUM)
PITCH_RANGE = (0, 99)
RANGE_RANGE = (0, 99)
DEFAULTS: dict[str, int] = {"rate": 175, "pitch": 50, "range": 50}  # eSpeak's own defaults
_VOLUME_VALUE = 100  # eSpeak's default; loudness is normalised afterwards by to_telephony
MAX_TEXT_CHARS = 5000

# Default eSpeak voice for a language tag (full tag first, then the primary subtag; otherwise the primary
# subtag itself, which is the eSpeak voice name for most languages: "fr", "de", "ja", ...).
DEFAULT_VOICE_BY_LANGUAGE: dict[str, str] = {
    "zh": "cmn",  # Mandarin
    "cmn": "cmn",
    "zh-hk": "yue",
    "zh-yue": "yue",
    "yue": "yue",
    "en": "en-us",
    "en-gb": "en",  # eSpeak's "en" is British English
    "en-uk": "en",
}
_VOICE_BASE = re.compile(r"[a-z0-9]{1,16}(?:-[a-z0-9]{1,16}){0,4}")
_VOICE_VARIANT = re.compile(r"[A-Za-z0-9_]{1,32}")


# ---------------------------------------------------------------------------------------------------------------
# The library: private copy, fresh instance per utterance, one lock per process

_lock = threading.Lock()
_state: dict[str, Any] = {"owner_pid": None, "copy_dir": None, "copy_path": None, "copies": 0, "memfds": []}
_version_cache: dict[str, str] = {}
_known_voices: dict[str, bool] = {}


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _loader_paths() -> tuple[str, str]:
    """(library path, data directory) from the espeakng-loader wheel."""
    try:
        import espeakng_loader
    except ImportError as exc:
        raise EngineError(
            "the embedded engine needs the espeakng-loader package (pip install 'herald[embedded]')",
            permanent=True,
        ) from exc
    try:
        lib_path = espeakng_loader.get_library_path()
        data_path = espeakng_loader.get_data_path()
    except Exception as exc:  # the wheel raises RuntimeError when its data is missing
        raise EngineError(f"espeakng-loader is incomplete: {exc}", permanent=False) from exc
    if not os.path.isfile(lib_path):
        raise EngineError(f"libespeak-ng not found at {lib_path}", permanent=False)
    if not os.path.isfile(os.path.join(data_path, "phontab")):
        raise EngineError(f"eSpeak NG data directory {data_path} has no phontab", permanent=False)
    return lib_path, data_path


def _cleanup_copies() -> None:
    if _state["owner_pid"] == os.getpid() and _state["copy_dir"]:
        shutil.rmtree(_state["copy_dir"], ignore_errors=True)


atexit.register(_cleanup_copies)


def _memfd_copy(lib_path: str) -> str | None:
    """Copy the library into an anonymous in-memory file (Linux); returns a dlopen-able path or None.

    Nothing is left on disk, the memory goes away with the process, and forked children (Celery prefork)
    inherit the descriptor, so /proc/self/fd/N stays valid there too.
    """
    if not hasattr(os, "memfd_create") or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        fd = os.memfd_create("libespeak-ng-herald")  # close-on-exec; kept open for the process lifetime
        with open(lib_path, "rb") as src:
            os.write(fd, src.read())
    except OSError:
        return None
    _state["memfds"].append(fd)
    return f"/proc/self/fd/{fd}"


def _private_copy(*, new_name: bool = False) -> str:
    """Path of this process's private copy of libespeak-ng (made on first use; ``new_name``: a new copy)."""
    path = _state["copy_path"]
    if path is not None and not new_name and os.path.exists(path):
        return path
    lib_path, _ = _loader_paths()
    path = _memfd_copy(lib_path)
    if path is None:  # no memfd: a file in a private temporary directory, removed at exit
        if (
            _state["owner_pid"] != os.getpid()
            or not _state["copy_dir"]
            or not os.path.isdir(_state["copy_dir"])
        ):
            _state.update(owner_pid=os.getpid(), copy_dir=tempfile.mkdtemp(prefix="herald-espeak-"))
        _state["copies"] += 1
        path = os.path.join(_state["copy_dir"], f"libespeak-ng-herald-{_state['copies']}.so")
        try:
            shutil.copyfile(lib_path, path)
        except OSError as exc:
            raise EngineError(f"cannot copy libespeak-ng to {path}: {exc}", permanent=False) from exc
    _state["copy_path"] = path
    return path


def _dlclose(handle: int) -> None:
    import _ctypes

    close = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary", None)
    if close is not None:
        close(handle)


def _declare(lib: ctypes.CDLL) -> None:
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_Terminate.restype = ctypes.c_int
    lib.espeak_ng_GetSampleRate.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = ctypes.c_int


@contextlib.contextmanager
def _fresh_library() -> Iterator[ctypes.CDLL]:
    """A freshly loaded, not yet initialised libespeak-ng; unloaded on exit. Call with ``_lock`` held."""
    lib = None
    for attempt in range(2):
        path = _private_copy(new_name=attempt > 0)
        try:
            lib = ctypes.CDLL(path)
            _declare(lib)
        except (OSError, AttributeError) as exc:
            raise EngineError(f"cannot load libespeak-ng ({path}): {exc}", permanent=False) from exc
        if lib.espeak_ng_GetSampleRate() == 0:
            break  # static state straight from the file: a fresh instance
        log.warning("libespeak-ng was not unloaded by dlclose; loading a new copy to get a fresh instance")
        _dlclose(lib._handle)
        lib = None
    if lib is None:
        raise EngineError("cannot obtain a fresh libespeak-ng instance", permanent=False)
    try:
        yield lib
    finally:
        with contextlib.suppress(Exception):
            lib.espeak_Terminate()
        _dlclose(lib._handle)


def _initialise(lib: ctypes.CDLL, data_path: str) -> int:
    rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data_path.encode(), _INITIALIZE_DONT_EXIT
    )
    if rate <= 0:
        raise EngineError(f"espeak_Initialize failed ({rate}) with data at {data_path}", permanent=False)
    return rate


def _library_version() -> str:
    version = _version_cache.get("version")
    if version is None:
        with _lock, _fresh_library() as lib:
            version = lib.espeak_Info(None).decode("ascii", "replace").strip()
        _version_cache["version"] = version
    return version


def _voice_exists(voice: str) -> bool:
    """Whether eSpeak NG accepts ``voice`` (base name; variant files are checked separately)."""
    known = _known_voices.get(voice)
    if known is None:
        _, data_path = _loader_paths()
        with _lock, _fresh_library() as lib:
            _initialise(lib, data_path)
            known = lib.espeak_SetVoiceByName(voice.encode()) == _EE_OK
        _known_voices[voice] = known
    return known


# Told each piece of audio as it is made: (sample rate, int16 samples as bytes, where sentences after the first
# start, in samples from the start of the text); returns whether to go on (False aborts the utterance).
AudioSink = Callable[[int, bytes, list[int]], bool]


def _synthesise(params: dict[str, Any], text: str, sink: AudioSink) -> int:
    """One utterance on a fresh library instance, its audio handed to ``sink`` as the library makes it (in this
    thread, with the library lock held); returns the sample rate."""
    _, data_path = _loader_paths()
    rate = 0

    def collect(wav, n, events):  # called synchronously from espeak_Synth, in this thread
        starts = []
        i = 0
        while events and events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_SENTENCE and events[i].sample > 0:
                starts.append(int(events[i].sample))
            i += 1
        samples = ctypes.string_at(wav, n * ctypes.sizeof(ctypes.c_short)) if n > 0 and wav else b""
        if samples or starts:
            return 0 if sink(rate, samples, starts) else 1  # 1: abort the synthesis (espeak_Synth returns OK)
        return 0

    callback = _SynthCallback(collect)  # referenced until the library is unloaded
    with _lock, _fresh_library() as lib:
        rate = _initialise(lib, data_path)
        lib.espeak_SetSynthCallback(callback)
        if lib.espeak_SetVoiceByName(params["voice"].encode()) != _EE_OK:
            raise EngineError(f"eSpeak NG has no voice {params['voice']!r}", permanent=True)
        for parameter, value in (
            (_RATE, params["rate"]),
            (_VOLUME, _VOLUME_VALUE),
            (_PITCH, params["pitch"]),
            (_RANGE, params["range"]),
        ):
            if lib.espeak_SetParameter(parameter, value, 0) != _EE_OK:
                raise EngineError(f"espeak_SetParameter({parameter}, {value}) failed", permanent=False)
        lib.espeak_ng_SetRandSeed(_RAND_SEED)
        encoded = text.encode("utf-8") + b"\x00"
        buffer = ctypes.create_string_buffer(encoded, len(encoded))
        status = lib.espeak_Synth(buffer, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != _EE_OK:
            raise EngineError(f"espeak_Synth failed with status {status}", permanent=False)
        status = lib.espeak_Synchronize()
        if status != _EE_OK:
            raise EngineError(f"espeak_Synchronize failed with status {status}", permanent=False)
    return rate


def _render(params: dict[str, Any], text: str) -> tuple[np.ndarray, int]:
    """One utterance on a fresh library instance: int16 samples and their rate."""
    chunks: list[bytes] = []

    def keep(_rate: int, samples: bytes, _starts: list[int]) -> bool:
        chunks.append(samples)
        return True

    sample_rate = _synthesise(params, text, keep)
    return np.frombuffer(b"".join(chunks), dtype=np.int16), sample_rate


# ---------------------------------------------------------------------------------------------------------------
# The engine


# Bump when Herald's own processing before the library changes what is said (it is part of every render key):
# norm1 = Chinese scripts pass through synthesis.frontend.normalize (codes, money, dates, reading hints);
# norm2 = and traditional characters become simplified first; dimensions (30cm×20cm) say 乘 / "by".
TEXT_PROCESSING = "norm2"


class _LibraryVersion:
    """Class-level ``version`` computed on first access (asks the library), so importing loads nothing."""

    def __get__(self, instance: object, owner: type | None = None) -> str:
        return f"espeak-ng-{_library_version()}+{TEXT_PROCESSING}"


def _bounded_int(params: dict[str, Any], key: str, bounds: tuple[int, int]) -> int:
    value = params.get(key, DEFAULTS[key])
    if isinstance(value, bool) or not isinstance(value, int):
        raise EngineError(f"eSpeak parameter {key!r} must be an integer, got {value!r}", permanent=True)
    low, high = bounds
    if not low <= value <= high:
        raise EngineError(
            f"eSpeak parameter {key!r} must be between {low} and {high}, got {value}", permanent=True
        )
    return int(value)


def default_voice_for(language: str) -> str:
    """The eSpeak voice used for a BCP 47 language tag when the voice parameters name none."""
    tag = (language or "").strip().lower().replace("_", "-")
    if not tag:
        raise EngineError("the voice has no language and no eSpeak 'voice' parameter", permanent=True)
    primary = tag.split("-", 1)[0]
    return DEFAULT_VOICE_BY_LANGUAGE.get(tag) or DEFAULT_VOICE_BY_LANGUAGE.get(primary) or primary


class EmbeddedEngine(Engine):
    """eSpeak NG. Parameters: ``voice`` (eSpeak voice name, optionally ``+variant``; default from the
    language), ``rate`` (words per minute, 80-450, default 175), ``pitch`` (0-99, default 50), ``range``
    (pitch range 0-99, default 50). Output: float32 mono at the library's rate (22050 Hz)."""

    name: ClassVar[str] = "embedded"
    version: ClassVar[str] = _LibraryVersion()  # type: ignore[assignment]

    ALLOWED_PARAMETERS: ClassVar[frozenset[str]] = frozenset({"voice", "rate", "pitch", "range"})

    def describe_parameters(self, voice: VoiceSpec) -> dict[str, Any]:
        params = voice.parameters or {}
        if not isinstance(params, dict):
            raise EngineError(
                f"voice parameters must be a mapping, got {type(params).__name__}", permanent=True
            )
        unknown = sorted(set(params) - self.ALLOWED_PARAMETERS)
        if unknown:
            raise EngineError(
                f"unknown eSpeak parameter(s) {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(sorted(self.ALLOWED_PARAMETERS))}",
                permanent=True,
            )
        name = params.get("voice")
        if name is None:
            name = default_voice_for(voice.language)
        elif not isinstance(name, str) or not name.strip():
            raise EngineError(
                f"eSpeak parameter 'voice' must be a non-empty string, got {name!r}", permanent=True
            )
        base, plus, variant = name.strip().partition("+")
        base = base.lower()
        if not _VOICE_BASE.fullmatch(base):
            raise EngineError(f"invalid eSpeak voice name {name!r}", permanent=True)
        if plus:
            _, data_path = _loader_paths()
            if not _VOICE_VARIANT.fullmatch(variant) or not os.path.isfile(
                os.path.join(data_path, "voices", "!v", variant)
            ):
                raise EngineError(f"unknown eSpeak voice variant {variant!r} in {name!r}", permanent=True)
        if not _voice_exists(base):
            raise EngineError(f"eSpeak NG has no voice {base!r}", permanent=True)
        return {
            "voice": f"{base}+{variant}" if plus else base,
            "rate": _bounded_int(params, "rate", RATE_RANGE),
            "pitch": _bounded_int(params, "pitch", PITCH_RANGE),
            "range": _bounded_int(params, "range", RANGE_RANGE),
        }

    def synthesize(self, voice: VoiceSpec, texts: list[str]) -> list[Waveform]:
        if isinstance(texts, str):
            raise EngineError("synthesize() takes a list of texts, not a single string", permanent=True)
        params = self.describe_parameters(voice)
        # Chinese scripts go through the phone-call normaliser first (codes digit by digit, money, dates,
        # reading hints), so eSpeak reads them as a listener expects; marks are removed for other languages.
        spoken = [spoken_text(text, voice.language) for text in texts]
        checked = [self._check_text(text) for text in spoken]  # fail before rendering anything
        waves = []
        for text in checked:
            samples, rate = _render(params, text)
            if samples.size == 0 or not np.any(samples):
                raise EngineError(f"eSpeak NG produced no audio for {text[:60]!r}", permanent=True)
            waves.append(Waveform(samples.astype(np.float32) / 32768.0, rate))
        return waves

    def stream(self, voice: VoiceSpec, text: str) -> Iterator[Waveform]:
        """Sentence by sentence, as eSpeak NG itself divides the text.

        The library says the whole text as one utterance, exactly as ``synthesize`` does, on a thread of its own;
        its synthesis callback reports where each sentence starts (a SENTENCE event, to the sample), and a
        sentence is yielded as soon as the library has begun the next one. Joined, the chunks are
        ``synthesize``'s audio sample for sample. Closing the iterator stops the library at its next buffer
        (about 200 ms of audio), so a listener who hangs up does not keep the library lock.
        """
        if not isinstance(text, str):
            raise EngineError(f"text must be a string, got {type(text).__name__}", permanent=True)
        params = self.describe_parameters(voice)
        spoken = self._check_text(spoken_text(text, voice.language))
        pieces: queue.SimpleQueue[tuple[int, bytes, list[int]] | BaseException | None] = queue.SimpleQueue()
        stop = threading.Event()

        def sink(rate: int, samples: bytes, starts: list[int]) -> bool:
            pieces.put((rate, samples, starts))
            return not stop.is_set()

        def run() -> None:
            try:
                _synthesise(params, spoken, sink)
            except BaseException as exc:  # handed to the reader, which raises it in the caller's thread
                pieces.put(exc)
            else:
                pieces.put(None)

        renderer = threading.Thread(target=run, name="espeak-stream", daemon=True)
        renderer.start()
        try:
            yield from _sentences(pieces, spoken)
        finally:
            stop.set()
            renderer.join()

    @staticmethod
    def _check_text(text: object) -> str:
        if not isinstance(text, str):
            raise EngineError(f"text must be a string, got {type(text).__name__}", permanent=True)
        if not text.strip():
            raise EngineError("cannot synthesise empty text", permanent=True)
        if "\x00" in text:
            raise EngineError("text contains a NUL character", permanent=True)
        if len(text) > MAX_TEXT_CHARS:
            raise EngineError(
                f"text is {len(text)} characters, the limit is {MAX_TEXT_CHARS}", permanent=True
            )
        return text


def _sentences(
    pieces: queue.SimpleQueue[tuple[int, bytes, list[int]] | BaseException | None], text: str
) -> Iterator[Waveform]:
    """The library's audio as it arrives, cut where its sentences start; silent sentences before the first
    sound are held back, and a text that never sounds fails as it does in ``synthesize``."""
    pending = bytearray()  # int16 samples not yet yielded
    start = 0  # where pending begins, in samples from the start of the text
    cuts: list[int] = []
    held: list[Waveform] = []
    audible = False  # something with sound was yielded
    rate = 0

    def wave(samples: bytes) -> Waveform:
        return Waveform(np.frombuffer(samples, dtype=np.int16).astype(np.float32) / 32768.0, rate)

    while True:
        item = pieces.get()
        if item is None:
            break
        if isinstance(item, BaseException):
            raise item
        rate, samples, starts = item
        pending += samples
        cuts.extend(starts)
        while cuts and cuts[0] <= start + len(pending) // 2:
            size = (cuts.pop(0) - start) * 2
            if size <= 0:
                continue
            held.append(wave(bytes(pending[:size])))
            del pending[:size]
            start += size // 2
            if np.any(held[-1].samples):
                yield from held
                held.clear()
                audible = True
    if pending:
        held.append(wave(bytes(pending)))
    if not audible and not any(np.any(w.samples) for w in held):
        raise EngineError(f"eSpeak NG produced no audio for {text[:60]!r}", permanent=True)
    yield from held
