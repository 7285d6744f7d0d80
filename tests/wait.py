"""Waiting in tests for something to happen: poll a condition until it holds, or fail after a deadline.

The deadline only keeps a broken run from hanging the suite: it is generous, and never what a test asserts
(timings are measured by the benches under bench/).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
DEADLINE = 30.0  # seconds


def _timed_out(what: str | Callable[[], str], timeout: float) -> AssertionError:
    return AssertionError(f"timed out after {timeout:g} s waiting for {what() if callable(what) else what}")


def wait_until(
    condition: Callable[[], T], what: str | Callable[[], str], *, timeout: float = DEADLINE, interval: float = 0.02
) -> T:
    """Call `condition` until it returns something true, and return that; fail naming `what` after `timeout` s.

    `what` may be a function, called only on failure (to add a log tail, say). `condition` may raise to stop
    waiting early (a process it waits for has died).
    """
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout)
        time.sleep(interval)  # between two polls
    return value


async def until(
    condition: Callable[[], T], what: str | Callable[[], str], *, timeout: float = DEADLINE, interval: float = 0.005
) -> T:
    """wait_until inside an event loop: the loop runs its other tasks and protocols between two polls."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := condition()):
        if loop.time() > deadline:
            raise _timed_out(what, timeout)
        await asyncio.sleep(interval)  # between two polls
    return value
