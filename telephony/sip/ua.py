"""The user agent client: one outbound call from INVITE to BYE, and what became of it.

    result = await place_call(CallSpec(to="sip:+8613800138000@trunk.example:5060", audio=clip))

It speaks RFC 3261 for a UAC: INVITE client transaction with Timer A/B on UDP, ACK for every final response
(and for each retransmitted 2xx), CANCEL after the ring timeout, digest answers to 401 and 407, one retry of
a 503 whose Retry-After is short, BYE in either direction, and sane answers to requests inside the dialog
(OPTIONS, re-INVITE, UPDATE, INFO digits). Audio is the pre-rendered clip, paced by rtp.Pacer; digits are
RFC 4733 events (and SIP INFO). Requests always go to the trunk (the outbound proxy), whatever the Contact.

Every path closes the call's sockets and tasks; call-level failures are results, never exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import secrets
import time
from dataclasses import dataclass

from telephony.sip import digest, sdp
from telephony.sip.g711 import ulaw_to_alaw
from telephony.sip.message import (
    Message,
    SipParseError,
    header_param,
    new_branch,
    new_tag,
    response_to,
    serialise,
    uri_of,
)
from telephony.sip.rtp import Playback, RtpStream
from telephony.sip.transport import Transport, TransportError, open_transport
from telephony.sip.types import (
    ANSWER,
    ANSWERED,
    BUSY,
    CANCELED,
    DECLINED,
    FAILED,
    INVALID_NUMBER,
    NO_ANSWER,
    RINGING,
    TRYING,
    CallResult,
    CallSpec,
    ProgressCallback,
)

log = logging.getLogger(__name__)
T2 = 4.0  # RFC 3261: the longest retransmit interval of a non-INVITE request
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO"
# ASCII digits in the port: \d alone would take "٥٠٦٠" (and int() would read it as 5060).
_URI = re.compile(r"^(sips?):(?:([^@;?\s]+)@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]{1,5}))?([;?]\S*)?$")
OUTCOME_BY_CODE = {
    486: BUSY,
    600: BUSY,
    408: NO_ANSWER,
    480: NO_ANSWER,
    603: DECLINED,
    404: INVALID_NUMBER,
    410: INVALID_NUMBER,
    484: INVALID_NUMBER,
    604: INVALID_NUMBER,
    487: CANCELED,
}


def outcome_for(code: int) -> str:
    """The outcome a final non-2xx INVITE response means."""
    return OUTCOME_BY_CODE.get(code, FAILED)


@dataclass(frozen=True)
class SipUri:
    scheme: str
    user: str
    host: str
    port: int | None

    @property
    def default_port(self) -> int:
        return self.port or (5061 if self.scheme == "sips" else 5060)


def parse_uri(text: str) -> SipUri:
    """sip:USER@HOST[:PORT] taken apart; SipParseError (a ValueError) when it is not one."""
    match = _URI.match(text.strip())
    if not match:
        raise SipParseError(f"{text[:80]!r} is not a SIP URI like sip:USER@HOST:PORT", "URI")
    scheme, user, host, port, _ = match.groups()
    if port is not None and not 0 < int(port) < 65536:
        raise SipParseError(f"port {port} in {text[:80]!r} is out of range", "URI")
    return SipUri(scheme, user or "", host.strip("[]"), int(port) if port else None)


async def place_call(
    spec: CallSpec, *, on_progress: ProgressCallback | None = None, abort: asyncio.Event | None = None
) -> CallResult:
    """Run one call to its end. `abort`, when set, cancels a ringing call or hangs up an answered one."""
    to = parse_uri(spec.to)  # a bad URI is the caller's error: raised, not a call outcome
    if spec.from_uri:
        parse_uri(spec.from_uri)
    if not spec.audio:
        raise ValueError("the call has no audio to play")
    call = _Call(spec, to, on_progress, abort)
    try:
        return await call.run()
    finally:
        call.close()


class _Call:
    def __init__(self, spec: CallSpec, to: SipUri, on_progress: ProgressCallback | None, abort) -> None:
        self.spec, self.to = spec, to
        self.on_progress = on_progress
        self.abort = abort or asyncio.Event()
        self.t1 = spec.t1
        self.result = CallResult(outcome=FAILED, call_id=spec.call_id or f"{secrets.token_hex(12)}@herald")
        self.transport: Transport | None = None
        self.rtp: RtpStream | None = None
        self.tasks: list[asyncio.Task] = []
        self.pending: dict[tuple[str, str], asyncio.Queue] = {}
        self.from_tag = new_tag()
        self.cseq = random.randint(1, 10_000)
        self.session_id = random.randint(1, 2**31)
        self.session_version = 1
        self.auth: dict[str, str] = {}  # header name -> value, answering the latest challenge of each kind
        self.to_tag = ""
        self.invite_cseq = 0
        self.ack_2xx: bytes | None = None
        self.acks: dict[str, bytes] = {}  # INVITE branch -> ACK for its non-2xx final response
        self.dialog_open = False
        self.media: sdp.Media | None = None
        self.playback: Playback | None = None
        self.remote_bye = asyncio.Event()
        self.enough_digits = asyncio.Event()
        self.progress_sent: set[str] = set()
        self.sent_uas: dict[str, bytes] = {}  # our responses by request branch, for retransmitted requests
        self.route_set: list[str] = []
        self.remote_target = spec.to
        self.invite_branch = ""
        self.invite_queue: asyncio.Queue | None = None
        self.inviting = self.cancel_sent = False
        self.cancelled_by = ""

    # --- plumbing -----------------------------------------------------------------------------------------
    @property
    def local_ip(self) -> str:
        assert self.transport is not None
        return self.transport.local[0]

    @property
    def from_uri(self) -> str:
        return self.spec.from_uri or f"sip:herald@{_host(self.local_ip)}"

    def via(self, branch: str) -> str:
        assert self.transport is not None
        ip, port = self.transport.local
        return f"SIP/2.0/{self.transport.kind.upper()} {_host(ip)}:{port};branch={branch};rport"

    def contact(self) -> str:
        assert self.transport is not None
        ip, port = self.transport.local
        suffix = "" if self.transport.kind == "udp" else f";transport={self.transport.kind}"
        return f"<sip:herald@{_host(ip)}:{port}{suffix}>"

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.send(data)

    def spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=f"{name} {self.result.call_id}")
        self.tasks.append(task)
        return task

    def open_tx(self, branch: str, method: str) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue()
        self.pending[(branch, method)] = queue
        return queue

    def request(
        self, method: str, uri: str, *, branch: str, cseq: int, to_tag: str = "", extra=(), body: bytes = b""
    ) -> bytes:
        to = f"<{self.spec.to}>" + (f";tag={to_tag}" if to_tag else "")
        headers = [
            ("Via", self.via(branch)),
            ("Max-Forwards", "70"),
            *(("Route", route) for route in (self.route_set if to_tag else [])),
            ("From", f"<{self.from_uri}>;tag={self.from_tag}"),
            ("To", to),
            ("Call-ID", self.result.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        if method in ("INVITE", "UPDATE"):
            headers += [("Contact", self.contact()), ("Allow", ALLOW)]
        headers += [("User-Agent", self.spec.user_agent), *extra]
        if body:
            headers.append(("Content-Type", "application/sdp"))
        return serialise(f"{method} {uri} SIP/2.0", headers, body)

    async def progress(self, event: str) -> None:
        if event in self.progress_sent or self.on_progress is None:
            return
        self.progress_sent.add(event)
        try:
            await self.on_progress(event)
        except Exception:  # the caller's bookkeeping must not take the call down
            log.exception("call %s: progress callback failed on %s", self.result.call_id, event)

    # --- the call -----------------------------------------------------------------------------------------
    async def run(self) -> CallResult:
        result = self.result
        result.started_at = time.time()
        host, port = self.spec.proxy or (self.to.host, self.to.default_port)
        try:
            self.transport = await open_transport(self.spec.transport, host, port, self.spec.local_ip)
            self.rtp = await RtpStream.open(self.transport.local[0])
        except (TransportError, OSError) as exc:
            result.error = str(exc)
            result.ended_at = time.time()
            return result
        self.spawn(self.dispatch(), "sip-dispatch")
        self.spawn(self.watch_abort(), "sip-abort")
        try:
            if await self.invite():
                await self.talk()
        finally:
            result.ended_at = time.time()
            if result.answered_at is not None:
                result.talk_seconds = round(result.ended_at - result.answered_at, 3)
            if self.rtp is not None:
                result.rtp_packets_sent, result.rtp_bytes_sent = self.rtp.packets_sent, self.rtp.bytes_sent
                result.rtp_packets_received = self.rtp.packets_received
                result.early_media_packets = self.rtp.early_packets
                if self.spec.capture_audio:
                    result.received_audio = self.rtp.captured_audio()
            if result.send_lateness_ms:
                ordered = sorted(result.send_lateness_ms)
                result.send_error_ms = {
                    "p50": round(_quantile(ordered, 0.50), 3),
                    "p99": round(_quantile(ordered, 0.99), 3),
                    "max": round(ordered[-1], 3),
                }
        return result

    async def invite(self) -> bool:
        """INVITE until a final answer; True when the call was answered."""
        result = self.result
        retried_503 = False
        answered_nonces: set[str] = set()
        while True:
            self.cseq += 1
            self.invite_cseq, branch = self.cseq, new_branch()
            offer = sdp.offer(self.local_ip, self.rtp.local_port, session_id=self.session_id)  # type: ignore[union-attr]
            invite = self.request(
                "INVITE", self.spec.to, branch=branch, cseq=self.cseq, extra=tuple(self.auth.items()), body=offer
            )
            final, cancelled_by = await self.invite_transaction(invite, branch)
            if final is None:
                if cancelled_by:
                    result.outcome = NO_ANSWER if cancelled_by == "ring-timeout" else CANCELED
                    result.error = "no final answer to our CANCEL" if self.cancel_sent else ""
                else:
                    result.error = f"no response from the trunk within {64 * self.t1:g} s (RFC 3261 Timer B)"
                return False
            result.sip_code, result.sip_reason = final.status, final.reason
            result.setup_seconds = round(time.time() - result.started_at, 3)
            if 200 <= final.status < 300:
                return await self.answered(final)
            if final.status in (401, 407) and self.spec.username:
                header = "WWW-Authenticate" if final.status == 401 else "Proxy-Authenticate"
                try:
                    challenge = digest.pick(final.get_all(header))
                except digest.DigestError as exc:
                    result.error = f"cannot answer the trunk's {final.status} challenge: {exc}"
                    return False
                if challenge.nonce in answered_nonces or (answered_nonces and not challenge.stale):
                    result.error = (
                        f"the trunk rejected the credentials of user {self.spec.username!r} ({final.status} again)"
                    )
                    return False
                answered_nonces.add(challenge.nonce)
                name = "Authorization" if final.status == 401 else "Proxy-Authorization"
                self.auth[name] = digest.authorization(
                    challenge,
                    method="INVITE",
                    uri=self.spec.to,
                    username=self.spec.username,
                    password=self.spec.password,
                )
                continue
            if final.status in (401, 407):
                result.error = f"the trunk asks for credentials ({final.status}) and none are configured"
                return False
            if final.status == 503:
                retry_after = _retry_after(final.get("retry-after"))
                if retry_after is not None and retry_after <= self.spec.max_retry_after and not retried_503:
                    retried_503 = True
                    log.info("call %s: 503, retrying in %s s", result.call_id, retry_after)
                    if await self.wait_or_abort(retry_after):
                        result.outcome = CANCELED
                        return False
                    continue
                result.retry_after = retry_after
            if self.cancelled_by and final.status == 487:
                result.outcome = NO_ANSWER if self.cancelled_by == "ring-timeout" else CANCELED
            else:
                result.outcome = outcome_for(final.status)
            if result.outcome == FAILED:
                result.error = f"the trunk answered {final.status} {final.reason}".strip()
            return False

    async def invite_transaction(self, invite: bytes, branch: str) -> tuple[Message | None, str]:
        """Send the INVITE (retransmitting on UDP) and wait for its final response; CANCEL on ring timeout."""
        assert self.transport is not None
        queue = self.open_tx(branch, "INVITE")
        self.invite_branch, self.cancel_sent, self.cancelled_by = branch, False, ""
        self.invite_queue = queue
        self.inviting = True
        self.send(invite)
        sent = time.monotonic()
        ring_deadline = sent + self.spec.ring_timeout
        interval = self.t1
        next_retransmit = sent + interval if not self.transport.reliable else float("inf")
        timer_b = sent + 64 * self.t1
        cancel_deadline = float("inf")
        provisional = False
        try:
            while True:
                now = time.monotonic()
                if self.abort.is_set() and not self.cancelled_by:
                    self.cancelled_by = "abort"
                if now >= ring_deadline and not self.cancelled_by:
                    self.cancelled_by = "ring-timeout"
                if self.cancelled_by and provisional and not self.cancel_sent:
                    self.send_cancel()
                    cancel_deadline = now + 64 * self.t1
                if (not provisional and now >= timer_b) or now >= cancel_deadline:
                    self.inviting = False
                    return None, self.cancelled_by
                if not provisional and now >= next_retransmit:
                    self.send(invite)
                    interval *= 2
                    next_retransmit = now + interval
                deadlines = [cancel_deadline]
                if not provisional:
                    deadlines += [next_retransmit, timer_b]
                if not self.cancelled_by:
                    deadlines.append(ring_deadline)
                timeout = max(0.0, min(deadlines) - time.monotonic())
                try:
                    response = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    continue
                if response is None:  # the abort watcher's wake-up
                    continue
                if response.status < 200:
                    provisional = True
                    await self.provisional(response)
                    continue
                self.inviting = False
                if response.status >= 300:
                    ack = self.ack_for_failure(branch, response)
                    self.acks[branch] = ack
                    self.send(ack)
                return response, self.cancelled_by
        finally:
            self.pending.pop((branch, "INVITE"), None)
            self.invite_queue = None

    async def provisional(self, response: Message) -> None:
        if response.status == 100:
            await self.progress(TRYING)
            return
        if response.status == 183 and response.body and self.media is None:
            with contextlib.suppress(sdp.SdpError):  # no usable early media is not a failure
                self.media = sdp.parse(response.body)
                self.rtp.remote = (self.media.ip, self.media.port)  # type: ignore[union-attr]
        await self.progress(TRYING)
        await self.progress(RINGING)

    def cancel_request(self) -> bytes:
        """CANCEL matches the INVITE: same branch, Call-ID, From, To and CSeq number (RFC 3261 9.1)."""
        return serialise(
            f"CANCEL {self.spec.to} SIP/2.0",
            [
                ("Via", self.via(self.invite_branch)),
                ("Max-Forwards", "70"),
                ("From", f"<{self.from_uri}>;tag={self.from_tag}"),
                ("To", f"<{self.spec.to}>"),
                ("Call-ID", self.result.call_id),
                ("CSeq", f"{self.invite_cseq} CANCEL"),
                ("User-Agent", self.spec.user_agent),
            ],
        )

    def send_cancel(self) -> None:
        self.cancel_sent = True
        self.spawn(self.non_invite_transaction(self.cancel_request(), self.invite_branch, "CANCEL"), "sip-cancel")

    def ack_for_failure(self, branch: str, response: Message) -> bytes:
        headers = [
            ("Via", self.via(branch)),
            ("Max-Forwards", "70"),
            ("From", f"<{self.from_uri}>;tag={self.from_tag}"),
            ("To", response.get("to", "") or ""),
            ("Call-ID", self.result.call_id),
            ("CSeq", f"{self.invite_cseq} ACK"),
            ("User-Agent", self.spec.user_agent),
        ]
        return serialise(f"ACK {self.spec.to} SIP/2.0", headers)

    async def answered(self, ok: Message) -> bool:
        result = self.result
        self.to_tag = header_param(ok.get("to", "") or "", "tag") or ""
        contact = ok.get("contact")
        if contact:
            try:  # the target goes into our ACK and BYE start lines: only a URI we can parse
                parse_uri(uri_of(contact))
                self.remote_target = uri_of(contact)
            except SipParseError as exc:
                log.warning("call %s: ignored the 2xx Contact: %s", self.result.call_id, exc)
        self.route_set = list(reversed(ok.get_all("record-route")))
        self.dialog_open = True
        self.ack_2xx = self.request(
            "ACK",
            self.remote_target,
            branch=new_branch(),
            cseq=self.invite_cseq,
            to_tag=self.to_tag,
            extra=tuple(self.auth.items()),
        )
        self.send(self.ack_2xx)
        result.answered_at = time.time()
        try:
            if not ok.body and self.media is None:
                raise sdp.SdpError("the answer carries no SDP")
            if ok.body:
                self.media = sdp.parse(ok.body)
        except sdp.SdpError as exc:
            result.outcome, result.error = FAILED, f"answered, but the media cannot be used: {exc}"
            await self.hang_up()
            return False
        result.outcome = ANSWERED
        result.codec = self.media.codec_name
        await self.progress(TRYING)
        await self.progress(ANSWER)
        return True

    async def talk(self) -> None:
        """Play the clip, collect digits, hang up (or be hung up on)."""
        assert self.rtp is not None and self.media is not None
        result, spec, rtp = self.result, self.spec, self.rtp
        rtp.remote = (self.media.ip, self.media.port)
        rtp.event_pt = self.media.event_pt
        rtp.capture = spec.capture_audio
        rtp.answered = True
        rtp.on_digits = self.collect_digits
        clip = spec.audio if self.media.codec == sdp.PCMU else ulaw_to_alaw(spec.audio)
        self.playback = rtp.play(clip, self.media.codec, result.send_lateness_ms)
        clip_seconds = len(clip) / 8000
        try:  # the bound only matters if pacing broke: a call never outlives its clip by much
            await asyncio.wait_for(
                self.first_of(self.playback.done, self.remote_bye, self.enough_digits, self.abort), clip_seconds + 5
            )
        except TimeoutError:
            log.error("call %s: playback did not finish within %.1f s; hanging up", result.call_id, clip_seconds + 5)
        self.playback.stop()
        result.played_to_end = self.playback.done.result()
        if not (self.remote_bye.is_set() or self.enough_digits.is_set() or self.abort.is_set()):
            with contextlib.suppress(TimeoutError):  # the clip ended (or a digit stopped it): wait for digits
                await asyncio.wait_for(
                    self.first_of(self.remote_bye, self.enough_digits, self.abort), spec.digit_timeout
                )
        rtp.on_digits = lambda digits: None
        self.collect_digits(rtp.decoder.flush())
        if self.remote_bye.is_set():
            result.hangup_by = "remote"
            return
        result.hangup_by = "local"
        await self.hang_up()

    def collect_digits(self, digits: str) -> None:
        if not digits:
            return
        self.result.digits += digits
        if self.spec.stop_on_digit and self.playback is not None:
            self.playback.stop()
        if self.spec.max_digits and len(self.result.digits) >= self.spec.max_digits:
            self.enough_digits.set()

    async def first_of(self, *waitables) -> object:
        """Wait for the first future or event to fire; returns which."""
        waiters = {}
        for item in waitables:
            if isinstance(item, asyncio.Event):
                waiters[asyncio.ensure_future(item.wait())] = item
            else:
                waiters[asyncio.ensure_future(asyncio.shield(item))] = item
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            return waiters[next(iter(done))]
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def hang_up(self) -> None:
        if not self.dialog_open:
            return
        self.dialog_open = False
        for attempt in range(2):
            self.cseq += 1
            branch = new_branch()
            bye = self.request(
                "BYE", self.remote_target, branch=branch, cseq=self.cseq, to_tag=self.to_tag,
                extra=tuple(self.auth.items()) if attempt else (),
            )
            response = await self.non_invite_transaction(bye, branch, "BYE")
            if response is None or response.status not in (401, 407) or not self.spec.username or attempt:
                return
            header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
            try:
                challenge = digest.pick(response.get_all(header))
            except digest.DigestError:
                return
            name = "Authorization" if response.status == 401 else "Proxy-Authorization"
            self.auth[name] = digest.authorization(
                challenge, method="BYE", uri=self.remote_target, username=self.spec.username,
                password=self.spec.password,
            )

    async def non_invite_transaction(self, request: bytes, branch: str, method: str) -> Message | None:
        """RFC 3261 17.1.2: retransmit on UDP at T1 doubling up to T2 until a final response or Timer F."""
        assert self.transport is not None
        queue = self.open_tx(branch, method)
        try:
            self.send(request)
            start = time.monotonic()
            interval = self.t1
            next_retransmit = start + interval if not self.transport.reliable else float("inf")
            timer_f = start + 64 * self.t1
            while True:
                now = time.monotonic()
                if now >= timer_f:
                    return None
                if now >= next_retransmit:
                    self.send(request)
                    interval = min(interval * 2, T2)
                    next_retransmit = now + interval
                try:
                    response = await asyncio.wait_for(queue.get(), max(0.0, min(next_retransmit, timer_f) - now))
                except TimeoutError:
                    continue
                if response is not None and response.status >= 200:
                    return response
                if response is not None:
                    interval = T2
        finally:
            self.pending.pop((branch, method), None)

    async def wait_or_abort(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.abort.wait(), seconds)
        return self.abort.is_set()

    async def watch_abort(self) -> None:
        await self.abort.wait()
        queue = self.invite_queue
        if queue is not None:
            queue.put_nowait(None)

    # --- what arrives -------------------------------------------------------------------------------------
    async def dispatch(self) -> None:
        assert self.transport is not None
        while True:
            message = await self.transport.incoming.get()
            try:
                message.check()
            except SipParseError as exc:
                self.reject(message, exc)
                continue
            try:
                if message.is_request:
                    await self.on_request(message)
                else:
                    self.on_response(message)
            except Exception:  # one bad message must not end the call
                log.exception("call %s: failed to handle %s", self.result.call_id, message.start_line[:60])

    def reject(self, message: Message, error: SipParseError) -> None:
        """Drop a message whose mandatory headers are missing or malformed; a request gets 400 (RFC 3261 8.2.2)."""
        log.warning("call %s: dropped %s: %s", self.result.call_id, message.start_line[:60], error)
        # Without a Via there is nowhere to send a response; an ACK is never answered (RFC 3261 17.2.1).
        if message.is_request and message.method != "ACK" and message.get("via"):
            self.send(response_to(message, 400, "Bad Request"))

    def on_response(self, response: Message) -> None:
        if response.call_id != self.result.call_id:
            return
        number, method = response.cseq
        queue = self.pending.get((response.branch, method))
        if queue is not None:
            queue.put_nowait(response)
        elif method == "INVITE" and 200 <= response.status < 300 and number == self.invite_cseq:
            if self.ack_2xx is not None:  # a retransmitted 2xx: it is ACKed again, every time
                self.send(self.ack_2xx)
        elif method == "INVITE" and response.status >= 300 and response.branch in self.acks:
            self.send(self.acks[response.branch])

    async def on_request(self, request: Message) -> None:
        method = request.method
        if method == "ACK":
            return
        if request.call_id != self.result.call_id or header_param(request.get("to", "") or "", "tag") != self.from_tag:
            self.send(response_to(request, 481, "Call/Transaction Does Not Exist"))
            return
        earlier = self.sent_uas.get(request.branch)
        if earlier is not None:  # a retransmitted request: repeat our answer
            self.send(earlier)
            return
        if method == "BYE":
            reply = response_to(request, 200, "OK")
            self.remote_bye.set()
            self.dialog_open = False
            if self.playback is not None:
                self.playback.stop()
        elif method == "CANCEL":
            reply = response_to(request, 200, "OK")
        elif method == "OPTIONS":
            reply = response_to(request, 200, "OK", extra=[("Allow", ALLOW), ("Accept", "application/sdp")])
        elif method in ("INVITE", "UPDATE"):
            reply = self.answer_offer(request)
        elif method == "INFO":
            reply = self.info_digits(request)
        else:
            reply = response_to(request, 405, "Method Not Allowed", extra=[("Allow", ALLOW)])
        self.sent_uas[request.branch] = reply
        self.send(reply)

    def answer_offer(self, request: Message) -> bytes:
        """A re-INVITE or UPDATE inside the dialog: take the new media address, answer with what we send."""
        if request.body:
            try:
                media = sdp.parse(request.body)
            except sdp.SdpError as exc:
                return response_to(request, 488, "Not Acceptable Here", extra=[("Warning", f'399 herald "{exc}"')])
            if self.media is not None and media.codec != self.media.codec:
                # We keep the codec the clip is already flowing in; the far end offered both or it would not match.
                media = sdp.Media(media.ip, media.port, self.media.codec, media.event_pt, media.direction)
            self.media = media
            if self.rtp is not None:
                self.rtp.remote = (media.ip, media.port)
                self.rtp.event_pt = media.event_pt
        assert self.media is not None and self.rtp is not None
        self.session_version += 1
        body = sdp.answer(
            self.local_ip, self.rtp.local_port, session_id=self.session_id, version=self.session_version,
            codec=self.media.codec, event_pt=self.media.event_pt,
        )
        extra = [("Contact", self.contact()), ("Allow", ALLOW), ("Content-Type", "application/sdp")]
        return response_to(request, 200, "OK", extra=extra, body=body)

    def info_digits(self, request: Message) -> bytes:
        kind = (request.get("content-type", "") or "").split(";")[0].strip().lower()
        if kind in ("application/dtmf-relay", "application/dtmf"):
            text = request.body.decode("ascii", "replace")
            match = re.search(r"Signal\s*=\s*([0-9*#A-Da-d])", text) or re.fullmatch(r"\s*([0-9*#A-Da-d])\s*", text)
            if match and self.dialog_open:
                self.collect_digits(match.group(1).upper())
        return response_to(request, 200, "OK")

    # --- the end ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Release everything the call opened; a call torn down early still tells the far end."""
        if self.transport is not None:
            if self.dialog_open:  # cancelled or crashed mid-call: one BYE, unacknowledged, beats a hanging call
                self.cseq += 1
                self.send(
                    self.request("BYE", self.remote_target, branch=new_branch(), cseq=self.cseq, to_tag=self.to_tag)
                )
                self.dialog_open = False
            elif self.inviting and not self.cancel_sent:
                self.send(self.cancel_request())
        if self.playback is not None:
            self.playback.stop()
        for task in self.tasks:
            task.cancel()
        if self.rtp is not None:
            self.rtp.close()
        if self.transport is not None:
            self.transport.close()


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def _retry_after(value: str | None) -> float | None:
    match = re.match(r"[ \t]*([0-9]{1,9})(?![0-9])", value or "")  # ASCII: "٥" is no delta-seconds
    return float(match.group(1)) if match else None


def _quantile(ordered: list[float], q: float) -> float:
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]
