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
MAX_MESSAGE = 65_535


class SipParseError(ValueError):
    """Bytes that are not a SIP message we can use; the message says what was wrong."""


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
        raw = self.get("cseq", "") or ""
        number, _, method = raw.strip().partition(" ")
        try:
            return int(number), method.strip().upper()
        except ValueError:
            return -1, method.strip().upper()

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
    """One complete message (a datagram, or one framed from a stream)."""
    if len(data) > MAX_MESSAGE:
        raise SipParseError(f"message of {len(data)} bytes is larger than {MAX_MESSAGE}")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
        if not sep:
            raise SipParseError("no blank line between headers and body")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"headers are not UTF-8 at byte {exc.start}") from None
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    if not _is_start_line(start):
        raise SipParseError(f"not a SIP start line: {start[:80]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded continuation
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise SipParseError(f"malformed header line {line[:80]!r}")
        headers.append((name.strip(), value.strip()))
    message = Message(start, headers, body)
    length = message.get("content-length")
    if length is not None:
        try:
            n = int(length)
        except ValueError:
            raise SipParseError(f"Content-Length {length!r} is not a number") from None
        if n < 0 or n > len(body):
            raise SipParseError(f"Content-Length {n} but {len(body)} body bytes")
        message.body = body[:n]
    return message


def _is_start_line(line: str) -> bool:
    parts = line.split(" ")
    if line.startswith("SIP/2.0 "):
        return len(parts) >= 2 and parts[1].isdigit() and len(parts[1]) == 3
    return len(parts) == 3 and parts[2] == "SIP/2.0" and parts[0].isalpha() and parts[0].isupper()


class StreamFramer:
    """Cuts a byte stream (TCP/TLS) into messages by Content-Length; CRLF keep-alives are skipped."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        out: list[Message] = []
        while True:
            while self._buffer[:2] == b"\r\n":
                del self._buffer[:2]
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_MESSAGE:
                    raise SipParseError("stream headers longer than a SIP message may be")
                return out
            head = bytes(self._buffer[:end]).decode("utf-8", "replace")
            match = re.search(r"^(?:content-length|l)[ \t]*:[ \t]*(\d+)", head, re.IGNORECASE | re.MULTILINE)
            if match is None:
                raise SipParseError("a message on a stream transport has no Content-Length")
            total = end + 4 + int(match.group(1))
            if len(self._buffer) < total:
                return out
            chunk = bytes(self._buffer[:total])
            del self._buffer[:total]
            out.append(parse(chunk))


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
