"""RTP (RFC 3550) for one call's audio: a paced G.711 sender and a receiver that hears the callee's keys, as
RFC 4733 events where a telephone-event type was negotiated, otherwise as tones in its audio (dtmf.py).

All calls on an event loop share one Pacer: it wakes on a 20 ms grid, spins the last fraction of a
millisecond (the loop's timers fire up to a millisecond late), and sends every active stream's due packet.
Each packet's due time is the stream's start plus 20 ms per packet, so lateness never accumulates.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
import struct
import time
from collections import deque
from collections.abc import Callable

from telephony.sip import rtcp, srtp
from telephony.sip.dtmf import DtmfDetector
from telephony.sip.g711 import alaw_to_ulaw, ulaw_to_alaw

log = logging.getLogger(__name__)
PTIME = 0.020  # seconds of audio per packet
SAMPLES = 160  # 8 kHz x 20 ms, also the payload bytes of one G.711 packet
SPIN = 0.0015  # wake this early and spin to the exact due time
PHASES = 4  # streams start on one of 4 offsets within 20 ms, so each wake-up sends a quarter of the packets
EVENTS = "0123456789*#ABCD"
_HEADER = struct.Struct("!BBHII")


class RtpPacket:
    __slots__ = ("pt", "seq", "ts", "ssrc", "marker", "payload")

    def __init__(self, pt: int, seq: int, ts: int, ssrc: int, marker: bool, payload: bytes) -> None:
        self.pt, self.seq, self.ts, self.ssrc, self.marker, self.payload = pt, seq, ts, ssrc, marker, payload


def pack(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, *, marker: bool = False) -> bytes:
    return _HEADER.pack(0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def parse(data: bytes) -> RtpPacket | None:
    """A packet, or None for anything that is not well-formed RTP version 2 (ignored, never fatal)."""
    if len(data) < 12:
        return None
    first, second, seq, ts, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != 2:
        return None
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10:  # header extension
        if len(data) < offset + 4:
            return None
        offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
    end = len(data)
    if first & 0x20:  # padding: the last byte says how much
        end -= data[-1]
    if offset > end or end > len(data):
        return None
    return RtpPacket(second & 0x7F, seq, ts, ssrc, bool(second & 0x80), data[offset:end])


class DtmfDecoder:
    """RFC 4733 events: one digit per event (its RTP timestamp); repeated end packets count once.

    An event whose end packets were all lost still counts when the next event starts or at flush().
    """

    def __init__(self) -> None:
        self._pending: tuple[int, int] | None = None  # (timestamp, event) started, not yet ended
        self._done: deque[int] = deque(maxlen=32)  # timestamps of finished events

    def feed(self, packet: RtpPacket) -> str:
        if len(packet.payload) < 4:
            return ""
        event, flags = packet.payload[0], packet.payload[1]
        if event >= len(EVENTS) or packet.ts in self._done:
            return ""
        out = ""
        if self._pending is not None and self._pending[0] != packet.ts:
            out += self.flush()
        if flags & 0x80:
            self._done.append(packet.ts)
            self._pending = None
            return out + EVENTS[event]
        self._pending = (packet.ts, event)
        return out

    def flush(self) -> str:
        if self._pending is None:
            return ""
        ts, event = self._pending
        self._pending = None
        self._done.append(ts)
        return EVENTS[event]


class Playback:
    """One clip going out on one stream; `done` resolves when the last packet is sent or it is stopped.

    The next packet is built ahead of its due time, so a tick does nothing but send.
    """

    def __init__(self, stream: RtpStream, payload: bytes, pt: int, lateness: list[float], *, filler: bool = False) -> None:
        self.stream, self.payload, self.pt, self.lateness = stream, payload, pt, lateness
        self.filler = filler  # silence while waiting for a key: kept out of the clip's counts and lateness
        self.total = math.ceil(len(payload) / SAMPLES)
        self.sent = 0
        self.start = 0.0
        self.resume_marker = False
        self.packet = self._build(0)
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    @property
    def due(self) -> float:
        return self.start + self.sent * PTIME

    def _build(self, n: int, *, marker: bool = False) -> bytes:
        chunk = self.payload[n * SAMPLES : (n + 1) * SAMPLES]
        if len(chunk) < SAMPLES:  # pad the last packet with silence of the same codec
            chunk += (b"\xff" if self.pt == 0 else b"\xd5") * (SAMPLES - len(chunk))
        return self.stream.build(self.pt, chunk, marker=marker or n == 0)

    def switch_codec(self, pt: int) -> None:
        """Go on in the other G.711 law (the far end's re-INVITE took ours away): the rest is transcoded."""
        if pt == self.pt:
            return
        self.payload = ulaw_to_alaw(self.payload) if pt == 8 else alaw_to_ulaw(self.payload)
        self.pt = pt
        if self.sent < self.total:
            self.stream.unbuild()  # the packet prepared in the old law never goes out: its sequence number is reused
            self.packet = self._build(self.sent)

    def send(self) -> None:
        """Send the prepared packet now; called by the Pacer at (or just after) its due time.

        While the far end holds the call, nothing is sent and the clip waits: every packet's time moves one
        packet later, so the clip resumes where it stopped when the far end takes the call back."""
        if self.stream.held:
            self.start += PTIME
            self.stream.ts = (self.stream.ts + SAMPLES) & 0xFFFFFFFF  # media time goes on while nothing is sent
            self.resume_marker = True
            return
        if self.resume_marker:  # a talkspurt begins again: the marker bit tells the far end's jitter buffer
            self.resume_marker = False
            self.stream.unbuild()
            self.packet = self._build(self.sent, marker=True)
        due = self.start + self.sent * PTIME
        if not self.filler:
            self.lateness.append((time.monotonic() - due) * 1000.0)
        self.stream.send_packet(self.packet, filler=self.filler)
        self.sent += 1

    def prepare(self) -> None:
        if self.sent < self.total:
            self.packet = self._build(self.sent)
        else:
            self._finish(True)

    def stop(self) -> None:
        self._finish(False)

    def _finish(self, complete: bool) -> None:
        Pacer.for_loop().remove(self)
        if not self.done.done():
            self.done.set_result(complete)


class Pacer:
    _by_loop: dict[asyncio.AbstractEventLoop, Pacer] = {}

    def __init__(self) -> None:
        self._active: list[Playback] = []
        self._task: asyncio.Task | None = None

    @classmethod
    def for_loop(cls) -> Pacer:
        loop = asyncio.get_running_loop()
        pacer = cls._by_loop.get(loop)
        if pacer is None:
            for old in [other for other in cls._by_loop if other.is_closed()]:
                del cls._by_loop[old]
            pacer = cls._by_loop[loop] = cls()
        return pacer

    def add(self, playback: Playback) -> None:
        """Start on the least busy of the PHASES offsets, at its next tick with time to spare."""
        slot = PTIME / PHASES
        load = [0] * PHASES
        for other in self._active:
            load[round(other.start / slot) % PHASES] += 1
        phase = min(range(PHASES), key=lambda p: (load[p], p))
        first = math.ceil((time.monotonic() + SPIN) / slot)
        first += (phase - first) % PHASES
        playback.start = first * slot
        self._active.append(playback)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="rtp-pacer")

    def remove(self, playback: Playback) -> None:
        if playback in self._active:
            self._active.remove(playback)

    async def _run(self) -> None:
        while self._active:
            tick = min(p.due for p in self._active)
            delay = tick - time.monotonic() - SPIN
            if delay > 0:
                await asyncio.sleep(delay)
            while time.monotonic() < tick:
                pass
            due = [p for p in self._active if p.due <= time.monotonic() + 1e-4]
            for playback in due:  # first send everything that is due, then build the next packets
                try:
                    playback.send()
                except Exception:  # one broken stream must not silence the others
                    log.exception("RTP send failed; stopping that stream")
                    playback.stop()
            for playback in due:
                if not playback.done.done():
                    playback.prepare()
            await asyncio.sleep(0)  # let the loop breathe when we are behind


def _pair_in_range(family: int, local_ip: str, port_range: tuple[int, int]) -> tuple[socket.socket, socket.socket]:
    first, last = port_range
    evens = list(range(first + first % 2, last, 2))  # port + 1 must be inside the range too
    random.shuffle(evens)
    for port in evens:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((local_ip, port))
        except OSError:
            sock.close()
            continue
        rtcp_sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            rtcp_sock.bind((local_ip, port + 1))
        except OSError:
            sock.close()
            rtcp_sock.close()
            continue
        return sock, rtcp_sock
    raise OSError(f"no free RTP port pair in {first}-{last}: every port of the range is in use")


class _Rtcp(asyncio.DatagramProtocol):
    def __init__(self, stream: RtpStream) -> None:
        self.stream = stream

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.stream.rtcp_received(data, addr[:2])

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable: the far end does no RTCP
        pass


class RtpStream(asyncio.DatagramProtocol):
    """One call's RTP socket: sends its audio, counts what arrives, decodes digits."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.sock: socket.socket | None = None
        self.remote: tuple[str, int] | None = None  # where our RTP goes: the SDP's address, or the latched one
        self.sdp_remote: tuple[str, int] | None = None
        # Symmetric RTP (RFC 4961, "comedia"): behind a NAT the far end's SDP names an address its packets do not
        # come from; ours then go where its packets come from. Latched once per SDP address.
        self.symmetric = True
        self.latched: tuple[str, int] | None = None
        self.rtcp_latched = False
        # SRTP (telephony.sip.srtp), once keys were agreed: ours protect what we send, theirs check what arrives.
        self.srtp_out: srtp.Sender | None = None
        self.srtp_in: srtp.Receiver | None = None
        self.event_pts: frozenset[int] = frozenset()
        self.tones: DtmfDetector | None = None  # in-band keys, when no telephone-event was negotiated
        self.audio_pts: frozenset[int] = frozenset({0, 8})
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.answered = False
        self.held = False  # the far end put the call on hold: playbacks wait instead of sending
        self.capture = False
        self.packets_sent = self.bytes_sent = 0
        self.silence_packets_sent = 0  # sent while waiting for keys, not part of any clip
        self.packets_received = self.early_packets = 0
        self.on_digits: Callable[[str], None] = lambda digits: None
        # Each received audio packet (extended sequence number, payload, payload type), early media included,
        # while someone listens (the user agent's announcement and SIT detectors).
        self.on_audio: Callable[[int, bytes, int], None] | None = None
        self.decoder = DtmfDecoder()
        self._captured: list[tuple[int, bytes]] = []
        self.rtcp_transport: asyncio.DatagramTransport | None = None
        self.rtcp_remote: tuple[str, int] | None = None
        self.rtcp_sent = self.rtcp_packets_received = 0
        self.reception: rtcp.ReceptionReport | None = None  # the far end's latest report about our audio
        self._last_seq: int | None = None
        self._seq_cycles = 0

    def aim(self, address: tuple[str, int]) -> None:
        """Send to `address` (from the far end's SDP); a new address is latched anew."""
        if address != self.sdp_remote:
            self.sdp_remote = self.remote = address
            self.latched = None

    def _latch(self, source: tuple[str, int]) -> None:
        if self.symmetric and self.latched is None and self.remote is not None and source[1] != 0:
            self.latched = source
            if source != self.remote:
                log.info("RTP from %s:%s, not the SDP's %s:%s: sending there (symmetric RTP)", *source, *self.remote)
                self.remote = source

    @classmethod
    async def open(cls, local_ip: str, port_range: tuple[int, int] | None = None) -> RtpStream:
        """An even RTP port with RTCP on the odd port after it (RFC 3550 11); without a free pair after a few
        tries, the even port alone (RTCP is then off: it is advisory). With `port_range` (first, last), only
        pairs inside it (a firewall's opening), tried in random order; OSError when every pair is taken."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in local_ip else socket.AF_INET
        if port_range is not None:
            sock, rtcp_sock = _pair_in_range(family, local_ip, port_range)
            return await cls._started(loop, sock, rtcp_sock)
        rtcp_sock = None
        for _ in range(20):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((local_ip, 0))
            port = sock.getsockname()[1]
            if port % 2 == 0 and port < 65535:
                rtcp_sock = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    rtcp_sock.bind((local_ip, port + 1))
                    break
                except OSError:
                    rtcp_sock.close()
                    rtcp_sock = None
            sock.close()
        else:  # no pair: any even port
            for _ in range(20):
                sock = socket.socket(family, socket.SOCK_DGRAM)
                sock.bind((local_ip, 0))
                if sock.getsockname()[1] % 2 == 0:
                    break
                sock.close()
        return await cls._started(loop, sock, rtcp_sock)

    @classmethod
    async def _started(
        cls, loop: asyncio.AbstractEventLoop, sock: socket.socket, rtcp_sock: socket.socket | None
    ) -> RtpStream:
        sock.setblocking(False)
        _, stream = await loop.create_datagram_endpoint(cls, sock=sock)
        stream.sock = sock
        if rtcp_sock is not None:
            rtcp_sock.setblocking(False)
            stream.rtcp_transport, _ = await loop.create_datagram_endpoint(
                lambda: _Rtcp(stream), sock=rtcp_sock
            )
        return stream

    def send_rtcp(self, *, cname: str, bye: bool = False) -> None:
        """Our sender report (and a BYE at the end) to the far end's RTCP address."""
        if self.rtcp_transport is None or self.rtcp_remote is None or self.rtcp_transport.is_closing():
            return
        packets = self.packets_sent + self.silence_packets_sent
        report = rtcp.sender_report(
            self.ssrc, rtp_timestamp=self.ts, packets=packets, octets=packets * SAMPLES, cname=cname, bye=bye
        )
        if self.srtp_out is not None:
            report = self.srtp_out.protect_rtcp(report)
        try:
            self.rtcp_transport.sendto(report, self.rtcp_remote)
        except OSError:
            return
        self.rtcp_sent += 1

    def rtcp_received(self, data: bytes, source: tuple[str, int] | None = None) -> None:
        if self.srtp_in is not None:
            data = self.srtp_in.unprotect_rtcp(data)  # type: ignore[assignment]
            if data is None:
                return
        reports, _ = rtcp.reports_about(data, self.ssrc)
        self.rtcp_packets_received += 1
        if self.symmetric and not self.rtcp_latched and source is not None and self.rtcp_remote is not None:
            self.rtcp_latched, self.rtcp_remote = True, source
        if reports:
            self.reception = reports[-1]

    @property
    def local_port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if self.srtp_in is not None:
            data = self.srtp_in.unprotect(data)  # type: ignore[assignment]
            if data is None:
                return  # not authentic (or a replay): dropped, counted by the receiver
        packet = parse(data)
        if packet is None:
            return
        if self.latched is None and (packet.pt in self.event_pts or packet.pt in self.audio_pts):
            self._latch(addr[:2])
        if packet.pt in self.event_pts:
            if self.answered:
                digits = self.decoder.feed(packet)
                if digits:
                    self.on_digits(digits)
            return
        if packet.pt not in self.audio_pts:
            return
        if self.on_audio is not None:
            self.on_audio(self._extend(packet.seq), packet.payload, packet.pt)
        if not self.answered:
            self.early_packets += 1
            return
        self.packets_received += 1
        if self.capture:
            self._captured.append((self._extend(packet.seq), packet.payload))
        if self.tones is not None:
            digits = self.tones.feed(packet.payload, packet.pt)
            if digits:
                self.on_digits(digits)

    def listen_for_keys(self, event_pts: frozenset[int]) -> None:
        """Keys as RFC 4733 events on `event_pts` (never an audio type); with none, as tones in the audio.

        One or the other, never both: a key sent both ways (some gateways do) would count twice.
        """
        self.event_pts = event_pts - self.audio_pts
        if self.event_pts:
            self.tones = None
        elif self.tones is None:
            self.tones = DtmfDetector()

    def _extend(self, seq: int) -> int:
        if self._last_seq is not None and seq < self._last_seq and self._last_seq - seq > 0x8000:
            self._seq_cycles += 1
        self._last_seq = seq
        return self._seq_cycles * 0x10000 + seq

    def captured_audio(self) -> bytes:
        return b"".join(payload for _, payload in sorted(self._captured, key=lambda item: item[0]))

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable and the like: not fatal
        pass

    def unbuild(self) -> None:
        """Take back the packet built last and never sent: the next one gets its sequence number."""
        self.seq = (self.seq - 1) & 0xFFFF
        self.ts = (self.ts - SAMPLES) & 0xFFFFFFFF

    def build(self, pt: int, payload: bytes, *, marker: bool) -> bytes:
        """The next packet of this stream (sequence number and timestamp advance by one packet)."""
        packet = pack(pt, self.seq, self.ts, self.ssrc, payload, marker=marker)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + SAMPLES) & 0xFFFFFFFF
        return packet

    def send_packet(self, packet: bytes, *, filler: bool = False) -> None:
        if self.transport is None or self.sock is None or self.remote is None or self.transport.is_closing():
            return
        payload = len(packet) - 12
        if self.srtp_out is not None:
            packet = self.srtp_out.protect(packet)
        try:  # straight to the socket: the asyncio transport's bookkeeping costs microseconds per packet
            self.sock.sendto(packet, self.remote)
        except (BlockingIOError, InterruptedError):
            self.transport.sendto(packet, self.remote)  # the kernel buffer is full: let asyncio queue it
        except OSError:
            return  # unreachable peer and the like: RTP is best effort
        if filler:
            self.silence_packets_sent += 1
            return
        self.packets_sent += 1
        self.bytes_sent += payload

    def play(self, payload: bytes, pt: int, lateness: list[float]) -> Playback:
        playback = Playback(self, payload, pt, lateness)
        Pacer.for_loop().add(playback)
        return playback

    def play_silence(self, pt: int, seconds: float) -> Playback:
        """Silence packets for up to `seconds` while a key is awaited: no dead air that the far end (or a NAT on
        the way, closing its pinhole) takes for a dropped call. Stop it when the wait ends."""
        silence = (b"\xff" if pt == 0 else b"\xd5") * (SAMPLES * math.ceil(seconds / PTIME))
        playback = Playback(self, silence, pt, [], filler=True)
        Pacer.for_loop().add(playback)
        return playback

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self.rtcp_transport is not None:
            self.rtcp_transport.close()
