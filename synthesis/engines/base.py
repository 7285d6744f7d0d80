"""The synthesis engine interface (pure Python, no Django)."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from synthesis.audio import Waveform

log = logging.getLogger(__name__)


def _rebuild_engine_error(cls: type[EngineError], message: str, permanent: bool) -> EngineError:
    return cls(message, permanent=permanent)


class EngineError(Exception):
    """Synthesis failed.

    ``permanent=True``: retrying cannot help (bad parameters, unknown voice, empty text, unknown engine), so
    the render should be marked failed. ``permanent=False``: a transient condition (out of memory, device
    busy, library failed to start); the work should be released and retried later.
    """

    permanent: bool

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = bool(permanent)

    def __reduce__(self):  # keyword-only __init__: teach pickle (Celery result backends, multiprocessing)
        return (_rebuild_engine_error, (type(self), self.message, self.permanent))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, permanent={self.permanent})"


def failure_reason(exc: BaseException) -> str:
    """What to store and show for a failed text: an EngineError's own message, else the type and message."""
    if isinstance(exc, EngineError):
        return exc.message
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@dataclass(frozen=True)
class VoiceSpec:
    """What an engine needs to know about a voice, with file paths resolved (no Django objects)."""

    voice_id: int
    language: str  # BCP 47 tag, e.g. "zh-CN", "en-US"
    parameters: dict[str, Any] = field(
        default_factory=dict
    )  # engine specific (eSpeak: voice, rate, pitch, range)
    weights: dict[str, str] = field(default_factory=dict)  # name -> file path; empty for the embedded engine
    reference_audio: str | None = None  # path of the reference clip (cloning engines)
    reference_text: str = ""  # transcript of the reference clip
    # A recorded voice: its recordings as (exact text, file path), and the voice that speaks the rest.
    recordings: tuple[tuple[str, str], ...] = ()
    fill: VoiceSpec | None = None
    fill_engine: str = ""


class Engine(ABC):
    """A text-to-speech engine. Instances are created once per process (see ``synthesis.engines.get_engine``)
    and must be safe to call from several threads."""

    name: ClassVar[str]
    version: ClassVar[str]  # changes whenever the engine's output for the same input may change

    @abstractmethod
    def synthesize(self, voice: VoiceSpec, texts: list[str]) -> list[Waveform]:
        """Render each text; returns one mono Waveform per text, in the same order.

        Raises EngineError (``permanent`` tells whether a retry can help).
        """

    @abstractmethod
    def describe_parameters(self, voice: VoiceSpec) -> dict[str, Any]:
        """The parameters that affect the output, validated and normalised with defaults filled in (JSON-able).

        Goes into the render cache key. Raises EngineError(permanent=True) for invalid parameters.
        """

    def stream(self, voice: VoiceSpec, text: str) -> Iterator[Waveform]:
        """Render one text as consecutive chunks of one sample rate, the first as early as the engine can.

        Joined end to end the chunks are the text's audio. An engine that cannot stream yields its whole
        render as one chunk (this default). Raises EngineError like ``synthesize``.
        """
        yield from self.synthesize(voice, [text])

    def synthesize_each(self, voice: VoiceSpec, texts: list[str]) -> list[Waveform | Exception]:
        """Render each text, one result per text: its Waveform, or the exception that failed that text alone.

        The batch is tried first (batching is what makes GPU engines fast); when it fails for any reason but
        a transient EngineError, which is raised as it would be for the whole batch, every text is rendered
        on its own, so one text the frontend or the engine cannot handle fails only itself and never holds
        back the others. Rendering alone gives the same audio: engines seed each text by its own content.
        """
        try:
            waves = self.synthesize(voice, texts)
            if len(waves) != len(texts):
                raise EngineError(f"the engine returned {len(waves)} waveforms for {len(texts)} texts", permanent=True)
            return list(waves)
        except EngineError as exc:
            if not exc.permanent or len(texts) == 1:
                if exc.permanent:
                    return [exc]
                raise
            first: Exception = exc
        except Exception as exc:  # any bug in one text's frontend or rendering: isolate it below
            if len(texts) == 1:
                log.warning("text failed: %s", failure_reason(exc), exc_info=True)
                return [exc]
            first = exc
        log.warning("a batch of %d texts failed (%s); rendering them one by one", len(texts), failure_reason(first))
        results: list[Waveform | Exception] = []
        for text in texts:
            try:
                (wave,) = self.synthesize(voice, [text])
            except EngineError as exc:
                if not exc.permanent:
                    raise
                results.append(exc)
            except Exception as exc:
                log.warning("text failed: %s", failure_reason(exc), exc_info=True)
                results.append(exc)
            else:
                results.append(wave)
        return results
