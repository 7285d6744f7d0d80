"""Calls from behind a NAT or a firewall: the public address in Contact and SDP, RTP inside the opened port range,
and symmetric RTP towards a far end whose SDP names an address its packets do not come from. Against sipp.
"""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import pytest

from telephony.sip.types import ANSWERED, FAILED
from tests.sipp import HOST, SCENARIOS, Sipp, free_port
from tests.stun_server import StunServer
from tests.telephony.sip.test_sipp import call, received, sipp_ok

PUBLIC = "203.0.113.5"  # TEST-NET-3: the NAT's public address in these tests


def sdp_port(invite: str) -> int:
    return int(re.search(r"^m=audio (\d+) ", invite, re.M).group(1))


TONE = 0x7F  # the far end's audio: one μ-law code our clip never uses


def nat_scenario(tmp_path: Path) -> str:
    """nat_answer.xml with its tone file written and named by absolute path."""
    tone = tmp_path / "tone.ulaw"
    tone.write_bytes(bytes([TONE]) * 8000)
    source = (SCENARIOS / "nat_answer.xml").read_text()
    assert "TONE_FILE" in source, "nat_answer.xml changed: update nat_scenario"
    path = tmp_path / "nat_answer.xml"
    path.write_text(source.replace("TONE_FILE", str(tone)))
    return str(path)


def test_a_far_end_behind_a_nat_gets_our_audio_where_its_own_comes_from(tmp_path):
    clip = bytes([0x10]) * 16000
    with Sipp(nat_scenario(tmp_path), rtp_echo=True) as uas:
        result = call(uas, audio=clip, capture_audio=True, digit_timeout=0.5)
        sipp_ok(uas)
    assert result.outcome == ANSWERED, result
    assert result.rtp_latched == f"{HOST}:{uas.media_port}"
    # sipp echoed our clip back: only packets sent to its real port, not the SDP's port 9, can have been echoed.
    assert 0x10 in result.received_audio and TONE in result.received_audio


def test_without_symmetric_rtp_the_sdp_address_is_kept(tmp_path):
    clip = bytes([0x10]) * 16000
    with Sipp(nat_scenario(tmp_path), rtp_echo=True) as uas:
        result = call(uas, audio=clip, capture_audio=True, digit_timeout=0.5, symmetric_rtp=False)
        sipp_ok(uas)
    assert (result.outcome, result.rtp_latched) == (ANSWERED, ""), result
    assert TONE in result.received_audio and 0x10 not in result.received_audio  # ours all went to port 9


def test_an_external_address_is_advertised_in_contact_and_sdp_not_via():
    with Sipp("answer.xml") as uas:
        result = call(uas, external_ip=PUBLIC)
        sipp_ok(uas)
    assert result.outcome == ANSWERED, result
    [invite] = received(uas, "INVITE")
    head = invite.split("\n\n", 1)[0]
    assert re.search(rf"^Contact: <sip:herald@{re.escape(PUBLIC)}:\d+>", head, re.M | re.I), head
    assert re.search(rf"^Via: SIP/2.0/UDP {re.escape(HOST)}:\d+;branch=\S+;rport", head, re.M | re.I), head
    assert f"c=IN IP4 {PUBLIC}" in invite and "o=herald " in invite
    assert HOST not in invite.split("\n\n", 1)[1]  # nothing of the private address in the SDP


def _free_even_pair() -> int:
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
        if port % 2 == 0 and port < 65000:
            return port
    raise RuntimeError("no even port")


def test_rtp_stays_inside_the_configured_port_range():
    first = _free_even_pair()
    with Sipp("answer.xml") as uas:
        result = call(uas, rtp_port_range=(first, first + 3))
        sipp_ok(uas)
    assert result.outcome == ANSWERED, result
    [invite] = received(uas, "INVITE")
    assert sdp_port(invite) in (first, first + 2)


def test_a_range_with_every_port_taken_fails_the_call_saying_so():
    first = _free_even_pair()
    taken = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for offset, sock in enumerate(taken):
            sock.bind((HOST, first + offset))
        with Sipp("silent_trunk.xml") as uas:
            result = call(uas, rtp_port_range=(first, first + 1))
            uas.stop()
    finally:
        for sock in taken:
            sock.close()
    assert result.outcome == FAILED
    assert result.error == f"no free RTP port pair in {first}-{first + 1}: every port of the range is in use"


def test_latching_ignores_port_zero_and_starts_again_when_the_sdp_moves():
    from telephony.sip.rtp import RtpStream, pack

    async def run() -> list:
        stream = await RtpStream.open(HOST)
        try:
            seen = []
            stream.aim((HOST, 9))
            stream.datagram_received(pack(0, 1, 160, 7, b"\xff" * 160), (HOST, 0))  # a raw-socket sender: no port
            seen.append(stream.remote)
            stream.datagram_received(pack(96, 2, 320, 7, b"\xff" * 160), (HOST, 4000))  # not a negotiated type
            seen.append(stream.remote)
            stream.datagram_received(pack(0, 3, 480, 7, b"\xff" * 160), (HOST, 4000))
            seen.append(stream.remote)
            stream.datagram_received(pack(0, 4, 640, 7, b"\xff" * 160), (HOST, 5000))  # latched once: ignored
            seen.append(stream.remote)
            stream.aim((HOST, 4000))  # a re-INVITE names the address it came from after all: unchanged
            stream.aim((HOST, 6000))  # a re-INVITE moves the media: sent there, and latched anew
            seen.append(stream.remote)
            stream.datagram_received(pack(0, 5, 800, 7, b"\xff" * 160), (HOST, 6002))
            seen.append(stream.remote)
            return seen
        finally:
            stream.close()

    assert asyncio.run(run()) == [(HOST, 9), (HOST, 9), (HOST, 4000), (HOST, 4000), (HOST, 6000), (HOST, 6002)]


# --- STUN -------------------------------------------------------------------------------------------------


def test_a_stun_servers_public_address_is_advertised():
    from telephony.sip import stun

    stun._cache.clear()
    with StunServer((PUBLIC, 40000)) as server, Sipp("answer.xml") as uas:
        first = call(uas, stun_server=server.address)
        sipp_ok(uas)
        asked = server.requests
    assert first.outcome == ANSWERED
    [invite] = received(uas, "INVITE")
    assert f"c=IN IP4 {PUBLIC}" in invite and f"<sip:herald@{PUBLIC}:" in invite
    assert asked == 1
    with Sipp("answer.xml") as uas:
        call(uas, stun_server=server.address)  # the server is gone: the cached answer serves
        sipp_ok(uas)
    assert f"c=IN IP4 {PUBLIC}" in received(uas, "INVITE")[0]


def test_a_silent_stun_server_leaves_the_call_on_its_local_address():
    from telephony.sip import stun

    stun._cache.clear()
    with StunServer((PUBLIC, 40000), silent=True) as server, Sipp("answer.xml") as uas:
        result = call(uas, stun_server=server.address)
        sipp_ok(uas)
    assert result.outcome == ANSWERED
    assert f"c=IN IP4 {HOST}" in received(uas, "INVITE")[0]
    assert server.requests >= 3  # retransmitted at 0.25, 0.5, 1 s before giving up


def test_stun_answers_are_read_by_the_rfc():
    from telephony.sip import stun

    transaction = bytes(range(12))
    for xor in (True, False):
        answer = StunServer((PUBLIC, 40000), xor=xor).answer(transaction)
        assert stun.parse_response(answer, transaction) == (PUBLIC, 40000)
    with pytest.raises(stun.StunError, match="not for our request"):
        stun.parse_response(StunServer((PUBLIC, 1)).answer(transaction), bytes(12))
    error = bytearray(StunServer((PUBLIC, 1)).answer(transaction))
    error[0:2] = b"\x01\x11"
    with pytest.raises(stun.StunError, match="message type 0x0111"):
        stun.parse_response(bytes(error), transaction)
    with pytest.raises(stun.StunError, match="shorter than a header"):
        stun.parse_response(b"\x01\x01", transaction)


@pytest.mark.parametrize(
    ("server", "expected"),
    [("stun.example.com", ("stun.example.com", 3478)), ("10.0.0.1:3479", ("10.0.0.1", 3479)),
     ("[2001:db8::1]:3478", ("2001:db8::1", 3478))],
)
def test_stun_server_settings_parse(server, expected):
    from telephony.sip import stun

    assert stun.split_server(server) == expected


@pytest.mark.parametrize("server", ["", "host:0", "host:x", "a b"])
def test_bad_stun_server_settings_are_refused(server):
    from telephony.sip import stun

    with pytest.raises(ValueError, match="is not a STUN server"):
        stun.split_server(server)


def test_the_cli_takes_the_nat_settings(tmp_path):
    from tests.telephony.sip.test_sipp import cli, write_wav

    wav = write_wav(tmp_path / "clip.wav")
    first, sip_port = _free_even_pair(), free_port()
    with Sipp("answer.xml") as uas:
        done = cli("--to", uas.uri("alice"), "--audio", str(wav), "--digit-timeout", "0.3",
                   "--external-ip", PUBLIC, "--rtp-ports", f"{first}-{first + 3}", "--no-symmetric-rtp",
                   "--local-port", str(sip_port))  # fmt: skip
        sipp_ok(uas)
    assert done.returncode == 0, done.stderr
    [invite] = received(uas, "INVITE")
    assert f"c=IN IP4 {PUBLIC}" in invite and sdp_port(invite) in (first, first + 2)
    assert f"SIP/2.0/UDP {HOST}:{sip_port};" in invite
    for bad, message in ((["--external-ip", "nat.example"], "is not an IP address"),
                         (["--rtp-ports", "9-3"], "is not a port range"),
                         (["--stun-server", "a b"], "is not a STUN server")):  # fmt: skip
        done = cli("--to", uas.uri("alice"), "--audio", str(wav), *bad)
        assert done.returncode == 2 and message in done.stderr
