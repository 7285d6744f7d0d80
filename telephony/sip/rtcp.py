"""Basic RTCP (RFC 3550 6): our sender reports, the far end's reception reports about our stream, and a BYE.

A call sends a compound packet (SR + SDES CNAME) every few seconds on the port after its RTP port, and SR +
SDES + BYE when it ends. What the far end reports about our audio (the fraction of packets lost, the
cumulative loss and the interarrival jitter) is kept: it is how a trunk tells us the line was bad.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

SR, RR, SDES, BYE = 200, 201, 202, 203
NTP_OFFSET = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)
CNAME = 1
MAX_PACKET = 1500


@dataclass(frozen=True)
class ReceptionReport:
    """The far end's report block about one stream (ours): RFC 3550 6.4.1."""

    ssrc: int
    fraction_lost: float  # 0..1, over the interval since its previous report
    cumulative_lost: int  # may be negative (duplicates)
    highest_seq: int
    jitter: int  # interarrival jitter in RTP timestamp units (1/8000 s for G.711)

    @property
    def jitter_ms(self) -> float:
        return self.jitter / 8.0


def _header(pt: int, count: int, words: int) -> bytes:
    """V=2, no padding, `count` in the 5-bit field, length in 32-bit words minus one."""
    return struct.pack("!BBH", 0x80 | count, pt, words - 1)


def _sdes(ssrc: int, cname: str) -> bytes:
    item = cname.encode()[:255]
    chunk = struct.pack("!IBB", ssrc, CNAME, len(item)) + item + b"\x00"  # the item list ends with a null
    chunk += b"\x00" * (-len(chunk) % 4)
    return _header(SDES, 1, 1 + len(chunk) // 4) + chunk


def sender_report(
    ssrc: int, *, rtp_timestamp: int, packets: int, octets: int, cname: str, now: float | None = None, bye: bool = False
) -> bytes:
    """A compound packet: SR (no report blocks: we receive audio but do not report on it) and SDES CNAME; with
    `bye`, a BYE after them (the stream ends)."""
    now = time.time() if now is None else now
    seconds = int(now) + NTP_OFFSET
    fraction = int((now % 1) * (1 << 32)) & 0xFFFFFFFF
    body = struct.pack(
        "!IIIIII", ssrc, seconds & 0xFFFFFFFF, fraction, rtp_timestamp & 0xFFFFFFFF, packets & 0xFFFFFFFF,
        octets & 0xFFFFFFFF,
    )
    packet = _header(SR, 0, 1 + len(body) // 4) + body + _sdes(ssrc, cname)
    if bye:
        packet += _header(BYE, 1, 2) + struct.pack("!I", ssrc)
    return packet


def reports_about(data: bytes, ssrc: int) -> tuple[list[ReceptionReport], bool]:
    """The report blocks about `ssrc` in a compound RTCP packet, and whether it holds a BYE. Malformed packets
    (wrong version, lengths past the end) yield what was read before the fault: RTCP is advisory."""
    found: list[ReceptionReport] = []
    saw_bye = False
    offset = 0
    while offset + 4 <= min(len(data), MAX_PACKET):
        first, pt, length = struct.unpack_from("!BBH", data, offset)
        if first >> 6 != 2:
            break
        end = offset + 4 * (length + 1)
        if end > len(data):
            break
        count = first & 0x1F
        blocks_at = {SR: offset + 28, RR: offset + 8}.get(pt)
        if blocks_at is not None:
            for n in range(count):
                at = blocks_at + 24 * n
                if at + 24 > end:
                    break
                block_ssrc, lost_word, highest, jitter = struct.unpack_from("!IIII", data, at)
                if block_ssrc != ssrc:
                    continue
                cumulative = lost_word & 0xFFFFFF
                if cumulative & 0x800000:
                    cumulative -= 1 << 24
                found.append(ReceptionReport(ssrc, (lost_word >> 24) / 256, cumulative, highest, jitter))
        elif pt == BYE:
            saw_bye = True
        offset = end
    return found, saw_bye


def receiver_report(ssrc: int, about: int, *, fraction_lost: float, cumulative_lost: int, highest_seq: int,
                    jitter: int) -> bytes:
    """An RR with one report block about `about` (what a far end sends us; for tests and tools)."""
    lost = (min(255, int(fraction_lost * 256)) << 24) | (cumulative_lost & 0xFFFFFF)
    block = struct.pack("!IIIIII", about, lost, highest_seq, jitter, 0, 0)
    return _header(RR, 1, 2 + 6) + struct.pack("!I", ssrc) + block
