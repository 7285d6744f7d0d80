"""Property-based tests of the SIP message, SDP and digest parsers and the stream framer (hypothesis).

Arbitrary bytes and near-valid messages (a valid one with a few characters changed) must give a parsed
value or the typed error, never anything else; valid messages survive serialise -> parse unchanged. Every
run is derandomised and bounded by max_examples, so CI sees the same examples in a few seconds.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telephony.sip import digest, sdp
from telephony.sip.message import (
    Message,
    SipParseError,
    StreamFramer,
    header_param,
    parse,
    serialise,
    split_values,
    uri_of,
)

BOUNDED = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# What makes parsers trip: digits that are not ASCII, control characters, separators, quotes and brackets.
NASTY = "\r\n\t\x00\x7f :;,=\"'<>/\\@0129١²٣٤٥ Ä€\U0001f600"
nasty_text = st.text(alphabet=st.sampled_from(NASTY) | st.characters(), max_size=12)

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
token = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=12)
# A header value as parse() returns it: no control characters, no whitespace at either end (UTF-8 allowed).
value = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=30
).map(lambda v: v.strip(" \t")).filter(lambda v: v == v.strip())
METHODS = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE", "NOTIFY"]


@st.composite
def valid_messages(draw) -> tuple[str, list[tuple[str, str]], bytes]:
    """A start line, headers (Content-Length left to serialise) and a body."""
    if draw(st.booleans()):
        method = draw(st.sampled_from(METHODS))
        user = draw(st.text(alphabet="abc0123456789+", min_size=1, max_size=10))
        start = f"{method} sip:{user}@127.0.0.1:5060 SIP/2.0"
    else:
        method = draw(st.sampled_from(METHODS))
        start = f"SIP/2.0 {draw(st.integers(100, 699))} {draw(value)}".rstrip()
    number = draw(st.integers(0, 2**31 - 1))
    headers = [
        ("Via", f"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{draw(token)}"),
        ("From", f"<sip:herald@127.0.0.1>;tag={draw(token)}"),
        ("To", "<sip:1001@127.0.0.1>"),
        ("Call-ID", draw(token)),
        ("CSeq", f"{number} {method}"),
    ]
    extra = draw(st.lists(st.tuples(token, value), max_size=5))
    headers += [(name, v) for name, v in extra if name.lower() not in ("content-length", "l")]
    body = draw(st.binary(max_size=200))
    return start, headers, body


def _use(message: Message) -> None:
    """Everything the UA reads from a message; only SipParseError may come out."""
    message.check()
    _ = message.is_request, message.method, message.uri, message.status, message.reason, message.cseq
    _ = message.call_id, message.branch
    for name, raw in message.headers:
        message.get_all(name)
        split_values(raw)
        header_param(raw, "tag")
        uri_of(raw)


@st.composite
def mutated(draw, original: bytes) -> bytes:
    """`original` with a few spans replaced by nasty characters or random bytes."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        digits = [i for i, byte in enumerate(data) if 0x30 <= byte <= 0x39]
        kind = draw(st.sampled_from(["nasty", "bytes", "digit"] if digits else ["nasty", "bytes"]))
        if kind == "digit":  # a number that str.isdigit() and int() accept but the grammar does not
            at = draw(st.sampled_from(digits))
            data[at : at + 1] = draw(st.sampled_from(["²", "١", "٣", "\uff15", "_", "+"])).encode()
            continue
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 6))
        if kind == "nasty":
            new = draw(nasty_text).encode("utf-8", "surrogatepass")
        else:
            new = draw(st.binary(max_size=6))
        data[at : at + cut] = new
    return bytes(data)


@BOUNDED
@given(st.binary(max_size=400))
def test_arbitrary_bytes_parse_or_raise_sip_parse_error(data):
    try:
        _use(parse(data))
    except SipParseError:
        pass


@BOUNDED
@given(valid_messages().flatmap(lambda m: mutated(serialise(*m))))
def test_near_valid_messages_parse_or_raise_sip_parse_error(data):
    try:
        _use(parse(data))
    except SipParseError:
        pass


@BOUNDED
@given(valid_messages())
def test_valid_messages_round_trip(parts):
    start, headers, body = parts
    message = parse(serialise(start, headers, body))
    message.check()
    assert message.start_line == start and message.body == body
    assert message.headers == [*headers, ("Content-Length", str(len(body)))]
    assert parse(message.to_bytes()) == message


@BOUNDED
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_framer_on_arbitrary_chunks_raises_only_sip_parse_error_and_stays_bounded(chunks):
    framer = StreamFramer(max_message=1024)  # a small cap so that examples reach it
    try:
        for chunk in chunks:
            for message in framer.feed(chunk):
                _use(message)
            assert len(framer._buffer) <= 1024 + len(chunk)
    except SipParseError:
        pass


@BOUNDED
@given(st.lists(valid_messages(), min_size=1, max_size=4), st.data())
def test_framer_recovers_valid_messages_from_any_split(messages, data):
    wire = b"".join(b"\r\n" * data.draw(st.integers(0, 2)) + serialise(*m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    framer, got = StreamFramer(), []
    for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        got += framer.feed(wire[a:b])
    assert got == [parse(serialise(*m)) for m in messages]


@BOUNDED
@given(valid_messages().flatmap(lambda m: mutated(serialise(*m))), st.integers(1, 50))
def test_framer_on_near_valid_streams_raises_only_sip_parse_error(wire, step):
    framer = StreamFramer()
    try:
        for at in range(0, len(wire), step):
            for message in framer.feed(wire[at : at + step]):
                _use(message)
    except SipParseError:
        pass


# --- SDP -----------------------------------------------------------------------------------------------------
addresses = st.ip_addresses().map(str)
ports = st.integers(1, 65535)


@BOUNDED
@given(st.binary(max_size=300))
def test_sdp_arbitrary_bytes_parse_or_raise_sdp_error(data):
    try:
        sdp.parse(data)
    except sdp.SdpError:
        pass


@BOUNDED
@given(st.builds(lambda ip, port, sid: sdp.offer(ip, port, session_id=sid), addresses, ports, st.integers(0, 2**31))
       .flatmap(mutated))
def test_sdp_near_valid_parses_or_raises_sdp_error(data):
    try:
        media = sdp.parse(data)
    except sdp.SdpError:
        return
    assert 0 < media.port < 65536 and media.codec in (sdp.PCMU, sdp.PCMA)


@BOUNDED
@given(addresses, ports, st.integers(0, 2**31), st.sampled_from([sdp.PCMU, sdp.PCMA]), st.sampled_from([None, 96, 101]))
def test_sdp_offer_and_answer_round_trip(ip, port, session_id, codec, event_pt):
    assert sdp.parse(sdp.offer(ip, port, session_id=session_id)) == sdp.Media(ip, port, sdp.PCMU, sdp.TELEPHONE_EVENT)
    body = sdp.answer(ip, port, session_id=session_id, version=2, codec=codec, event_pt=event_pt)
    assert sdp.parse(body) == sdp.Media(ip, port, codec, event_pt)


# --- digest --------------------------------------------------------------------------------------------------
quotable = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=20)


def _challenge_header(c: digest.Challenge) -> str:
    """A WWW-Authenticate value as a server writes it (quoted strings escaped as RFC 7616 says)."""

    def q(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    parts = [f"realm={q(c.realm)}", f"nonce={q(c.nonce)}", f"algorithm={c.algorithm}"]
    if c.qop:
        parts.append(f"qop={q(','.join(c.qop))}")
    if c.opaque is not None:
        parts.append(f"opaque={q(c.opaque)}")
    if c.stale:
        parts.append("stale=true")
    return "Digest " + ", ".join(parts)


challenges = st.builds(
    digest.Challenge,
    realm=quotable,
    nonce=quotable,
    algorithm=st.sampled_from(list(digest.ALGORITHMS)),
    qop=st.sampled_from([(), ("auth",), ("auth", "auth-int"), ("auth-int",)]),
    opaque=st.none() | quotable,
    stale=st.booleans(),
)


@BOUNDED
@given(challenges)
def test_digest_challenges_round_trip_and_can_be_answered(challenge):
    assert digest.parse_challenge(_challenge_header(challenge)) == challenge
    picked = digest.pick([_challenge_header(challenge)])
    answer = digest.authorization(picked, method="INVITE", uri="sip:a@b", username="u", password="p")
    assert answer.startswith("Digest ") and "\r" not in answer and "\n" not in answer


@BOUNDED
@given(st.lists(nasty_text | st.text(max_size=60), max_size=3) | challenges.map(_challenge_header).flatmap(
    lambda text: mutated(text.encode()).map(lambda b: [b.decode("utf-8", "replace")])
))
def test_digest_arbitrary_challenges_pick_or_raise_digest_error(values):
    try:
        picked = digest.pick(values)
    except digest.DigestError:
        return
    digest.authorization(picked, method="BYE", uri="sip:a@b", username="u", password="p")
