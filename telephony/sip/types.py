"""What a caller hands the user agent (CallSpec) and what it gets back (CallResult)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

# The outcome vocabulary shared with the Twilio provider.
ANSWERED = "answered"
BUSY = "busy"
NO_ANSWER = "no-answer"
FAILED = "failed"
DECLINED = "declined"
INVALID_NUMBER = "invalid-number"
CANCELED = "canceled"
OUTCOMES = (ANSWERED, BUSY, NO_ANSWER, FAILED, DECLINED, INVALID_NUMBER, CANCELED)

# Progress events passed to CallSpec-level `on_progress` callbacks, in the order they can happen.
TRYING = "trying"  # the far end (or a proxy) sent 100 Trying
RINGING = "ringing"  # 180 Ringing or 183 Session Progress
ANSWER = "answer"  # 2xx to the INVITE, ACK sent; audio starts


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
    ring_timeout: float = 30.0  # seconds from INVITE to a final answer before we CANCEL
    digit_timeout: float = 5.0  # seconds to wait for digits after playback ends
    max_digits: int = 0  # 0: collect until digit_timeout; n: hang up once n digits arrived
    stop_on_digit: bool = False  # stop playback at the first digit (like Twilio's <Gather><Play>)
    max_retry_after: float = 10.0  # a 503 whose Retry-After is at most this is retried once after waiting
    call_id: str = ""  # generated when empty
    local_ip: str = ""  # address to advertise in Via/Contact/SDP; default: the one routing to the proxy
    capture_audio: bool = False  # keep the audio payload the far end sends (tests compare an echo)
    user_agent: str = "Herald"
    t1: float = 0.5  # RFC 3261 T1, the round-trip estimate: retransmissions start here, Timer B is 64 x T1


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
    rtp_packets_received: int = 0
    early_media_packets: int = 0
    retry_after: float | None = None  # seconds, from a 503 we could not wait out
    error: str = ""  # what went wrong, in words, when outcome is failed
    started_at: float = 0.0  # wall-clock (time.time()) INVITE sent
    answered_at: float | None = None
    ended_at: float = 0.0
    setup_seconds: float | None = None  # INVITE sent -> final response
    talk_seconds: float | None = None  # answer -> hang-up
    send_error_ms: dict[str, float] = field(default_factory=dict)  # p50 / p99 / max lateness of RTP sends
    received_audio: bytes = field(default=b"", repr=False)  # with CallSpec.capture_audio
    send_lateness_ms: list[float] = field(default_factory=list, repr=False)  # per RTP packet, for benchmarks

    def as_json(self) -> dict:
        data = asdict(self)
        data.pop("received_audio")
        data.pop("send_lateness_ms")
        return data


ProgressCallback = Callable[[str], Awaitable[None]]
