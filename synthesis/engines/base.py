"""The synthesis engine interface (pure Python, no Django)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from synthesis.audio import Waveform


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
