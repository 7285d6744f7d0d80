"""SDP offer/answer for one audio stream (RFC 4566, RFC 3264): G.711 μ-law/A-law plus RFC 4733 events, as RTP or
as SRTP with SDES keys (RTP/SAVP, RFC 4568)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from telephony.sip.message import SipParseError, ascii_number

PCMU, PCMA, TELEPHONE_EVENT = 0, 8, 101
CODECS = {PCMU: "PCMU", PCMA: "PCMA"}
_STATIC = {0: "PCMU", 8: "PCMA"}


class SdpError(SipParseError):
    """An SDP body we cannot use; the message says why."""


def _number(text: str, *, where: str, limit: int) -> int:
    try:
        return ascii_number(text, where=where, limit=limit)
    except SipParseError as exc:  # one error type for SDP, so callers catch SdpError alone
        raise SdpError(exc.what, where) from None


def _address(text: str, where: str) -> str:
    # An IP literal only: a name (RFC 4566 allows an FQDN) would mean a DNS lookup inside the RTP sender.
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise SdpError(f"{text[:60]!r} is not an IP address", where) from None


@dataclass(frozen=True)
class Media:
    """What the far end wants: where to send RTP and in which payload types."""

    ip: str
    port: int
    codec: int  # PCMU or PCMA
    event_pt: int | None  # its telephone-event payload type, if it offered one
    direction: str = "sendrecv"
    other_pts: frozenset[int] = field(default=frozenset(), compare=False)  # listed for anything but events
    codecs: tuple[int, ...] = field(default=(), compare=False)  # PCMU / PCMA as offered, in its order of preference
    hold_address: bool = field(default=False, compare=False)  # c= 0.0.0.0: the old (RFC 2543) way to put on hold
    rtcp_port: int | None = field(default=None, compare=False)  # a=rtcp (RFC 3605); else the RTP port + 1
    profile: str = field(default="RTP/AVP", compare=False)  # RTP/SAVP: the media is SRTP
    crypto: tuple[str, ...] = field(default=(), compare=False)  # its a=crypto values (RFC 4568), in order

    @property
    def on_hold(self) -> bool:
        """The far end will not take our audio (a=sendonly or a=inactive, or the old c= 0.0.0.0)."""
        return self.direction in ("sendonly", "inactive") or self.hold_address

    @property
    def answer_direction(self) -> str:
        """Our direction in answer to this offer (RFC 3264 6.1): the mirror of theirs."""
        if self.hold_address and self.direction == "sendrecv":
            return "recvonly"
        return {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}.get(self.direction, "sendrecv")

    @property
    def codec_name(self) -> str:
        return CODECS[self.codec]

    @property
    def event_pts(self) -> frozenset[int]:
        """The payload types to take RFC 4733 events on: the far end's and the one we offered, since senders use
        either (RFC 3264 says ours; many use their own), but never one the far end lists for audio. None at all
        when it negotiated no telephone-event: its keys then come as tones in the audio."""
        if self.event_pt is None:
            return frozenset()
        return frozenset({self.event_pt, TELEPHONE_EVENT}) - self.other_pts - {PCMU, PCMA}


def offer(ip: str, port: int, *, session_id: int, version: int = 1, crypto: str = "") -> bytes:
    """Our offer: PCMU, PCMA and telephone-event; with `crypto` (an a=crypto value), as SRTP (RTP/SAVP)."""
    return _body(ip, port, session_id, version, [PCMU, PCMA], TELEPHONE_EVENT, crypto=crypto)


def answer(
    ip: str, port: int, *, session_id: int, version: int, codec: int, event_pt: int | None, direction: str = "sendrecv",
    crypto: str = "",
) -> bytes:
    """Our answer to an offer inside the dialog (a re-INVITE): the codec in use, its event type, our direction."""
    return _body(ip, port, session_id, version, [codec], event_pt, direction, crypto=crypto)


def _body(
    ip: str, port: int, session_id: int, version: int, codecs: list[int], event_pt: int | None,
    direction: str = "sendrecv", *, crypto: str = "",
) -> bytes:
    family = "IP6" if ":" in ip else "IP4"
    pts = [*codecs, *([event_pt] if event_pt is not None else [])]
    lines = [
        "v=0",
        f"o=herald {session_id} {version} IN {family} {ip}",
        "s=Herald",
        f"c=IN {family} {ip}",
        "t=0 0",
        f"m=audio {port} {'RTP/SAVP' if crypto else 'RTP/AVP'} {' '.join(map(str, pts))}",
        *(f"a=rtpmap:{pt} {CODECS[pt]}/8000" for pt in codecs),
    ]
    if event_pt is not None:
        lines += [f"a=rtpmap:{event_pt} telephone-event/8000", f"a=fmtp:{event_pt} 0-16"]
    lines += ["a=ptime:20", f"a={direction}", *([f"a={crypto}"] if crypto else [])]
    return ("\r\n".join(lines) + "\r\n").encode()


def parse(body: bytes) -> Media:
    """The first audio stream of an answer (or offer), reduced to what we can send."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("SDP is not UTF-8 text") from None
    session_ip = media_ip = None
    port: int | None = None
    pts: list[int] = []
    names: dict[int, str] = {}
    direction = "sendrecv"
    rtcp_port: int | None = None
    profile = "RTP/AVP"
    crypto: list[str] = []
    in_audio = seen_audio = False
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "m":
            if seen_audio:
                in_audio = False
                continue
            fields = value.split()
            in_audio = bool(fields) and fields[0] == "audio"
            if in_audio:
                seen_audio = True
                if len(fields) < 4:
                    raise SdpError(f"malformed media line m={value[:80]}", "m= line")
                port = _number(fields[1].split("/")[0], where="m= port", limit=65535)
                profile = fields[2].upper()
                if profile not in ("RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF"):
                    raise SdpError(
                        f"media transport {fields[2][:40]} is not RTP/AVP or RTP/SAVP (DTLS and others are not "
                        "supported)", "m= line"
                    )
                pts = [_number(f, where="m= payload type", limit=127) for f in fields[3:]]
        elif kind == "c":
            fields = value.split()
            if len(fields) < 3:
                raise SdpError(f"malformed connection line c={value[:80]}", "c= line")
            ip = fields[2].split("/")[0]
            if in_audio:
                media_ip = ip
            elif not seen_audio:
                session_ip = ip
        elif kind == "a" and (in_audio or not seen_audio):
            attr, _, rest = value.partition(":")
            if attr == "rtpmap" and in_audio:
                pt_text, _, encoding = rest.partition(" ")
                names[_number(pt_text, where="a=rtpmap payload type", limit=127)] = encoding.split("/")[0].strip()
            elif attr in ("sendrecv", "sendonly", "recvonly", "inactive"):
                direction = attr
            elif attr == "crypto" and in_audio:
                crypto.append(rest.strip())
            elif attr == "rtcp" and in_audio and rest.strip():
                rtcp_port = _number(rest.split()[0], where="a=rtcp port", limit=65535)
    if port is None:
        raise SdpError("no audio stream in the SDP")
    if port == 0:
        raise SdpError("the far end rejected the audio stream (port 0)")
    ip = media_ip or session_ip
    if not ip:
        raise SdpError("no connection address (c=) for the audio stream")
    ip = _address(ip, "c= address")  # checked here: the c= of a stream we ignore may name a host

    def name(pt: int) -> str:
        return names.get(pt, _STATIC.get(pt, "")).upper()

    codecs = tuple(dict.fromkeys(PCMU if name(pt) == "PCMU" else PCMA for pt in pts if name(pt) in ("PCMU", "PCMA")))
    codec = codecs[0] if codecs else None
    if codec is None:
        offered = ", ".join(name(pt) or str(pt) for pt in pts) or "nothing"
        raise SdpError(f"no common codec: we send PCMU or PCMA, the far end accepts {offered}")
    event_pt = next((pt for pt in pts if name(pt) == "TELEPHONE-EVENT"), None)
    others = frozenset(pt for pt in pts if name(pt) != "TELEPHONE-EVENT")
    return Media(ip=ip, port=port, codec=codec, event_pt=event_pt, direction=direction, other_pts=others,
                 codecs=codecs, hold_address=ip in ("0.0.0.0", "::"), rtcp_port=rtcp_port,
                 profile=profile.removesuffix("F"), crypto=tuple(crypto))
