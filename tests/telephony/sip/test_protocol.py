"""The pure parts of the SIP user agent: messages, digest, SDP, RTP, G.711, clips. No network here."""

from __future__ import annotations

import struct
import warnings

import pytest

from telephony.sip import digest, g711, rtp, sdp
from telephony.sip.message import (
    SipParseError,
    StreamFramer,
    header_param,
    parse,
    response_to,
    split_values,
    uri_of,
)
from telephony.sip.ua import outcome_for, parse_uri
from telephony.sip.wav import ClipError, parse_clip

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the standard library's G.711, removed in 3.13: an independent reference while we have it

INVITE = (
    b"INVITE sip:1001@10.0.0.1:5060 SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKabc;rport\r\n"
    b"Via: SIP/2.0/UDP proxy.example;branch=z9hG4bKdef, SIP/2.0/TCP 10.9.9.9;branch=z9hG4bKghi\r\n"
    b'f: "Herald" <sip:herald@10.0.0.2;transport=udp>;tag=abc123\r\n'
    b"t: <sip:1001@10.0.0.1>\r\n"
    b"i: call-1@herald\r\n"
    b"CSeq: 42 INVITE\r\n"
    b"Subject: a long\r\n  folded header\r\n"
    b"c: application/sdp\r\n"
    b"l: 4\r\n\r\n"
    b"v=0\r\nextra-bytes-beyond-content-length"
)


def test_parse_request_with_compact_and_repeated_headers():
    m = parse(INVITE)
    assert m.is_request and m.method == "INVITE" and m.uri == "sip:1001@10.0.0.1:5060"
    assert m.call_id == "call-1@herald"
    assert m.cseq == (42, "INVITE")
    assert m.branch == "z9hG4bKabc"
    assert len(m.get_all("via")) == 3
    assert m.get("subject") == "a long folded header"
    assert m.body == b"v=0\r"  # Content-Length wins over what follows
    assert header_param(m.get("from"), "tag") == "abc123"
    assert header_param(m.get("from"), "transport") is None  # a URI parameter, not a header parameter
    assert uri_of(m.get("from")) == "sip:herald@10.0.0.2;transport=udp"


def test_parse_response_and_reason():
    m = parse(b"SIP/2.0 486 Busy Here\r\nCall-ID: x\r\nCSeq: 2 INVITE\r\nContent-Length: 0\r\n\r\n")
    assert not m.is_request and m.status == 486 and m.reason == "Busy Here" and m.cseq == (2, "INVITE")


@pytest.mark.parametrize(
    "data, why",
    [
        (b"HELLO\r\n\r\n", "not a SIP start line"),
        (b"SIP/2.0 2x0 OK\r\n\r\n", "not a SIP start line"),
        (b"INVITE sip:a@b SIP/2.0\r\nno-colon-here\r\n\r\n", "malformed header"),
        (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nabc", "Content-Length 10 but 3"),
        (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: ten\r\n\r\n", "not a number"),
        (b"INVITE sip:a@b SIP/2.0\r\nVia: x", "no blank line"),
        (b"INVITE sip:a@b SIP/2.0\r\nX: \xff\xfe\r\n\r\n", "not UTF-8"),
    ],
)
def test_malformed_messages_say_what_is_wrong(data, why):
    with pytest.raises(SipParseError, match=why):
        parse(data)


def test_stream_framer_splits_by_content_length_and_skips_keepalives():
    one = b"SIP/2.0 100 Trying\r\nCall-ID: a\r\nContent-Length: 0\r\n\r\n"
    two = b"SIP/2.0 200 OK\r\nCall-ID: a\r\nl: 3\r\n\r\nxyz"
    framer = StreamFramer()
    stream = b"\r\n\r\n" + one + two
    got = []
    for i in range(0, len(stream), 7):  # arrives in arbitrary pieces
        got += framer.feed(stream[i : i + 7])
    assert [m.status for m in got] == [100, 200] and got[1].body == b"xyz"
    with pytest.raises(SipParseError, match="no Content-Length"):
        StreamFramer().feed(b"SIP/2.0 200 OK\r\nCall-ID: a\r\n\r\n")


def test_split_values_respects_quotes_and_brackets():
    assert split_values('"a, b" <sip:x@y>;p=1, <sip:z@w;q=a,b>') == ['"a, b" <sip:x@y>;p=1', "<sip:z@w;q=a,b>"]


def test_response_echoes_the_transaction_and_adds_our_tag():
    request = parse(INVITE)
    reply = parse(response_to(request, 200, "OK", to_tag="mine"))
    assert reply.status == 200 and reply.get_all("via") == request.get_all("via")
    assert header_param(reply.get("to"), "tag") == "mine"
    assert reply.get("cseq") == "42 INVITE" and reply.call_id == request.call_id


def test_sip_uris():
    uri = parse_uri("sip:+8613800138000@trunk.example.com:5080;transport=udp")
    assert (uri.user, uri.host, uri.port) == ("+8613800138000", "trunk.example.com", 5080)
    assert parse_uri("sips:1001@[2001:db8::1]").default_port == 5061
    for bad in ["http://x", "sip:", "sip:1@host:70000", "1001@host"]:
        with pytest.raises(ValueError):
            parse_uri(bad)


@pytest.mark.parametrize(
    "code, outcome",
    [(486, "busy"), (600, "busy"), (480, "no-answer"), (408, "no-answer"), (603, "declined"),
     (404, "invalid-number"), (484, "invalid-number"), (604, "invalid-number"), (487, "canceled"),
     (403, "failed"), (500, "failed"), (488, "failed")],
)
def test_final_responses_map_to_outcomes(code, outcome):
    assert outcome_for(code) == outcome


# --- digest: RFC 2617 3.5 and RFC 7616 3.9.1 worked examples --------------------------------------------
def test_digest_md5_qop_auth_matches_rfc2617_example():
    challenge = digest.parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = digest.authorization(
        challenge, method="GET", uri="/dir/index.html", username="Mufasa", password="Circle Of Life",
        cnonce="0a4f113b",
    )
    assert 'response="6629fae49393a05397450978507c4ef1"' in value
    assert "qop=auth," in value and "nc=00000001" in value and 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in value


@pytest.mark.parametrize(
    "algorithm, expected",
    [("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
     ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")],
)
def test_digest_matches_rfc7616_examples(algorithm, expected):
    challenge = digest.parse_challenge(
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    value = digest.authorization(
        challenge, method="GET", uri="/dir/index.html", username="Mufasa", password="Circle of Life",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert f'response="{expected}"' in value and f"algorithm={algorithm}" in value


def test_digest_without_qop_is_rfc2069_style():
    import hashlib

    challenge = digest.parse_challenge('Digest realm="sipp", nonce="abc"')
    value = digest.authorization(challenge, method="INVITE", uri="sip:1@h", username="u", password="p")
    ha1 = hashlib.md5(b"u:sipp:p").hexdigest()
    ha2 = hashlib.md5(b"INVITE:sip:1@h").hexdigest()
    assert f'response="{hashlib.md5(f"{ha1}:abc:{ha2}".encode()).hexdigest()}"' in value
    assert "qop=" not in value and "cnonce" not in value


def test_digest_prefers_sha256_and_explains_what_it_cannot_answer():
    picked = digest.pick(['Digest realm="r", nonce="1", algorithm=MD5', 'Digest realm="r", nonce="2", algorithm=SHA-256'])
    assert picked.algorithm == "SHA-256" and picked.nonce == "2"
    with pytest.raises(digest.DigestError, match="SHA-512-256 is not supported"):
        digest.pick(['Digest realm="r", nonce="1", algorithm=SHA-512-256'])
    with pytest.raises(digest.DigestError, match="not Digest"):
        digest.pick(['Basic realm="r"'])
    with pytest.raises(digest.DigestError, match="no nonce"):
        digest.parse_challenge('Digest realm="r"')


# --- SDP ------------------------------------------------------------------------------------------------
def test_offer_lists_g711_and_telephone_event():
    body = sdp.offer("10.0.0.2", 40000, session_id=7).decode()
    assert "m=audio 40000 RTP/AVP 0 8 101\r\n" in body and "a=rtpmap:101 telephone-event/8000" in body
    assert "c=IN IP4 10.0.0.2" in body


def test_answer_parsing_picks_the_far_ends_codec_and_event_type():
    answer = (
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        b"m=audio 30000 RTP/AVP 8 96\r\nc=IN IP4 192.0.2.9\r\na=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:96 telephone-event/8000\r\na=sendrecv\r\nm=video 0 RTP/AVP 31\r\n"
    )
    media = sdp.parse(answer)
    assert (media.ip, media.port, media.codec_name, media.event_pt) == ("192.0.2.9", 30000, "PCMA", 96)


@pytest.mark.parametrize(
    "direction, address, held, ours",
    [
        ("sendrecv", "192.0.2.9", False, "sendrecv"),
        ("sendonly", "192.0.2.9", True, "recvonly"),
        ("inactive", "192.0.2.9", True, "inactive"),
        ("recvonly", "192.0.2.9", False, "sendonly"),
        ("sendrecv", "0.0.0.0", True, "recvonly"),  # the RFC 2543 hold
    ],
)
def test_an_offer_says_whether_it_holds_the_call_and_our_answer_mirrors_it(direction, address, held, ours):
    offer = (
        f"v=0\r\nc=IN IP4 {address}\r\nt=0 0\r\nm=audio 30000 RTP/AVP 96 0 101\r\na=rtpmap:96 PCMA/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    ).encode()
    media = sdp.parse(offer)
    assert (media.on_hold, media.answer_direction, media.codecs, media.codec) == (held, ours, (8, 0), 8)
    body = sdp.answer("10.0.0.2", 40000, session_id=7, version=2, codec=8, event_pt=101, direction=ours).decode()
    assert body.endswith(f"a={ours}\r\n") and "m=audio 40000 RTP/AVP 8 101\r\n" in body


@pytest.mark.parametrize(
    "body, why",
    [
        (b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP 0\r\n", "rejected the audio stream"),
        (b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n", "no common codec.*G729"),
        (b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n", "no connection address"),
        (b"v=0\r\nc=IN IP4 1.2.3.4\r\n", "no audio stream"),
        (b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 UDP/TLS/RTP/SAVP 0\r\n", "is not RTP/AVP"),
    ],
)
def test_unusable_sdp_says_why(body, why):
    with pytest.raises(sdp.SdpError, match=why):
        sdp.parse(body)


# --- RTP and RFC 4733 digits ----------------------------------------------------------------------------
def test_rtp_header_round_trip():
    packet = rtp.pack(0, 65535, 2**32 - 1, 0xDEADBEEF, b"\xff" * 160, marker=True)
    assert len(packet) == 172 and packet[0] == 0x80 and packet[1] == 0x80
    parsed = rtp.parse(packet)
    assert (parsed.pt, parsed.seq, parsed.ts, parsed.ssrc, parsed.marker) == (0, 65535, 2**32 - 1, 0xDEADBEEF, True)
    assert parsed.payload == b"\xff" * 160


def test_rtp_parse_handles_csrc_extension_and_padding():
    header = bytes([0x80 | 0x20 | 0x10 | 1, 101]) + struct.pack("!HII", 1, 2, 3)
    packet = header + b"CSRC" + struct.pack("!HH", 0xBEDE, 1) + b"EXTN" + b"\x05\x8a\x00\xa0" + b"\x00\x00\x03"
    parsed = rtp.parse(packet)
    assert parsed.payload == b"\x05\x8a\x00\xa0"


@pytest.mark.parametrize(
    "junk",
    [b"", b"\x80\x00", b"\x40" + b"\x00" * 20, bytes([0x8F, 0]) + b"\x00" * 10, bytes([0xA0, 0]) + b"\x00" * 10 + b"\xff"],
)
def test_malformed_rtp_is_ignored(junk):
    assert rtp.parse(junk) is None


def _event(digit: int, ts: int, end: bool, duration: int = 160) -> rtp.RtpPacket:
    payload = bytes([digit, 0x8A if end else 0x0A]) + struct.pack("!H", duration)
    return rtp.parse(rtp.pack(101, 1, ts, 1, payload))


def test_dtmf_end_packets_sent_three_times_count_once():
    decoder = rtp.DtmfDecoder()
    got = "".join(decoder.feed(p) for p in [_event(1, 100, False), _event(1, 100, False)] + [_event(1, 100, True)] * 3)
    got += "".join(decoder.feed(p) for p in [_event(11, 900, False)] + [_event(11, 900, True)] * 3)
    assert got == "1#"


def test_dtmf_event_whose_end_was_lost_still_counts():
    decoder = rtp.DtmfDecoder()
    got = decoder.feed(_event(5, 100, False)) + decoder.feed(_event(7, 800, False)) + decoder.feed(_event(7, 800, True))
    assert got == "57"
    assert decoder.feed(_event(9, 1600, False)) == "" and decoder.flush() == "9" and decoder.flush() == ""


def test_dtmf_ignores_short_and_non_dtmf_events():
    decoder = rtp.DtmfDecoder()
    short = rtp.parse(rtp.pack(101, 1, 5, 1, b"\x01\x80"))
    flash = _event(16, 10, True)  # event 16 is hook flash, not a digit
    assert decoder.feed(short) == "" and decoder.feed(flash) == ""


# --- G.711 against the standard library's implementation ----------------------------------------------
def test_g711_matches_audioop_for_every_sample_and_code():
    samples = struct.pack("<65536h", *range(-32768, 32768))
    assert bytes(g711.linear_to_ulaw(s) for s in range(-32768, 32768)) == audioop.lin2ulaw(samples, 2)
    assert bytes(g711.linear_to_alaw(s) for s in range(-32768, 32768)) == audioop.lin2alaw(samples, 2)
    codes = bytes(range(256))
    assert struct.pack("<256h", *map(g711.ulaw_to_linear, codes)) == audioop.ulaw2lin(codes, 2)
    assert struct.pack("<256h", *map(g711.alaw_to_linear, codes)) == audioop.alaw2lin(codes, 2)
    assert g711.ulaw_to_alaw(codes) == audioop.lin2alaw(audioop.ulaw2lin(codes, 2), 2)


# --- telephony clips -----------------------------------------------------------------------------------
def _wav(code: int, rate: int, channels: int, bits: int, data: bytes) -> bytes:
    fmt = struct.pack("<HHIIHH", code, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def test_clips_in_mulaw_alaw_and_pcm16_become_mulaw():
    ulaw = bytes(range(256))
    assert parse_clip(_wav(7, 8000, 1, 8, ulaw)) == ulaw
    alaw = g711.ulaw_to_alaw(ulaw)
    assert parse_clip(_wav(6, 8000, 1, 8, alaw)) == g711.alaw_to_ulaw(alaw)
    pcm = struct.pack("<4h", 0, 1000, -1000, 32767)
    assert parse_clip(_wav(1, 8000, 1, 16, pcm)) == audioop.lin2ulaw(pcm, 2)


@pytest.mark.parametrize(
    "data, why",
    [
        (b"not a wav at all", "not a WAV file"),
        (_wav(7, 16000, 1, 8, b"\xff" * 10), "16000 Hz"),
        (_wav(7, 8000, 2, 8, b"\xff" * 10), "2 channels"),
        (_wav(3, 8000, 1, 32, b"\x00" * 8), "encoding 3 with 32 bits"),
        (_wav(7, 8000, 1, 8, b""), "empty"),
    ],
)
def test_unplayable_clips_say_why(data, why):
    with pytest.raises(ClipError, match=why):
        parse_clip(data, name="clip.wav")


def test_challenge_headers_are_never_split_at_their_commas():
    m = parse(
        b"SIP/2.0 401 Unauthorized\r\nCall-ID: a\r\nCSeq: 1 INVITE\r\n"
        b'WWW-Authenticate: Digest realm="r", nonce="n1", qop="auth", algorithm=MD5\r\n'
        b'WWW-Authenticate: Digest realm="r", nonce="n2", algorithm=SHA-256\r\nContent-Length: 0\r\n\r\n'
    )
    values = m.get_all("www-authenticate")
    assert len(values) == 2 and digest.pick(values).nonce == "n2"


# --- RTCP ---------------------------------------------------------------------------------------------------
def test_rtcp_reports_round_trip_and_garbage_yields_nothing():
    from telephony.sip import rtcp

    report = rtcp.receiver_report(1, 0xABCD, fraction_lost=0.5, cumulative_lost=-2, highest_seq=70000, jitter=24)
    (block,), bye = rtcp.reports_about(report, 0xABCD)
    assert (block.fraction_lost, block.cumulative_lost, block.highest_seq, block.jitter_ms, bye) == (
        0.5, -2, 70000, 3.0, False,
    )  # fmt: skip
    assert rtcp.reports_about(report, 0x1234) == ([], False)  # about another stream
    sr = rtcp.sender_report(7, rtp_timestamp=1, packets=2, octets=320, cname="herald@10.0.0.2", now=0.5, bye=True)
    assert len(sr) % 4 == 0 and rtcp.reports_about(sr, 7) == ([], True)
    for junk in (b"", b"\x00" * 3, b"\x40\xc8\x00\x01", report[:-4], b"\x81\xc9\xff\xff" + report[4:]):
        assert rtcp.reports_about(junk, 0xABCD) == ([], False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("sip.example.com", ("sip.example.com", 5060)), ("10.0.0.1:5070", ("10.0.0.1", 5070)),
     ("[2001:db8::1]:5062", ("2001:db8::1", 5062)), ("[2001:db8::1]", ("2001:db8::1", 5060)),
     ("2001:db8::1", ("2001:db8::1", 5060)), (" host:1 ", ("host", 1))],
)
def test_host_and_port_are_read_one_way_everywhere(text, expected):
    from telephony.sip.message import split_host_port, uri_host

    assert split_host_port(text, 5060) == expected
    assert uri_host(expected[0]) == (f"[{expected[0]}]" if ":" in expected[0] else expected[0])


@pytest.mark.parametrize("text", ["", ":5060", "host:0", "host:65536", "host:x", "host:", "[2001:db8::1]x", "[::1]:"])
def test_a_host_and_port_that_is_neither_is_refused(text):
    from telephony.sip.message import split_host_port

    with pytest.raises(ValueError):
        split_host_port(text, 5060)
