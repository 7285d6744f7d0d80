"""A STUN server for tests: answers Binding requests on 127.0.0.1 with the mapped address it is told to report
(a NAT's public address), built by hand from RFC 8489 so the client under test is checked against the wire format.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading

MAGIC = 0x2112A442


class StunServer:
    def __init__(self, public: tuple[str, int], *, silent: bool = False, xor: bool = True) -> None:
        self.public, self.silent, self.xor = public, silent, xor
        self.requests = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-stun", daemon=True)

    def __enter__(self) -> StunServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            kind, _, cookie = struct.unpack("!HHI", data[:8])
            if kind != 0x0001 or cookie != MAGIC:
                continue
            self.requests += 1
            if not self.silent:
                self.sock.sendto(self.answer(data[8:20]), peer)

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
