"""Load a table or model once per process, on first use, under a lock (jieba is not safe to build twice)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

__all__ = ["load_once"]


def load_once(load: Callable[[], T]) -> Callable[[], T]:
    """Decorate a no-argument loader: the first call runs it, every later call returns its result.

    A loader that raises is tried again on the next call. `loader.forget()` drops the result (tests).
    """
    lock = threading.Lock()
    loaded: list[T] = []

    @functools.wraps(load)
    def get() -> T:
        if not loaded:
            with lock:
                if not loaded:
                    loaded.append(load())
        return loaded[0]

    get.forget = loaded.clear  # type: ignore[attr-defined]
    return get
