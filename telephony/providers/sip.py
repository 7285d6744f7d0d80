"""SIP trunks: Herald's own asyncio user agent (telephony.sip) places the call and plays the clip itself.

A Celery task cannot sit through a call (ringing, the message and the wait for a key take a minute), so
place() hands the call to this process's SIP runtime and returns its Call-ID at once. The runtime is one
daemon thread running an asyncio event loop that holds every call the process has in flight; it starts on
first use, so in a forking worker it belongs to the child that dials. That loop paces RTP packets every
20 ms, so database work never runs on it: each call's progress and result go, in order, through a small
thread pool to the `CallEvents` the call was placed with (telephony.outcomes.EVENTS: the attempt state machine
that Twilio's webhooks also feed).

A campaign with a call flow runs it here too: the user agent plays the flow's clips and asks `_FlowSteps` for each
next step, which records the key on the attempt (telephony.outcomes.apply_flow_key, in a database thread) and
falls back to the bare walk when the database cannot be written, so that no callee is left in silence.

A call lives only in the process that placed it. If that process dies, nobody can say what became of the
call: fetch() says so, and settle_silent_attempts closes the attempt without re-dialling.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import partial

from celery import signals
from django.conf import settings
from django.db import close_old_connections

from campaigns import callflow
from campaigns.models import CallAttempt
from herald.logmask import mask_phone, mask_text
from synthesis.audio import AudioError, read_mulaw_wav
from telephony import announcements, outcomes, trunks
from telephony.credentials import CredentialsError, auth_token
from telephony.providers.base import CallEvents, Dial, Ending, Provider, ProviderError, ProviderStatus
from telephony.providers.twilio import GATHER_TIMEOUT
from telephony.sip import options, register, ua
from telephony.sip import types as sip
from telephony.sip.message import uri_host
from telephony.sip.transport import TransportError

log = logging.getLogger(__name__)
OPTIONS_TIMEOUT = 8.0  # seconds for a trunk to answer the credentials check's OPTIONS
S = CallAttempt.Status

REGISTRATION_WAIT_SECONDS = 5.0  # a call waits this long for its trunk's first REGISTER to be answered
REGISTRATION_PUBLISH_SECONDS = 2.0
CANCEL_GRACE_SECONDS = 5.0  # then time for the user agent's CANCEL or BYE, and for the last writes
DB_THREADS = 4
RECORD_TRIES = 3  # a call's final result is written again after a database error, with backoff
UNWRITTEN_KEPT = 10_000  # ends the database refused, kept (oldest dropped first) until the settle sweep asks
# 4xx answers that describe a passing condition of the callee or the trunk, not the number or the account.
TRANSIENT_4XX = frozenset({408, 429, 480, 486, 487, 491})
SHUTDOWN = "the worker shut down during the call"
FINISH_KEY = "#"  # Twilio's <Gather> default finishOnKey: it ends the gather and is not itself a digit
PROGRESS_STATUS = {sip.TRYING: S.INITIATED, sip.RINGING: S.RINGING, sip.ANSWER: S.IN_PROGRESS}
# The order a call moves through them; a status past them (its end) outranks every one.
PROGRESS_RANK = {status: rank for rank, status in enumerate((S.QUEUED, S.INITIATED, S.RINGING, S.IN_PROGRESS))}
E164 = re.compile(r"\+[1-9]\d{6,14}")  # the user part of the request URI, as the trunk expects it
_SAMPLE_RATE = 8000


def describe(result: sip.CallResult) -> str:
    """The call's failure in words: the SIP answer, the user agent's explanation, the trunk's retry hint."""
    parts = []
    if result.sip_code:
        parts.append(f"SIP {result.sip_code} {result.sip_reason}".strip())
    if result.error:
        parts.append(result.error)
    if not parts:
        parts.append(f"the call ended {result.outcome}")
    if result.retry_after:
        parts.append(f"the trunk asked us to retry after {result.retry_after:g} s")
    if result.failovers:
        parts.append(f"at {result.trunk}, after " + "; ".join(result.failovers))
    return "; ".join(parts)


def ending_for(result: sip.CallResult, *, flow: bool = False) -> Ending:
    """Map the user agent's outcome onto an attempt status, keeping Twilio's meaning of each. A flow call's keys
    were recorded one by one as the flow ran (`_FlowSteps`): its end carries no gather."""
    if result.outcome == sip.ANSWERED:
        duration = math.ceil(result.talk_seconds) if result.talk_seconds is not None else None
        gather = None  # like Twilio's one-key <Gather>: reported when the message played out or a key cut it short
        if not flow and (result.played_to_end or result.digits):
            key = result.digits[:1]
            gather = "" if key == FINISH_KEY else key
        return Ending(S.COMPLETED, duration=duration, gather=gather, answered_by=result.answered_by)
    code = result.sip_code
    error = {"error_code": f"sip-{code}" if code else "sip", "error_message": describe(result)}
    if result.announcement or result.sit:
        # What the carrier played decides, not its SIP answer: campaigns.policy reads these codes.
        error["error_code"] = f"ann-{result.announcement}" if result.announcement else f"sit-{result.sit}"
        if result.outcome == sip.BUSY:
            return Ending(S.BUSY, **error)
        if result.outcome == sip.NO_ANSWER:
            return Ending(S.NO_ANSWER, **error)
        # A wrong or suspended number stays so; a network that had no circuit (SIT NC, RO) may have one later.
        permanent = result.announcement in ("invalid_number", "suspended") or result.sit in ("VC", "IC")
        return Ending(S.FAILED, permanent=permanent, **error)
    if result.outcome == sip.FAILED and code in (401, 407):
        # The trunk wants credentials we do not have, or refused ours: the account's problem, the same for every
        # call. Nobody's phone rang (a challenge answers the INVITE before any ringing).
        message = f"{error['error_message']}: fix the SIP trunk's username and password, then resume"
        return Ending(S.FAILED, permanent=True, account=True, error_code=error["error_code"], error_message=message)
    if result.outcome == sip.BUSY:
        return Ending(S.BUSY, **error)
    if result.outcome in (sip.NO_ANSWER, sip.CANCELED):
        return Ending(S.NO_ANSWER, **error)
    if result.outcome in (sip.DECLINED, sip.INVALID_NUMBER):
        return Ending(S.FAILED, permanent=True, **error)
    # "failed", or an outcome this module does not know: a failure, permanent only when the trunk said the
    # request itself is wrong (bad credentials, forbidden number, bad request).
    permanent = code is not None and 400 <= code < 500 and code not in TRANSIENT_4XX
    return Ending(S.FAILED, permanent=permanent, **error)


def interrupted(answered_at: float | None, why: str) -> Ending:
    """A call that ended without a result (the worker shut down, the user agent broke)."""
    if answered_at is not None:
        # The callee picked up and heard part of the message: answered, and never dialled again for it.
        return Ending(
            S.COMPLETED,
            duration=math.ceil(time.monotonic() - answered_at),
            error_code="sip",
            error_message=why,
        )
    # Nobody heard anything: like an unanswered call, it may be tried again later.
    return Ending(S.FAILED, error_code="sip", error_message=why)


def _with_fresh_connection(work: Callable[[], object]) -> object:
    # These threads outlive requests and tasks: nobody else closes their stale or broken connections.
    close_old_connections()
    try:
        return work()
    finally:
        close_old_connections()


@dataclass(frozen=True)
class _FlowSteps:
    """A SIP call's flow (telephony.sip.types.FlowDriver): each key is recorded on the attempt in a database
    thread, never on the event loop; when that fails, the bare walk answers so the callee still hears the next
    clip (the failure is logged, the key is not recorded)."""

    attempt_id: int
    flow: callflow.Flow
    said: Mapping[str, str]
    db: ThreadPoolExecutor | None = None  # the runtime's database threads, set when the call starts

    def start(self) -> callflow.Step:
        return callflow.start(self.flow)

    async def _in_db(self, work: Callable[[], object]) -> object:
        return await asyncio.get_running_loop().run_in_executor(self.db, _with_fresh_connection, work)

    async def press(self, menu: str, prompts: int, key: str) -> callflow.Step:
        step = None
        try:
            step = await self._in_db(partial(
                outcomes.apply_flow_key, self.attempt_id, self.flow, menu, prompts, key, said=dict(self.said)
            ))
        except Exception:
            log.exception("SIP attempt %s: cannot record key %r in menu %r; the flow goes on unrecorded",
                          self.attempt_id, key[:1], menu)
        if not isinstance(step, callflow.Step):  # not recorded (see above, or a late repeat): the walk alone
            step = callflow.press(self.flow, menu, prompts, key)
        return step

    async def transfer_ended(self, node: str, connected: bool) -> callflow.Step | None:
        try:
            await self._in_db(partial(outcomes.transfer_ended, self.attempt_id, connected))
        except Exception:
            log.exception("SIP attempt %s: cannot record the transfer's end (connected: %s)", self.attempt_id,
                          connected)
        return None if connected else callflow.transfer_refused(self.flow, node)


def _log_failure(call_id: str, future: Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("SIP call %s: the runtime failed", call_id, exc_info=future.exception())


@dataclass
class _Held:
    attempt_id: int
    status: str  # the latest status this process knows of
    answered_at: float | None = None  # time.monotonic() of the answer
    duration: int | None = None
    abort: asyncio.Event | None = None  # set at shutdown: the user agent cancels or hangs up properly


class SipRuntime:
    """This process's SIP calls: one event-loop thread for the calls, a few threads for their database writes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner = os.getpid()  # the process whose calls _held describes
        self._pid = 0  # the process the event loop runs in; 0 when none runs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._db: ThreadPoolExecutor | None = None
        self._held: dict[str, _Held] = {}  # call id -> call, from place() until its end is written
        self._unwritten: dict[str, ProviderStatus] = {}  # ended calls whose end the database refused
        self._calls: set[asyncio.Task] = set()
        self._recorders: set[asyncio.Task] = set()
        # account id -> its registration on this process's fixed SIP port, and the task publishing its state
        self._registrations: dict[int, tuple[register.Registration, asyncio.Task]] = {}

    def start_call(
        self, attempt_id: int, spec: sip.CallSpec, events: CallEvents,
        registration: tuple[int, register.RegistrationSpec] | None = None,
    ) -> None:  # fmt: skip
        """Hand a call to the event loop; returns at once. Its progress and end are reported to `events`. With
        `registration` (account id, spec), the account's registration runs first, and keeps running."""
        loop, db = self._running()
        self._held[spec.call_id] = _Held(attempt_id, S.QUEUED)
        future = asyncio.run_coroutine_threadsafe(self._run(db, attempt_id, spec, events, registration), loop)
        future.add_done_callback(partial(_log_failure, spec.call_id))

    def status(self, call_id: str) -> ProviderStatus | None:
        """What this process knows of a call; None when it does not hold it."""
        held = self._held.get(call_id)
        if held is None:
            return self._unwritten.get(call_id)
        return ProviderStatus(status=held.status, duration=held.duration)

    def in_flight(self) -> int:
        """Calls in flight in this process: from place() until their end is written (or given up on)."""
        return len(self._held)

    def attempts(self) -> dict[str, int]:
        """Call id → attempt id of each call in flight in this process (for the worker's heartbeat)."""
        if self._owner != os.getpid():
            return {}  # a forked child's copy of its parent's calls: not this process's
        return {call_id: held.attempt_id for call_id, held in list(self._held.items())}

    def _running(self) -> tuple[asyncio.AbstractEventLoop, ThreadPoolExecutor]:
        with self._lock:
            if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                # First use in this process, or after a drain. A forked child inherits the parent's objects but
                # neither its threads nor its calls.
                if self._owner != os.getpid():
                    self._held.clear()
                    self._unwritten.clear()
                    self._owner = os.getpid()
                self._calls.clear()
                self._recorders.clear()
                self._registrations.clear()
                loop = asyncio.new_event_loop()
                loop.set_exception_handler(self._on_loop_error)
                thread = threading.Thread(target=loop.run_forever, name="sip-runtime", daemon=True)
                thread.start()
                self._db = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="sip-db")
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            assert self._loop is not None and self._db is not None
            return self._loop, self._db

    @staticmethod
    def _on_loop_error(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        log.error(
            "SIP runtime: %s", mask_text(str(context.get("message"))), exc_info=context.get("exception")
        )

    def _registered(self, db: ThreadPoolExecutor, account_id: int, spec: register.RegistrationSpec) -> register.Registration:
        """The account's registration in this process, started (or restarted when its settings changed)."""
        running = self._registrations.get(account_id)
        if running is not None and running[0].spec == spec:
            return running[0]
        if running is not None:
            running[1].cancel()
            asyncio.get_running_loop().create_task(running[0].stop())
        registration = register.Registration(spec)
        registration.start()
        publisher = asyncio.get_running_loop().create_task(self._publish(db, account_id, registration))
        self._registrations[account_id] = (registration, publisher)
        return registration

    @staticmethod
    async def _publish(db: ThreadPoolExecutor, account_id: int, registration: register.Registration) -> None:
        """The registration's state for the account page, written (from a thread) whenever it changes."""
        loop, last = asyncio.get_running_loop(), None
        while True:
            state = asdict(registration.status)
            if state != last:
                with contextlib.suppress(Exception):  # a cache that is down must not stop the registration
                    await loop.run_in_executor(db, partial(trunks.publish_registration, account_id, state))
                last = state
            await asyncio.sleep(REGISTRATION_PUBLISH_SECONDS)

    async def _run(
        self, db: ThreadPoolExecutor, attempt_id: int, spec: sip.CallSpec, events: CallEvents,
        registration: tuple[int, register.RegistrationSpec] | None = None,
    ) -> None:  # fmt: skip
        if registration is not None:
            registered = self._registered(db, *registration)
            with contextlib.suppress(TimeoutError):  # the first REGISTER's answer, or the call goes on without it
                await asyncio.wait_for(asyncio.shield(registered.attempted.wait()), REGISTRATION_WAIT_SECONDS)
        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)
        held = self._held[spec.call_id]
        queue: asyncio.Queue[str | Ending] = asyncio.Queue()
        recorder = asyncio.create_task(self._record(db, attempt_id, spec.call_id, queue, events))
        self._recorders.add(recorder)
        recorder.add_done_callback(self._recorders.discard)
        # This process told the provider interface the call is placed: record it before anything else.
        queue.put_nowait(S.QUEUED)

        async def on_progress(event: str) -> None:
            status = PROGRESS_STATUS.get(event)
            if status is None or PROGRESS_RANK[status] <= PROGRESS_RANK.get(held.status, len(PROGRESS_RANK)):
                return
            held.status = status
            if status == S.IN_PROGRESS:
                held.answered_at = time.monotonic()
            queue.put_nowait(status)  # recorded by the recorder task, so the user agent never waits for it

        if isinstance(spec.flow, _FlowSteps):
            spec = replace(spec, flow=replace(spec.flow, db=db))
        held.abort = asyncio.Event()
        cancelled = False
        media = ""
        try:
            result = await ua.place_call(spec, on_progress=on_progress, abort=held.abort)
            ending = ending_for(result, flow=spec.flow is not None)
            if held.abort.is_set():
                ending = replace(
                    ending,
                    error_code=ending.error_code or "sip",
                    error_message="; ".join(filter(None, [SHUTDOWN, ending.error_message])),
                )
            if result.answered_at is not None:
                played = "played to the end" if result.played_to_end else "cut short"
                media = (
                    f" [{result.codec}, {result.rtp_packets_sent} RTP packets sent, {played}, "
                    f"hung up by {result.hangup_by}]"
                )
        except asyncio.CancelledError:
            cancelled = True
            ending = interrupted(held.answered_at, SHUTDOWN)
        except Exception as exc:  # a bug: the attempt must still end, not sit "ringing" for ever
            log.exception("SIP call %s (attempt %s): the user agent failed", spec.call_id, attempt_id)
            ending = interrupted(held.answered_at, f"SIP user agent error: {type(exc).__name__}: {exc}")
        held.status, held.duration = ending.status, ending.duration
        log.info(
            "SIP call %s (attempt %s) ended %s%s%s",
            spec.call_id,
            attempt_id,
            ending.status,
            f": {mask_text(ending.error_message)}" if ending.error_message else "",
            media,
        )
        queue.put_nowait(ending)
        try:
            await asyncio.shield(recorder)  # cut off now, the call's end is still written
        finally:
            self._calls.discard(task)
        if cancelled:
            raise asyncio.CancelledError

    async def _record(
        self,
        db: ThreadPoolExecutor,
        attempt_id: int,
        call_id: str,
        queue: asyncio.Queue[str | Ending],
        events: CallEvents,
    ) -> None:
        """Report one call's events in the order they happened, each in a database thread."""
        while True:
            event = await queue.get()
            if isinstance(event, Ending):
                written = await self._write(db, call_id, partial(events.ended, attempt_id, event), tries=RECORD_TRIES)
                if not written:
                    # Kept for settle_silent_attempts: it asks fetch(), which hands the end over.
                    while len(self._unwritten) >= UNWRITTEN_KEPT:
                        self._unwritten.pop(next(iter(self._unwritten)))
                    self._unwritten[call_id] = ProviderStatus(status=event.status, duration=event.duration)
                self._held.pop(call_id, None)
                return
            await self._write(db, call_id, partial(events.progressed, attempt_id, event), tries=1)

    @staticmethod
    async def _write(db: ThreadPoolExecutor, call_id: str, work: Callable[[], object], *, tries: int) -> bool:
        loop = asyncio.get_running_loop()
        for attempt in range(1, tries + 1):
            try:
                await loop.run_in_executor(db, _with_fresh_connection, work)
                return True
            except Exception:
                log.exception(
                    "SIP call %s: cannot record its progress (try %d of %d)", call_id, attempt, tries
                )
                if attempt < tries:
                    await asyncio.sleep(2**attempt)
        return False

    def drain(self, timeout: float | None = None) -> int:
        """Let calls in flight finish for up to `timeout` s (default settings.SIP_DRAIN_SECONDS), hang up the
        rest, stop; returns how many were hung up."""
        if timeout is None:
            timeout = settings.SIP_DRAIN_SECONDS
        with self._lock:
            if (
                self._pid != os.getpid()
                or self._loop is None
                or self._thread is None
                or not self._thread.is_alive()
            ):
                return 0
            loop, thread, db = self._loop, self._thread, self._db
            self._loop = self._thread = None
            self._pid = 0
        cut_off = 0
        try:
            future = asyncio.run_coroutine_threadsafe(self._drain(timeout), loop)
            cut_off = future.result(timeout + 2 * CANCEL_GRACE_SECONDS)
        except Exception:
            log.exception("SIP runtime: draining failed")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CANCEL_GRACE_SECONDS)
        if not thread.is_alive():
            loop.close()
        if db is not None:
            db.shutdown(wait=False)
        return cut_off

    async def _drain(self, timeout: float) -> int:
        calls = set(self._calls)
        pending: set[asyncio.Task] = set()
        if calls:
            log.info("SIP runtime: waiting up to %g s for %d call(s) in flight", timeout, len(calls))
            _, pending = await asyncio.wait(calls, timeout=timeout)
        if pending:
            log.warning("SIP runtime: hanging up %d call(s) at shutdown", len(pending))
            for held in list(self._held.values()):
                if held.abort is not None:
                    held.abort.set()
            _, stuck = await asyncio.wait(pending, timeout=CANCEL_GRACE_SECONDS)
            for task in stuck:
                task.cancel()
        rest = self._calls | self._recorders
        if rest:
            await asyncio.wait(rest, timeout=CANCEL_GRACE_SECONDS)
        for registration, publisher in self._registrations.values():
            publisher.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(registration.stop(), CANCEL_GRACE_SECONDS)  # Expires: 0 to the registrar
        self._registrations.clear()
        return len(pending)


RUNTIME = SipRuntime()


@signals.worker_shutdown.connect  # the worker's own process (solo and threads pools)
@signals.worker_process_shutdown.connect  # a prefork child
def _drain_on_shutdown(**kwargs: object) -> None:
    RUNTIME.drain()


# Outside Celery (a shell, a script): best effort, since by then the interpreter refuses new database threads.
atexit.register(RUNTIME.drain)


def read_clip(path: str) -> bytes:
    """The call's 8 kHz μ-law payload; ProviderError (nothing dialled, tried later) when it cannot be read."""
    if not path:
        raise ProviderError("the call has no telephony audio file to play", permanent=False, code="audio")
    try:
        audio, rate = read_mulaw_wav(path)
    except AudioError as exc:
        raise ProviderError(f"cannot play the message: {exc}", permanent=False, code="audio") from exc
    if rate != _SAMPLE_RATE:
        raise ProviderError(
            f"cannot play the message: {path} is {rate} Hz, SIP needs {_SAMPLE_RATE} Hz",
            permanent=False,
            code="audio",
        )
    if not audio:
        raise ProviderError(f"cannot play the message: {path} holds no audio", permanent=False, code="audio")
    return audio


def flow_clips(dial: Dial) -> dict[str, bytes]:
    """Every clip the call's flow may play, read now: a call never starts that could strand its callee."""
    clips = {}
    for name in callflow.clip_names(dial.flow):
        path = dial.clip_paths.get(name) or (dial.audio_path if name == "message" else "")
        if not path:
            raise ProviderError(
                f"cannot run the call flow: its clip {name!r} has no telephony audio file", permanent=False,
                code="audio",
            )
        try:
            clips[name] = read_clip(path)
        except ProviderError as exc:
            raise ProviderError(f"clip {name!r} of the call flow: {exc}", permanent=False, code="audio") from exc
    return clips


class SipProvider(Provider):
    kind = "sip"

    def _password(self) -> str:
        """The trunk's digest password ('' for a trunk without a username)."""
        if not self.account.account_sid:
            return ""
        try:
            return auth_token(self.account)
        except CredentialsError as exc:
            raise ProviderError(str(exc), permanent=True, code="credentials") from exc

    def _tls(self) -> sip.TlsSettings | None:
        try:
            return trunks.tls_settings(self.account)
        except CredentialsError as exc:
            raise ProviderError(str(exc), permanent=True, code="credentials") from exc

    def call_spec(self, dial: Dial, call_id: str) -> sip.CallSpec:
        """What the user agent needs for this call: trunk, credentials, clip, and Twilio's one-key gather."""
        account = self.account
        if not E164.fullmatch(dial.to):
            raise ProviderError(
                f"cannot dial {mask_phone(dial.to)!r}: not an E.164 number", permanent=True, code="number"
            )
        audio = read_clip(dial.audio_path)
        if not account.sip_host:
            raise ProviderError(
                f"account {account.name} has no SIP server host", permanent=True, code="config"
            )
        password = self._password()
        tls = self._tls()
        to = trunks.request_uri(account, dial.to)
        from_uri = f"sip:{dial.caller_id}@{uri_host(account.sip_domain or account.sip_host)}"
        for uri in (to, from_uri):
            try:
                ua.parse_uri(uri)
            except ValueError as exc:  # the user agent would refuse it too: nothing to dial
                raise ProviderError(f"cannot dial: {mask_text(str(exc))}", permanent=True, code="config") from exc
        flow: dict[str, object] = {}
        if dial.flow is not None:
            flow = dict(
                flow=_FlowSteps(dial.attempt_id, dial.flow, dict(dial.said)),
                clips=flow_clips(dial),
                digit_timeout=float(dial.input_timeout),
                max_digits=0,
                stop_on_digit=False,
            )
        spec = sip.CallSpec(
            to=to,
            audio=audio,
            from_uri=from_uri,
            username=account.account_sid,
            password=password,
            transport=account.sip_transport,
            ring_timeout=float(dial.ring_timeout),
            digit_timeout=float(GATHER_TIMEOUT),
            max_digits=1,
            stop_on_digit=True,
            call_id=call_id,
            display_name=account.sip_display_name,
            asserted_identity=account.sip_asserted_identity,
            privacy=account.sip_privacy,
            announcements=announcements.library(),
            **announcements.listening(),
            down_hops=trunks.down_servers(account),
            tls=tls,
            **trunks.routing(account),
        )
        if account.sip_amd:
            voicemail = read_clip(dial.voicemail_path) if dial.wait_for_beep and dial.voicemail_path else b""
            spec = replace(spec, amd="DetectMessageEnd" if voicemail else "Enable", voicemail=voicemail)
        try:
            ua.check_presentation(spec)
        except ValueError as exc:  # saved before validation existed, or edited outside the admin
            raise ProviderError(
                f"account {account.name}: the caller presentation cannot be sent: {exc}", permanent=True, code="config"
            ) from exc
        return replace(spec, **flow) if flow else spec

    def check_account(self) -> str:
        """OPTIONS to the trunk, answering a digest challenge with the account's credentials: no call placed."""
        account = self.account
        if not account.sip_host:
            raise ProviderError(f"account {account.name} has no SIP server host", permanent=True, code="config")
        password = self._password()
        where = f"{account.sip_host}:{account.sip_port} over {account.sip_transport}"
        try:
            answer = asyncio.run(options.ping(
                host=account.sip_host, port=account.sip_port, transport=account.sip_transport,
                domain=account.sip_domain, username=account.account_sid, password=password,
                timeout=OPTIONS_TIMEOUT, tls=self._tls(),
            ))  # fmt: skip
        except TransportError as exc:
            raise ProviderError(str(exc), permanent=False, code="unreachable") from exc
        said = f"{answer.status} {answer.reason}"
        if answer.status == 0:
            raise ProviderError(f"the trunk at {where} did not answer OPTIONS within {OPTIONS_TIMEOUT:g} s",
                                permanent=False, code="timeout")  # fmt: skip
        if answer.status in (401, 407, 403) and answer.challenged:
            raise ProviderError(f"the trunk at {where} refused the username and password ({said})",
                                permanent=True, code="credentials")  # fmt: skip
        if answer.status in (401, 407):
            raise ProviderError(f"the trunk at {where} asks for credentials ({said}); set the username and password",
                                permanent=True, code="credentials")  # fmt: skip
        if 200 <= answer.status < 300:
            accepted = " and accepted the username and password" if answer.challenged else ""
            return f"the trunk at {where} answered OPTIONS ({said}){accepted}"
        # Many trunks refuse OPTIONS itself (405, 404): they were reached all the same; a call checks the rest.
        return f"the trunk at {where} is reachable (it answered OPTIONS with {said}); a call will check the credentials"

    def place(self, dial: Dial, events: CallEvents) -> str:
        call_id = uuid.uuid4().hex
        spec = self.call_spec(dial, call_id)
        log.info(
            "SIP call %s (attempt %s) to %s via %s:%s/%s",
            call_id,
            dial.attempt_id,
            mask_phone(dial.to),
            self.account.sip_host,
            self.account.sip_port,
            self.account.sip_transport,
        )
        registration = None
        if self.account.sip_register:
            registration = (self.account.pk, trunks.registration_spec(self.account, spec.password))
        try:
            RUNTIME.start_call(dial.attempt_id, spec, events, registration)
        except RuntimeError as exc:  # the event loop could not take the call: nothing was sent
            raise ProviderError(f"the SIP runtime is not running: {exc}", permanent=False) from exc
        return call_id

    def fetch(self, provider_call_id: str) -> ProviderStatus:
        found = RUNTIME.status(provider_call_id)
        if found is None:
            raise ProviderError(
                f"no worker process holds SIP call {provider_call_id}: the worker process that held it is gone "
                "(stopped or restarted during the call)",
                permanent=True,
            )
        return found

    def verify_webhook(self, url: str, params: Mapping[str, str], signature: str) -> bool:
        return False  # SIP has no webhooks: events come from the runtime in the process that placed the call
