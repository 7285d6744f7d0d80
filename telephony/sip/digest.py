"""HTTP digest authentication for SIP (RFC 3261 22, RFC 2617, RFC 7616 / RFC 8760 for SHA-256)."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from telephony.sip.message import SipParseError

# Strongest first: when a server offers several challenges we answer the first one we support.
ALGORITHMS = {
    "SHA-256": hashlib.sha256,
    "SHA-256-SESS": hashlib.sha256,
    "MD5": hashlib.md5,
    "MD5-SESS": hashlib.md5,
}
_PAIR = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')


class DigestError(SipParseError):
    """A challenge we cannot answer; the message says why."""


@dataclass(frozen=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


def parse_challenge(value: str) -> Challenge:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"authentication scheme {scheme!r} is not Digest")
    params: dict[str, str] = {}
    for key, raw in _PAIR.findall(rest):
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[key.lower()] = raw
    if "nonce" not in params:
        raise DigestError("the challenge has no nonce")
    algorithm = params.get("algorithm", "MD5").upper()
    qop = tuple(q.strip().lower() for q in params["qop"].split(",") if q.strip()) if "qop" in params else ()
    return Challenge(
        realm=params.get("realm", ""),
        nonce=params["nonce"],
        algorithm=algorithm,
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
    )


def pick(values: list[str]) -> Challenge:
    """The strongest challenge among the headers of one 401/407 that we can answer."""
    found: list[Challenge] = []
    reasons: list[str] = []
    for value in values:
        try:
            challenge = parse_challenge(value)
        except DigestError as exc:
            reasons.append(str(exc))
            continue
        if challenge.algorithm not in ALGORITHMS:
            reasons.append(f"algorithm {challenge.algorithm} is not supported")
        elif challenge.qop and not {"auth", "auth-int"} & set(challenge.qop):
            reasons.append(f"qop {','.join(challenge.qop)} is not supported")
        else:
            found.append(challenge)
    if not found:
        raise DigestError("; ".join(reasons) or "no challenge was sent")
    order = list(ALGORITHMS)
    return min(found, key=lambda c: order.index(c.algorithm))


def authorization(
    challenge: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The Authorization / Proxy-Authorization value answering `challenge`."""
    hash_fn = ALGORITHMS[challenge.algorithm]

    def h(text: str | bytes) -> str:
        return hash_fn(text.encode() if isinstance(text, str) else text).hexdigest()

    cnonce = cnonce or secrets.token_hex(8)
    ha1 = h(f"{username}:{challenge.realm}:{password}")
    if challenge.algorithm.endswith("-SESS"):
        ha1 = h(f"{ha1}:{challenge.nonce}:{cnonce}")
    qop = ""
    if challenge.qop:
        qop = "auth" if "auth" in challenge.qop else "auth-int"
    ha2 = h(f"{method}:{uri}:{h(body)}") if qop == "auth-int" else h(f"{method}:{uri}")
    nc_text = f"{nc:08x}"
    if qop:
        response = h(f"{ha1}:{challenge.nonce}:{nc_text}:{cnonce}:{qop}:{ha2}")
    else:
        response = h(f"{ha1}:{challenge.nonce}:{ha2}")
    parts = [
        f'username="{_quote(username)}"',
        f'realm="{_quote(challenge.realm)}"',
        f'nonce="{_quote(challenge.nonce)}"',
        f'uri="{uri}"',
        f'response="{response}"',
        f"algorithm={challenge.algorithm}",
    ]
    if challenge.opaque is not None:
        parts.append(f'opaque="{_quote(challenge.opaque)}"')
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}", f'cnonce="{cnonce}"']
    return "Digest " + ", ".join(parts)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
