"""A UDP server on 127.0.0.1 for tests, in a thread: bound at once (so `address` is known before it starts),
serving from `with` to its end. Subclasses answer each datagram in `handle`; `silent` ones hear and never answer."""

from __future__ import annotations

import socket
import threading


class UdpServer:
    name = "test-udp"

    def __init__(self, *, silent: bool = False) -> None:
        self.silent = silent
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            answer = self.handle(data)
            if answer is not None and not self.silent:
                self.sock.sendto(answer, peer)

    def handle(self, data: bytes) -> bytes | None:
        """What to send back to this datagram (None: nothing). Counted or kept by the subclass."""
        raise NotImplementedError
