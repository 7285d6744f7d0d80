"""``TwilioSandbox``: the sandbox's settings, the lifecycle of its HTTP server, and what it did."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from http.server import ThreadingHTTPServer

from sandbox.twilio.callee import FAILURES, MACHINE_ANSWERS
from sandbox.twilio.clock import Clock
from sandbox.twilio.errors import ANSWERED_BY
from sandbox.twilio.rest import CREATE_FAULTS, RestApi
from sandbox.twilio.routing import Handler
from sandbox.twilio.simulation import Simulator
from sandbox.twilio.store import CallStore
from sandbox.twilio.twiml import TwimlRunner
from sandbox.twilio.webhooks import Webhooks

log = logging.getLogger("sandbox.twilio")  # one logger for the whole sandbox


class TwilioSandbox:
    """Twilio-compatible voice API + call simulator on a local HTTP port.

    ``accounts`` maps AccountSid -> AuthToken. Outcome weights
    (``answer``, ``busy``, ``no_answer``, ``machine``, ``failed``,
    ``invalid_number``: the carrier refuses the number with SIP 404) are
    normalised. ``amd_script`` maps a To number to what answering-machine
    detection reports for its calls (any Twilio AnsweredBy: ``fax``,
    ``unknown``, ``machine_end_silence``, ...) instead of the drawn
    ``human`` / ``machine_start`` / ``machine_end_beep``; ``machine_answers`` weighs what a machine is
    found to be with ``DetectMessageEnd`` (``machine_end_beep``, ``machine_end_silence``,
    ``machine_end_other``, ``fax``; with ``Enable`` a machine is ``machine_start``, a fax ``fax``), and
    ``amd_unknown`` is the probability that detection cannot decide (``unknown``); ``failures`` weighs
    what a failed call turns out to be (``callee.FAILURES``: the status, ErrorCode and SipResponseCode each
    reports, e.g. ``not-found`` 13224 / 404, ``unavailable`` no-answer / 480, ``declined`` busy / 603). ``digits`` maps a DTMF key to the probability that a human
    presses it at the first ``<Gather>`` (the remainder presses nothing);
    ``hangup_early`` is the probability that a human hangs up halfway through
    the first ``<Play>``/``<Say>``; ``transfer_answer`` that the person a
    ``<Dial>`` calls answers. Every ``<Gather>`` draws its key from ``digits``,
    so callees walk call flows key by key (and some never answer a menu);
    ``menu_hangup`` is the probability that a human hangs up at each
    ``<Gather>`` after the first instead of answering it. Simulated seconds (ringing, audio, gather
    timeouts) are slept for ``seconds * time_scale``.

    Faults (see the package docstring): ``create_faults``,
    ``create_fault_script``, ``create_hang_seconds`` (real seconds a
    ``timeout`` holds the connection), ``create_latency`` (real seconds every
    create takes, half before the call exists and half after),
    ``duplicate_callbacks`` and ``reorder_callbacks``. ``queue_delay``: real
    seconds each call waits ``queued`` (no start time yet) before dialling, as
    calls do on Twilio behind an account's calls-per-second limit.

    Its parts, each reading these settings from it: ``store`` (calls and
    create requests), ``clock`` (simulated time), ``webhooks`` (requests out),
    ``twiml``, ``simulator`` (one thread per call) and ``rest`` (the REST API).
    """

    def __init__(
        self,
        accounts: dict[str, str],
        *,
        seed: int = 0,
        answer: float = 0.6,
        busy: float = 0.1,
        no_answer: float = 0.2,
        machine: float = 0.1,
        failed: float = 0.0,
        invalid_number: float = 0.0,
        digits: dict[str, float] | None = None,
        hangup_early: float = 0.1,
        time_scale: float = 0.01,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_hosts: Iterable[str] = (),
        create_faults: dict[str, float] | None = None,
        create_fault_script: dict[str, list[str | None]] | None = None,
        create_hang_seconds: float = 30.0,
        create_latency: float = 0.0,
        duplicate_callbacks: float = 0.0,
        reorder_callbacks: float = 0.0,
        queue_delay: float = 0.0,
        transfer_answer: float = 0.8,
        menu_hangup: float = 0.0,
        amd_script: dict[str, str] | None = None,
        numbers: dict[str, list[str]] | None = None,
        machine_answers: dict[str, float] | None = None,
        amd_unknown: float = 0.0,
        failures: dict[str, float] | None = None,
    ):
        if not accounts:
            raise ValueError("at least one account (sid -> auth token) is required")
        weights = {
            "answered": answer,
            "busy": busy,
            "no-answer": no_answer,
            "machine": machine,
            "failed": failed,
            "invalid-number": invalid_number,
        }
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError("outcome probabilities must be >= 0 and not all zero")
        total = sum(weights.values())
        self.weights = {k: v / total for k, v in weights.items()}
        if digits is None:
            digits = {"1": 0.5, "2": 0.2, "9": 0.05}
        for key, p in digits.items():
            if len(key) != 1 or key not in "0123456789*#" or p < 0:
                raise ValueError(f"bad digit probability {key!r}: {p!r}")
        if sum(digits.values()) > 1.0 + 1e-9:
            raise ValueError("digit probabilities sum to more than 1")
        if not 0.0 <= hangup_early <= 1.0:
            raise ValueError("hangup_early must be within [0, 1]")
        if not 0.0 <= transfer_answer <= 1.0:
            raise ValueError("transfer_answer must be within [0, 1]")
        if not 0.0 <= menu_hangup <= 1.0:
            raise ValueError("menu_hangup must be within [0, 1]")
        amd_script = dict(amd_script or {})
        unknown_answers = set(amd_script.values()) - set(ANSWERED_BY)
        if unknown_answers:
            raise ValueError(f"unknown AnsweredBy {sorted(unknown_answers)}; known: {', '.join(ANSWERED_BY)}")
        machine_answers = dict(machine_answers or {})
        if set(machine_answers) - set(MACHINE_ANSWERS):
            raise ValueError(
                f"unknown machine answers {sorted(set(machine_answers) - set(MACHINE_ANSWERS))}; known: "
                f"{', '.join(MACHINE_ANSWERS)}"
            )
        if machine_answers and (any(p < 0 for p in machine_answers.values()) or sum(machine_answers.values()) <= 0):
            raise ValueError("machine answer probabilities must be >= 0 and not all zero")
        if not 0.0 <= amd_unknown <= 1.0:
            raise ValueError("amd_unknown must be within [0, 1]")
        failures = dict(failures or {})
        if set(failures) - set(FAILURES):
            raise ValueError(f"unknown failures {sorted(set(failures) - set(FAILURES))}; known: {', '.join(FAILURES)}")
        if failures and (any(p < 0 for p in failures.values()) or sum(failures.values()) <= 0):
            raise ValueError("failure probabilities must be >= 0 and not all zero")
        if time_scale < 0:
            raise ValueError("time_scale must be >= 0")
        create_faults = dict(create_faults or {})
        create_fault_script = {to: list(kinds) for to, kinds in (create_fault_script or {}).items()}
        scripted = {k for kinds in create_fault_script.values() for k in kinds if k is not None}
        unknown_faults = (set(create_faults) | scripted) - set(CREATE_FAULTS)
        if unknown_faults:
            raise ValueError(
                f"unknown create faults {sorted(unknown_faults)}; known: {', '.join(CREATE_FAULTS)}"
            )
        if any(p < 0 for p in create_faults.values()) or sum(create_faults.values()) > 1.0 + 1e-9:
            raise ValueError("create fault probabilities must be >= 0 and sum to at most 1")
        for name, p in (
            ("duplicate_callbacks", duplicate_callbacks),
            ("reorder_callbacks", reorder_callbacks),
        ):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if create_hang_seconds < 0 or create_latency < 0 or queue_delay < 0:
            raise ValueError("create_hang_seconds, create_latency and queue_delay must be >= 0")
        self.accounts = dict(accounts)
        # The numbers each account owns (IncomingPhoneNumbers); an account not named owns none.
        self.numbers = {sid: list(owned) for sid, owned in (numbers or {}).items()}
        self.seed = seed
        self.digits = dict(sorted(digits.items()))
        self.hangup_early = hangup_early
        self.transfer_answer = transfer_answer
        self.menu_hangup = menu_hangup
        self.amd_script = amd_script
        self.failures = {kind: p / sum(failures.values()) for kind, p in failures.items()} if failures else {}
        total = sum(machine_answers.values())
        self.machine_answers = {k: v / total for k, v in machine_answers.items()} if machine_answers else None
        self.amd_unknown = amd_unknown
        self.time_scale = time_scale
        self.host = host
        self.port = port
        self.allow_hosts = {h.lower() for h in allow_hosts}
        self.create_faults = {k: create_faults[k] for k in CREATE_FAULTS if create_faults.get(k)}
        self.create_fault_script = create_fault_script
        self.create_hang_seconds = create_hang_seconds
        self.create_latency = create_latency
        self.duplicate_callbacks = duplicate_callbacks
        self.reorder_callbacks = reorder_callbacks
        self.queue_delay = queue_delay

        self.store = CallStore()
        self.clock = Clock(self)
        self.webhooks = Webhooks(self)
        self.twiml = TwimlRunner(self)
        self.simulator = Simulator(self)
        self.rest = RestApi(self)
        self._server: ThreadingHTTPServer | None = None
        self._server_thread: threading.Thread | None = None

    # ----------------------------------------------------------- lifecycle

    def start(self) -> TwilioSandbox:
        """Serve on host:port (port 0 picks a free one) from a background thread; return self."""
        if self._server is not None:
            return self
        handler = type("_BoundHandler", (Handler,), {"sandbox": self})
        server = ThreadingHTTPServer((self.host, self.port), handler)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self.store.stopping.clear()
        self._server_thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="twilio-sandbox-http",
            daemon=True,
        )
        self._server_thread.start()
        log.info("twilio sandbox listening on %s", self.url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and abandon running simulations (no further callbacks)."""
        self.store.stopping.set()
        workers = self.store.interrupt_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._server_thread is not None:
            self._server_thread.join(timeout)
            self._server_thread = None
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> TwilioSandbox:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # ----------------------------------------------------------- inspection

    def calls(self) -> list[dict]:
        """What the sandbox did, one dict per call, in creation order."""
        return self.store.records()

    def create_requests(self) -> list[dict]:
        """Every create request that passed validation, in order: to, k (its index for that To), fault, sid."""
        return self.store.create_request_records()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every simulation so far has finished; False on timeout."""
        return self.store.wait_idle(timeout)
