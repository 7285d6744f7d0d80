"""What a caller hands the user agent (CallSpec) and what it gets back (CallResult)."""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Protocol

from telephony.sip.tls import TlsSettings

# The outcome vocabulary shared with the Twilio provider.
ANSWERED = "answered"
BUSY = "busy"
NO_ANSWER = "no-answer"
FAILED = "failed"
DECLINED = "declined"
INVALID_NUMBER = "invalid-number"
CANCELED = "canceled"
OUTCOMES = (ANSWERED, BUSY, NO_ANSWER, FAILED, DECLINED, INVALID_NUMBER, CANCELED)
AMD_MODES = ("", "Enable", "DetectMessageEnd")
SRTP_MODES = ("", "optional", "required")

# Privacy header values a call may send (RFC 3323 / RFC 3325): "id" asks the trunk to withhold the asserted
# identity from the callee, "none" asks it to pass it on; "" sends no Privacy header (the trunk's default).
PRIVACY_VALUES = ("", "id", "none")
DISPLAY_NAME_MAX = 64  # characters; longer names are cut by most phones and rejected by some trunks

# Progress events passed to CallSpec-level `on_progress` callbacks, in the order they can happen.
TRYING = "trying"  # the far end (or a proxy) sent 100 Trying
RINGING = "ringing"  # 180 Ringing or 183 Session Progress
ANSWER = "answer"  # 2xx to the INVITE, ACK sent; audio starts


class FlowStep(Protocol):
    """One step of a call flow as the user agent runs it (campaigns.callflow.Step has this shape)."""

    @property
    def play(self) -> tuple[str, ...]: ...  # clip names, in order

    @property
    def gather(self) -> str | None: ...  # the menu to wait for a key in; None: the call ends after the clips

    @property
    def prompts(self) -> int: ...  # times the `gather` menu has been offered, this one included

    @property
    def node(self) -> str: ...  # where in the flow this step is (a transfer's node, for its outcome)

    @property
    def transfer_to(self) -> str: ...  # after the clips: REFER the callee here (a sip: URI or an E.164 number)


class FlowDriver(Protocol):
    """Who decides a flow call's next step. The user agent only plays clips, collects keys and transfers."""

    def start(self) -> FlowStep:
        """The first step, once the call is answered (the message, then a key in the root menu)."""
        ...

    async def press(self, menu: str, prompts: int, key: str) -> FlowStep:
        """The callee answered `menu` (offered `prompts` times) with `key`, "" for nothing: the next step."""
        ...

    async def transfer_ended(self, node: str, connected: bool) -> FlowStep | None:
        """The transfer at `node` connected or was refused; a step to play before hanging up, or None."""
        ...


@dataclass(frozen=True)
class CallSpec:
    """One outbound call. `audio` is the clip to play: 8 kHz μ-law bytes (transcoded if the far end picks PCMA)."""

    to: str  # request URI: sip:USER@HOST[:PORT]
    audio: bytes
    from_uri: str = ""  # sip:USER@HOST; default sip:herald@<local ip>
    username: str = ""  # digest credentials; password is never logged or put in a repr
    password: str = field(default="", repr=False)
    transport: str = "udp"  # udp | tcp | tls
    proxy: tuple[str, int] | None = None  # where requests go; default: the host and port of `to`
    # More places requests may go (RFC 3263): `srv` looks up the DNS SRV records of `to`'s host (through
    # `dns_servers`, "ip[:port]" each, or the system's resolver; `to`'s port is used only when the domain has no
    # records, and no lookup is made for an address or with a `proxy`); `backup_hops` ((host, port), …) come
    # after. A hop that cannot be reached, stays silent (Timer B), or answers 408 or 5xx before anything rang is
    # left for the next. Hops in `down_hops` ("host:port", from a health check) are tried last.
    # Behind a NAT: `external_ip` goes into Contact and SDP instead of the local address (Via keeps the local one,
    # with rport); `rtp_port_range` (first, last) holds RTP/RTCP to the ports a firewall opens; `symmetric_rtp`
    # sends our audio where the far end's comes from when that is not its SDP's address.
    external_ip: str = ""
    local_port: int = 0  # UDP: send and listen on this fixed port (shared with every call and registration)
    stun_server: str = ""  # host[:port]: learn `external_ip` from it (cached) when none is given
    rtp_port_range: tuple[int, int] | None = None
    symmetric_rtp: bool = True
    srv: bool = False
    tls: TlsSettings | None = None  # transport "tls": the carrier's CA bundle and our client certificate
    dns_servers: tuple[str, ...] = ()
    backup_hops: tuple[tuple[str, int], ...] = ()
    down_hops: frozenset[str] = frozenset()
    ring_timeout: float = 30.0  # seconds from the first provisional response to a final answer before we CANCEL
    digit_timeout: float = 5.0  # seconds to wait for digits after playback ends
    max_digits: int = 0  # 0: collect until digit_timeout; n: hang up once n digits arrived
    stop_on_digit: bool = False  # stop playback at the first digit (like Twilio's <Gather><Play>)
    max_retry_after: float = 10.0  # a 503 whose Retry-After is at most this is retried once after waiting
    call_id: str = ""  # generated when empty
    local_ip: str = ""  # address to advertise in Via/Contact/SDP; default: the one routing to the proxy
    capture_audio: bool = False  # keep the audio payload the far end sends (tests compare an echo)
    user_agent: str = "Herald"
    t1: float = 0.5  # RFC 3261 T1, the round-trip estimate: retransmissions start here, Timer B is 64 x T1
    # A call flow instead of one clip and a key: `flow` decides each step, `clips` holds every clip it may play
    # (name -> 8 kHz μ-law bytes; "message" defaults to `audio`), `digit_timeout` is each menu's wait for a key.
    flow: FlowDriver | None = None
    clips: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    # Listening to the far end's audio for what carriers play instead of a SIP code (telephony.sip.announce):
    # SIT tones, and recorded announcements matched against `announcements` (announce.Reference); during early
    # media and the first `listen_after_answer` seconds after a 200. A SIT or an announcement ends the call.
    detect_sit: bool = True
    announcements: tuple = field(default=(), repr=False)
    listen_after_answer: float = 6.0
    # And by their words (telephony.sip.keywords), where a recogniser is configured: `transcribe` takes 8 kHz float
    # samples (±1.0) and returns the text; it runs in a thread, every few seconds of what the carrier plays.
    transcribe: Callable[[object], str] | None = field(default=None, repr=False, compare=False)
    keywords: tuple[tuple[str, str], ...] = ()  # (outcome, phrase) pairs; () = telephony.sip.keywords' defaults
    # Answering-machine detection after the answer (telephony.sip.amd), in Twilio's modes: "Enable" decides person
    # or machine, "DetectMessageEnd" also waits for the end of a machine's greeting; "" does none. A machine stops
    # the message: with a `voicemail` clip (μ-law) and DetectMessageEnd, the clip plays after the beep; else we
    # hang up.
    amd: str = ""
    # SRTP with SDES keys (RFC 3711, RFC 4568; telephony.sip.srtp): "" plain RTP; "optional" offers RTP and, when
    # the trunk refuses it (488), SRTP; "required" offers SRTP only and fails a call answered without it.
    srtp: str = ""
    voicemail: bytes = field(default=b"", repr=False)
    rtcp_interval: float = 5.0  # seconds between our RTCP sender reports (RFC 3550's minimum); 0: none
    max_hold: float = 120.0  # seconds the far end may hold the call (the clip waits) before we hang up
    refer_timeout: float = 5.0  # seconds for the trunk to answer a REFER before the transfer counts as refused
    transfer_timeout: float = 30.0  # seconds from 202 Accepted to the NOTIFY saying how the transfer ended
    # Caller presentation (checked by place_call): the From header's display name, a P-Asserted-Identity
    # (RFC 3325; a sip:, sips: or tel: URI) and a Privacy header, each left out when empty.
    display_name: str = ""
    asserted_identity: str = ""
    privacy: str = ""


@dataclass
class CallResult:
    outcome: str
    call_id: str
    sip_code: int | None = None  # final response to the (last) INVITE; None when none arrived
    sip_reason: str = ""
    digits: str = ""
    codec: str = ""  # PCMU | PCMA once negotiated
    hangup_by: str = ""  # local | remote, for answered calls
    played_to_end: bool = False
    rtp_packets_sent: int = 0
    rtp_bytes_sent: int = 0
    rtcp_reports_sent: int = 0  # RTCP sender reports, the final one with BYE included
    rtcp_packets_received: int = 0
    # What the far end's latest RTCP reception report said about our audio; None when it sent none.
    far_end_fraction_lost: float | None = None
    far_end_cumulative_lost: int | None = None
    far_end_jitter_ms: float | None = None
    silence_packets_sent: int = 0  # RTP silence while waiting for keys (not counted in rtp_packets_sent)
    rtp_packets_received: int = 0
    early_media_packets: int = 0
    retry_after: float | None = None  # seconds, from a 503 we could not wait out
    error: str = ""  # what went wrong, in words, when outcome is failed
    started_at: float = 0.0  # wall-clock (time.time()) INVITE sent
    answered_at: float | None = None
    ended_at: float = 0.0
    setup_seconds: float | None = None  # INVITE sent -> final response
    talk_seconds: float | None = None  # answer -> hang-up (our BYE sent or theirs received), not the BYE's wait
    hung_up_at: float | None = None  # wall-clock BYE sent or received; ended_at also counts the BYE transaction
    send_error_ms: dict[str, float] = field(default_factory=dict)  # p50 / p99 / max lateness of RTP sends
    clips_played: list[str] = field(default_factory=list)  # flow calls: each clip started, "name!" when cut short
    sit: str = ""  # the SIT code heard (IC, VC, NC, RO, …), if any
    announcement: str = ""  # the outcome a carrier announcement meant (invalid_number, suspended, powered_off,
    announcement_name: str = ""  # unreachable, busy) and the library recording it matched
    redirects: list[str] = field(default_factory=list)  # request URIs a 3xx sent the call to, in order
    answered_by: str = ""  # answering-machine detection's word (Twilio's AnsweredBy), when it ran
    amd_reason: str = ""  # what made it say so, and when
    voicemail_played: bool = False  # the voicemail clip played to its end after a machine's greeting
    srtp: bool = False  # the media was encrypted (SRTP)
    srtp_rejected: int = 0  # received packets dropped because they were not authentic (or replayed)
    rtp_latched: str = ""  # "ip:port" our RTP went to instead of the SDP's address (symmetric RTP), if it did
    trunk: str = ""  # the server that gave the last answer: "host:port (transport)"
    failovers: list[str] = field(default_factory=list)  # each server left for the next, and why
    route_note: str = ""  # why the SRV records were not used, when they were asked for
    held_seconds: float = 0.0  # time the far end held the call (a=sendonly / inactive); the clip waited meanwhile
    transfer: str = ""  # flow calls: "connected" or "refused: <why>" once a transfer was tried
    received_audio: bytes = field(default=b"", repr=False)  # with CallSpec.capture_audio
    send_lateness_ms: list[float] = field(default_factory=list, repr=False)  # per RTP packet, for benchmarks

    def as_json(self) -> dict:
        data = asdict(self)
        data.pop("received_audio")
        data.pop("send_lateness_ms")
        return data


ProgressCallback = Callable[[str], Awaitable[None]]


def display_name_problem(name: str) -> str | None:
    """Why `name` cannot be a From display name, or None. Any printable text is fine (it is sent quoted);
    line breaks, tabs and other control characters are not: in a header they could end it or forge another."""
    if len(name) > DISPLAY_NAME_MAX:
        return f"A display name is at most {DISPLAY_NAME_MAX} characters ({len(name)} given)."
    for char in name:
        if unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp"):
            return f"A display name cannot hold line breaks, tabs or other control characters ({char!r} found)."
    return None


def quote_display_name(name: str) -> str:
    """`name` as an RFC 3261 quoted-string (25.1): in double quotes, with `"` and `\\` sent as quoted-pairs.
    ValueError when the name holds what a header must never carry (display_name_problem)."""
    problem = display_name_problem(name)
    if problem:
        raise ValueError(problem)
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'

