"""SIP messages (RFC 3261 section 7): parse what arrives, build what we send.

Only what a user agent client needs: header names are case-insensitive and may be compact ("v", "i", …),
a header may repeat or carry comma-separated values, and the body length comes from Content-Length (which
stream transports require).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

COMPACT = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "r": "refer-to",
}
# Headers whose comma-separated values are separate entries (split outside quotes and <> only). Never the
# authentication headers: a digest challenge is itself a comma-separated list (RFC 3261 7.3.1).
MULTI = frozenset({"via", "route", "record-route", "contact", "allow", "supported"})
MAX_MESSAGE = 65_535  # the largest message we accept, from a datagram or a stream (headers and body together)
MANDATORY = ("via", "from", "to", "call-id", "cseq")  # RFC 3261 8.1.1: every request and response carries them
MAX_CSEQ = 2**31 - 1  # RFC 3261 8.1.1.5: a CSeq number is less than 2**31

# ASCII only, on purpose: str.isdigit() and int() accept "١٢٣" (Arabic-Indic) and "²" (which int() then
# refuses), and int() accepts "+1", " 1" and "1_0". The grammar (RFC 3261 25.1) is DIGIT = %x30-39.
_DIGITS = re.compile(r"[0-9]+")
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_METHOD = re.compile(r"[A-Z]+")
_REQUEST_URI = re.compile(r"[!-~]+")  # printable ASCII without spaces: non-ASCII in a URI is %-escaped
# Control characters other than HTAB have no place in a header section; a bare CR would let a value that we
# echo back (Via, From, To, Call-ID) start a header line of its own at a peer that treats CR as a line end.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class SipParseError(ValueError):
    """Bytes that are not SIP we can use: `what` was wrong, `where` (start line, a header, the body, ...)."""

    def __init__(self, what: str, where: str = "") -> None:
        self.what, self.where = what, where
        super().__init__(f"{where}: {what}" if where else what)


class MessageTooLarge(SipParseError):
    """A message (or a stream's pending header section or announced body) beyond what we buffer."""


def ascii_number(text: str, *, where: str, limit: int, too_large: type[SipParseError] = SipParseError) -> int:
    """`text` as a number of ASCII digits no larger than `limit`; SipParseError (or `too_large`) otherwise."""
    if not _DIGITS.fullmatch(text):
        raise SipParseError(f"{text[:40]!r} is not a number of ASCII digits", where)
    # Compare lengths first: int() of thousands of digits is slow, and beyond 4300 a bare ValueError.
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(limit)) or int(digits) > limit:
        raise too_large(f"{digits[:20]}{'...' if len(digits) > 20 else ''} is larger than {limit}", where)
    return int(digits)


@dataclass
class Message:
    start_line: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    # Request: METHOD URI SIP/2.0; response: SIP/2.0 CODE REASON
    @property
    def is_request(self) -> bool:
        return not self.start_line.startswith("SIP/2.0 ")

    @property
    def method(self) -> str:
        return self.start_line.split(" ", 1)[0] if self.is_request else ""

    @property
    def uri(self) -> str:
        return self.start_line.split(" ")[1] if self.is_request else ""

    @property
    def status(self) -> int:
        return 0 if self.is_request else int(self.start_line.split(" ")[1])

    @property
    def reason(self) -> str:
        parts = self.start_line.split(" ", 2)
        return parts[2] if not self.is_request and len(parts) > 2 else ""

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.get_all(name)
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        key = canonical(name)
        out: list[str] = []
        for hname, value in self.headers:
            if canonical(hname) == key:
                out.extend(split_values(value) if key in MULTI else [value])
        return out

    @property
    def call_id(self) -> str:
        return self.get("call-id", "") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """The CSeq number and method; SipParseError when it is missing or malformed."""
        raw = (self.get("cseq", "") or "").strip()
        number, _, method = raw.partition(" ")
        method = method.strip()
        if not raw:
            raise SipParseError("missing", "header CSeq")
        if not _TOKEN.fullmatch(method):
            raise SipParseError(f"{raw[:40]!r} has no method", "header CSeq")
        return ascii_number(number, where="header CSeq", limit=MAX_CSEQ), method.upper()

    def check(self) -> None:
        """Raise SipParseError unless the headers every SIP message needs are here and well formed.

        Kept apart from parse() so that a user agent can still answer a bad request with 400 (RFC 3261 8.2.2)."""
        for name in MANDATORY:
            if not (self.get(name) or "").strip():
                raise SipParseError("missing", f"header {name}")
        _, method = self.cseq
        if self.is_request and method != self.method:
            raise SipParseError(f"method {method} is not the request's {self.method}", "header CSeq")

    @property
    def branch(self) -> str:
        via = self.get("via", "") or ""
        return header_param(via, "branch") or ""

    def to_bytes(self) -> bytes:
        return serialise(self.start_line, self.headers, self.body)


def canonical(name: str) -> str:
    name = name.strip().lower()
    return COMPACT.get(name, name)


def split_values(value: str) -> list[str]:
    """Split a header value on commas that are outside quotes and <>."""
    parts, depth, quoted, current = [], 0, False, []
    for ch in value:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(0, depth - 1)
        if ch == "," and not quoted and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


_PARAM = re.compile(r';\s*([A-Za-z0-9._!%*+`\'~-]+)\s*(?:=\s*("[^"]*"|[^;,\s>]*))?')


def header_param(value: str, name: str) -> str | None:
    """A ;param of a From/To/Via/Contact value, looking past the <uri> so URI params are not mistaken."""
    tail = value[value.rindex(">") + 1 :] if ">" in value else value
    for key, val in _PARAM.findall(tail):
        if key.lower() == name:
            return (val or "").strip('"')
    return None


def uri_of(value: str) -> str:
    """The URI inside a name-addr (`"Bob" <sip:b@h>;tag=1`) or an addr-spec (`sip:b@h;tag=1`)."""
    if "<" in value and ">" in value:
        return value[value.index("<") + 1 : value.index(">")].strip()
    return value.split(";", 1)[0].strip()


def parse(data: bytes) -> Message:
    """One complete message (a datagram, or one framed from a stream); SipParseError for anything else."""
    if len(data) > MAX_MESSAGE:
        raise MessageTooLarge(f"{len(data)} bytes is more than {MAX_MESSAGE}", "message")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
        if not sep:
            raise SipParseError("no blank line between headers and body", "message")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"headers are not UTF-8 at byte {exc.start}", "header section") from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    start = lines[0].strip(" \t")
    _check_start_line(start)
    headers: list[tuple[str, str]] = []
    for number, line in enumerate(lines[1:], start=2):
        control = _CONTROL.search(line)
        if control:
            raise SipParseError(f"control character {control.group()!r} in {line[:80]!r}", f"header line {number}")
        if line[:1] in (" ", "\t") and headers:  # folded continuation
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        name = name.strip(" \t")
        if not colon or not _TOKEN.fullmatch(name):
            raise SipParseError(f"malformed header line {line[:80]!r}", f"header line {number}")
        headers.append((name, value.strip(" \t")))
    message = Message(start, headers, body)
    lengths = {value.strip() for value in message.get_all("content-length")}
    if len(lengths) > 1:  # two framings of one message: refuse rather than guess which one a peer used
        raise SipParseError(f"conflicting values {sorted(lengths)}", "header Content-Length")
    if lengths:
        n = ascii_number(lengths.pop(), where="header Content-Length", limit=MAX_MESSAGE)
        if n > len(body):
            raise SipParseError(f"Content-Length {n} but {len(body)} body bytes", "body")
        message.body = body[:n]
    return message


def _check_start_line(line: str) -> None:
    where = "start line"
    control = _CONTROL.search(line)
    parts = line.split(" ")
    if control:
        raise SipParseError(f"control character {control.group()!r} in {line[:80]!r}", where)
    if line.startswith("SIP/2.0 "):
        if len(parts) < 2 or not re.fullmatch(r"[1-6][0-9][0-9]", parts[1]):
            raise SipParseError(f"not a SIP start line: status code in {line[:80]!r}", where)
    elif not (
        len(parts) == 3 and parts[2] == "SIP/2.0" and _METHOD.fullmatch(parts[0]) and _REQUEST_URI.fullmatch(parts[1])
    ):
        raise SipParseError(f"not a SIP start line: {line[:80]!r}", where)


# Content-Length in a stream's header section, looked up before the body has arrived (full form or compact "l").
_STREAM_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(.*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)


class StreamFramer:
    """Cuts a byte stream (TCP/TLS) into messages by Content-Length; CRLF keep-alives are skipped.

    It holds at most one message of MAX_MESSAGE bytes (plus one read): a header section that grows past that,
    or a Content-Length that would take it past that, raises MessageTooLarge at once, before the body is
    buffered. Any SipParseError leaves the framer broken (a stream cannot resynchronise): close the stream."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._buffer = bytearray()
        self._scanned = 0  # header bytes already searched for the blank line, so a slow drip stays linear
        self._broken: SipParseError | None = None

    def feed(self, data: bytes) -> list[Message]:
        """The messages that `data` completes, in order."""
        if self._broken is not None:
            raise self._broken
        try:
            return self._feed(data)
        except SipParseError as exc:
            self._broken = exc
            self._buffer.clear()
            raise

    def _feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        out: list[Message] = []
        while True:
            while self._buffer[:2] == b"\r\n":  # keep-alives come only between messages (RFC 5626 3.5.1)
                del self._buffer[:2]
                self._scanned = max(0, self._scanned - 2)
            end = self._buffer.find(b"\r\n\r\n", max(0, self._scanned - 3))
            if end < 0:
                self._scanned = len(self._buffer)
                if len(self._buffer) > self.max_message:
                    raise MessageTooLarge(
                        f"{len(self._buffer)} bytes without a blank line, more than {self.max_message}", "header section"
                    )
                return out
            self._scanned = end
            head = bytes(self._buffer[:end])
            values = {m.group(1) for m in _STREAM_LENGTH.finditer(head)}
            if not values:
                raise SipParseError("a message on a stream transport has no Content-Length", "header section")
            if len(values) > 1:
                raise SipParseError(f"conflicting values {sorted(values)}", "header Content-Length")
            text = values.pop().decode("ascii", "backslashreplace")
            length = ascii_number(text, where="header Content-Length", limit=self.max_message, too_large=MessageTooLarge)
            total = end + 4 + length
            if total > self.max_message:
                raise MessageTooLarge(f"{total} bytes announced, more than {self.max_message}", "header Content-Length")
            if len(self._buffer) < total:
                return out
            chunk = bytes(self._buffer[:total])
            del self._buffer[:total]
            self._scanned = 0
            out.append(parse(chunk))


def uri_host(host: str) -> str:
    """A host as a SIP URI or Via writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """'host', 'host:port', '[v6]' or '[v6]:port' (a bare IPv6 address takes the default port) as (host, port);
    ValueError when there is no host or the port is not 1-65535."""
    text, port_text = text.strip(), None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text[:80]!r}: nothing may follow ] but :port")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host = text
    if port_text is not None and not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"{text[:80]!r}: the port is not a number")
    port = int(port_text) if port_text is not None else default_port
    if not host or not 0 < port < 65536:
        raise ValueError(f"{text[:80]!r} is not host or host:port")
    return host, port


def serialise(start_line: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [start_line]
    lines += [f"{name}: {value}" for name, value in headers if canonical(name) != "content-length"]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def response_to(request: Message, status: int, reason: str, *, to_tag: str = "", extra=(), body=b"") -> bytes:
    """A response echoing the request's Via, From, To (with our tag), Call-ID and CSeq."""
    headers = [("Via", v) for v in request.get_all("via")]
    to = request.get("to", "") or ""
    if to_tag and header_param(to, "tag") is None:
        to = f"{to};tag={to_tag}"
    headers += [
        ("From", request.get("from", "") or ""),
        ("To", to),
        ("Call-ID", request.call_id),
        ("CSeq", request.get("cseq", "") or ""),
        *extra,
    ]
    return serialise(f"SIP/2.0 {status} {reason}", headers, body)
