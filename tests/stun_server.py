"""A STUN server for tests: answers Binding requests on 127.0.0.1 with the mapped address it is told to report
(a NAT's public address), built by hand from RFC 8489 so the client under test is checked against the wire format.
"""

from __future__ import annotations

import ipaddress
import struct

from tests.udp_server import UdpServer

MAGIC = 0x2112A442


class StunServer(UdpServer):
    name = "test-stun"

    def __init__(self, public: tuple[str, int], *, silent: bool = False, xor: bool = True) -> None:
        super().__init__(silent=silent)
        self.public, self.xor = public, xor
        self.requests = 0

    def handle(self, data: bytes) -> bytes | None:
        kind, _, cookie = struct.unpack("!HHI", data[:8])
        if kind != 0x0001 or cookie != MAGIC:
            return None
        self.requests += 1
        return self.answer(data[8:20])

    def answer(self, transaction: bytes) -> bytes:
        ip, port = self.public
        raw = ipaddress.IPv4Address(ip).packed
        if self.xor:
            port ^= MAGIC >> 16
            raw = bytes(a ^ b for a, b in zip(raw, struct.pack("!I", MAGIC), strict=True))
        attribute = struct.pack("!HHBBH", 0x0020 if self.xor else 0x0001, 8, 0, 1, port) + raw
        software = b"herald-test"  # 11 bytes: padded to 12, as attributes are
        attributes = attribute + struct.pack("!HH", 0x8022, len(software)) + software + b"\0"
        return struct.pack("!HHI", 0x0101, len(attributes), MAGIC) + transaction + attributes
