"""Fixtures for the sandbox tests: a stand-in for Herald's webhook endpoints, and started sandboxes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from sandbox.twilio import TwilioSandbox
from tests.sandbox.test_twilio_sandbox import OTHER_SID, OTHER_TOKEN, SID, TOKEN, Herald


@pytest.fixture
def herald() -> Iterator[Herald]:
    h = Herald()
    yield h
    h.close()


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., TwilioSandbox]]:
    """Start sandboxes (both test accounts, 1000× faster than real time unless asked); all stop afterwards."""
    started: list[TwilioSandbox] = []

    def make(**kwargs) -> TwilioSandbox:
        kwargs.setdefault("time_scale", 0.001)
        sandbox = TwilioSandbox({SID: TOKEN, OTHER_SID: OTHER_TOKEN}, **kwargs).start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()
