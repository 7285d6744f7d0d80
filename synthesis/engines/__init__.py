"""Engine registry: one lazily created, process-wide instance per engine kind.

Importing this package loads no native library and no model; ``get_engine`` creates an engine on first use.
"""

from __future__ import annotations

import os
import threading

from synthesis.engines.base import Engine, EngineError, VoiceSpec
from synthesis.engines.embedded import EmbeddedEngine
from synthesis.engines.gptsovits import GptSovitsEngine
from synthesis.engines.recorded import RecordedEngine
from synthesis.frontend.config import configuration_problem

__all__ = ["ENGINES", "Engine", "EngineError", "VoiceSpec", "engine_problem", "engine_version", "get_engine"]

ENGINES: dict[str, type[Engine]] = {
    "embedded": EmbeddedEngine,
    "gpt-sovits": GptSovitsEngine,
    "recorded": RecordedEngine,
}

_instances: dict[str, Engine] = {}
_instances_lock = threading.Lock()


def _reset_after_fork() -> None:  # a lock held by another thread at fork time would never be released
    global _instances_lock
    _instances_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _engine_class(kind: str) -> type[Engine]:
    try:
        return ENGINES[kind]
    except (KeyError, TypeError):
        available = ", ".join(sorted(ENGINES))
        raise EngineError(
            f"unknown synthesis engine {kind!r} (available: {available})", permanent=True
        ) from None


def get_engine(kind: str) -> Engine:
    """The single instance of engine ``kind`` in this process, created on first use (thread-safe)."""
    engine = _instances.get(kind) if isinstance(kind, str) else None
    if engine is not None:
        return engine
    cls = _engine_class(kind)
    with _instances_lock:
        engine = _instances.get(kind)
        if engine is None:
            engine = cls()
            _instances[kind] = engine
        return engine


def engine_version(kind: str) -> str:
    """The version string of engine ``kind`` (part of the render key) without creating an instance or
    loading a model. For the embedded engine this asks libespeak-ng once per process (a few ms)."""
    return _engine_class(kind).version


def engine_problem(kind: str) -> str | None:
    """Why engine ``kind`` cannot render campaign texts in this installation, or None when it can.

    Asked before a campaign launches, so staff hear it then rather than from 10,000 failed renders.
    """
    cls = _engine_class(kind)
    if cls is GptSovitsEngine:
        problem = configuration_problem()
        if problem:
            return f"GPT-SoVITS voices cannot render campaign scripts yet: the text frontend is not installed here ({problem})"
    return None
