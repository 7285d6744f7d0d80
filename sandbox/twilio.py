"""A local, deterministic, Twilio-compatible voice sandbox.

Production code keeps using the real ``twilio`` library and is pointed here by
configuration only::

    client = twilio.rest.Client(account_sid, auth_token)
    client.api.base_url = sandbox.url          # e.g. "http://127.0.0.1:8765"
    client.calls.create(to=..., from_=..., url=... or twiml=..., status_callback=...)

so everything the sandbox says and sends is in Twilio's wire format:

* REST: ``/2010-04-01/Accounts/{AccountSid}/Calls.json`` (create, list) and
  ``/Calls/{CallSid}.json`` (fetch, update), HTTP Basic auth, Twilio's JSON
  resource and error shapes.
* Webhooks: status callbacks, TwiML fetches, ``<Gather>`` actions and
  ``<Redirect>`` requests carry Twilio's parameter names and a valid
  ``X-Twilio-Signature`` (computed with ``twilio.request_validator``).
* Answering machines: ``MachineDetection`` (``Enable``: ``machine_start``;
  ``DetectMessageEnd``: ``machine_end_beep`` after the greeting). Synchronous
  by default (the call is answered once detection is done); with
  ``AsyncAmd=true`` the TwiML runs at once and the result is posted, signed, to
  ``AsyncAmdStatusCallback``. A call update (``Status=completed``, ``Twiml``,
  ``Url``) ends or replaces what runs; ``record()["updates"]`` lists them.
* ``<Play>`` URLs are fetched with a plain GET exactly as given; the body must be
  a WAV file, whose duration is "played" (scaled by ``time_scale``).

What the callee does is drawn from ``random.Random(f"{seed}:{to}:{n}")`` where
``n`` counts earlier calls to the same number in this sandbox, so outcomes are
reproducible and independent of thread scheduling.

Inspection: ``TwilioSandbox.calls()`` or ``GET /sandbox/calls.json`` (no auth);
``TwilioSandbox.create_requests()`` lists every create request and the fault it met.

Faults, for tests of the client, all drawn from the seed too:

* ``create_faults`` (kind -> probability per create request) and
  ``create_fault_script`` (To -> the fault of its 1st, 2nd, ... create request,
  ``None`` for none): ``timeout`` (the call is created, the response never
  comes: the connection is held ``create_hang_seconds``, then dropped),
  ``500-after`` (created, then a 500), ``500-before`` (a 500, nothing created),
  ``20429`` (429 Too Many Requests), ``21211`` (invalid To), ``13224`` (a number
  Twilio will not call). The client cannot tell ``500-after`` from
  ``500-before``: that is the point.
* ``duplicate_callbacks``: probability that a status callback (or a
  ``<Gather>`` action) is delivered twice.
* ``reorder_callbacks``: probability that a status callback other than the
  final one is held back and delivered after the next one that is not.

Faults are drawn from their own random streams, so the callees behave the same
with or without them.

Only loopback hosts are contacted unless more are allowed with ``allow_hosts``.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import ipaddress
import json
import logging
import math
import random
import re
import secrets
import signal
import struct
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests
from twilio.request_validator import RequestValidator

__all__ = ["TwilioSandbox", "WavError", "wav_info", "main"]

log = logging.getLogger("sandbox.twilio")

API_VERSION = "2010-04-01"
E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")
OUTCOMES = ("answered", "busy", "no-answer", "failed", "machine")
CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")
FINAL_STATUSES = ("completed", "busy", "no-answer", "failed", "canceled")
CREATE_FAULTS = ("timeout", "500-after", "500-before", "20429", "21211", "13224")

HTTP_TIMEOUT = 10.0  # seconds, every outgoing request
MAX_BODY = 64 * 1024 * 1024  # largest audio/TwiML body read
MAX_REQUEST_BODY = 1024 * 1024  # largest REST request body accepted
MAX_DOCUMENTS = 20  # TwiML documents (redirects + actions) per call
MAX_HTTP_REDIRECTS = 5

# Error codes used in status callbacks and the call resource.
CARRIER_FAILURE = (31005, "Connection error: the call could not be connected (simulated carrier failure)")
HTTP_RETRIEVAL_FAILURE = 11200
DOCUMENT_PARSE_FAILURE = 12100
INVALID_CONTENT_TYPE = 12300

# Simulated timings, in seconds before time_scale is applied.
DIAL_SECONDS = 0.5
RING_SECONDS = (3.0, 15.0)
BUSY_SECONDS = (1.0, 4.0)
AMD_SECONDS = (1.5, 4.0)
GREETING_SECONDS = (5.0, 15.0)  # machine greeting, waited out with DetectMessageEnd
PRESS_DELAY_SECONDS = (0.5, 3.0)
SAY_SECONDS_PER_WORD = 0.4
LOOP_ZERO = 10  # loop="0" means "forever" on Twilio; the sandbox plays it this many times


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc2822(dt: datetime | None) -> str | None:
    return format_datetime(dt) if dt is not None else None


def _error_body(status: int, code: int, message: str) -> dict:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


# --------------------------------------------------------------------------- WAV


class WavError(ValueError):
    """The body is not a WAV file the sandbox can play."""


def wav_info(data: bytes) -> dict:
    """Parse a RIFF/WAVE header; return format_tag, channels, sample_rate,
    byte_rate, bits_per_sample, data_bytes and duration (seconds).

    Works for PCM (1), IEEE float (3), A-law (6), mu-law (7) and
    WAVE_FORMAT_EXTENSIBLE (0xFFFE); duration is data size / byte rate.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    pos = 12
    fmt: tuple | None = None
    data_bytes: int | None = None
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise WavError("truncated fmt chunk")
            fmt = struct.unpack_from("<HHIIHH", data, body)
        elif chunk_id == b"data":
            available = len(data) - body
            # 0 / 0xFFFFFFFF are written by streaming encoders; a header larger
            # than the file is a truncated download: play what is there.
            data_bytes = available if size in (0, 0xFFFFFFFF) or size > available else size
            if fmt is not None:
                break
        pos = body + size + (size & 1)
    if fmt is None:
        raise WavError("no fmt chunk")
    if data_bytes is None:
        raise WavError("no data chunk")
    format_tag, channels, sample_rate, byte_rate, block_align, bits = fmt
    if format_tag not in (1, 3, 6, 7, 0xFFFE):
        raise WavError(f"unsupported WAV format tag {format_tag}")
    if channels == 0 or sample_rate == 0:
        raise WavError("invalid channel count or sample rate")
    if byte_rate == 0:
        byte_rate = sample_rate * (block_align or channels * max(bits, 8) // 8)
    if byte_rate == 0:
        raise WavError("invalid byte rate")
    return {
        "format_tag": format_tag,
        "channels": channels,
        "sample_rate": sample_rate,
        "byte_rate": byte_rate,
        "bits_per_sample": bits,
        "data_bytes": data_bytes,
        "duration": data_bytes / byte_rate,
    }


# --------------------------------------------------------------------- call state


class _Stop(Exception):
    """The sandbox is shutting down: abandon the simulation silently."""


class _ApiHangup(Exception):
    """The REST API canceled / completed the call."""


class _ApiRedirect(Exception):
    """The REST API replaced the running TwiML."""


class _CalleeHangup(Exception):
    """The callee hung up (early hang-up)."""


class _TwimlHangup(Exception):
    """A <Hangup/> or <Reject/> verb ended the call."""


class _AppError(Exception):
    """An application error (Twilio 11200/12100/12300): the call fails."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class _Call:
    """Mutable per-call state. Guarded by the sandbox lock."""

    def __init__(self, *, sid, account_sid, token, to, from_, n, form, plan, rng, delivery_rng, fault):
        self.sid: str = sid
        self.account_sid: str = account_sid
        self.token: str = token
        self.to: str = to
        self.from_: str = from_
        self.n: int = n
        self.plan: dict = plan
        self.rng: random.Random = rng
        self.delivery_rng: random.Random = delivery_rng  # duplicates and reordering, apart from the callee
        self.create_fault: str | None = fault
        self.held: list[dict] = []  # status callbacks held back, to be delivered out of order

        self.url: str | None = _first(form, "Url") or None
        self.method: str = (_first(form, "Method") or "POST").upper()
        self.fallback_url: str | None = _first(form, "FallbackUrl") or None
        self.fallback_method: str = (_first(form, "FallbackMethod") or "POST").upper()
        self.twiml: str | None = _first(form, "Twiml") or None
        self.status_callback: str | None = _first(form, "StatusCallback") or None
        self.status_callback_method: str = (_first(form, "StatusCallbackMethod") or "POST").upper()
        self.events: set[str] = _parse_events(form)
        self.machine_detection: str | None = _first(form, "MachineDetection") or None
        self.async_amd: bool = (_first(form, "AsyncAmd") or "").lower() == "true"
        self.amd_callback: str | None = _first(form, "AsyncAmdStatusCallback") or None
        self.amd_callback_method: str = (_first(form, "AsyncAmdStatusCallbackMethod") or "POST").upper()
        self.timeout: int = _parse_timeout(form)

        now = _now()
        self.status = "queued"
        self.date_created = now
        self.date_updated = now
        self.start_time: datetime | None = None
        self.end_time: datetime | None = None
        self.duration: int | None = None
        self.answered_by: str | None = None
        self.error_code: int | None = None
        self.error_message: str | None = None

        # control from the REST API
        self.interrupt = threading.Event()
        self.api_hangup: str | None = None  # "canceled" or "completed"
        self.api_redirect: tuple | None = None  # ("url", url, method) or ("twiml", xml)
        self.finished = False
        self.ended = threading.Event()  # the simulation is over: async detection stops waiting
        self.amd_thread: threading.Thread | None = None
        self.done = threading.Event()

        # what happened
        self.seq = 0
        self.sim_seconds = 0.0
        self.answered = False
        self.digits: str | None = None
        self.gathers: list[str] = []
        self.audio_started = 0
        self.audio_interrupted = False
        self.hung_up_early = False
        self.audio: list[dict] = []
        self.audio_status: Any = None
        self.callbacks: list[tuple] = []
        self.amd_callbacks: list[tuple] = []  # (url, params, HTTP status or error)
        self.updates: list[dict] = []  # REST updates of this call, as received
        self.requests: list[dict] = []
        self.notes: list[str] = []

    @property
    def human(self) -> bool:
        return self.plan["outcome"] == "answered"

    def base_params(self) -> dict:
        return {
            "CallSid": self.sid,
            "AccountSid": self.account_sid,
            "From": self.from_,
            "To": self.to,
            "Called": self.to,
            "Caller": self.from_,
            "Direction": "outbound-api",
            "ApiVersion": API_VERSION,
        }

    def resource(self) -> dict:
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": self.answered_by,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": _rfc2822(self.date_created),
            "date_updated": _rfc2822(self.date_updated),
            "direction": "outbound-api",
            "duration": str(self.duration) if self.duration is not None else None,
            "end_time": _rfc2822(self.end_time),
            "forwarded_from": None,
            "from": self.from_,
            "from_formatted": self.from_,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": self.sid,
            "start_time": _rfc2822(self.start_time),
            "status": self.status,
            "subresource_uris": {
                name: f"{base}/{path}.json"
                for name, path in (
                    ("feedback", "Feedback"),
                    ("user_defined_messages", "UserDefinedMessages"),
                    ("notifications", "Notifications"),
                    ("recordings", "Recordings"),
                    ("streams", "Streams"),
                    ("payments", "Payments"),
                    ("user_defined_message_subscriptions", "UserDefinedMessageSubscriptions"),
                    ("siprec", "Siprec"),
                    ("events", "Events"),
                    ("feedback_summaries", "FeedbackSummary"),
                    ("transcriptions", "Transcriptions"),
                )
            },
            "to": self.to,
            "to_formatted": self.to,
            "trunk_sid": None,
            "uri": f"{base}.json",
        }

    def record(self) -> dict:
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "to": self.to,
            "from": self.from_,
            "n": self.n,
            "status_callback": self.status_callback,
            "create_fault": self.create_fault,
            "date_created": self.date_created.isoformat(),
            "outcome": self.plan["outcome"],
            "status": self.status,
            "done": self.done.is_set(),
            "machine_detection": self.machine_detection,
            "async_amd": self.async_amd,
            "amd_callbacks": [(u, dict(p), s) for u, p, s in self.amd_callbacks],
            "updates": [dict(u) for u in self.updates],
            "answered_by": self.answered_by,
            "digits": self.digits,
            "gathers": list(self.gathers),
            "listened_to_end": bool(
                self.audio_started
                and not self.hung_up_early
                and not self.audio_interrupted
                and self.error_code is None
            ),
            "hung_up_early": self.hung_up_early,
            "audio_fetched": bool(self.audio) and all(a["ok"] for a in self.audio),
            "audio_status": self.audio_status,
            "audio": [dict(a) for a in self.audio],
            "duration": self.duration if self.duration is not None else 0,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "callbacks": [(u, dict(p), s) for u, p, s in self.callbacks],
            "requests": [dict(r) for r in self.requests],
            "notes": list(self.notes),
        }


def _midnight(value: str, name: str) -> datetime:
    try:
        return datetime.strptime(value[:10], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise _ApiError(400, 20001, f"Invalid {name}: {value} (expected YYYY-MM-DD)") from None


def _time_matches(when: datetime | None, op: str, midnight: datetime) -> bool:
    if when is None:
        return False
    if op == "<":
        return when <= midnight
    if op == ">":
        return when >= midnight
    return midnight <= when < midnight + timedelta(days=1)


def _first(form: dict, key: str) -> str | None:
    values = form.get(key)
    return values[0] if values else None


def _parse_events(form: dict) -> set[str]:
    events: set[str] = set()
    for value in form.get("StatusCallbackEvent", []):
        events.update(e.lower() for e in re.split(r"[\s,]+", value) if e)
    return events or {"completed"}


def _parse_timeout(form: dict) -> int:
    raw = _first(form, "Timeout")
    if not raw:
        return 60
    return max(5, min(600, int(raw)))  # Twilio clamps to 5..600


def _valid_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class _ApiError(Exception):
    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _Withheld(Exception):
    """The response to this request never comes (a simulated timeout)."""


# ------------------------------------------------------------------------ sandbox


class TwilioSandbox:
    """Twilio-compatible voice API + call simulator on a local HTTP port.

    ``accounts`` maps AccountSid -> AuthToken. Outcome weights
    (``answer``, ``busy``, ``no_answer``, ``machine``, ``failed``) are
    normalised. ``digits`` maps a DTMF key to the probability that a human
    presses it at the first ``<Gather>`` (the remainder presses nothing);
    ``hangup_early`` is the probability that a human hangs up halfway through
    the first ``<Play>``/``<Say>``. Simulated seconds (ringing, audio, gather
    timeouts) are slept for ``seconds * time_scale``.

    Faults (see the module docstring): ``create_faults``,
    ``create_fault_script``, ``create_hang_seconds`` (real seconds a
    ``timeout`` holds the connection), ``create_latency`` (real seconds every
    create takes, half before the call exists and half after),
    ``duplicate_callbacks`` and ``reorder_callbacks``. ``queue_delay``: real
    seconds each call waits ``queued`` (no start time yet) before dialling, as
    calls do on Twilio behind an account's calls-per-second limit.
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
    ):
        if not accounts:
            raise ValueError("at least one account (sid -> auth token) is required")
        weights = {
            "answered": answer,
            "busy": busy,
            "no-answer": no_answer,
            "machine": machine,
            "failed": failed,
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
        self.seed = seed
        self.digits = dict(sorted(digits.items()))
        self.hangup_early = hangup_early
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

        self._lock = threading.RLock()
        self._calls: dict[str, _Call] = {}
        self._per_number: dict[str, int] = {}
        self._create_counts: dict[str, int] = {}  # create requests per To, calls made or not
        self._create_requests: list[dict] = []
        self._workers: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._server_thread: threading.Thread | None = None

    # ----------------------------------------------------------- lifecycle

    def start(self) -> TwilioSandbox:
        if self._server is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"sandbox": self})
        server = ThreadingHTTPServer((self.host, self.port), handler)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._stopping.clear()
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
        self._stopping.set()
        with self._lock:
            for call in self._calls.values():
                call.interrupt.set()
            workers = list(self._workers)
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
        with self._lock:
            return [call.record() for call in self._calls.values()]

    def create_requests(self) -> list[dict]:
        """Every create request that passed validation, in order: to, k (its index for that To), fault, sid."""
        with self._lock:
            return [dict(r) for r in self._create_requests]

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every simulation so far has finished; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = [c for c in self._calls.values() if not c.done.is_set()]
            if not pending:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            pending[0].done.wait(remaining)

    # ----------------------------------------------------------- REST operations

    def _authenticate(self, header: str | None, account_sid: str | None) -> str:
        """Return the auth user's AccountSid or raise a 401 _ApiError."""
        error = _ApiError(401, 20003, "Authenticate")
        if not header or not header.startswith("Basic "):
            raise error
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            raise error from None
        token = self.accounts.get(user)
        if token is None or not hmac.compare_digest(token.encode(), password.encode()):
            raise error
        if account_sid is not None and account_sid != user:
            raise error
        return user

    def _create_call(self, account_sid: str, form: dict) -> dict:
        to = (_first(form, "To") or "").strip()
        from_ = (_first(form, "From") or "").strip()
        if not to:
            raise _ApiError(400, 21201, "No 'To' number is specified")
        if not E164_RE.match(to):
            raise _ApiError(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not from_:
            raise _ApiError(400, 21213, "No 'From' number is specified")
        if not E164_RE.match(from_):
            raise _ApiError(400, 21212, f"Invalid 'From' Phone Number: {from_}")
        url = _first(form, "Url")
        twiml = _first(form, "Twiml")
        if not url and not twiml:
            raise _ApiError(400, 21205, "Url parameter is required (or Twiml)")
        for key in ("Url", "FallbackUrl", "StatusCallback", "AsyncAmdStatusCallback"):
            value = _first(form, key)
            if value and not _valid_http_url(value):
                raise _ApiError(400, 21205, f"{key} is not a valid URL: {value}")
        for key in ("Method", "FallbackMethod", "StatusCallbackMethod", "AsyncAmdStatusCallbackMethod"):
            value = _first(form, key)
            if value and value.upper() not in ("GET", "POST"):
                raise _ApiError(400, 21203 if key == "Method" else 21204, f"{key} must be GET or POST")
        unknown = _parse_events(form) - set(CALLBACK_EVENTS)
        if unknown:
            raise _ApiError(400, 21626, f"Invalid StatusCallbackEvent: {', '.join(sorted(unknown))}")
        md = _first(form, "MachineDetection")
        if md and md not in ("Enable", "DetectMessageEnd"):
            raise _ApiError(400, 21219, f"MachineDetection must be Enable or DetectMessageEnd, not {md}")
        try:
            _parse_timeout(form)
        except ValueError:
            raise _ApiError(400, 21216, f"Timeout must be an integer: {_first(form, 'Timeout')}") from None

        with self._lock:
            if self._stopping.is_set():
                raise _ApiError(503, 20500, "Sandbox is shutting down")
            k = self._create_counts.get(to, 0)
            self._create_counts[to] = k + 1
            fault = self._draw_fault(to, k)
            request = {"to": to, "k": k, "fault": fault, "sid": None}
            self._create_requests.append(request)
        if fault is not None:
            log.info("create request %d to %s meets fault %s", k, to, fault)
        self._pause(self.create_latency / 2)
        if fault == "20429":
            raise _ApiError(429, 20429, "Too Many Requests")
        if fault == "21211":
            raise _ApiError(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if fault == "13224":
            raise _ApiError(400, 13224, f"The phone number you are attempting to call, {to}, is not valid.")
        if fault == "500-before":
            raise _ApiError(500, 20500, "Internal Server Error")
        with self._lock:
            if self._stopping.is_set():
                raise _ApiError(503, 20500, "Sandbox is shutting down")
            n = self._per_number.get(to, 0)
            self._per_number[to] = n + 1
            rng = random.Random(f"{self.seed}:{to}:{n}")
            plan = self._draw_plan(rng)
            sid = "CA" + secrets.token_hex(16)
            call = _Call(
                sid=sid,
                account_sid=account_sid,
                token=self.accounts[account_sid],
                to=to,
                from_=from_,
                n=n,
                form=form,
                plan=plan,
                rng=rng,
                delivery_rng=random.Random(f"{self.seed}:{to}:{n}:delivery"),
                fault=fault,
            )
            self._calls[sid] = call
            request["sid"] = sid
            worker = threading.Thread(
                target=self._run_call, args=(call,), name=f"twilio-sandbox-{sid}", daemon=True
            )
            self._workers = [w for w in self._workers if w.is_alive()]
            self._workers.append(worker)
            resource = call.resource()
        log.info("call %s to %s: n=%d outcome=%s", sid, to, n, plan["outcome"])
        worker.start()
        self._pause(self.create_latency / 2)
        if fault == "timeout":
            raise _Withheld()
        if fault == "500-after":
            raise _ApiError(500, 20500, "Internal Server Error")
        return resource

    def _draw_fault(self, to: str, k: int) -> str | None:
        script = self.create_fault_script.get(to, [])
        if k < len(script):
            return script[k]
        u = random.Random(f"{self.seed}:create:{to}:{k}").random()
        acc = 0.0
        for kind, p in self.create_faults.items():
            acc += p
            if u < acc:
                return kind
        return None

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _draw_plan(self, rng: random.Random) -> dict:
        """Every up-front draw, always in the same order (determinism)."""
        u = rng.random()
        outcome = OUTCOMES[-1]
        acc = 0.0
        for name in OUTCOMES:
            acc += self.weights[name]
            if u < acc:
                outcome = name
                break
        ring = rng.uniform(*RING_SECONDS)
        busy = rng.uniform(*BUSY_SECONDS)
        amd = rng.uniform(*AMD_SECONDS)
        greeting = rng.uniform(*GREETING_SECONDS)
        hangup_early = rng.random() < self.hangup_early
        return {
            "outcome": outcome,
            "ring": ring,
            "busy": busy,
            "amd": amd,
            "greeting": greeting,
            "hangup_early": hangup_early,
        }

    def _draw_digit(self, rng: random.Random) -> tuple[str | None, float]:
        u = rng.random()
        delay = rng.uniform(*PRESS_DELAY_SECONDS)
        acc = 0.0
        for key, p in self.digits.items():
            acc += p
            if u < acc:
                return key, delay
        return None, delay

    def _get_call(self, account_sid: str, call_sid: str, path: str) -> _Call:
        call = self._calls.get(call_sid)
        if call is None or call.account_sid != account_sid:
            raise _ApiError(404, 20404, f"The requested resource {path} was not found")
        return call

    def _fetch_call(self, account_sid: str, call_sid: str, path: str) -> dict:
        with self._lock:
            return self._get_call(account_sid, call_sid, path).resource()

    def _list_calls(self, account_sid: str, query: dict, path: str) -> dict:
        """Twilio's filters: To, From, Status, and StartTime / EndTime by UTC date, with ``<`` and ``>``
        for "on or before / on or after midnight of" (a time of day after the date is ignored, as Twilio
        documents dates). Calls not yet started have no StartTime and match no StartTime filter."""
        filters: list[tuple[str, str]] = []  # as given, for the page URIs
        equal: list[tuple[str, str]] = []  # (call attribute, value)
        dated: list[tuple[str, str, datetime]] = []  # (call attribute, "" or "<" or ">", midnight)
        for key, attr in (("To", "to"), ("From", "from_"), ("Status", "status")):
            if value := _first(query, key):
                filters.append((key, value))
                equal.append((attr, value))
        for key, attr in (("StartTime", "start_time"), ("EndTime", "end_time")):
            for op in ("", "<", ">"):
                if value := _first(query, key + op):
                    filters.append((key + op, value))
                    dated.append((attr, op, _midnight(value, key + op)))
        try:
            size = max(1, min(1000, int(_first(query, "PageSize") or 50)))
            page = max(0, int(_first(query, "Page") or 0))
        except ValueError:
            raise _ApiError(400, 20001, "PageSize and Page must be integers") from None
        with self._lock:
            calls = [
                c
                for c in self._calls.values()
                if c.account_sid == account_sid
                and all(getattr(c, attr) == value for attr, value in equal)
                and all(_time_matches(getattr(c, attr), op, midnight) for attr, op, midnight in dated)
            ]
            calls.reverse()  # Twilio lists newest first
            items = [c.resource() for c in calls[page * size : (page + 1) * size]]
            more = len(calls) > (page + 1) * size

        def page_uri(n: int) -> str:
            return f"{path}?{urlencode([*filters, ('PageSize', size), ('Page', n)])}"

        return {
            "calls": items,
            "end": page * size + max(0, len(items) - 1),
            "first_page_uri": page_uri(0),
            "next_page_uri": page_uri(page + 1) if more else None,
            "page": page,
            "page_size": size,
            "previous_page_uri": page_uri(page - 1) if page > 0 else None,
            "start": page * size,
            "uri": page_uri(page),
        }

    def _update_call(self, account_sid: str, call_sid: str, form: dict, path: str) -> dict:
        status = (_first(form, "Status") or "").lower()
        url = _first(form, "Url")
        twiml = _first(form, "Twiml")
        if status and status not in ("canceled", "completed"):
            raise _ApiError(400, 21218, f"Invalid Status: {status}. Must be canceled or completed")
        if url and not _valid_http_url(url):
            raise _ApiError(400, 21205, f"Url is not a valid URL: {url}")
        with self._lock:
            call = self._get_call(account_sid, call_sid, path)
            call.updates.append(
                {k: v for k, v in (("status", status), ("url", url), ("twiml", twiml)) if v}
                | {"call_status": call.status}
            )
            if call.finished or call.api_hangup:
                return call.resource()
            now = _now()
            if status:
                if call.status in ("queued", "ringing"):
                    call.api_hangup = "canceled"
                elif status == "completed" and call.status == "in-progress":
                    call.api_hangup = "completed"
                # Status=canceled on an in-progress call has no effect (as on Twilio)
                if call.api_hangup:
                    call.status = call.api_hangup
                    call.end_time = now
                    call.date_updated = now
                    call.interrupt.set()
            elif url or twiml:
                method = (_first(form, "Method") or "POST").upper()
                if call.status == "in-progress":
                    call.api_redirect = ("twiml", twiml) if twiml else ("url", url, method)
                    call.interrupt.set()
                else:  # not answered yet: just replace what will run on answer
                    call.twiml, call.url, call.method = (
                        (twiml, None, call.method) if twiml else (None, url, method)
                    )
                call.date_updated = now
            return call.resource()

    # ----------------------------------------------------------- simulation

    def _run_call(self, call: _Call) -> None:
        session = requests.Session()
        session.trust_env = False  # never route loopback webhooks through a proxy
        try:
            self._simulate(call, session)
            self._finish(call, session, "completed")
        except _Stop:
            pass
        except _ApiHangup:
            self._finish(call, session, call.api_hangup or "completed")
        except (_CalleeHangup, _TwimlHangup):
            self._finish(call, session, "completed")
        except _AppError as exc:
            self._finish(call, session, "failed", error=(exc.code, exc.message))
        except Exception as exc:  # a sandbox bug: still end the call visibly
            log.exception("simulation of %s crashed", call.sid)
            with self._lock:
                call.notes.append(f"sandbox internal error: {exc!r}")
            try:
                self._finish(
                    call, session, "failed", error=(HTTP_RETRIEVAL_FAILURE, f"sandbox internal error: {exc}")
                )
            except _Stop:
                pass
        finally:
            try:
                self._flush_held(call, session)  # only left when the final event was not subscribed to
            except _Stop:
                pass
            session.close()
            with self._lock:
                call.finished = True
            call.ended.set()
            if call.amd_thread is not None:  # a result being posted now is part of the call
                call.amd_thread.join(2 * HTTP_TIMEOUT)
            call.done.set()

    def _simulate(self, call: _Call, session: requests.Session) -> None:
        plan = call.plan
        deadline = time.monotonic() + self.queue_delay
        while (remaining := deadline - time.monotonic()) > 0:
            self._check(call)
            call.interrupt.wait(remaining)
        with self._lock:
            if call.api_hangup:
                raise _ApiHangup()
            call.start_time = _now()  # Twilio: set once dialling begins, empty while queued
        self._callback(call, session, "initiated", "initiated")
        self._sleep(call, DIAL_SECONDS, count=False)
        if plan["outcome"] == "failed":
            raise _AppError(*CARRIER_FAILURE)
        if plan["outcome"] == "busy":
            self._sleep(call, plan["busy"], count=False)
            self._finish(call, session, "busy")
            return
        self._set_status(call, "ringing")
        self._callback(call, session, "ringing", "ringing")
        if plan["outcome"] == "no-answer":
            self._sleep(call, call.timeout, count=False)
            self._finish(call, session, "no-answer")
            return
        self._sleep(call, min(plan["ring"], call.timeout - 1), count=False)

        # answered
        answered_by = None
        if call.machine_detection and call.async_amd:
            # Answered at once; detection runs beside the TwiML and reports to its own callback.
            call.amd_thread = threading.Thread(
                target=self._run_async_amd, args=(call,), name=f"twilio-sandbox-amd-{call.sid}", daemon=True
            )
            call.amd_thread.start()
        elif call.machine_detection:
            self._sleep(call, plan["amd"])  # detection time is billed
            if call.human:
                answered_by = "human"
            elif call.machine_detection == "DetectMessageEnd":
                self._sleep(call, plan["greeting"])
                answered_by = "machine_end_beep"
            else:
                answered_by = "machine_start"
        with self._lock:
            if call.api_hangup:
                raise _ApiHangup()
            call.status = "in-progress"
            call.answered = True
            call.date_updated = _now()
            call.answered_by = answered_by
        self._callback(call, session, "answered", "in-progress", self._answered_by_param(call))

        if call.twiml:
            twiml = call.twiml
            self._execute(call, session, lambda: (self._parse_twiml(twiml.encode("utf-8")), None))
        else:
            self._execute(call, session, lambda: self._fetch_initial(call, session))

    def _run_async_amd(self, call: _Call) -> None:
        """Wait out detection (and a machine's greeting, with DetectMessageEnd), then post the result."""
        seconds = call.plan["amd"]
        if call.human:
            answered_by = "human"
        elif call.machine_detection == "DetectMessageEnd":
            seconds += call.plan["greeting"]
            answered_by = "machine_end_beep"
        else:
            answered_by = "machine_start"
        deadline = time.monotonic() + seconds * self.time_scale
        while (remaining := deadline - time.monotonic()) > 0:
            if self._stopping.is_set() or call.ended.wait(min(remaining, 0.05)):
                return
        with self._lock:
            if call.finished or call.status != "in-progress":
                return  # hung up before detection decided: Twilio reports nothing
            call.answered_by = answered_by
        if not call.amd_callback:
            return
        params = call.base_params()
        params.update(
            {
                "CallStatus": "in-progress",
                "AnsweredBy": answered_by,
                "MachineDetectionDuration": str(int(seconds * 1000)),
            }
        )
        # Its own stream: the detection thread must not race the call's thread for draws.
        duplicate = random.Random(f"{self.seed}:{call.to}:{call.n}:amd").random() < self.duplicate_callbacks
        with requests.Session() as session:
            session.trust_env = False
            for _ in range(2 if duplicate else 1):
                self._post_amd_callback(call, session, params)

    def _post_amd_callback(self, call: _Call, session: requests.Session, params: dict) -> None:
        if self._stopping.is_set():
            return
        status = self._send_signed(session, call.token, call.amd_callback, call.amd_callback_method, params)
        with self._lock:
            call.amd_callbacks.append((call.amd_callback, dict(params), status))
        log.debug("%s AMD callback %s -> %s", call.sid, params["AnsweredBy"], status)

    def _answered_by_param(self, call: _Call) -> dict:
        return {"AnsweredBy": call.answered_by} if call.answered_by else {}

    def _set_status(self, call: _Call, status: str) -> None:
        with self._lock:
            if call.api_hangup:
                raise _ApiHangup()
            call.status = status
            call.date_updated = _now()

    def _check(self, call: _Call) -> None:
        """Raise if the sandbox stops or the REST API intervened."""
        if self._stopping.is_set():
            raise _Stop()
        if call.interrupt.is_set():
            with self._lock:
                if call.api_hangup:
                    raise _ApiHangup()
                if call.api_redirect:
                    raise _ApiRedirect()
                call.interrupt.clear()

    def _sleep(self, call: _Call, seconds: float, *, count: bool = True) -> None:
        """Spend ``seconds`` of simulated time (counted in the call duration if
        ``count``), interruptible by the REST API and by stop()."""
        seconds = max(0.0, seconds)
        real = seconds * self.time_scale
        start = time.monotonic()
        deadline = start + real
        while True:
            try:
                self._check(call)
            except (_ApiHangup, _ApiRedirect, _Stop):
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

    # ------------------------------------------------------------- TwiML

    def _execute(self, call: _Call, session: requests.Session, load) -> None:
        """Run TwiML documents: ``load()`` returns (root, document URL or None);
        each document may hand over to the next (Redirect, Gather action), and
        the REST API may replace the running one."""
        documents = 0
        while load is not None:
            documents += 1
            if documents > MAX_DOCUMENTS:
                raise _AppError(
                    DOCUMENT_PARSE_FAILURE, f"more than {MAX_DOCUMENTS} TwiML documents (redirect loop?)"
                )
            try:
                root, doc_url = load()
                nxt = self._run_document(call, session, root, doc_url)
                load = (lambda doc=nxt: doc) if nxt is not None else None
            except _ApiRedirect:
                with self._lock:
                    redirect, call.api_redirect = call.api_redirect, None
                    call.interrupt.clear()
                    call.notes.append("TwiML replaced through the REST API")
                if redirect[0] == "twiml":
                    load = lambda xml=redirect[1]: (self._parse_twiml(xml.encode("utf-8")), None)  # noqa: E731
                else:
                    load = lambda r=redirect: self._fetch_twiml(  # noqa: E731
                        call, session, "api-redirect", r[1], r[2], self._twiml_params(call)
                    )

    def _run_document(self, call, session, root, doc_url) -> tuple | None:
        for verb in list(root):
            self._check(call)
            name = verb.tag
            if name in ("Play", "Say", "Pause"):
                self._prompt(call, session, verb, doc_url)
            elif name == "Gather":
                nxt = self._gather(call, session, verb, doc_url)
                if nxt is not None:
                    return nxt
            elif name in ("Hangup", "Reject"):
                raise _TwimlHangup()
            elif name == "Redirect":
                target = (verb.text or "").strip()
                if not target:
                    raise _AppError(DOCUMENT_PARSE_FAILURE, "<Redirect> without a URL")
                target = _resolve(doc_url, target)
                method = (verb.get("method") or "POST").upper()
                return self._fetch_twiml(call, session, "redirect", target, method, self._twiml_params(call))
            else:
                with self._lock:
                    call.notes.append(f"unsupported verb <{name}> skipped")
        return None

    def _prompt(self, call, session, verb, doc_url) -> None:
        name = verb.tag
        if name == "Pause":
            self._sleep(call, _float_attr(verb, "length", 1.0))
            return
        loops = _int_attr(verb, "loop", 1)
        loops = LOOP_ZERO if loops == 0 else max(1, loops)
        if name == "Play":
            target = (verb.text or "").strip()
            if not target:
                raise _AppError(DOCUMENT_PARSE_FAILURE, "<Play> without a URL")
            target = _resolve(doc_url, target)
            seconds = self._fetch_audio(call, session, target)
        else:  # Say
            words = len((verb.text or "").split())
            seconds = max(1.0, words * SAY_SECONDS_PER_WORD)
        first = call.audio_started == 0
        with self._lock:
            call.audio_started += 1
        try:
            if first and call.human and call.plan["hangup_early"]:
                self._sleep(call, seconds / 2)
                with self._lock:
                    call.hung_up_early = True
                    call.notes.append(f"callee hung up halfway through the first <{name}>")
                raise _CalleeHangup()
            self._sleep(call, seconds * loops)
        except (_ApiHangup, _Stop):
            with self._lock:
                call.audio_interrupted = True
            raise

    def _gather(self, call, session, verb, doc_url) -> tuple | None:
        for child in list(verb):
            self._check(call)
            if child.tag in ("Play", "Say", "Pause"):
                self._prompt(call, session, child, doc_url)
            else:
                with self._lock:
                    call.notes.append(f"unsupported <Gather> child <{child.tag}> skipped")
        timeout = _float_attr(verb, "timeout", 5.0)
        num_digits = _int_attr(verb, "numDigits", 0)
        finish_on_key = verb.get("finishOnKey", "#")
        wants_dtmf = "dtmf" in (verb.get("input") or "dtmf").lower()
        key, delay = self._draw_digit(call.rng)  # drawn for every gather, used for humans only
        if not (call.human and wants_dtmf):
            key = None
        digits, finished_on_key = "", ""
        if key is None:
            wait = timeout
        elif finish_on_key and key == finish_on_key:
            finished_on_key, wait = key, delay
        else:
            digits = key
            wait = delay if num_digits == 1 else delay + timeout
        self._sleep(call, wait)
        with self._lock:
            call.gathers.append(digits)
            if digits and call.digits is None:
                call.digits = digits
        if not digits and (verb.get("actionOnEmptyResult") or "").lower() != "true":
            return None
        action = verb.get("action")
        if action:
            action = _resolve(doc_url, action)
        else:
            action = doc_url  # Twilio posts to the current document's URL
        if not action:
            with self._lock:
                call.notes.append("<Gather> without action in inline TwiML: continuing")
            return None
        params = self._twiml_params(call, status="in-progress")
        params.update({"Digits": digits, "FinishedOnKey": finished_on_key, "msg": "Gather End"})
        method = (verb.get("method") or "POST").upper()
        if call.delivery_rng.random() < self.duplicate_callbacks:
            # Delivered twice; the TwiML of the second delivery is the one that runs.
            response, _, _ = self._request(call, session, "gather-action", method, action, params)
            if response is not None:
                response.close()
        return self._fetch_twiml(call, session, "gather-action", action, method, params)

    def _twiml_params(self, call: _Call, status: str = "in-progress") -> dict:
        params = call.base_params()
        params["CallStatus"] = status
        params.update(self._answered_by_param(call))
        return params

    def _fetch_initial(self, call: _Call, session: requests.Session) -> tuple:
        params = self._twiml_params(call)
        try:
            return self._fetch_twiml(call, session, "twiml", call.url, call.method, params)
        except _AppError:
            if not call.fallback_url:
                raise
            params = dict(params, ErrorCode=str(HTTP_RETRIEVAL_FAILURE), ErrorUrl=call.url)
            return self._fetch_twiml(
                call, session, "fallback", call.fallback_url, call.fallback_method, params
            )

    def _parse_twiml(self, body: bytes) -> ET.Element:
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            raise _AppError(DOCUMENT_PARSE_FAILURE, f"Document parse failure: {exc}") from None
        if root.tag != "Response":
            raise _AppError(
                DOCUMENT_PARSE_FAILURE,
                f"Document parse failure: root element is <{root.tag}>, not <Response>",
            )
        return root

    def _fetch_twiml(self, call, session, kind, url, method, params) -> tuple:
        response, final_url, error = self._request(call, session, kind, method, url, params)
        if response is None:
            raise _AppError(HTTP_RETRIEVAL_FAILURE, f"HTTP retrieval failure: {error}")
        if not 200 <= response.status_code < 300:
            raise _AppError(
                HTTP_RETRIEVAL_FAILURE,
                f"HTTP retrieval failure: {method} {url} returned {response.status_code}",
            )
        ctype = response.headers.get("Content-Type", "").lower()
        if ctype and "xml" not in ctype and "html" not in ctype:
            raise _AppError(INVALID_CONTENT_TYPE, f"Invalid Content-Type {ctype!r} for TwiML from {url}")
        return self._parse_twiml(response.content), final_url

    def _fetch_audio(self, call: _Call, session: requests.Session, url: str) -> float:
        entry: dict = {"url": url, "status": None, "ok": False, "duration": None, "error": None}
        with self._lock:
            call.audio.append(entry)
        response, _, error = self._request(call, session, "audio", "GET", url, None, stream=True)
        body = b""
        if response is not None:
            try:
                body = _read_limited(response)
            except (requests.RequestException, OSError, ValueError) as exc:
                response, error = None, f"{type(exc).__name__}: {exc}"
        with self._lock:
            if response is None:
                entry["status"] = entry["error"] = call.audio_status = error
            elif response.status_code != 200:
                entry["status"] = call.audio_status = response.status_code
                entry["error"] = f"HTTP {response.status_code}"
            else:
                entry["status"] = 200
                try:
                    info = wav_info(body)
                except WavError as exc:
                    entry["error"] = call.audio_status = f"invalid WAV: {exc}"
                else:
                    entry.update(
                        ok=True,
                        duration=info["duration"],
                        format_tag=info["format_tag"],
                        sample_rate=info["sample_rate"],
                        channels=info["channels"],
                    )
                    call.audio_status = 200
                    return info["duration"]
            message = entry["error"]
        raise _AppError(HTTP_RETRIEVAL_FAILURE, f"HTTP retrieval failure: GET {url}: {message}")

    # ------------------------------------------------------------- HTTP out

    def _host_allowed(self, url: str) -> bool:
        host = (urlsplit(url).hostname or "").lower()
        if host in self.allow_hosts or host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def _request(self, call, session, kind, method, url, params, *, stream=False):
        """Signed request like Twilio's; follows redirects on allowed hosts.

        Returns (response | None, final_url, error string | None) and records it.
        """
        params = dict(params or {})
        validator = RequestValidator(call.token)
        if method == "GET" and params:
            url = url + ("&" if "?" in url else "?") + urlencode(params)
            params = {}
        response = None
        error = None
        for _ in range(MAX_HTTP_REDIRECTS + 1):
            self._check(call)
            if not self._host_allowed(url):
                error = f"refused non-loopback host in {url}"
                break
            headers = {
                "X-Twilio-Signature": validator.compute_signature(url, params),
                "User-Agent": "TwilioProxy/1.1",
                "Accept": "*/*",
            }
            try:
                if method == "GET":
                    response = session.get(
                        url, headers=headers, timeout=HTTP_TIMEOUT, allow_redirects=False, stream=stream
                    )
                else:
                    response = session.post(
                        url,
                        data=params,
                        headers=headers,
                        timeout=HTTP_TIMEOUT,
                        allow_redirects=False,
                        stream=stream,
                    )
            except requests.RequestException as exc:
                response, error = None, f"{type(exc).__name__}: {exc}"
                break
            if response.status_code in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                if response.status_code in (301, 302, 303):
                    method, params = "GET", {}
                response.close()
                response = None
                error = "too many HTTP redirects"
                continue
            error = None
            break
        status = response.status_code if response is not None else error
        with self._lock:
            call.requests.append(
                {"kind": kind, "method": method, "url": url, "params": params, "status": status}
            )
        log.debug("%s %s %s %s -> %s", call.sid, kind, method, url, status)
        return response, url, error

    def _callback(
        self, call: _Call, session, event: str, call_status: str, extra: dict | None = None
    ) -> None:
        if event not in call.events or not call.status_callback:
            return
        with self._lock:
            seq = call.seq
            call.seq += 1
        params = call.base_params()
        params.update(
            {
                "CallStatus": call_status,
                "CallbackSource": "call-progress-events",
                "SequenceNumber": str(seq),
                "Timestamp": _rfc2822(_now()),
            }
        )
        params.update(extra or {})
        duplicate = call.delivery_rng.random() < self.duplicate_callbacks
        hold = call.delivery_rng.random() < self.reorder_callbacks and event != "completed"
        deliveries = [params, params] if duplicate else [params]
        if hold:
            with self._lock:
                call.held.extend(deliveries)
            return
        for delivery in deliveries:
            self._post_callback(call, session, delivery)
        self._flush_held(call, session)

    def _flush_held(self, call: _Call, session) -> None:
        """Deliver the callbacks held back, late: after one that was produced after them."""
        while True:
            with self._lock:
                if not call.held:
                    return
                params = call.held.pop(0)
            self._post_callback(call, session, params)

    def _send_signed(self, session: requests.Session, token: str, url: str, method: str, params: dict) -> Any:
        """Send a callback as Twilio does (signed with the account's token); the HTTP status or the error."""
        signed_params = params
        if method == "GET":
            url, signed_params = url + ("&" if "?" in url else "?") + urlencode(params), {}
        if not self._host_allowed(url):
            return f"refused non-loopback host in {url}"
        headers = {
            "X-Twilio-Signature": RequestValidator(token).compute_signature(url, signed_params),
            "User-Agent": "TwilioProxy/1.1",
        }
        try:
            if method == "GET":
                response = session.get(url, headers=headers, timeout=HTTP_TIMEOUT, allow_redirects=False)
            else:
                response = session.post(url, data=params, headers=headers, timeout=HTTP_TIMEOUT, allow_redirects=False)
        except requests.RequestException as exc:
            return f"{type(exc).__name__}: {exc}"
        status = response.status_code
        response.close()
        return status

    def _post_callback(self, call: _Call, session, params: dict) -> None:
        if self._stopping.is_set():
            raise _Stop()
        status = self._send_signed(session, call.token, call.status_callback, call.status_callback_method, params)
        with self._lock:
            call.callbacks.append((call.status_callback, params, status))
        log.debug(
            "%s callback %s #%s -> %s", call.sid, params["CallStatus"], params["SequenceNumber"], status
        )

    def _finish(self, call: _Call, session, status: str, error: tuple | None = None) -> None:
        """Set the final status once and post the final ("completed" event) callback."""
        with self._lock:
            if call.finished:
                return
            call.finished = True
            if call.api_hangup:  # the REST API's word wins
                status = call.api_hangup
                error = None
            now = _now()
            call.status = status
            call.end_time = call.end_time or now
            call.date_updated = now
            if call.answered:
                call.duration = max(1, math.ceil(call.sim_seconds - 1e-9))
            else:
                call.duration = 0
            if error:
                call.error_code, call.error_message = error
            duration = call.duration
        extra = {"CallDuration": str(duration), "Duration": str(math.ceil(duration / 60))}
        extra.update(self._answered_by_param(call))
        if error:
            extra.update({"ErrorCode": str(error[0]), "ErrorMessage": error[1]})
        log.info("call %s finished: %s (%ss)", call.sid, status, duration)
        self._callback(call, session, "completed", status, extra)


def _read_limited(response: requests.Response) -> bytes:
    chunks, size = [], 0
    try:
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > MAX_BODY:
                raise ValueError(f"body larger than {MAX_BODY} bytes")
            chunks.append(chunk)
    finally:
        response.close()
    return b"".join(chunks)


def _resolve(base: str | None, target: str) -> str:
    """Relative URLs resolve against the current document; absolute ones are
    used exactly as given (they may be signed)."""
    if base and not urlsplit(target).scheme:
        return urljoin(base, target)
    return target


def _int_attr(el: ET.Element, name: str, default: int) -> int:
    try:
        return int(el.get(name, default))
    except (TypeError, ValueError):
        return default


def _float_attr(el: ET.Element, name: str, default: float) -> float:
    try:
        return max(0.0, float(el.get(name, default)))
    except (TypeError, ValueError):
        return default


# ------------------------------------------------------------------- HTTP in

_CALLS_RE = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Calls\.json$")
_CALL_RE = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Calls/(?P<call>[^/]+)\.json$")
_ACCOUNT_RE = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)\.json$")


class _Handler(BaseHTTPRequestHandler):
    sandbox: TwilioSandbox  # bound by TwilioSandbox.start()
    server_version = "TwilioSandbox/1.0"
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections are dropped after this
    wbufsize = -1  # buffer headers + body into one write (flushed per request)
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _send_json(self, status: int, payload: Any, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_form(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BODY:
            raise _ApiError(413, 20001, "Request body too large")
        raw = self.rfile.read(length) if length > 0 else b""
        return parse_qs(raw.decode("utf-8"), keep_blank_values=True)

    def _dispatch(self, method: str) -> None:
        sb = self.sandbox
        parts = urlsplit(self.path)
        path = parts.path
        try:
            form = self._read_form() if method in ("POST", "PUT") else {}
            if path in ("/sandbox/calls.json", "/sandbox/calls") and method == "GET":
                self._send_json(200, sb.calls())
                return
            if path == "/sandbox/health" and method == "GET":
                self._send_json(200, {"ok": True})
                return
            auth = self.headers.get("Authorization")
            if m := _CALLS_RE.match(path):
                sb._authenticate(auth, m["account"])
                if method == "POST":
                    self._send_json(201, sb._create_call(m["account"], form))
                elif method == "GET":
                    self._send_json(200, sb._list_calls(m["account"], parse_qs(parts.query), path))
                else:
                    raise _ApiError(405, 20004, "Method not allowed")
            elif m := _CALL_RE.match(path):
                sb._authenticate(auth, m["account"])
                if method == "GET":
                    self._send_json(200, sb._fetch_call(m["account"], m["call"], path))
                elif method == "POST":
                    self._send_json(200, sb._update_call(m["account"], m["call"], form, path))
                else:
                    raise _ApiError(405, 20004, "Method not allowed")
            elif m := _ACCOUNT_RE.match(path):
                sb._authenticate(auth, m["account"])
                if method != "GET":
                    raise _ApiError(405, 20004, "Method not allowed")
                self._send_json(200, _account_resource(m["account"], sb.accounts[m["account"]]))
            else:
                if path.startswith(f"/{API_VERSION}/"):
                    sb._authenticate(auth, None)
                raise _ApiError(404, 20404, f"The requested resource {path} was not found")
        except _Withheld:
            # The call exists, the client never hears so: hold the connection, then drop it unanswered.
            sb._pause(sb.create_hang_seconds)
            self.close_connection = True
        except _ApiError as exc:
            headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if exc.status == 401 else None
            if exc.status == 413:
                self.close_connection = True
            self._send_json(exc.status, _error_body(exc.status, exc.code, exc.message), headers)
        except (ValueError, UnicodeDecodeError) as exc:
            self._send_json(400, _error_body(400, 20001, f"Bad request: {exc}"))


def _account_resource(sid: str, token: str) -> dict:
    now = _rfc2822(_now())
    base = f"/{API_VERSION}/Accounts/{sid}"
    return {
        "auth_token": token,
        "date_created": now,
        "date_updated": now,
        "friendly_name": f"Sandbox account {sid}",
        "owner_account_sid": sid,
        "sid": sid,
        "status": "active",
        "subresource_uris": {"calls": f"{base}/Calls.json"},
        "type": "Full",
        "uri": f"{base}.json",
    }


# ------------------------------------------------------------------------ CLI


def _parse_account(value: str) -> tuple[str, str]:
    sid, sep, token = value.partition(":")
    if not sep or not sid or not token:
        raise argparse.ArgumentTypeError(f"expected SID:TOKEN, got {value!r}")
    return sid, token


def _parse_digits(value: str) -> dict[str, float]:
    digits: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        key, sep, prob = item.partition(":")
        try:
            digits[key] = float(prob)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected DIGIT:PROBABILITY, got {item!r}") from None
        if not sep:
            raise argparse.ArgumentTypeError(f"expected DIGIT:PROBABILITY, got {item!r}")
    return digits


def _parse_fault(value: str) -> tuple[str, float]:
    kind, sep, prob = value.rpartition(":")
    if sep and kind:
        try:
            return kind, float(prob)
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"expected KIND:PROBABILITY, got {value!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.twilio", description="Local Twilio-compatible voice sandbox."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--account",
        action="append",
        type=_parse_account,
        required=True,
        metavar="SID:TOKEN",
        help="an account the REST API accepts (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--answer", type=float, default=0.6)
    parser.add_argument("--busy", type=float, default=0.1)
    parser.add_argument("--no-answer", type=float, default=0.2)
    parser.add_argument("--machine", type=float, default=0.1)
    parser.add_argument("--failed", type=float, default=0.0)
    parser.add_argument(
        "--digits",
        type=_parse_digits,
        default={"1": 0.5, "2": 0.2, "9": 0.05},
        metavar="D:P,...",
        help='e.g. "1:0.5,2:0.2,9:0.05"; "" presses nothing',
    )
    parser.add_argument("--hangup-early", type=float, default=0.1)
    parser.add_argument("--time-scale", type=float, default=0.01)
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST",
        help="non-loopback host the sandbox may contact (repeatable)",
    )
    parser.add_argument(
        "--create-fault",
        action="append",
        type=_parse_fault,
        default=[],
        metavar="KIND:P",
        help=f"probability of a create fault, one of {', '.join(CREATE_FAULTS)} (repeatable)",
    )
    parser.add_argument("--create-hang-seconds", type=float, default=30.0)
    parser.add_argument("--create-latency", type=float, default=0.0)
    parser.add_argument("--duplicate-callbacks", type=float, default=0.0, metavar="P")
    parser.add_argument("--reorder-callbacks", type=float, default=0.0, metavar="P")
    parser.add_argument("--queue-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        sandbox = TwilioSandbox(
            dict(args.account),
            seed=args.seed,
            answer=args.answer,
            busy=args.busy,
            no_answer=args.no_answer,
            machine=args.machine,
            failed=args.failed,
            digits=args.digits,
            hangup_early=args.hangup_early,
            time_scale=args.time_scale,
            host=args.host,
            port=args.port,
            allow_hosts=args.allow_host,
            create_faults=dict(args.create_fault),
            create_hang_seconds=args.create_hang_seconds,
            create_latency=args.create_latency,
            duplicate_callbacks=args.duplicate_callbacks,
            reorder_callbacks=args.reorder_callbacks,
            queue_delay=args.queue_delay,
        )
    except ValueError as exc:
        parser.error(str(exc))
    stop = threading.Event()

    def _on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    sandbox.start()
    print(f"twilio sandbox listening on {sandbox.url}", flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
