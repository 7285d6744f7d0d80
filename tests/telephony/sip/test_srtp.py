"""SRTP with SDES keys (telephony.sip.srtp): key derivation against NIST's vectors, packets checked both ways
against libsrtp itself (pylibsrtp), and calls to a scripted trunk that encrypts its media with libsrtp."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import struct

import pylibsrtp
import pytest

from telephony.sip import sdp, srtp
from telephony.sip.message import parse, response_to
from telephony.sip.types import ANSWERED, FAILED, CallSpec
from telephony.sip.ua import place_call

PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80


def libsrtp(key: srtp.MasterKey, *, outbound: bool) -> pylibsrtp.Session:
    kind = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    return pylibsrtp.Session(pylibsrtp.Policy(key=key.key + key.salt, ssrc_type=kind, srtp_profile=PROFILE))


def rtp(seq: int, ts: int, ssrc: int, payload: bytes, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, ts, ssrc) + payload


SEQS = [*range(65530, 65536), *range(0, 6)]  # across a rollover of the sequence number


# --- the cipher ---------------------------------------------------------------------------------------------


def test_session_keys_match_nists_srtp_kdf_vectors():
    # NIST CAVP SP 800-135 SRTP KDF, AES-128, COUNT = 0 (key derivation rate 0).
    master = srtp.MasterKey(bytes.fromhex("c4809f6d369888728e26adb532129890"), bytes.fromhex("0e23006c6c044f5662400e9d1bd6"))
    assert srtp.derive(master, 0, 16).hex() == "dc382192ab65108a86b259b61b3af46f"
    assert srtp.derive(master, 1, 20).hex() == "b83937fb321792ee87b788193be5a4e3bd326ee4"
    assert srtp.derive(master, 2, 14).hex() == "f1c035c00b5a54a61692c016276c"


def test_libsrtp_reads_what_we_protect_across_a_rollover():
    key = srtp.MasterKey.random()
    ours, theirs = srtp.Sender(key), libsrtp(key, outbound=False)
    for n, seq in enumerate(SEQS):
        packet = rtp(seq, 160 * n, 0x1234, os.urandom(160))
        protected = ours.protect(packet)
        assert len(protected) == len(packet) + srtp.TAG_LEN and protected[12:172] != packet[12:]
        assert theirs.unprotect(protected) == packet
    report = struct.pack("!BBHI", 0x80, 200, 6, 0x1234) + os.urandom(20)
    for _ in range(3):
        assert theirs.unprotect_rtcp(ours.protect_rtcp(report)) == report


def test_we_read_what_libsrtp_protects_across_a_rollover():
    key = srtp.MasterKey.random()
    theirs, ours = libsrtp(key, outbound=True), srtp.Receiver(key)
    for n, seq in enumerate(SEQS):
        packet = rtp(seq, 160 * n, 0x99, os.urandom(160))
        assert ours.unprotect(theirs.protect(packet)) == packet
    report = struct.pack("!BBHI", 0x80, 200, 6, 0x99) + os.urandom(20)
    assert ours.unprotect_rtcp(theirs.protect_rtcp(report)) == report
    assert ours.rejected == 0


def test_tampered_replayed_and_foreign_packets_are_dropped():
    key = srtp.MasterKey.random()
    sender, receiver = srtp.Sender(key), srtp.Receiver(key)
    first = sender.protect(rtp(10, 0, 7, b"\xff" * 160))
    tampered = bytearray(first)
    tampered[20] ^= 1
    assert receiver.unprotect(bytes(tampered)) is None
    assert receiver.unprotect(first) == rtp(10, 0, 7, b"\xff" * 160)
    assert receiver.unprotect(first) is None  # a replay
    assert receiver.unprotect(srtp.Sender(srtp.MasterKey.random()).protect(rtp(11, 160, 7, b"\xff" * 160))) is None
    assert receiver.unprotect(b"\x80\x00") is None
    late = sender.protect(rtp(9, 0, 7, b"\xff" * 160))  # within the window, never seen: fine
    assert receiver.unprotect(late) is not None
    assert receiver.rejected == 4


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1 AES_CM_128_HMAC_SHA1_80", "malformed a=crypto line"),
        ("1 AES_CM_128_HMAC_SHA1_80 uri:x", "only inline keys"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:!!!", "not base64"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(b"x" * 16).decode(), "are 16 bytes, not 30"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(b"x" * 30).decode() + "|2^20|1:4", "lifetimes"),
    ],
)
def test_an_sdes_line_we_cannot_use_says_why(line, message):
    with pytest.raises(srtp.SrtpError, match=re.escape(message)):
        srtp.parse_crypto(line)


def test_other_suites_are_skipped_and_the_key_never_printed():
    assert srtp.parse_crypto("2 AEAD_AES_256_GCM inline:abc")[1:] == ("AEAD_AES_256_GCM", None)
    key = srtp.MasterKey.random()
    tag, suite, parsed = srtp.parse_crypto(srtp.crypto_attribute(1, key).removeprefix("crypto:"))
    assert (tag, suite, parsed) == (1, srtp.SUITE, key)
    assert key.key.hex() not in repr(key) and "inline" not in repr(key)


# --- calls --------------------------------------------------------------------------------------------------


class SrtpTrunk(asyncio.DatagramProtocol):
    """Answers INVITE: "srtp" with RTP/SAVP and its own key (libsrtp both ways), "plain" with RTP/AVP, "require"
    488 to a plain offer and SRTP to an SRTP one. It plays `audio` (μ-law) encrypted, and decrypts what arrives."""

    def __init__(self, mode: str, audio: bytes) -> None:
        self.mode, self.audio = mode, audio
        self.key = srtp.MasterKey.random()
        self.outbound = libsrtp(self.key, outbound=True)
        self.inbound: pylibsrtp.Session | None = None
        self.offers: list[str] = []
        self.received: list[bytes] = []
        self.undecryptable = 0
        self.methods: list[str] = []
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp.setblocking(False)
        self.tasks: list[asyncio.Task] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        message = parse(data)
        if not message.is_request:
            return
        self.methods.append(message.method)
        if message.method == "INVITE":
            offer = message.body.decode()
            self.offers.append(offer)
            srtp_offer = "RTP/SAVP" in offer
            if self.mode == "require" and not srtp_offer:
                self.transport.sendto(response_to(message, 488, "Not Acceptable Here", to_tag="st1"), addr)
                return
            port = int(re.search(r"m=audio (\d+)", offer).group(1))
            lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
            if self.mode == "plain" or (not srtp_offer and self.mode != "force"):
                lines.append(f"m=audio {self.rtp.getsockname()[1]} RTP/AVP 0")
            else:
                ours = re.search(r"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:(\S+)", offer)
                material = base64.b64decode(ours.group(1)) if ours else os.urandom(30)
                self.inbound = libsrtp(srtp.MasterKey(material[:16], material[16:]), outbound=False)
                lines += [f"m=audio {self.rtp.getsockname()[1]} RTP/SAVP 0",
                          f"a={srtp.crypto_attribute(1, self.key)}"]  # fmt: skip
            body = ("\r\n".join(lines) + "\r\n").encode()
            contact = f"<sip:trunk@127.0.0.1:{self.transport.get_extra_info('sockname')[1]}>"
            extra = [("Contact", contact), ("Content-Type", "application/sdp")]
            self.transport.sendto(response_to(message, 200, "OK", to_tag="st1", extra=extra, body=body), addr)
            self.tasks += [asyncio.ensure_future(self.play(("127.0.0.1", port))), asyncio.ensure_future(self.listen())]
        elif message.method == "BYE":
            self.transport.sendto(response_to(message, 200, "OK"), addr)

    async def play(self, to) -> None:
        await asyncio.sleep(0.1)
        for n in range(0, len(self.audio), 160):
            packet = rtp(n // 160, n, 0xBEEF, self.audio[n : n + 160])
            self.rtp.sendto(self.outbound.protect(packet) if self.inbound else packet, to)
            await asyncio.sleep(0.005)

    async def listen(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.rtp, 2048)
            if self.inbound is None:
                self.received.append(data)
                continue
            try:
                self.received.append(self.inbound.unprotect(data))
            except pylibsrtp.Error:
                self.undecryptable += 1

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.rtp.close()


def call_trunk(mode: str, *, heard: bytes = b"", **spec):
    async def go():
        loop = asyncio.get_running_loop()
        transport, trunk = await loop.create_datagram_endpoint(lambda: SrtpTrunk(mode, heard),
                                                               local_addr=("127.0.0.1", 0))  # fmt: skip
        port = transport.get_extra_info("sockname")[1]
        try:
            result = await asyncio.wait_for(place_call(CallSpec(
                to=f"sip:alice@127.0.0.1:{port}", audio=CLIP, t1=0.05, digit_timeout=0.5, capture_audio=True,
                detect_sit=False, **spec,
            )), 30)  # fmt: skip
            await asyncio.sleep(0.1)
        finally:
            trunk.close()
            transport.close()
        return result, trunk

    return asyncio.run(go())


CLIP = bytes(range(1, 161)) * 25  # 0.5 s


def test_a_call_whose_media_libsrtp_encrypts_and_decrypts():
    heard = bytes(range(100, 260 - 100)) * 30
    result, trunk = call_trunk("srtp", heard=heard[: 160 * 20], srtp="required")
    assert (result.outcome, result.srtp, result.srtp_rejected) == (ANSWERED, True, 0), result
    assert "m=audio" in trunk.offers[0] and "RTP/SAVP" in trunk.offers[0] and "a=crypto:1 AES_CM_128_HMAC_SHA1_80" in trunk.offers[0]
    # Everything we sent decrypted under libsrtp: the clip, then silence while we waited for a key.
    assert trunk.undecryptable == 0
    payloads = b"".join(packet[12:] for packet in trunk.received if packet[1] & 0x7F == 0)
    assert payloads.startswith(CLIP)
    # And what it sent reached us decrypted.
    assert result.received_audio.startswith(heard[: 160 * 20][:1600])


def test_a_trunk_that_answers_plain_rtp_to_an_srtp_offer_fails_the_call():
    result, trunk = call_trunk("plain", srtp="required")
    assert result.outcome == FAILED
    assert result.error == "answered, but the media cannot be used: the far end answered RTP/AVP, not SRTP, to an offer of SRTP"
    assert "BYE" in trunk.methods


def test_optional_srtp_turns_on_when_the_trunk_refuses_plain_rtp():
    result, trunk = call_trunk("require", srtp="optional")
    assert (result.outcome, result.srtp) == (ANSWERED, True), result
    assert ["RTP/SAVP" in offer for offer in trunk.offers] == [False, True]
    assert trunk.undecryptable == 0 and trunk.received


def test_optional_srtp_stays_plain_with_a_plain_trunk():
    result, trunk = call_trunk("plain", srtp="optional")
    assert (result.outcome, result.srtp) == (ANSWERED, False)
    assert len(trunk.offers) == 1 and "RTP/AVP" in trunk.offers[0]


def test_an_srtp_answer_to_a_plain_offer_fails_the_call():
    result, trunk = call_trunk("force")
    assert result.outcome == FAILED
    assert result.error.endswith("the far end answered SRTP (RTP/SAVP) to an offer of plain RTP")
    assert "BYE" in trunk.methods


def test_sdp_reads_an_srtp_stream():
    media = sdp.parse(b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"
                      + base64.b64encode(os.urandom(30)) + b"\r\n")  # fmt: skip
    assert media.profile == "RTP/SAVP" and len(media.crypto) == 1
