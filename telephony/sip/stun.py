"""The NAT's public address, asked of a STUN server (RFC 8489 Binding request over UDP).

A deployment behind a NAT without a fixed public address names a STUN server (HERALD_SIP_STUN_SERVER); calls put
the address it reports into Contact and SDP. The answer is cached for a few minutes per server, so a call costs
no STUN round trip; a server that does not answer leaves the call on its local address, and says why once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import struct
import time

from telephony.sip.message import split_host_port

log = logging.getLogger(__name__)
MAGIC = 0x2112A442
BINDING_REQUEST, BINDING_SUCCESS = 0x0001, 0x0101
MAPPED_ADDRESS, XOR_MAPPED_ADDRESS = 0x0001, 0x0020
CACHE_SECONDS = 300.0
_cache: dict[str, tuple[float, str]] = {}


class StunError(OSError):
    """No usable answer from the STUN server; the message says what happened."""


def split_server(server: str) -> tuple[str, int]:
    """'host', 'host:port' or '[v6]:port' (3478 by default); ValueError when it is none of these."""
    try:
        host, port = split_host_port(server, 3478)
    except ValueError:
        host, port = "", 0
    if not host or any(char.isspace() for char in host):
        raise ValueError(f"{server!r} is not a STUN server (host or host:port)")
    return host, port


def request(transaction: bytes) -> bytes:
    return struct.pack("!HHI", BINDING_REQUEST, 0, MAGIC) + transaction


def parse_response(data: bytes, transaction: bytes) -> tuple[str, int]:
    """The mapped address of a Binding success response to `transaction`; StunError otherwise."""
    if len(data) < 20:
        raise StunError("the STUN answer is shorter than a header")
    kind, length, cookie = struct.unpack("!HHI", data[:8])
    if cookie != MAGIC or data[8:20] != transaction:
        raise StunError("the STUN answer is not for our request")
    if kind != BINDING_SUCCESS:
        raise StunError(f"the STUN server answered message type {kind:#06x}, not a Binding success")
    body, found = data[20 : 20 + length], None
    offset = 0
    while offset + 4 <= len(body):
        attribute, size = struct.unpack("!HH", body[offset : offset + 4])
        value = body[offset + 4 : offset + 4 + size]
        if attribute in (XOR_MAPPED_ADDRESS, MAPPED_ADDRESS) and len(value) >= 8:
            family, port = value[1], struct.unpack("!H", value[2:4])[0]
            raw = value[4:8] if family == 1 else value[4:20]
            if attribute == XOR_MAPPED_ADDRESS:
                port ^= MAGIC >> 16
                mask = struct.pack("!I", MAGIC) + (transaction if family == 2 else b"")
                raw = bytes(a ^ b for a, b in zip(raw, mask, strict=False))
            address = str(ipaddress.ip_address(raw))
            if attribute == XOR_MAPPED_ADDRESS or found is None:
                found = (address, port)
        offset += 4 + size + (-size % 4)  # attributes are padded to 4 bytes
    if found is None:
        raise StunError("the STUN answer has no mapped address")
    return found


async def mapped_address(server: str, *, timeout: float = 2.0) -> tuple[str, int]:
    """Our address and port as the STUN server sees them; StunError when it does not say in `timeout` s."""
    host, port = split_server(server)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise StunError(f"cannot resolve the STUN server {host}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    transaction = os.urandom(12)
    answers: asyncio.Queue[bytes] = asyncio.Queue()

    class Receiver(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple) -> None:
            answers.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Receiver, family=family, remote_addr=address[:2])
    try:
        deadline, interval = time.monotonic() + timeout, 0.25
        while (left := deadline - time.monotonic()) > 0:
            transport.sendto(request(transaction))
            try:
                data = await asyncio.wait_for(answers.get(), min(interval, left))
            except TimeoutError:
                interval *= 2
                continue
            try:
                return parse_response(data, transaction)
            except StunError as exc:
                if "not for our request" in str(exc):
                    continue
                raise
        raise StunError(f"the STUN server {server} did not answer within {timeout:g} s")
    finally:
        transport.close()


async def public_ip(server: str) -> str:
    """The public address from `server`, cached for CACHE_SECONDS; StunError when it cannot be learnt."""
    now = time.monotonic()
    cached = _cache.get(server)
    if cached is not None and now - cached[0] < CACHE_SECONDS:
        return cached[1]
    address, _ = await mapped_address(server)
    if cached is None or cached[1] != address:
        log.info("STUN %s: our public address is %s", server, address)
    _cache[server] = (now, address)
    return address
