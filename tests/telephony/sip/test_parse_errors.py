"""Bad input to the SIP parsers raises SipParseError and nothing else; the UA and the stream framer survive it.

Each case here was a crash, a bare ValueError or a silent acceptance on main (found by hand or by the
property tests in test_parse_properties.py).
"""

from __future__ import annotations

import asyncio

import pytest

from telephony.sip import digest, sdp
from telephony.sip.message import (
    MAX_MESSAGE,
    MessageTooLarge,
    SipParseError,
    StreamFramer,
    parse,
    response_to,
)
from telephony.sip.transport import StreamTransport
from telephony.sip.types import ANSWERED, FAILED
from telephony.sip.ua import _retry_after, parse_uri
from tests.telephony.sip.test_transactions import _call_against

REQUEST = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@h>;tag=1\r\nTo: <sip:a@b>\r\n" \
          "Call-ID: c1\r\nCSeq: 1 INVITE\r\n"


@pytest.mark.parametrize(
    "data, where, why",
    [
        ("SIP/2.0 ²⁰⁰ OK\r\n\r\n", "start line", "status code"),  # isdigit() but int() refuses: was a ValueError
        ("SIP/2.0 ٢٠٠ OK\r\n\r\n", "start line", "status code"),  # Arabic-Indic digits: was read as 200
        ("SIP/2.0 099 Odd\r\n\r\n", "start line", "status code"),
        ("ÄB sip:a@b SIP/2.0\r\n\r\n", "start line", "not a SIP start line"),
        ("INVITE sip:ä@b SIP/2.0\r\n\r\n", "start line", "not a SIP start line"),
        (REQUEST + "Content-Length: ١\r\n\r\nx", "header Content-Length", "ASCII digits"),
        (REQUEST + "Content-Length: 0_1\r\n\r\nx", "header Content-Length", "ASCII digits"),  # int("0_1") == 1
        (REQUEST + "Content-Length: +1\r\n\r\nx", "header Content-Length", "ASCII digits"),
        (REQUEST + "Content-Length: " + "9" * 5000 + "\r\n\r\n", "header Content-Length", "larger than"),
        (REQUEST + "Content-Length: 1\r\nl: 0\r\n\r\nx", "header Content-Length", "conflicting"),
        (REQUEST + "X-Note: a\rInjected: 1\r\n\r\n", "header line 7", "control character"),  # bare CR
        (REQUEST + "X-Note: a\x00b\r\n\r\n", "header line 7", "control character"),
        (REQUEST + "Bad Name: a\r\n\r\n", "header line 7", "malformed header"),
    ],
)
def test_malformed_messages_raise_sip_parse_error_with_what_and_where(data, where, why):
    with pytest.raises(SipParseError, match=why) as caught:
        parse(data.encode())
    assert caught.value.where == where and why in caught.value.what


@pytest.mark.parametrize(
    "cseq, why",
    [("٤٢ INVITE", "ASCII digits"), ("42", "no method"), ("2147483648 INVITE", "larger than"), ("1 BYE", "not the request")],
)
def test_a_bad_cseq_is_a_sip_parse_error(cseq, why):
    message = parse(REQUEST.replace("CSeq: 1 INVITE", f"CSeq: {cseq}").encode() + b"\r\n")
    with pytest.raises(SipParseError, match=why):
        message.check()


@pytest.mark.parametrize("name", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_check_names_a_missing_mandatory_header(name):
    lines = [line for line in REQUEST.split("\r\n") if not line.startswith(f"{name}:")]
    message = parse("\r\n".join(lines).encode() + b"\r\n")
    with pytest.raises(SipParseError) as caught:
        message.check()
    assert caught.value.where == f"header {name.lower()}" and caught.value.what == "missing"


SDP_HEAD = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"


@pytest.mark.parametrize(
    "media, why",
    [
        ("m=audio ² RTP/AVP 0", "ASCII digits"),  # isdigit() but int() refuses: was a ValueError
        ("m=audio ٥٠٠٠ RTP/AVP 0", "ASCII digits"),  # was read as port 5000
        ("m=audio 5000 RTP/AVP ² 0", "ASCII digits"),
        ("m=audio 5000 RTP/AVP 0\r\na=rtpmap:² PCMU/8000", "ASCII digits"),
        ("m=audio 99999999 RTP/AVP 0", "larger than 65535"),
        ("m=audio 5000 RTP/AVP 300", "larger than 127"),
        ("m=audio 5000 RTP/AVP 0\r\nc=IN IP4 not..an;ip", "not an IP address"),
    ],
)
def test_malformed_sdp_raises_sdp_error(media, why):
    with pytest.raises(sdp.SdpError, match=why) as caught:
        sdp.parse((SDP_HEAD + media + "\r\n").encode())
    assert isinstance(caught.value, SipParseError) and caught.value.where


def test_digest_errors_are_sip_parse_errors():
    with pytest.raises(SipParseError, match="no nonce"):
        digest.parse_challenge('Digest realm="a, nonce="x')


def test_uri_ports_and_retry_after_take_ascii_digits_only():
    with pytest.raises(SipParseError, match="not a SIP URI"):
        parse_uri("sip:a@b:٥٠٦٠")  # was sip:a@b:5060
    assert parse_uri("sip:a@b:5060").port == 5060
    assert _retry_after("٥") is None and _retry_after("5;duration=10") == 5.0 and _retry_after("9" * 50) is None


def test_stream_framer_refuses_an_endless_header_section_without_buffering_it():
    framer = StreamFramer()
    chunk = b"SIP/2.0 200 OK\r\nX: " + b"a" * 4000
    with pytest.raises(MessageTooLarge, match="without a blank line"):
        for _ in range(MAX_MESSAGE // 4000 + 2):
            framer.feed(chunk)
            assert len(framer._buffer) <= MAX_MESSAGE
            chunk = b"a" * 4000
    with pytest.raises(MessageTooLarge):  # broken for good: a stream cannot resynchronise
        framer.feed(b"\r\n\r\n")


def test_stream_framer_refuses_a_huge_content_length_before_the_body_arrives():
    with pytest.raises(MessageTooLarge, match="Content-Length"):
        StreamFramer().feed(b"SIP/2.0 200 OK\r\nContent-Length: 99999999999\r\n\r\n")
    with pytest.raises(MessageTooLarge, match="Content-Length"):
        StreamFramer().feed(b"SIP/2.0 200 OK\r\nl: 65536\r\n\r\n")
    with pytest.raises(SipParseError, match="ASCII digits"):
        StreamFramer().feed("SIP/2.0 200 OK\r\nContent-Length: ١\r\n\r\nx".encode())


def test_stream_framer_takes_a_keepalive_split_across_reads():
    framer = StreamFramer()
    assert framer.feed(b"\r") == []
    got = framer.feed(b"\nSIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert [m.status for m in got] == [200]


async def _hostile_tcp_peer(send) -> tuple[StreamTransport, int]:
    """A TCP server that runs `send(writer)` at a connecting StreamTransport; returns the transport, bytes sent."""
    sent = 0
    finished = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        try:
            sent = await send(writer)
        except (ConnectionError, OSError):
            pass
        finally:
            finished.set()
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = StreamTransport(("127.0.0.1", port), tls=False, server_hostname="127.0.0.1")
    try:
        await transport.open("127.0.0.1")
        await asyncio.wait_for(transport.closed.wait(), 30)
        await asyncio.wait_for(finished.wait(), 30)
    finally:
        transport.close()
        server.close()
    return transport, sent


def test_a_peer_sending_endless_header_bytes_is_cut_off():
    async def endless(writer: asyncio.StreamWriter) -> int:
        writer.write(b"SIP/2.0 200 OK\r\nX-Endless: ")
        sent = 0
        while sent < 100 * MAX_MESSAGE:  # stops early: our side closes and the write fails
            writer.write(b"a" * 8192)
            await writer.drain()
            sent += 8192
        return sent

    transport, sent = asyncio.run(_hostile_tcp_peer(endless))
    assert transport.dropped == 1 and transport.incoming.empty()
    assert sent < 100 * MAX_MESSAGE  # the connection was closed on it, far short of what it meant to send


def test_a_peer_announcing_a_huge_content_length_is_cut_off_before_the_body():
    async def huge(writer: asyncio.StreamWriter) -> int:
        writer.write(b"SIP/2.0 200 OK\r\nCall-ID: a\r\nContent-Length: 1000000000\r\n\r\n")
        await writer.drain()
        sent = 0
        while sent < 100 * MAX_MESSAGE:
            writer.write(b"b" * 8192)
            await writer.drain()
            sent += 8192
        return sent

    transport, sent = asyncio.run(_hostile_tcp_peer(huge))
    assert transport.dropped == 1 and transport.incoming.empty()
    assert sent < 100 * MAX_MESSAGE


def _answer_with_sdp(body: bytes):
    def script(peer, message, addr):
        if message.method == "INVITE" and not getattr(peer, "answered", False):
            peer.answered = True
            peer.reply(response_to(message, 200, "OK", to_tag="t9", extra=[("Content-Type", "application/sdp")],
                                   body=body), addr)
        elif message.method == "BYE":
            peer.reply(response_to(message, 200, "OK"), addr)
    return script


def test_an_answer_with_a_non_ascii_sdp_port_is_a_failed_call_not_an_exception():
    body = (SDP_HEAD + "m=audio ² RTP/AVP 0\r\n").encode()  # on main: ValueError out of place_call
    result, peer = asyncio.run(_call_against(_answer_with_sdp(body), t1=0.05))
    assert result.outcome == FAILED and "media cannot be used" in result.error and "ASCII digits" in result.error
    assert [m.method for m in peer.received] == ["INVITE", "ACK", "BYE"]


def test_an_in_dialog_request_with_a_bad_cseq_gets_400_and_the_call_goes_on():
    def script(peer, message, addr):
        if message.method == "INVITE" and not getattr(peer, "answered", False):
            peer.answered = True
            body = (SDP_HEAD.replace("1.2.3.4", "127.0.0.1") + "m=audio 9 RTP/AVP 0\r\n").encode()
            peer.reply(response_to(message, 200, "OK", to_tag="t9", extra=[("Content-Type", "application/sdp")],
                                   body=body), addr)
        elif message.method == "ACK" and not getattr(peer, "poked", False):
            peer.poked = True
            from_ = message.get("from")
            bad = (
                f"INFO sip:herald@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{addr[1]};branch=z9hG4bKpoke\r\n"
                f"From: {message.get('to')}\r\nTo: {from_}\r\nCall-ID: {message.call_id}\r\nCSeq: ٧ INFO\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            peer.reply(bad.encode(), addr)
        elif message.method == "BYE":
            peer.reply(response_to(message, 200, "OK"), addr)

    result, peer = asyncio.run(_call_against(script, t1=0.05, digit_timeout=0.2))
    assert result.outcome == ANSWERED and result.played_to_end
    answers = [m for m in peer.received if not m.is_request]
    assert [(m.status, m.reason) for m in answers] == [(400, "Bad Request")]
    assert [m.method for m in peer.received if m.is_request] == ["INVITE", "ACK", "BYE"]
