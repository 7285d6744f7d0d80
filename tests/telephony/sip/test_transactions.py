"""Transaction timers and robustness, against a scripted UDP peer on 127.0.0.1 (what sipp cannot stage)."""

from __future__ import annotations

import asyncio
import select
import socket

from telephony.sip.message import parse, response_to
from telephony.sip.types import ANSWERED, FAILED, NO_ANSWER, CallSpec
from telephony.sip.ua import place_call
from tests.wait import until

CLIP = b"\x7f" * 1600  # 0.2 s


class Peer(asyncio.DatagramProtocol):
    """A UDP endpoint that records what it receives and runs `script(peer, message, addr)` for each."""

    def __init__(self, script) -> None:
        self.script, self.received = script, []
        self.closed = asyncio.Event()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed.set()  # the socket is closed now

    def datagram_received(self, data, addr) -> None:
        message = parse(data)
        self.received.append(message)
        self.script(self, message, addr)

    def reply(self, data: bytes, addr) -> None:
        self.transport.sendto(data, addr)


async def _call_against(script, **spec_args):
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(lambda: Peer(script), local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        result = await place_call(CallSpec(to=f"sip:1001@127.0.0.1:{port}", audio=CLIP, **spec_args))
        await until(lambda: not unread(transport), "the peer to read what was sent last (the final ACK)")
    finally:
        transport.close()
    return result, peer


def unread(transport) -> bool:
    """Whether a datagram is waiting in the peer's socket (on loopback one is there as soon as it is sent)."""
    return bool(select.select([transport.get_extra_info("socket")], [], [], 0)[0])


def test_silent_trunk_gets_invite_retransmissions_then_timer_b():
    result, peer = asyncio.run(_call_against(lambda *a: None, t1=0.05))
    invites = [m for m in peer.received if m.method == "INVITE"]
    # Timer A: sent at 0, then after 50, 100, 200, 400, 800, 1600 ms; Timer B gives up at 64 x T1 = 3.2 s.
    # Seven sends before Timer B's 64 x T1 is what doubling gives (a fixed T1 interval would send 64): the
    # count shows the backoff without asserting wall-clock gaps.
    assert len(invites) == 7
    assert len({m.branch for m in invites}) == 1 and len({m.cseq for m in invites}) == 1
    assert result.outcome == FAILED and result.sip_code is None and "Timer B" in result.error


def ring_until_cancelled(peer, message, addr):
    """A callee that rings until the caller gives up: 180, then 200 to the CANCEL and 487 to the INVITE."""
    if message.method == "INVITE":
        peer.reply(response_to(message, 180, "Ringing", to_tag="t1"), addr)
    elif message.method == "CANCEL":
        peer.reply(response_to(message, 200, "OK", to_tag="t1"), addr)
        invite = next(m for m in peer.received if m.method == "INVITE")
        peer.reply(response_to(invite, 487, "Request Terminated", to_tag="t1"), addr)


def test_provisional_response_stops_retransmission_and_ring_timeout_cancels():
    result, peer = asyncio.run(_call_against(ring_until_cancelled, t1=0.05, ring_timeout=0.6))
    methods = [m.method for m in peer.received]
    assert methods.count("INVITE") == 1  # the 180 stopped Timer A
    assert methods[-2:] == ["CANCEL", "ACK"], methods
    cancel = next(m for m in peer.received if m.method == "CANCEL")
    assert cancel.branch == peer.received[0].branch and cancel.cseq == (peer.received[0].cseq[0], "CANCEL")
    assert result.outcome == NO_ANSWER and result.sip_code == 487


def test_garbage_and_stray_messages_do_not_break_an_answered_call():
    def script(peer, message, addr):
        if message.method == "INVITE" and not peer.answered:
            peer.answered = True
            for junk in (b"\x00\x01garbage", b"SIP/2.0 200 OK\r\nContent-Length: 99\r\n\r\nshort", b"HELLO\r\n\r\n"):
                peer.reply(junk, addr)
            stray = response_to(message, 200, "OK", to_tag="x")  # wrong Call-ID: not ours, ignored
            peer.reply(stray.replace(message.call_id.encode(), b"someone-else"), addr)
            body = f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" \
                   f"m=audio {peer.rtp_port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n".encode()
            peer.reply(response_to(message, 200, "OK", to_tag="t9",
                                   extra=[("Contact", f"<sip:far@127.0.0.1:{addr[1]}>"),
                                          ("Content-Type", "application/sdp")], body=body), addr)
        elif message.method == "BYE":
            peer.reply(response_to(message, 200, "OK"), addr)

    rtp_sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp_sink.bind(("127.0.0.1", 0))
    rtp_sink.setblocking(False)

    def scripted(peer, message, addr):
        peer.__dict__.setdefault("answered", False)
        peer.rtp_port = rtp_sink.getsockname()[1]
        script(peer, message, addr)

    try:
        result, peer = asyncio.run(_call_against(scripted, t1=0.05, digit_timeout=0.2))
        packets = 0
        while True:
            try:
                rtp_sink.recv(2048)
            except BlockingIOError:
                break
            packets += 1
    finally:
        rtp_sink.close()
    assert result.outcome == ANSWERED and result.played_to_end and result.hangup_by == "local"
    assert packets == result.rtp_packets_sent + result.silence_packets_sent  # the clip, then silence for the key wait
    assert result.rtp_packets_sent == 10 and result.silence_packets_sent > 0
    assert [m.method for m in peer.received] == ["INVITE", "ACK", "BYE"]


def _open_fds() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


def test_every_path_closes_its_sockets_and_tasks():
    def busy(peer, message, addr):
        if message.method == "INVITE":
            peer.reply(response_to(message, 486, "Busy Here", to_tag="b"), addr)

    def ringing(peer, message, addr):
        if message.method == "INVITE":
            peer.reply(response_to(message, 180, "Ringing", to_tag="r"), addr)

    async def scenario():
        before_fds, before_tasks = _open_fds(), len(asyncio.all_tasks())
        busy_result, _ = await _call_against(busy, t1=0.05)
        silent_result, _ = await _call_against(lambda *a: None, t1=0.02)
        # A caller that gives up on a ringing call: the task is cancelled, the far end still gets a CANCEL.
        loop = asyncio.get_running_loop()
        transport, peer = await loop.create_datagram_endpoint(lambda: Peer(ringing), local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        rang = asyncio.Event()

        async def progress(event: str) -> None:
            if event == "ringing":
                rang.set()

        spec = CallSpec(to=f"sip:1@127.0.0.1:{port}", audio=CLIP, t1=0.05)
        task = asyncio.create_task(place_call(spec, on_progress=progress))
        await asyncio.wait_for(rang.wait(), 30)  # the caller gives up once the call rings
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await until(lambda: any(m.method == "CANCEL" for m in peer.received) and not unread(transport),
                    "the peer to read the CANCEL")
        transport.close()
        await asyncio.wait_for(peer.closed.wait(), 30)
        leaked_fds, leaked_tasks = _open_fds() - before_fds, len(asyncio.all_tasks()) - before_tasks
        return busy_result, silent_result, [m.method for m in peer.received], leaked_fds, leaked_tasks

    busy_result, silent_result, methods, leaked_fds, leaked_tasks = asyncio.run(scenario())
    assert busy_result.outcome == "busy" and silent_result.outcome == FAILED
    assert methods == ["INVITE", "CANCEL"]
    assert leaked_fds <= 0 and leaked_tasks <= 0, (leaked_fds, leaked_tasks)  # other tests may close theirs meanwhile


def test_abort_cancels_a_ringing_call_with_outcome_canceled():
    async def scenario():
        abort = asyncio.Event()
        asyncio.get_running_loop().call_later(0.3, abort.set)
        loop = asyncio.get_running_loop()
        transport, peer = await loop.create_datagram_endpoint(
            lambda: Peer(ring_until_cancelled), local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        try:
            return await place_call(CallSpec(to=f"sip:1@127.0.0.1:{port}", audio=CLIP, t1=0.05), abort=abort)
        finally:
            transport.close()

    result = asyncio.run(scenario())
    assert result.outcome == "canceled" and result.sip_code == 487


def test_rtcp_sender_reports_go_to_the_port_after_rtp_and_the_far_ends_report_is_kept():
    """The far end answers with RTP on an even port and RTCP on the next; it reports 25% of our packets lost and
    10 ms of jitter. Our sender reports (SR + SDES) arrive while the call lasts, with a BYE at the end, and
    count what we sent."""
    from telephony.sip import rtcp

    rtp_sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtcp_sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(50):  # an even port with its odd neighbour free
        rtp_sink.bind(("127.0.0.1", 0))
        port = rtp_sink.getsockname()[1]
        try:
            if port % 2:
                raise OSError
            rtcp_sink.bind(("127.0.0.1", port + 1))
            break
        except OSError:
            rtp_sink.close()
            rtp_sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for sock in (rtp_sink, rtcp_sink):
        sock.setblocking(False)
    reports: list[bytes] = []

    def script(peer, message, addr):
        if message.method == "INVITE":
            body = f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" \
                   f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n".encode()
            peer.reply(response_to(message, 200, "OK", to_tag="t9",
                                   extra=[("Contact", f"<sip:far@127.0.0.1:{addr[1]}>"),
                                          ("Content-Type", "application/sdp")], body=body), addr)
        elif message.method == "BYE":
            peer.reply(response_to(message, 200, "OK"), addr)

    async def far_end_reports() -> None:
        """Read our reports; answer the first with a receiver report about our stream."""
        while True:
            try:
                data, addr = rtcp_sink.recvfrom(2048)
            except BlockingIOError:
                await asyncio.sleep(0.01)
                continue
            reports.append(data)
            if len(reports) == 1:
                ours = int.from_bytes(data[4:8], "big")
                rtcp_sink.sendto(rtcp.receiver_report(
                    0xFEED, ours, fraction_lost=0.25, cumulative_lost=3, highest_seq=40, jitter=80), addr)  # fmt: skip

    async def run():
        reader = asyncio.ensure_future(far_end_reports())
        try:
            return await _call_against(script, t1=0.05, digit_timeout=0.6, rtcp_interval=0.2)
        finally:
            await asyncio.sleep(0.05)
            reader.cancel()

    try:
        result, _ = asyncio.run(run())
    finally:
        rtp_sink.close()
        rtcp_sink.close()
    assert result.outcome == ANSWERED
    assert len(reports) == result.rtcp_reports_sent >= 3  # at least one in the call, one more, and the BYE
    assert (result.rtcp_packets_received, result.far_end_fraction_lost, result.far_end_cumulative_lost,
            result.far_end_jitter_ms) == (1, 0.25, 3, 10.0)  # fmt: skip
    last = reports[-1]
    assert [last[1], last[29]] == [rtcp.SR, rtcp.SDES] and rtcp.BYE in last[28:]
    assert rtcp.reports_about(last, 0)[1] is True  # it carries a BYE
    packets, octets = int.from_bytes(last[20:24], "big"), int.from_bytes(last[24:28], "big")
    assert packets == result.rtp_packets_sent + result.silence_packets_sent and octets == 160 * packets
