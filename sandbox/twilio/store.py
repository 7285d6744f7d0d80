"""The sandbox's shared state: its calls, create requests and simulation threads, under one lock."""

from __future__ import annotations

import threading
import time

from sandbox.twilio.call import Call


class CallStore:
    """Everything the REST API and the simulations share; ``lock`` guards it and every call's state."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.calls: dict[str, Call] = {}
        self.per_number: dict[str, int] = {}  # calls made per To
        self.create_counts: dict[str, int] = {}  # create requests per To, calls made or not
        self.create_requests: list[dict] = []
        self.workers: list[threading.Thread] = []
        self.stopping = threading.Event()

    def records(self) -> list[dict]:
        """What the sandbox did, one dict per call, in creation order."""
        with self.lock:
            return [call.record() for call in self.calls.values()]

    def create_request_records(self) -> list[dict]:
        """Every create request that passed validation, in order."""
        with self.lock:
            return [dict(r) for r in self.create_requests]

    def add_worker(self, worker: threading.Thread) -> None:
        """Track a call's simulation thread (forgetting finished ones); the caller holds the lock."""
        self.workers = [w for w in self.workers if w.is_alive()]
        self.workers.append(worker)

    def interrupt_all(self) -> list[threading.Thread]:
        """Interrupt every call's simulation; return the threads to wait for."""
        with self.lock:
            for call in self.calls.values():
                call.interrupt.set()
            return list(self.workers)

    def wait_idle(self, timeout: float) -> bool:
        """Block until every simulation so far has finished; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                pending = [c for c in self.calls.values() if not c.done.is_set()]
            if not pending:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            pending[0].done.wait(remaining)
