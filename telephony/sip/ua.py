"""The user agent client: one outbound call from INVITE to BYE, and what became of it.

    result = await place_call(CallSpec(to="sip:+8613800138000@trunk.example:5060", audio=clip))

It speaks RFC 3261 for a UAC: INVITE client transaction with Timer A/B on UDP, ACK for every final response
(and for each retransmitted 2xx), CANCEL after the ring timeout, digest answers to 401 and 407, one retry of
a 503 whose Retry-After is short, BYE in either direction, and sane answers to requests inside the dialog
(OPTIONS, re-INVITE, UPDATE, INFO digits). Audio is the pre-rendered clip, paced by rtp.Pacer; digits are
RFC 4733 events (and SIP INFO). Requests always go to the trunk (the outbound proxy), whatever the Contact.

With a call flow (CallSpec.flow) the call plays the flow's clips step by step instead: a menu's clips stop at
the first key (keys typed ahead count for the next menu), each key or silence goes to the flow for the next
step, and a transfer is a REFER (RFC 3515) whose outcome comes back in NOTIFY sipfrags. The flow itself (what
a key means, what is recorded) is the caller's: the user agent only plays, listens and transfers.

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
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from telephony.sip import amd, digest, keywords, sdp, srtp, srv, stun
from telephony.sip.amd import AmdDetector
from telephony.sip.announce import AnnouncementMatcher, SitListener, decode
from telephony.sip.g711 import ulaw_to_alaw
from telephony.sip.message import (
    Message,
    SipParseError,
    ascii_number,
    header_param,
    new_branch,
    new_tag,
    response_to,
    serialise,
    split_values,
    uri_host,
    uri_of,
)
from telephony.sip.rtp import PTIME, Playback, RtpStream
from telephony.sip.transport import Transport, TransportError, open_transport
from telephony.sip.types import (
    AMD_MODES,
    ANSWER,
    ANSWERED,
    BUSY,
    CANCELED,
    DECLINED,
    FAILED,
    INVALID_NUMBER,
    NO_ANSWER,
    PRIVACY_VALUES,
    RINGING,
    SRTP_MODES,
    TRYING,
    CallResult,
    CallSpec,
    FlowDriver,
    FlowStep,
    ProgressCallback,
    quote_display_name,
)

log = logging.getLogger(__name__)
T2 = 4.0  # RFC 3261: the longest retransmit interval of a non-INVITE request
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, NOTIFY, PRACK"
MAX_REDIRECTS = 3  # 3xx answers followed per call
# What an announcement or SIT means for the call, in the outcome vocabulary (CallResult.announcement keeps the
# finer word: suspended and powered off and unreachable each have their own retry rule).
ANNOUNCED_OUTCOMES = {
    "invalid_number": INVALID_NUMBER, "suspended": FAILED, "powered_off": NO_ANSWER, "unreachable": NO_ANSWER,
    "busy": BUSY,
}  # fmt: skip
# SIT codes (Telcordia): vacant code and intercept say the number is wrong; no circuit and reorder, a network
# that could not complete the call now. Others: a failure with the code kept.
SIT_GRACE = 5.0  # seconds after a SIT for the announcement that follows it to be recognised
ASR_EVERY = 3.0  # seconds of new carrier audio between transcriptions
ASR_WINDOW = 12.0  # seconds of the latest carrier audio transcribed each time
ASR_FINAL_WAIT = 5.0  # seconds a call waits at its end for the recogniser's last word
SIT_OUTCOMES = {"VC": INVALID_NUMBER, "IC": INVALID_NUMBER, "NC": FAILED, "RO": FAILED, "IO": FAILED}
FINISH_KEY = "#"  # ends a flow's key wait without a key, like Twilio's <Gather> finishOnKey
_SIPFRAG = re.compile(r"\s*SIP/2\.0 ([1-6][0-9]{2})\b")
# ASCII digits in the port: \d alone would take "٥٠٦٠" (and int() would read it as 5060).
_URI = re.compile(r"^(sips?):(?:([^@;?\s]+)@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]{1,5}))?([;?]\S*)?$")
# RFC 3966 tel: a global number (+ and digits, visual separators allowed) or a local one with a phone-context.
_TEL = re.compile(r"^tel:(\+[0-9().-]*[0-9][0-9().-]*|[0-9A-Fa-f*#().-]*[0-9A-Fa-f*#][0-9A-Fa-f*#().-]*)((?:;[^;\s]+)*)$")
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


def asserted_identity_problem(uri: str) -> str | None:
    """Why `uri` cannot be a P-Asserted-Identity (RFC 3325: a sip:, sips: or tel: URI), or None."""
    if any(char in uri for char in '<>"') or any(char.isspace() for char in uri):
        return f"{uri[:80]!r} is not a bare URI: no spaces, quotes or <> (the display name has its own field)."
    if uri.startswith("tel:"):
        match = _TEL.match(uri)
        if match is None:
            return f"{uri[:80]!r} is not a tel: URI like tel:+862161234567."
        if not match.group(1).startswith("+") and ";phone-context=" not in match.group(2).lower():
            return f"{uri[:80]!r} is a local number: a tel: URI needs +country code or ;phone-context=."
        return None
    try:
        parse_uri(uri)
    except SipParseError:
        return f"{uri[:80]!r} is neither a SIP URI (sip:USER@HOST) nor a tel: URI (tel:+NUMBER)."
    return None


def check_presentation(spec: CallSpec) -> None:
    """ValueError naming what is wrong with the call's display name, asserted identity or privacy."""
    quote_display_name(spec.display_name)
    if spec.asserted_identity:
        problem = asserted_identity_problem(spec.asserted_identity)
        if problem:
            raise ValueError(f"P-Asserted-Identity: {problem}")
    if spec.privacy not in PRIVACY_VALUES:
        raise ValueError(f"Privacy must be one of {', '.join(map(repr, PRIVACY_VALUES))}, not {spec.privacy[:20]!r}")


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
    check_presentation(spec)
    if spec.srtp not in SRTP_MODES:
        raise ValueError(f"srtp must be one of {', '.join(map(repr, SRTP_MODES))}, not {spec.srtp[:20]!r}")
    if spec.amd not in AMD_MODES:
        raise ValueError(f"amd must be one of {', '.join(map(repr, AMD_MODES))}, not {spec.amd[:20]!r}")
    hops, route_note = await next_hops(spec, to)
    spec = replace(spec, call_id=spec.call_id or f"{secrets.token_hex(12)}@herald")  # one Call-ID on every hop
    started_at = time.time()
    failovers: list[str] = []
    for index, hop in enumerate(hops):
        call = _Call(spec, to, on_progress, abort, hop)
        try:
            result = await call.run()
        finally:
            call.close()
        why = call.failover_reason()
        if why is None or index == len(hops) - 1:
            break
        failovers.append(f"{call.trunk}: {why}")
        log.warning("call %s: %s %s; trying %s next", spec.call_id, call.trunk, why, hops[index + 1])
    result.started_at, result.failovers, result.route_note = started_at, failovers, route_note
    return result


async def next_hops(spec: CallSpec, to: SipUri) -> tuple[list[srv.Hop], str]:
    """The servers to try, in order (telephony.sip.srv), and why SRV records were not used when asked for."""
    note = ""
    # RFC 3263 4.2: without a port, sip: over TLS (and sips:) goes to 5061, the rest to 5060.
    direct = srv.Hop(to.host, to.port or (5061 if spec.transport == "tls" else to.default_port))
    if spec.proxy is not None:
        hops = [srv.Hop(*spec.proxy)]
    elif spec.srv and not srv.is_address(to.host):
        hops, note = await srv.lookup(to.host, spec.transport, servers=spec.dns_servers)
        if not hops:
            hops = [direct]
            log.info("SRV: %s; sending to %s", note, direct)
    else:
        hops = [direct]
    for host, port in spec.backup_hops:
        if srv.Hop(host, port) not in hops:
            hops.append(srv.Hop(host, port))
    return srv.order_by_health(hops[: srv.MAX_HOPS], spec.down_hops), note


class _Call:
    def __init__(
        self, spec: CallSpec, to: SipUri, on_progress: ProgressCallback | None, abort, hop: srv.Hop | None = None
    ) -> None:
        self.spec, self.to = spec, to
        self.hop = hop or srv.Hop(*(spec.proxy or (to.host, to.default_port)))
        self.external_ip = spec.external_ip  # or what the STUN server says, once run() asked it
        self.rang = False  # an 18x arrived: the callee's phone may have rung, so no other server is tried
        self.target = spec.to  # the INVITE's request URI: `to`, or where a 3xx redirected the call
        self.on_progress = on_progress
        # Set by the caller (shutdown) through `caller_abort`, or by the user agent itself when it gives the call up
        # (a hold past max_hold, an expired session): the caller's event is never set from here.
        self.caller_abort: asyncio.Event | None = abort
        self.abort = asyncio.Event()
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
        self.held_since: float | None = None  # time.monotonic() the far end's hold began; None when not held
        # What carriers play instead of a SIP code (telephony.sip.announce): listened for from the first early
        # media packet to `listen_after_answer` seconds after the answer.
        self.sit = SitListener() if spec.detect_sit else None
        self.matcher = AnnouncementMatcher(list(spec.announcements)) if spec.announcements else None
        self.announced = asyncio.Event()
        # Early media (and the first seconds after an answer) for the recogniser: 8 kHz floats, at most ASR_WINDOW.
        self.asr_samples: list[np.ndarray] = []
        self.asr_new = 0  # samples since the last transcription
        self.asr_task: asyncio.Task | None = None
        self.carrier_listening = self.sit is not None or self.matcher is not None or spec.transcribe is not None
        self.amd = AmdDetector(wait_for_end=spec.amd == "DetectMessageEnd") if spec.amd else None
        self.machine = asyncio.Event()  # detection found a machine: the message stops
        self.greeting_ended = asyncio.Event()  # DetectMessageEnd: its greeting ended (the beep)
        self.srtp_key = srtp.MasterKey.random() if spec.srtp else None  # ours, for what we send
        self.offer_srtp = spec.srtp == "required"  # "optional" starts with plain RTP and turns on after a 488
        self.their_key: srtp.MasterKey | None = None
        self.heard_seq: int | None = None
        self.stop_listening_at = float("inf")  # time.monotonic() to stop: the answer + listen_after_answer
        self.remote_bye = asyncio.Event()
        self.enough_digits = asyncio.Event()
        self.progress_sent: set[str] = set()
        self.sent_uas: dict[str, bytes] = {}  # our responses by request branch, for retransmitted requests
        self.route_set: list[str] = []
        self.min_se = 0  # seconds: the Min-SE a 422 asked for; 0 before one
        self.session_refresh: asyncio.Task | None = None  # RFC 4028: our refreshes, or the watch on the far end's
        self.session_seconds = 0  # the session interval in force (Session-Expires); 0: no session timer
        self.we_refresh = True  # who refreshes it: us, or the far end
        self.last_refresh = 0.0  # time.monotonic() of the answer or the latest session refresh either way
        self.last_rseq: int | None = None  # RSeq of the last reliable provisional response PRACKed (RFC 3262)
        self.remote_target = spec.to
        self.invite_branch = ""
        self.invite_queue: asyncio.Queue | None = None
        self.inviting = self.cancel_sent = False
        self.cancel_answered = False  # a final response to our CANCEL arrived
        self.trunk = ""  # where requests go, in words: "host:port (transport)"
        self.cancelled_by = ""
        self.keys: deque[str] = deque()  # flow calls: keys pressed in a menu, not yet handed to the flow
        self.key_pressed = asyncio.Event()  # set while `keys` holds any
        self.listening = False  # flow calls: keys count (a menu is playing or waiting); False after the last menu
        self.refer_final: asyncio.Future[int] | None = None  # the final status a NOTIFY sipfrag reported

    # --- plumbing -----------------------------------------------------------------------------------------
    @property
    def local_ip(self) -> str:
        assert self.transport is not None
        return self.transport.local[0]

    @property
    def advertised_ip(self) -> str:
        """The address the far end should reach us at (Contact, SDP): the NAT's public one when configured."""
        return self.external_ip or self.local_ip

    @property
    def from_uri(self) -> str:
        return self.spec.from_uri or f"sip:herald@{uri_host(self.advertised_ip)}"

    @property
    def from_header(self) -> str:
        """Our From, the same on every request of the call: [display name] <uri>;tag."""
        name = self.spec.display_name.strip()
        return f"{quote_display_name(name) + ' ' if name else ''}<{self.from_uri}>;tag={self.from_tag}"

    def presentation(self) -> list[tuple[str, str]]:
        """The INVITE's caller presentation headers (RFC 3325): P-Asserted-Identity and Privacy, when set."""
        headers = []
        if self.spec.asserted_identity:
            name = self.spec.display_name.strip()
            prefix = quote_display_name(name) + " " if name else ""
            headers.append(("P-Asserted-Identity", f"{prefix}<{self.spec.asserted_identity}>"))
        if self.spec.privacy:
            headers.append(("Privacy", self.spec.privacy))
        return headers

    def via(self, branch: str) -> str:
        assert self.transport is not None
        ip, port = self.transport.local
        return f"SIP/2.0/{self.transport.kind.upper()} {uri_host(ip)}:{port};branch={branch};rport"

    def contact(self) -> str:
        assert self.transport is not None
        ip, port = self.advertised_ip, self.transport.local[1]
        suffix = "" if self.transport.kind == "udp" else f";transport={self.transport.kind}"
        return f"<sip:herald@{uri_host(ip)}:{port}{suffix}>"

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
            ("From", self.from_header),
            ("To", to),
            ("Call-ID", self.result.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        if method in ("INVITE", "UPDATE", "REFER"):
            headers += [("Contact", self.contact()), ("Allow", ALLOW)]
        if method == "INVITE":
            headers += [*self.presentation(), ("Supported", "100rel, timer")]
            if self.min_se:  # a 422 asked for at least this (RFC 4028 6)
                headers += [("Session-Expires", str(self.min_se)), ("Min-SE", str(self.min_se))]
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
        self.trunk = result.trunk = f"{self.hop} ({self.spec.transport})"
        try:
            self.transport = await open_transport(
                self.spec.transport, self.hop.host, self.hop.port, self.spec.local_ip,
                server_hostname=self.hop.tls_name, tls=self.spec.tls, local_port=self.spec.local_port,
                call_id=result.call_id,
            )  # fmt: skip
            self.rtp = await RtpStream.open(self.transport.local[0], self.spec.rtp_port_range)
            self.rtp.symmetric = self.spec.symmetric_rtp
        except (TransportError, OSError) as exc:
            result.error = str(exc)
            result.ended_at = time.time()
            return result
        if self.spec.stun_server and not self.external_ip:
            try:
                self.external_ip = await stun.public_ip(self.spec.stun_server)
            except (stun.StunError, OSError, ValueError) as exc:
                log.warning("call %s: advertising the local address %s: %s", result.call_id, self.local_ip, exc)
        if self.carrier_listening or self.amd is not None:
            self.rtp.on_audio = self.received
        self.spawn(self.dispatch(), "sip-dispatch")
        self.spawn(self.watch_abort(), "sip-abort")
        if self.caller_abort is not None:
            self.spawn(self.relay_abort(self.caller_abort), "sip-caller-abort")
        try:
            if await self.invite():
                await self.talk()
        finally:
            await self.last_words()
            result.ended_at = time.time()
            if result.announcement or result.sit:
                self.take_announcement()
            self.set_hold(False)  # a hold still on at the end counts up to here
            if result.answered_at is not None and self.rtp is not None and self.spec.rtcp_interval > 0:
                self.rtp.send_rtcp(cname=self.cname, bye=True)  # our stream ends (RFC 3550 6.6)
            if result.answered_at is not None:
                # Talk time ends with the BYE (ours sent or theirs received), not when our BYE's transaction did.
                talk_end = result.hung_up_at if result.hung_up_at is not None else result.ended_at
                result.talk_seconds = round(talk_end - result.answered_at, 3)
            if self.rtp is not None:
                result.rtp_packets_sent, result.rtp_bytes_sent = self.rtp.packets_sent, self.rtp.bytes_sent
                result.rtp_packets_received = self.rtp.packets_received
                result.silence_packets_sent = self.rtp.silence_packets_sent
                result.rtcp_reports_sent = self.rtp.rtcp_sent
                result.rtcp_packets_received = self.rtp.rtcp_packets_received
                if self.rtp.reception is not None:
                    report = self.rtp.reception
                    result.far_end_fraction_lost = round(report.fraction_lost, 4)
                    result.far_end_cumulative_lost = report.cumulative_lost
                    result.far_end_jitter_ms = report.jitter_ms
                result.early_media_packets = self.rtp.early_packets
                if self.rtp.srtp_in is not None:
                    result.srtp_rejected = self.rtp.srtp_in.rejected
                if self.rtp.latched is not None and self.rtp.latched != self.rtp.sdp_remote:
                    result.rtp_latched = f"{uri_host(self.rtp.latched[0])}:{self.rtp.latched[1]}"
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

    def our_crypto(self) -> str:
        """Our a=crypto value when we offer SRTP, else ""."""
        return srtp.crypto_attribute(1, self.srtp_key) if self.offer_srtp and self.srtp_key is not None else ""

    def use_keys(self, media: sdp.Media) -> None:
        """Agree SRTP from an answer (RFC 4568 6.3): it must accept our suite under our tag with its own key. An
        answer without SRTP to an SRTP offer cannot be used (SrtpError); with SRTP keys from then on, in and out."""
        if not self.offer_srtp:
            if media.profile == "RTP/SAVP":
                raise srtp.SrtpError("the far end answered SRTP (RTP/SAVP) to an offer of plain RTP")
            return
        if media.profile != "RTP/SAVP":
            raise srtp.SrtpError(f"the far end answered {media.profile}, not SRTP, to an offer of SRTP")
        keys = [srtp.parse_crypto(value) for value in media.crypto]
        key = next((key for tag, suite, key in keys if tag == 1 and key is not None), None)
        if key is None:
            offered = ", ".join(f"{tag} {suite}" for tag, suite, _ in keys) or "none"
            raise srtp.SrtpError(f"the far end accepted no crypto suite we offered ({srtp.SUITE}); it sent: {offered}")
        assert self.rtp is not None and self.srtp_key is not None
        if self.rtp.srtp_out is None:
            self.rtp.srtp_out = srtp.Sender(self.srtp_key)
        if key != self.their_key:
            self.rtp.srtp_in, self.their_key = srtp.Receiver(key), key
        self.result.srtp = True

    def failover_reason(self) -> str | None:
        """Why another server should get this call, or None when this one's answer stands. Only before anything
        rang (an 18x) and before we CANCELled: the callee's phone must never ring twice for one call. A server we
        cannot reach, one that stays silent (Timer B), a 408 and any 5xx (a 503 after its one retry) say the server
        could not take the call; 6xx, 4xx, a SIT tone or an announcement say something about the callee."""
        result = self.result
        if self.rang or self.cancel_sent or self.abort.is_set() or result.answered_at is not None:
            return None
        if result.announcement or result.sit:
            return None
        code = result.sip_code
        if code is None:
            return (result.error or "no answer") if result.outcome == FAILED else None
        if code == 408 or 500 <= code < 600:
            return f"answered {code} {result.sip_reason}".strip()
        return None

    async def invite(self) -> bool:
        """INVITE until a final answer; True when the call was answered."""
        result = self.result
        retried_503 = False
        answered_nonces: set[str] = set()
        tried = {self.target}
        while True:
            self.cseq += 1
            self.invite_cseq, branch = self.cseq, new_branch()
            offer = sdp.offer(
                self.advertised_ip, self.rtp.local_port, session_id=self.session_id,  # type: ignore[union-attr]
                crypto=self.our_crypto(),
            )
            invite = self.request(
                "INVITE", self.target, branch=branch, cseq=self.cseq, extra=tuple(self.auth.items()), body=offer
            )
            final, cancelled_by = await self.invite_transaction(invite, branch)
            if final is None:
                if cancelled_by and self.cancel_sent and not self.cancel_answered:
                    # It sent a provisional response, then answered neither the INVITE nor our CANCEL: the trunk
                    # went silent mid-call setup. Failed (counted against the trunk), not the callee's no-answer.
                    result.error = (
                        f"the trunk {self.trunk} answered neither the INVITE nor our CANCEL within "
                        f"{64 * self.t1:g} s (Timer F)"
                    )
                    result.outcome = FAILED if cancelled_by == "ring-timeout" else CANCELED
                elif cancelled_by:
                    result.outcome = NO_ANSWER if cancelled_by == "ring-timeout" else CANCELED
                    result.error = "no final answer to our CANCEL" if self.cancel_sent else ""
                else:
                    # Not even a 100 Trying: the trunk is down or unreachable. Failed, so the breaker sees it.
                    result.error = (
                        f"the trunk {self.trunk} did not answer the INVITE within {64 * self.t1:g} s (Timer B)"
                    )
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
                    uri=self.target,
                    username=self.spec.username,
                    password=self.spec.password,
                )
                continue
            if final.status in (401, 407):
                result.error = f"the trunk asks for credentials ({final.status}) and none are configured"
                return False
            if final.status == 488 and self.spec.srtp == "optional" and not self.offer_srtp:
                log.info("call %s: 488 to plain RTP; offering SRTP", result.call_id)
                self.offer_srtp = True  # the trunk wants its media encrypted
                continue
            if final.status == 422 and not self.min_se:
                try:
                    min_se = ascii_number(
                        (final.get("min-se", "") or "").split(";")[0].strip(), where="Min-SE", limit=86400
                    )
                except SipParseError as exc:
                    result.error = f"the trunk answered 422 Session Interval Too Small without a usable Min-SE: {exc}"
                    return False
                log.info("call %s: 422, retrying with Session-Expires %s", result.call_id, min_se)
                self.min_se = max(min_se, 90)  # RFC 4028 4: never below 90 s
                continue
            if 300 <= final.status < 400:
                target, why = self.redirect_target(final, tried)
                if target is None:
                    result.error = f"the trunk redirected the call ({final.status} {final.reason}): {why}".strip()
                    result.outcome = FAILED
                    return False
                log.info("call %s: %s, following it to %s", result.call_id, final.status, target)
                result.redirects.append(target)
                tried.add(target)
                self.target = self.remote_target = target
                self.auth.clear()  # credentials answer a challenge for one request URI; the new target's comes anew
                answered_nonces.clear()
                continue
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

    def redirect_target(self, response: Message, tried: set[str]) -> tuple[str | None, str]:
        """Where a 3xx sends the call (RFC 3261 8.1.3.4): its best Contact we may dial, or None and why not.

        Only through the configured trunk: a contact on another host is followed only when the trunk is an outbound
        proxy that routes it, never dialled directly (it would take our credentials and the call elsewhere). A tel:
        contact is the number at the trunk. At most MAX_REDIRECTS, and never a target already tried (a loop)."""
        if len(self.result.redirects) >= MAX_REDIRECTS:
            return None, f"more than {MAX_REDIRECTS} redirects; not followed"
        contacts = []
        for value in response.get_all("contact"):
            for contact in split_values(value):
                q = header_param(contact, "q")
                try:
                    weight = float(q) if q is not None else 1.0
                except ValueError:
                    weight = 0.0
                contacts.append((-weight, len(contacts), uri_of(contact)))
        if not contacts:
            return None, "no Contact to follow"
        why = ""
        for _, _, uri in sorted(contacts):
            if uri.startswith("tel:"):
                number = uri[4:].split(";", 1)[0]
                if not _TEL.match(uri) or not number.startswith("+"):
                    why = f"{uri[:80]} is not a global tel: number"
                    continue
                uri = self.refer_uri(re.sub(r"[().-]", "", number))
            try:
                parsed = parse_uri(uri)
            except SipParseError as exc:
                why = str(exc)
                continue
            same_trunk = (parsed.host, parsed.default_port) == (self.to.host, self.to.default_port)
            if not (same_trunk or self.spec.proxy):
                why = f"{uri[:80]} is on another host than the trunk {self.trunk}; not followed"
                continue
            if uri in tried:
                why = f"{uri[:80]} was tried already (a redirect loop)"
                continue
            return uri, ""
        return None, why

    async def invite_transaction(self, invite: bytes, branch: str) -> tuple[Message | None, str]:
        """Send the INVITE (retransmitting on UDP) and wait for its final response; CANCEL on ring timeout.

        The ring timeout runs from the first provisional response: before one, nothing says the trunk took the
        call, and RFC 3261 9.1 forbids a CANCEL anyway, so Timer B (64 x T1) alone decides. A trunk that never
        answers is then a failure naming it, not a no-answer that would be redialled with no breaker tripping."""
        assert self.transport is not None
        queue = self.open_tx(branch, "INVITE")
        self.invite_branch, self.cancel_sent, self.cancelled_by = branch, False, ""
        self.invite_queue = queue
        self.inviting = True
        self.send(invite)
        sent = time.monotonic()
        ring_deadline = float("inf")  # set by the first provisional response
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
                if self.announced.is_set() and not self.cancelled_by:
                    self.cancelled_by = "announcement"  # the carrier said what became of the call: no need to wait
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
                    if not provisional:
                        ring_deadline = time.monotonic() + self.spec.ring_timeout
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
        self.rang = True
        if "100rel" in {t.strip().lower() for t in (response.get("require", "") or "").split(",")}:
            self.acknowledge_reliable(response)
        if response.status == 183 and response.body and self.media is None:
            with contextlib.suppress(sdp.SdpError, srtp.SrtpError):  # no usable early media is not a failure
                media = sdp.parse(response.body)
                self.use_keys(media)
                self.media = media
                self.rtp.aim((self.media.ip, self.media.port))  # type: ignore[union-attr]
        await self.progress(TRYING)
        await self.progress(RINGING)

    def acknowledge_reliable(self, response: Message) -> None:
        """PRACK a reliable provisional response (RFC 3262 4), once per RSeq, in order; the trunk retransmits
        it until our PRACK arrives, and stops the call after 64 x T1 without one."""
        try:
            rseq = ascii_number((response.get("rseq", "") or "").strip(), where="RSeq", limit=2**31 - 1)
        except SipParseError as exc:
            log.warning("call %s: a reliable %s without a usable RSeq: %s", self.result.call_id, response.status, exc)
            return
        if self.last_rseq is not None and rseq <= self.last_rseq:
            return  # a retransmission: its PRACK is on its way (and retransmitted on its own)
        if self.last_rseq is not None and rseq != self.last_rseq + 1:
            log.warning("call %s: RSeq %s after %s; not acknowledged", self.result.call_id, rseq, self.last_rseq)
            return
        self.last_rseq = rseq
        # The early dialog (RFC 3261 12.1.2): the provisional's To tag, Contact and Record-Route; the 2xx's replace them.
        to_tag = header_param(response.get("to", "") or "", "tag") or ""
        contact = response.get("contact")
        target = self.remote_target
        if contact:
            with contextlib.suppress(SipParseError):
                parse_uri(uri_of(contact))
                target = uri_of(contact)
        self.route_set = list(reversed(response.get_all("record-route")))
        self.cseq += 1
        branch = new_branch()
        prack = self.request(
            "PRACK", target, branch=branch, cseq=self.cseq, to_tag=to_tag,
            extra=(("RAck", f"{rseq} {self.invite_cseq} INVITE"), *self.auth.items()),
        )
        self.spawn(self.prack(prack, branch, rseq), "sip-prack")

    async def prack(self, request: bytes, branch: str, rseq: int) -> None:
        response = await self.non_invite_transaction(request, branch, "PRACK")
        if response is None or not 200 <= response.status < 300:
            got = f"{response.status} {response.reason}" if response is not None else "no answer"
            log.warning("call %s: PRACK for RSeq %s got %s", self.result.call_id, rseq, got)

    # --- session timers (RFC 4028) ------------------------------------------------------------------------
    def session_interval(self, message: Message) -> tuple[int, str] | None:
        """(Session-Expires seconds, refresher) a message sets, or None when it sets none (or a broken one)."""
        value = message.get("session-expires") or ""
        if not value:
            return None
        number, _, params = value.partition(";")
        try:
            seconds = ascii_number(number.strip(), where="Session-Expires", limit=86400)
        except SipParseError as exc:
            log.warning("call %s: ignored a Session-Expires: %s", self.result.call_id, exc)
            return None
        return max(seconds, 1), (header_param(";" + params, "refresher") or "").lower()

    def start_session_timer(self, ok: Message) -> None:
        """The 2xx to our INVITE set a session interval: we refresh it at half time when we are the refresher
        (refresher=uac, or none named), else we watch that the far end does."""
        self.last_refresh = time.monotonic()
        interval = self.session_interval(ok)
        if interval is not None:
            self.session_seconds, self.we_refresh = interval[0], interval[1] != "uas"
            self.watch_session()

    def watch_session(self) -> None:
        if self.session_refresh is None and self.dialog_open:
            self.session_refresh = self.spawn(self.keep_session(), "sip-session-timer")

    async def keep_session(self) -> None:
        """Refresh the session at half its interval when we are the refresher; otherwise end the call (BYE) when
        the far end lets it run out: at the expiry less min(32 s, a third of the interval) (RFC 4028 10)."""
        while self.dialog_open:
            seconds = self.session_seconds
            due = self.last_refresh + (seconds / 2 if self.we_refresh else seconds - min(32.0, seconds / 3))
            now = time.monotonic()
            if now < due:  # looked at again every half second: a refresh either way moves `due`
                if await self.wait_or_abort(min(due - now, 0.5)):
                    return
                continue
            if not self.we_refresh:
                log.warning("call %s: the far end let the session expire (%s s); hanging up", self.result.call_id,
                            seconds)
                self.abort.set()
                return
            self.last_refresh = now
            response = await self.dialog_request(
                "UPDATE", (("Session-Expires", f"{seconds};refresher=uac"), ("Supported", "timer"))
            )
            if not self.dialog_open:
                return
            if response is not None and 200 <= response.status < 300:
                interval = self.session_interval(response)
                if interval is not None:
                    self.session_seconds, self.we_refresh = interval[0], interval[1] != "uas"
            elif response is not None and response.status == 422:
                try:
                    self.session_seconds = ascii_number(
                        (response.get("min-se", "") or "").split(";")[0].strip(), where="Min-SE", limit=86400
                    )
                except SipParseError:
                    log.warning("call %s: 422 to a session refresh without a usable Min-SE", self.result.call_id)
                    self.abort.set()
                    return
                self.last_refresh = 0.0  # again at once, with the interval it asked for
            else:
                got = f"{response.status} {response.reason}" if response is not None else "no answer"
                log.warning("call %s: session refresh got %s; hanging up", self.result.call_id, got)
                self.abort.set()
                return

    def session_answer_headers(self, request: Message) -> list[tuple[str, str]]:
        """The far end refreshed the session with this re-INVITE or UPDATE; our 2xx confirms its interval. It
        names the refresher (uac: itself), or we leave the refreshing to it."""
        interval = self.session_interval(request)
        if interval is None:
            return []
        self.last_refresh = time.monotonic()
        seconds, refresher = interval
        self.session_seconds, self.we_refresh = seconds, refresher == "uas"
        self.watch_session()
        return [("Session-Expires", f"{seconds};refresher={refresher or 'uac'}"), ("Require", "timer")]

    def cancel_request(self) -> bytes:
        """CANCEL matches the INVITE: same branch, Call-ID, From, To and CSeq number (RFC 3261 9.1)."""
        return serialise(
            f"CANCEL {self.target} SIP/2.0",
            [
                ("Via", self.via(self.invite_branch)),
                ("Max-Forwards", "70"),
                ("From", self.from_header),
                ("To", f"<{self.spec.to}>"),
                ("Call-ID", self.result.call_id),
                ("CSeq", f"{self.invite_cseq} CANCEL"),
                ("User-Agent", self.spec.user_agent),
            ],
        )

    def send_cancel(self) -> None:
        self.cancel_sent, self.cancel_answered = True, False
        self.spawn(self.cancel_transaction(), "sip-cancel")

    async def cancel_transaction(self) -> None:
        response = await self.non_invite_transaction(self.cancel_request(), self.invite_branch, "CANCEL")
        self.cancel_answered = response is not None

    def ack_for_failure(self, branch: str, response: Message) -> bytes:
        headers = [
            ("Via", self.via(branch)),
            ("Max-Forwards", "70"),
            ("From", self.from_header),
            ("To", response.get("to", "") or ""),
            ("Call-ID", self.result.call_id),
            ("CSeq", f"{self.invite_cseq} ACK"),
            ("User-Agent", self.spec.user_agent),
        ]
        return serialise(f"ACK {self.target} SIP/2.0", headers)

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
                media = sdp.parse(ok.body)
                self.use_keys(media)
                self.media = media
            elif self.offer_srtp and self.their_key is None:
                raise srtp.SrtpError("the answer has no SRTP keys")
        except (sdp.SdpError, srtp.SrtpError) as exc:
            result.outcome, result.error = FAILED, f"answered, but the media cannot be used: {exc}"
            await self.hang_up()
            return False
        result.outcome = ANSWERED
        result.codec = self.media.codec_name
        self.start_session_timer(ok)
        await self.progress(TRYING)
        await self.progress(ANSWER)
        return True

    async def talk(self) -> None:
        """Play the clip (or run the flow), collect digits, hang up (or be hung up on)."""
        assert self.rtp is not None and self.media is not None
        result, spec, rtp = self.result, self.spec, self.rtp
        rtp.aim((self.media.ip, self.media.port))
        rtp.listen_for_keys(self.media.event_pts)
        rtp.capture = spec.capture_audio
        rtp.answered = True
        rtp.on_digits = self.collect_digits
        self.set_hold(self.media.on_hold)
        self.stop_listening_at = time.monotonic() + spec.listen_after_answer
        self.aim_rtcp()
        if spec.rtcp_interval > 0:
            self.spawn(self.send_reports(spec.rtcp_interval), "sip-rtcp")
        if spec.flow is not None:
            try:
                await self.run_flow(spec.flow)
            finally:
                self.listening = False
                rtp.on_digits = lambda digits: None
            if self.machine.is_set() and not self.call_over():
                await self.machine_answered()
            if self.remote_bye.is_set():
                result.hangup_by = "remote"
                return
            result.hangup_by = "local"
            await self.hang_up()
            return
        clip = spec.audio if self.media.codec == sdp.PCMU else ulaw_to_alaw(spec.audio)
        self.playback = rtp.play(clip, self.media.codec, result.send_lateness_ms)
        await self.await_playback(self.remote_bye, self.enough_digits, self.abort, self.machine, what="the message")
        self.playback.stop()
        result.played_to_end = self.playback.done.result() and not self.machine.is_set()
        if self.machine.is_set() and not self.call_over():
            await self.machine_answered()
        elif not (self.remote_bye.is_set() or self.enough_digits.is_set() or self.abort.is_set()):
            filler = rtp.play_silence(self.media.codec, spec.digit_timeout + 1)
            with contextlib.suppress(TimeoutError):  # the clip ended (or a digit stopped it): wait for digits
                await asyncio.wait_for(
                    self.first_of(self.remote_bye, self.enough_digits, self.abort), spec.digit_timeout
                )
            filler.stop()
        rtp.on_digits = lambda digits: None
        self.collect_digits(rtp.decoder.flush())
        if self.remote_bye.is_set():
            result.hangup_by = "remote"
            return
        result.hangup_by = "local"
        await self.hang_up()

    async def machine_answered(self) -> None:
        """A machine took the call: the message stopped. With DetectMessageEnd and a voicemail clip, wait for the
        end of its greeting (the beep) and play the clip; then the caller hangs up."""
        assert self.rtp is not None and self.media is not None and self.amd is not None
        result, spec = self.result, self.spec
        if not (spec.voicemail and self.amd.wait_for_end and result.answered_by != amd.FAX):
            return
        filler = self.rtp.play_silence(self.media.codec, amd.END_LIMIT_MS / 1000 + 1)
        with contextlib.suppress(TimeoutError):  # the detector itself gives up at END_LIMIT_MS after the answer
            await asyncio.wait_for(
                self.first_of(self.greeting_ended, self.remote_bye, self.abort), amd.END_LIMIT_MS / 1000 + 1
            )
        filler.stop()
        if self.call_over():
            return
        clip = spec.voicemail if self.media.codec == sdp.PCMU else ulaw_to_alaw(spec.voicemail)
        self.playback = self.rtp.play(clip, self.media.codec, result.send_lateness_ms)
        await self.await_playback(self.remote_bye, self.abort, what="the voicemail")
        self.playback.stop()
        result.voicemail_played = self.playback.done.result()

    # --- call flows ---------------------------------------------------------------------------------------
    async def run_flow(self, flow: FlowDriver) -> None:
        """Each step's clips, then a key (or silence) for the flow, until a step ends the call."""
        result = self.result
        step: FlowStep = flow.start()
        while not self.flow_over():
            menu = step.gather
            self.listening = menu is not None
            if menu is None:  # keys typed ahead of the last menu have nowhere to go
                self.keys.clear()
                self.key_pressed.clear()
            await self.play_clips(step.play, stop_on_key=menu is not None)
            if self.flow_over():
                return
            if step.transfer_to:
                connected, why = await self.transfer(step.transfer_to)
                result.transfer = "connected" if connected else f"refused: {why}"
                log.info("call %s: transfer at %s %s", result.call_id, step.node, result.transfer)
                if self.abort.is_set():
                    return  # we gave up on the call, nobody refused the transfer: there is nothing to report
                try:
                    after = await flow.transfer_ended(step.node, connected)
                except Exception:  # the caller's bookkeeping: the callee still hears the fallback we can find
                    log.exception("call %s: the flow failed on the transfer's end", result.call_id)
                    after = None
                if not connected and after is not None and not self.flow_over():
                    await self.play_clips(after.play, stop_on_key=False)
                return
            if menu is None:
                return
            key = await self.next_key()
            if self.flow_over():
                return  # hung up while the menu waited: the walk stops where it is
            try:
                step = await flow.press(menu, step.prompts, key)
            except Exception:
                log.exception("call %s: the flow failed on key %r in menu %r; hanging up", result.call_id, key, menu)
                return

    def call_over(self) -> bool:
        return self.remote_bye.is_set() or self.abort.is_set()

    def flow_over(self) -> bool:
        """The flow stops: the call is over, or a machine answered (the caller decides what it hears)."""
        return self.call_over() or self.machine.is_set()

    def clip(self, name: str) -> bytes:
        if name == "message":
            return self.spec.clips.get(name) or self.spec.audio
        return self.spec.clips.get(name, b"")

    async def play_clips(self, names: tuple[str, ...], *, stop_on_key: bool) -> None:
        """Play clips one after another; with `stop_on_key`, a key pressed (or typed ahead) stops them (barge-in)."""
        assert self.rtp is not None and self.media is not None
        result = self.result
        for name in names:
            if self.flow_over() or (stop_on_key and self.keys):
                return
            clip = self.clip(name)
            if not clip:
                log.error("call %s: the flow has no clip %r; skipped", result.call_id, name)
                continue
            payload = clip if self.media.codec == sdp.PCMU else ulaw_to_alaw(clip)
            self.playback = self.rtp.play(payload, self.media.codec, result.send_lateness_ms)
            await self.await_playback(
                self.remote_bye, self.abort, self.machine, *([self.key_pressed] if stop_on_key else []),
                what=f"clip {name!r}",
            )
            self.playback.stop()
            complete = self.playback.done.result()
            result.clips_played.append(name if complete else f"{name}!")
            if name == "message":
                result.played_to_end = result.played_to_end or complete

    # --- what the carrier plays ------------------------------------------------------------------------------
    def received(self, seq: int, payload: bytes, pt: int) -> None:
        """Each received audio packet: to the carrier's detectors while they listen, and after the answer to
        answering-machine detection until it has said all it will."""
        if self.carrier_listening:
            self.listen(seq, payload, pt)
        if self.amd is not None and self.rtp is not None and self.rtp.answered and not self.amd.done:
            self.detect(payload, pt)
        if not self.carrier_listening and (self.amd is None or self.amd.done) and self.rtp is not None:
            self.rtp.on_audio = None

    def detect(self, payload: bytes, pt: int) -> None:
        assert self.amd is not None
        decision = self.amd.feed_payload(payload, pt)
        if decision is None:
            return
        result = self.result
        result.answered_by, result.amd_reason = decision.answered_by, f"{decision.reason} (at {decision.at_ms} ms)"
        log.info("call %s: answered by %s: %s", result.call_id, decision.answered_by, result.amd_reason)
        if decision is self.amd.end:
            self.greeting_ended.set()
        elif decision.answered_by in (amd.MACHINE_START, amd.FAX):
            self.machine.set()

    def listen(self, seq: int, payload: bytes, pt: int) -> None:
        """Each received audio packet, to the SIT and announcement detectors (on the event loop: ~60-180 µs a
        packet, during early media and the first seconds after the answer only). A few lost packets are fed as
        silence, so the detectors' sense of time stays right."""
        if self.announced.is_set() or time.monotonic() > self.stop_listening_at:
            self.carrier_listening = False
            return
        if self.heard_seq is not None and 1 < seq - self.heard_seq <= 10:
            silence = (b"\xff" if pt == sdp.PCMU else b"\xd5") * len(payload)
            for _ in range(seq - self.heard_seq - 1):
                self.hear(silence, pt)
        if self.heard_seq is None or seq > self.heard_seq:
            self.heard_seq = seq
        self.hear(payload, pt)

    def hear(self, payload: bytes, pt: int) -> None:
        result = self.result
        sit = self.sit.feed(payload, pt) if self.sit is not None else None
        match = self.matcher.feed(payload, pt) if self.matcher is not None and not result.announcement else None
        if sit is not None and not result.sit:
            result.sit = sit.code
            log.info("call %s: SIT %s heard", result.call_id, sit.code)
            if self.matcher is None and self.spec.transcribe is None:
                self.announce()  # without a library, the tones alone end the call
            else:  # the announcement after the tones says more; the tones alone decide if none is recognised
                asyncio.get_running_loop().call_later(SIT_GRACE, lambda: self.announced.is_set() or self.announce())
        if match is not None:
            result.announcement, result.announcement_name = match.outcome, match.name
            log.info("call %s: carrier announcement %s (%s, score %.2f)", result.call_id, match.name, match.outcome,
                     match.score)
            self.announce()
        if self.spec.transcribe is not None and not result.announcement:
            self.asr_samples.append(decode(payload, pt) / 32768.0)
            self.asr_new += len(payload)
            while sum(chunk.size for chunk in self.asr_samples) > ASR_WINDOW * 8000:
                self.asr_samples.pop(0)
            if self.asr_new >= ASR_EVERY * 8000 and (self.asr_task is None or self.asr_task.done()):
                self.asr_new = 0
                self.asr_task = self.spawn(self.recognise(), "sip-asr")

    async def recognise(self) -> None:
        """Transcribe what the carrier played so far (in a thread) and look for its words."""
        if not self.asr_samples or self.result.announcement or self.spec.transcribe is None:
            return
        samples = np.concatenate(self.asr_samples)
        try:
            text = await asyncio.get_running_loop().run_in_executor(None, self.spec.transcribe, samples)
        except Exception as exc:  # the recogniser's failure must not take the call down
            log.warning("call %s: speech recognition failed: %s", self.result.call_id, exc)
            return
        found = keywords.find(text, self.spec.keywords or keywords.DEFAULT_KEYWORDS)
        if found is None or self.result.announcement:
            return
        result = self.result
        result.announcement, result.announcement_name = found[0], f"words:{found[1]}"
        log.info("call %s: carrier announcement by its words %r (%s)", result.call_id, found[1], found[0])
        self.announce()

    async def last_words(self) -> None:
        """At the end of a call the carrier was heard on: what is still unheard goes to the recogniser once
        (bounded: a call ends within ASR_FINAL_WAIT of its hang-up)."""
        if self.spec.transcribe is None or self.result.announcement or not self.asr_samples:
            return
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            if self.asr_task is not None and not self.asr_task.done():
                await asyncio.wait_for(asyncio.shield(self.asr_task), ASR_FINAL_WAIT)
            if not self.result.announcement and self.asr_new >= 8000:  # a second or more not yet heard
                await asyncio.wait_for(self.recognise(), ASR_FINAL_WAIT)

    def announce(self) -> None:
        self.announced.set()
        if self.invite_queue is not None:
            self.invite_queue.put_nowait(None)  # wake the INVITE transaction: it cancels the call
        self.abort.set()  # an answered call hangs up (the announcement is not a person)

    def take_announcement(self) -> None:
        """The outcome is what the carrier announced, not what its SIP answer (183, 487, even 200) said."""
        result = self.result
        outcome = ANNOUNCED_OUTCOMES.get(result.announcement) or SIT_OUTCOMES.get(result.sit)
        if outcome is None:
            return
        what = f"the carrier announced {result.announcement_name} ({result.announcement})" if result.announcement \
            else f"the carrier played SIT {result.sit}"
        result.outcome, result.error, result.played_to_end = outcome, what, False

    # --- RTCP ----------------------------------------------------------------------------------------------
    @property
    def cname(self) -> str:
        return f"herald@{self.local_ip}"

    def aim_rtcp(self) -> None:
        """RTCP goes to the far end's a=rtcp port, else the port after its RTP port (RFC 3550 11)."""
        if self.rtp is not None and self.media is not None and not self.media.hold_address:
            self.rtp.rtcp_remote = (self.media.ip, self.media.rtcp_port or self.media.port + 1)

    async def send_reports(self, interval: float) -> None:
        """A sender report every `interval` seconds, each interval randomised to 0.5-1.5 times (RFC 3550 6.3.1),
        the first after half of one."""
        assert self.rtp is not None
        delay = interval / 2
        while self.dialog_open:
            if await self.wait_or_abort(delay) or not self.dialog_open:
                return
            self.rtp.send_rtcp(cname=self.cname)
            delay = interval * random.uniform(0.5, 1.5)

    async def await_playback(self, *stops, what: str) -> None:
        """Until the clip playing ends or one of `stops` fires. A clip held by the far end waits (rtp.Playback);
        a hold longer than CallSpec.max_hold ends the call. The bound (the rest of the clip and 5 s, renewed while
        the clip moves on or waits on hold) only matters if pacing broke: a call never outlives its clip by much."""
        assert self.playback is not None and self.rtp is not None
        playback, result = self.playback, self.result
        while True:
            sent = playback.sent
            bound = (playback.total - sent) * PTIME + 5
            if self.rtp.held:
                bound = min(bound, max(0.0, self.spec.max_hold - self.hold_time()) + 0.05)
            try:
                await asyncio.wait_for(self.first_of(playback.done, *stops), bound)
                return
            except TimeoutError:
                pass
            if self.rtp.held and self.hold_time() >= self.spec.max_hold:
                log.warning("call %s: on hold for %.0f s; hanging up", result.call_id, self.hold_time())
                self.abort.set()
                return
            if not self.rtp.held and playback.sent == sent:
                log.error("call %s: %s did not finish within %.1f s", result.call_id, what, bound)
                return

    def hold_time(self) -> float:
        """Seconds on hold so far, the hold going on included."""
        ongoing = time.monotonic() - self.held_since if self.held_since is not None else 0.0
        return self.result.held_seconds + ongoing

    def set_hold(self, held: bool) -> None:
        if self.rtp is None or held == self.rtp.held:
            return
        self.rtp.held = held
        if held:
            self.held_since = time.monotonic()
            log.info("call %s: the far end put the call on hold; the clip waits", self.result.call_id)
        elif self.held_since is not None:
            self.result.held_seconds = round(self.result.held_seconds + time.monotonic() - self.held_since, 3)
            self.held_since = None
            log.info("call %s: taken off hold; the clip goes on", self.result.call_id)

    async def next_key(self) -> str:
        """The menu's key: one pressed already, or the first within the digit timeout; "" for none (or #)."""
        assert self.rtp is not None
        if not self.keys:
            assert self.media is not None
            filler = self.rtp.play_silence(self.media.codec, self.spec.digit_timeout + 1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.first_of(self.key_pressed, self.remote_bye, self.abort, self.machine), self.spec.digit_timeout
                )
            filler.stop()
        if not self.keys:
            self.collect_digits(self.rtp.decoder.flush())  # a key whose end packets were lost still counts
        if not self.keys:
            return ""
        key = self.keys.popleft()
        if not self.keys:
            self.key_pressed.clear()
        return "" if key == FINISH_KEY else key

    def refer_uri(self, target: str) -> str:
        """Refer-To for a transfer target: a SIP URI as is, a number as a user at the trunk."""
        if target.startswith(("sip:", "sips:")):
            return target
        port = f":{self.to.port}" if self.to.port else ""
        return f"{self.to.scheme}:{target}@{uri_host(self.to.host)}{port}"

    async def transfer(self, target: str) -> tuple[bool, str]:
        """REFER the callee to `target` (RFC 3515): whether the trunk connected them, and if not, why not."""
        uri = self.refer_uri(target)
        self.refer_final = asyncio.get_running_loop().create_future()
        extra = (("Refer-To", f"<{uri}>"), ("Referred-By", f"<{self.from_uri}>"))
        try:
            response = await asyncio.wait_for(self.dialog_request("REFER", extra), self.spec.refer_timeout)
        except TimeoutError:
            response = None
        if response is None:
            return False, f"no answer to REFER within {self.spec.refer_timeout:g} s"
        if not 200 <= response.status < 300:
            return False, f"the trunk answered the REFER with {response.status} {response.reason}".strip()
        try:
            await asyncio.wait_for(
                self.first_of(self.refer_final, self.remote_bye, self.abort), self.spec.transfer_timeout
            )
        except TimeoutError:
            return False, f"no NOTIFY with the transfer's result within {self.spec.transfer_timeout:g} s"
        if self.refer_final.done():
            code = self.refer_final.result()
            if 200 <= code < 300:
                return True, ""
            return False, f"the transfer ended with SIP {code}"
        if self.remote_bye.is_set():  # accepted, then the trunk took the callee away: done
            return True, ""
        return False, "the call was aborted during the transfer"

    def refer_notify(self, request: Message) -> None:
        """A NOTIFY of our REFER's progress: its message/sipfrag body carries the transfer's status line."""
        event = (request.get("event", "") or "").split(";")[0].strip().lower()
        match = _SIPFRAG.match(request.body.decode("utf-8", "replace"))
        if event != "refer" or match is None or self.refer_final is None or self.refer_final.done():
            return
        code = int(match.group(1))
        if code >= 200:
            self.refer_final.set_result(code)

    def collect_digits(self, digits: str) -> None:
        if not digits:
            return
        self.result.digits += digits
        if self.spec.flow is not None:
            if self.listening:
                self.keys.extend(digits)
                self.key_pressed.set()
            return
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
        self.result.hung_up_at = time.time()
        if await self.dialog_request("BYE") is None:
            log.warning("call %s: the trunk %s did not answer our BYE within %g s", self.result.call_id, self.trunk,
                        64 * self.t1)

    async def dialog_request(self, method: str, extra: tuple[tuple[str, str], ...] = ()) -> Message | None:
        """A request inside the dialog (BYE, REFER), answering one digest challenge; its final response."""
        response = None
        for attempt in range(2):
            self.cseq += 1
            branch = new_branch()
            request = self.request(
                method, self.remote_target, branch=branch, cseq=self.cseq, to_tag=self.to_tag,
                extra=(*(tuple(self.auth.items()) if attempt else ()), *extra),
            )
            response = await self.non_invite_transaction(request, branch, method)
            if response is None or response.status not in (401, 407) or not self.spec.username or attempt:
                return response
            header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
            try:
                challenge = digest.pick(response.get_all(header))
            except digest.DigestError:
                return response
            name = "Authorization" if response.status == 401 else "Proxy-Authorization"
            self.auth[name] = digest.authorization(
                challenge, method=method, uri=self.remote_target, username=self.spec.username,
                password=self.spec.password,
            )
        return response

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

    async def relay_abort(self, caller_abort: asyncio.Event) -> None:
        await caller_abort.wait()
        self.abort.set()

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
            if self.result.hung_up_at is None and self.dialog_open:
                self.result.hung_up_at = time.time()
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
        elif method == "NOTIFY":
            reply = response_to(request, 200, "OK")
            self.refer_notify(request)
        else:
            reply = response_to(request, 405, "Method Not Allowed", extra=[("Allow", ALLOW)])
        self.sent_uas[request.branch] = reply
        self.send(reply)

    def answer_offer(self, request: Message) -> bytes:
        """A re-INVITE or UPDATE inside the dialog: take the new media address, answer with what we send."""
        if request.method == "UPDATE" and not request.body:  # a session refresh alone: no offer, so no answer
            extra = [("Contact", self.contact()), ("Allow", ALLOW), *self.session_answer_headers(request)]
            return response_to(request, 200, "OK", extra=extra)
        if request.body:
            try:
                media = sdp.parse(request.body)
                self.use_keys(media)
            except (sdp.SdpError, srtp.SrtpError) as exc:
                return response_to(request, 488, "Not Acceptable Here", extra=[("Warning", f'399 herald "{exc}"')])
            if self.media is not None and self.media.codec in media.codecs:
                media = replace(media, codec=self.media.codec)  # the codec the clip already flows in, still offered
            elif self.media is not None:
                # Only the other law is offered now (RFC 3264 allows it): the rest of the clip goes out in it.
                log.info("call %s: the far end changed the codec to %s", self.result.call_id, media.codec_name)
                self.result.codec = media.codec_name
                if self.playback is not None:
                    self.playback.switch_codec(media.codec)
            if self.media is not None and media.hold_address:
                media = replace(media, ip=self.media.ip, port=self.media.port)  # c= 0.0.0.0: keep where it was
            self.media = media
            if self.rtp is not None:
                self.rtp.aim((media.ip, media.port))
                self.rtp.listen_for_keys(media.event_pts)
            self.set_hold(media.on_hold)
            self.aim_rtcp()
        assert self.media is not None and self.rtp is not None
        self.session_version += 1
        body = sdp.answer(
            self.advertised_ip, self.rtp.local_port, session_id=self.session_id, version=self.session_version,
            codec=self.media.codec, event_pt=self.media.event_pt,
            direction=self.media.answer_direction if request.body else "sendrecv", crypto=self.our_crypto(),
        )
        extra = [("Contact", self.contact()), ("Allow", ALLOW), *self.session_answer_headers(request),
                 ("Content-Type", "application/sdp")]
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



def _retry_after(value: str | None) -> float | None:
    match = re.match(r"[ \t]*([0-9]{1,9})(?![0-9])", value or "")  # ASCII: "٥" is no delta-seconds
    return float(match.group(1)) if match else None


def _quantile(ordered: list[float], q: float) -> float:
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]
