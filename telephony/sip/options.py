"""An OPTIONS request to a trunk, outside any call (RFC 3261 11): is it reachable, and does it accept our digest
credentials? Used to test an account's settings without dialling anyone.

One non-INVITE transaction (retransmitted on UDP at T1 doubling to T2, until a final response or the deadline);
a 401/407 is answered once with the account's credentials, as a call's INVITE would be.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

from telephony.sip import digest
from telephony.sip.message import Message, new_branch, new_tag, serialise, uri_host
from telephony.sip.tls import TlsSettings
from telephony.sip.transport import Transport, TransportError, open_transport

T1 = 0.5
T2 = 4.0


@dataclass(frozen=True)
class OptionsAnswer:
    status: int  # the final response's code; 0 when none came before the deadline
    reason: str
    challenged: bool  # the trunk asked for credentials (and was answered once)



async def ping(
    *,
    host: str,
    port: int,
    transport: str,
    domain: str = "",
    username: str = "",
    password: str = "",
    timeout: float = 8.0,
    t1: float = T1,
    tls_name: str = "",
    tls: TlsSettings | None = None,
) -> OptionsAnswer:
    """Send OPTIONS sip:<domain or host> and return the final answer. Raises TransportError when no connection
    can be made (TCP, TLS) or the host does not resolve. `tls_name`: the name the server's certificate must show
    when `host` is an address (an SRV target resolved here); default `host`."""
    try:
        link = await asyncio.wait_for(open_transport(transport, host, port, server_hostname=tls_name, tls=tls), timeout)
    except TransportError:
        raise
    except (TimeoutError, OSError) as exc:
        raise TransportError(f"cannot reach {host}:{port} over {transport}: {exc or type(exc).__name__}") from None
    try:
        deadline = time.monotonic() + timeout
        uri = f"sip:{domain or host}"
        call_id, tag = f"{secrets.token_hex(8)}@herald", new_tag()
        extra: tuple[tuple[str, str], ...] = ()
        challenged = False
        for cseq in (1, 2):
            answer = await transaction(link, _request(link, uri, username or "herald", call_id, tag, cseq, extra),
                                        deadline, t1)  # fmt: skip
            if answer is None:
                return OptionsAnswer(0, "no answer", challenged)
            if answer.status not in (401, 407) or not username or challenged:
                return OptionsAnswer(answer.status, answer.reason, challenged)
            header = "WWW-Authenticate" if answer.status == 401 else "Proxy-Authenticate"
            try:
                challenge = digest.pick(answer.get_all(header))
            except digest.DigestError:
                return OptionsAnswer(answer.status, answer.reason, True)
            name = "Authorization" if answer.status == 401 else "Proxy-Authorization"
            value = digest.authorization(challenge, method="OPTIONS", uri=uri, username=username, password=password)
            extra, challenged = ((name, value),), True
        raise AssertionError("unreachable")  # the loop always returns
    finally:
        link.close()


def _request(
    link: Transport, uri: str, user: str, call_id: str, tag: str, cseq: int, extra: tuple[tuple[str, str], ...]
) -> tuple[str, bytes]:
    ip, port = link.local
    branch = new_branch()
    suffix = "" if link.kind == "udp" else f";transport={link.kind}"
    headers = [
        ("Via", f"SIP/2.0/{link.kind.upper()} {uri_host(ip)}:{port};branch={branch};rport"),
        ("Max-Forwards", "70"),
        ("From", f"<sip:{user}@{uri.removeprefix('sip:')}>;tag={tag}"),
        ("To", f"<{uri}>"),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} OPTIONS"),
        ("Contact", f"<sip:{user}@{uri_host(ip)}:{port}{suffix}>"),
        ("Accept", "application/sdp"),
        ("User-Agent", "Herald"),
        *extra,
    ]
    return branch, serialise(f"OPTIONS {uri} SIP/2.0", headers)


async def transaction(link: Transport, request: tuple[str, bytes], deadline: float, t1: float) -> Message | None:
    """RFC 3261 17.1.2: the final response to this request (its Via branch), or None by the deadline."""
    branch, data = request
    link.send(data)
    interval = t1
    resend_at = time.monotonic() + interval if not link.reliable else float("inf")
    while (now := time.monotonic()) < deadline:
        try:
            message = await asyncio.wait_for(link.incoming.get(), max(0.0, min(deadline, resend_at) - now))
        except TimeoutError:
            if time.monotonic() >= resend_at:
                link.send(data)
                interval = min(interval * 2, T2)
                resend_at = time.monotonic() + interval
            continue
        if message.is_request or message.branch != branch or message.status < 200:
            continue  # a provisional answer, or not ours
        return message
    return None
