"""The user agent listens to what the carrier plays instead of a SIP code: a SIT in early media, a recorded
announcement ("您拨打的电话已关机") before or after a 200. A scripted trunk on 127.0.0.1 (what sipp cannot stage:
audio made here) plays them as real RTP; the detectors themselves are tested in test_announce.py."""

from __future__ import annotations

import asyncio
import re
import socket

import numpy as np
import pytest

from telephony.sip.message import response_to
from telephony.sip.types import INVALID_NUMBER, NO_ANSWER, CallSpec
from telephony.sip.ua import place_call
from tests.telephony.sip.test_announce import CLIPS, at_level, library, noisy, packets, silence, sit, speech

CLIP = b"\x7f" * 8000  # 1 s


class Trunk(asyncio.DatagramProtocol):
    """Answers INVITE with 183 + SDP (or 200 with `answer`) and plays `audio` at our RTP port, fast (the
    detectors count packets, not wall time); CANCEL gets 200 and 487, BYE 200."""

    def __init__(self, audio: np.ndarray, *, answer: bool) -> None:
        self.audio, self.answer = audio, answer
        self.methods: list[str] = []
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.player: asyncio.Task | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        from telephony.sip.message import parse

        message = parse(data)
        if message.method is None:
            return
        self.methods.append(message.method)
        if message.method == "INVITE" and self.player is None:
            port = int(re.search(rb"m=audio (\d+)", message.body).group(1))
            body = (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                    f"m=audio {self.rtp.getsockname()[1]} RTP/AVP 0 101\r\n"
                    "a=rtpmap:101 telephone-event/8000\r\n").encode()  # fmt: skip
            status, reason = (200, "OK") if self.answer else (183, "Session Progress")
            extra = [("Contact", f"<sip:trunk@127.0.0.1:{self.transport.get_extra_info('sockname')[1]}>"),
                     ("Content-Type", "application/sdp")]  # fmt: skip
            self.invite = message
            self.transport.sendto(response_to(message, status, reason, to_tag="tr1", extra=extra, body=body), addr)
            self.player = asyncio.ensure_future(self.play(("127.0.0.1", port)))
        elif message.method == "CANCEL":
            self.transport.sendto(response_to(message, 200, "OK", to_tag="tr1"), addr)
            self.transport.sendto(response_to(self.invite, 487, "Request Terminated", to_tag="tr1"), addr)
        elif message.method == "BYE":
            self.transport.sendto(response_to(message, 200, "OK"), addr)

    async def play(self, to) -> None:
        for n, payload in enumerate(packets(self.audio)):
            header = bytes([0x80, 0]) + (n & 0xFFFF).to_bytes(2, "big") + (n * 160).to_bytes(4, "big") + b"HRLD"
            self.rtp.sendto(header + payload, to)
            await asyncio.sleep(0.002)


def dial(audio: np.ndarray, *, answer: bool = False, message: bytes = CLIP, **spec) -> tuple:
    """A call to a trunk that plays `audio` as RTP (in early media, or after a 200 with `answer`); the message
    is `message`, and `spec` overrides the CallSpec's short timeouts."""
    async def run():
        loop = asyncio.get_running_loop()
        transport, trunk = await loop.create_datagram_endpoint(lambda: Trunk(audio, answer=answer),
                                                               local_addr=("127.0.0.1", 0))  # fmt: skip
        port = transport.get_extra_info("sockname")[1]
        try:
            result = await asyncio.wait_for(
                place_call(CallSpec(**{"to": f"sip:13800138000@127.0.0.1:{port}", "audio": message, "t1": 0.05,
                                       "ring_timeout": 20, "digit_timeout": 0.3, **spec})), 30)  # fmt: skip
        finally:
            if trunk.player is not None:
                trunk.player.cancel()
            transport.close()
            trunk.rtp.close()
        return result, trunk

    return asyncio.run(run())


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    return tuple(library(tmp_path_factory.mktemp("library")))


def test_a_vacant_code_sit_in_early_media_ends_the_call_as_an_invalid_number():
    audio = np.concatenate((silence(300), sit("VC", peak_dbfs=-24), silence(2000)))
    result, trunk = dial(audio)
    assert (result.outcome, result.sit, result.announcement) == (INVALID_NUMBER, "VC", "")
    assert result.answered_at is None and "SIT VC" in result.error
    assert "CANCEL" in trunk.methods  # we gave up on the ringing at once, without waiting for the ring timeout


def test_a_powered_off_announcement_in_early_media_is_recognised(references):
    spoken = at_level(speech(CLIPS["powered_off"]), -26)
    audio = noisy(np.concatenate((silence(200), spoken, silence(1500))), -26 - 20, seed=9)
    result, trunk = dial(audio, announcements=references)
    assert (result.outcome, result.announcement, result.announcement_name) == (
        NO_ANSWER, "powered_off", "powered_off/mobile",
    )  # fmt: skip
    assert result.answered_at is None and "CANCEL" in trunk.methods


def test_an_announcement_played_after_a_200_is_not_a_person(references):
    """Some carriers answer (200) to play the announcement: the call is hung up, not counted as answered."""
    audio = np.concatenate((silence(200), at_level(speech(CLIPS["invalid_number"]), -24), silence(1500)))
    result, trunk = dial(audio, answer=True, announcements=references, listen_after_answer=8)
    assert (result.outcome, result.announcement) == (INVALID_NUMBER, "invalid_number"), result
    assert not result.played_to_end and "BYE" in trunk.methods


def test_a_person_answering_is_not_taken_for_an_announcement(references):
    audio = np.concatenate((silence(200), at_level(speech("喂？你好，哪位？"), -24), silence(1500)))
    result, _ = dial(audio, answer=True, announcements=references, listen_after_answer=3)
    assert (result.outcome, result.announcement, result.sit) == ("answered", "", "")
