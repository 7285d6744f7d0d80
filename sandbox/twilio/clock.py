"""Simulated time: waits scaled by ``time_scale``, cut short when the sandbox stops or the REST API acts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sandbox.twilio.call import Call
from sandbox.twilio.errors import ApiHangup, ApiRedirect, Stop

if TYPE_CHECKING:
    from sandbox.twilio.server import TwilioSandbox


class Clock:
    """The waits of the simulations and of the REST API's simulated delays."""

    def __init__(self, sandbox: TwilioSandbox) -> None:
        self.sandbox = sandbox  # time_scale is read from it at each wait
        self.store = sandbox.store

    def pause(self, seconds: float) -> None:
        """Wait ``seconds`` of real time, less if the sandbox stops."""
        if seconds > 0:
            self.store.stopping.wait(seconds)

    def check(self, call: Call) -> None:
        """Raise if the sandbox stops or the REST API intervened."""
        if self.store.stopping.is_set():
            raise Stop()
        if call.interrupt.is_set():
            with self.store.lock:
                if call.api_hangup:
                    raise ApiHangup()
                if call.api_redirect:
                    raise ApiRedirect()
                call.interrupt.clear()

    def sleep(self, call: Call, seconds: float, *, count: bool = True) -> None:
        """Spend ``seconds`` of simulated time (counted in the call duration if
        ``count``), interruptible by the REST API and by stop()."""
        seconds = max(0.0, seconds)
        real = seconds * self.sandbox.time_scale
        start = time.monotonic()
        deadline = start + real
        while True:
            try:
                self.check(call)
            except (ApiHangup, ApiRedirect, Stop):
                if count and real > 0:
                    elapsed = min(real, time.monotonic() - start)
                    call.sim_seconds += seconds * elapsed / real
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            call.interrupt.wait(remaining)
        if count:
            call.sim_seconds += seconds
