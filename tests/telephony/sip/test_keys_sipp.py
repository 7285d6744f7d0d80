"""Keys that used to be lost, pressed by a real sipp callee into a flow call (press 1 to confirm):
- RFC 4733 events sent on the payload type of our offer (101) after the 200 OK answered telephone-event as 96,
  and on 96 itself;
- a callee that negotiates no telephone-event at all, whose key is a DTMF tone in its μ-law audio.

The user agent runs the bare flow walk (campaigns.callflow, pure), as in test_flow_ua.py. sipp plays captures:
Debian's RFC 4733 capture of key 1 (retyped for 96), and a capture of μ-law RTP the test builds with the tone.
"""

from __future__ import annotations

import asyncio
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from campaigns import callflow
from telephony.sip import rtp
from telephony.sip.types import ANSWERED, CallResult, CallSpec
from telephony.sip.ua import place_call
from tests.sipp import PCAP_DIR, SCENARIOS, Sipp
from tests.telephony.sip.test_dtmf import encode, silence, tone

CALL_LIMIT = 30.0  # seconds; a user agent that never returns fails the test instead of hanging the suite
FLOW = callflow.build([("1", "confirm", "", []), ("*", "repeat", "", [])], max_prompts=2)
# Each clip its own bytes (0.2 s of one μ-law code).
CLIPS = {name: bytes([0x10 + index]) * 1600 for index, name in enumerate(callflow.clip_names(FLOW))}
_FILE = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_RTP_AT = 14 + 20 + 8  # Ethernet, IPv4 and UDP headers


class Walk:
    """The bare walk as the user agent's FlowDriver, keeping the keys it was given."""

    def __init__(self) -> None:
        self.presses: list[tuple[str, int, str]] = []

    def start(self) -> callflow.Step:
        return callflow.start(FLOW)

    async def press(self, menu: str, prompts: int, key: str) -> callflow.Step:
        self.presses.append((menu, prompts, key))
        return callflow.press(FLOW, menu, prompts, key)

    async def transfer_ended(self, node: str, connected: bool) -> callflow.Step | None:
        raise AssertionError("this flow has no transfer")


def read_pcap(path: Path) -> list[tuple[int, int, bytes]]:
    """The (seconds, microseconds, Ethernet frame) records of a classic little-endian pcap file."""
    data = path.read_bytes()
    assert _FILE.unpack_from(data)[0] == 0xA1B2C3D4 and _FILE.unpack_from(data)[6] == 1, "not an Ethernet pcap"
    records, offset = [], _FILE.size
    while offset < len(data):
        seconds, micros, length, _ = _RECORD.unpack_from(data, offset)
        records.append((seconds, micros, data[offset + _RECORD.size : offset + _RECORD.size + length]))
        offset += _RECORD.size + length
    return records


def write_pcap(path: Path, records: list[tuple[int, int, bytes]]) -> str:
    path.write_bytes(_FILE.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(
        _RECORD.pack(seconds, micros, len(frame), len(frame)) + frame for seconds, micros, frame in records
    ))
    return str(path)


def frame(rtp_packet: bytes, ident: int) -> bytes:
    """RTP in UDP (49176 -> 10000, no checksum) in IPv4 (192.168.0.3 -> .1) in Ethernet, as captured."""
    udp = struct.pack("!HHHH", 49176, 10000, 8 + len(rtp_packet), 0) + rtp_packet
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident, 0, 64, 17, 0, bytes([192, 168, 0, 3]),
                         bytes([192, 168, 0, 1]))
    total = sum(struct.unpack("!10H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    header = header[:10] + struct.pack("!H", ~total & 0xFFFF) + header[12:]
    return bytes.fromhex("0050bf990336000d8714ac24") + b"\x08\x00" + header + udp


def event_capture(tmp_path: Path, pt: int) -> str:
    """Debian's capture of key 1 (RFC 4733, type 101 as captured), with its payload type set to `pt`."""
    records = read_pcap(PCAP_DIR / "dtmf_2833_1.pcap")
    retyped = []
    for seconds, micros, data in records:
        assert data[_RTP_AT + 1] & 0x7F == 101
        marked = data[_RTP_AT + 1] & 0x80
        retyped.append((seconds, micros, data[: _RTP_AT + 1] + bytes([marked | pt]) + data[_RTP_AT + 2 :]))
    return write_pcap(tmp_path / f"key-1-pt-{pt}.pcap", retyped)


def tone_capture(tmp_path: Path, keys: str) -> str:
    """μ-law RTP (type 0), 20 ms a packet: each key a 120 ms tone (-10 dBFS a tone) after 100 ms of silence."""
    audio = encode(np.concatenate([np.concatenate((silence(100), tone(key, 120))) for key in keys] + [silence(100)]))
    records = []
    for n, start in enumerate(range(0, len(audio), rtp.SAMPLES)):
        packet = rtp.pack(0, 1000 + n, 8000 + n * rtp.SAMPLES, 0x5EED, audio[start : start + rtp.SAMPLES],
                          marker=n == 0)
        micros = n * 20_000
        records.append((1_700_000_000 + micros // 1_000_000, micros % 1_000_000, frame(packet, n)))
    return write_pcap(tmp_path / f"tones-{keys}.pcap", records)


def scenario(tmp_path: Path, name: str, pcap: str) -> str:
    """scenarios/`name` with the callee playing `pcap` 300 ms after the answer."""
    source = (SCENARIOS / name).read_text()
    marker = re.search(r"^ *<!-- KEYS:.*?-->\n", source, flags=re.M)
    assert marker, f"{name} has no KEYS comment"
    press = f'  <pause milliseconds="300"/>\n  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n'
    path = tmp_path / f"{Path(pcap).stem}-{name}"
    path.write_text(source[: marker.start()] + press + source[marker.end() :])
    return str(path)


def call(uas: Sipp, walk: Walk) -> CallResult:
    spec = CallSpec(to=uas.uri("alice"), audio=CLIPS["message"], transport=uas.transport, ring_timeout=5.0,
                    digit_timeout=2.0, flow=walk, clips=CLIPS)
    return asyncio.run(asyncio.wait_for(place_call(spec), CALL_LIMIT))


@pytest.mark.parametrize("pt", [101, 96], ids=["our-offered-101", "answered-96"])
def test_events_on_either_payload_type_confirm(tmp_path, pt):
    walk = Walk()
    with Sipp(scenario(tmp_path, "keys_event_pt_96.xml", event_capture(tmp_path, pt))) as uas:
        result = call(uas, walk)
        assert uas.wait(10) == 0, uas.report()
    assert result.outcome == ANSWERED and result.hangup_by == "local", result
    assert walk.presses == [("", 1, "1")] and result.digits == "1"
    assert [name.rstrip("!") for name in result.clips_played] == ["message", "1"]


@pytest.mark.parametrize("keys", ["1", "*1"])
def test_in_band_tones_without_telephone_event_confirm(tmp_path, keys):
    walk = Walk()
    with Sipp(scenario(tmp_path, "keys_inband.xml", tone_capture(tmp_path, keys))) as uas:
        result = call(uas, walk)
        assert uas.wait(10) == 0, uas.report()
    assert result.outcome == ANSWERED and result.hangup_by == "local", result
    assert [key for _, _, key in walk.presses] == list(keys) and result.digits == keys
    assert [name.rstrip("!") for name in result.clips_played][-1] == "1"
    assert walk.presses[-1][2] == "1"
