"""One call's SIP transport: a UDP socket, or a TCP / TLS connection, to the trunk.

Each call has its own socket, so a call's messages cannot be confused with another's and closing a call
closes everything it opened. Messages that fail to parse are dropped and counted, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl

from telephony.sip.message import Message, SipParseError, StreamFramer, parse, response_to
from telephony.sip.tls import TlsSettings, TlsSettingsError, client_context

log = logging.getLogger(__name__)
TRANSPORTS = ("udp", "tcp", "tls")


class TransportError(OSError):
    """The trunk cannot be reached (resolution, connection, TLS handshake)."""


async def resolve(host: str, port: int) -> tuple[str, int]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise TransportError(f"cannot resolve {host}: {exc.strerror}") from None
    family_first = sorted(infos, key=lambda info: info[0] != socket.AF_INET)
    address = family_first[0][4]
    return address[0], address[1]


def local_ip_towards(ip: str) -> str:
    """The local address the kernel would use to reach `ip` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((ip, 9))
        return probe.getsockname()[0]


class Transport:
    kind: str
    reliable: bool

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[Message] = asyncio.Queue()
        self.local: tuple[str, int] = ("", 0)
        self.dropped = 0

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _deliver(self, data: bytes) -> None:
        try:
            self.incoming.put_nowait(parse(data))
        except SipParseError as exc:
            self.dropped += 1
            # Anyone can aim datagrams at our port: the first drop is a warning, the rest would flood the log.
            log.log(
                logging.WARNING if self.dropped == 1 else logging.DEBUG,
                "dropped a malformed SIP message (%d so far): %s", self.dropped, exc,
            )


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if data.strip(b"\r\n\x00"):  # bare CRLF keep-alives
            self.owner._deliver(data)

    def error_received(self, exc: Exception) -> None:
        self.owner.last_error = exc


class UdpTransport(Transport):
    kind, reliable = "udp", False

    def __init__(self, remote: tuple[str, int]) -> None:
        super().__init__()
        self.remote = remote
        self.last_error: Exception | None = None
        self._transport: asyncio.DatagramTransport | None = None

    async def open(self, local_ip: str) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in local_ip else socket.AF_INET
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=(local_ip, 0), family=family
        )
        self.local = self._transport.get_extra_info("sockname")[:2]

    def send(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, self.remote)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class StreamTransport(Transport):
    reliable = True

    def __init__(
        self, remote: tuple[str, int], *, tls: bool, server_hostname: str, tls_settings: TlsSettings | None = None
    ) -> None:
        super().__init__()
        self.kind = "tls" if tls else "tcp"
        self.remote, self.tls, self.server_hostname = remote, tls, server_hostname
        self.tls_settings = tls_settings
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self.closed = asyncio.Event()

    async def open(self, local_ip: str, *, timeout: float = 10.0) -> None:
        try:
            context = client_context(self.tls_settings) if self.tls else None
            reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.remote[0],
                    self.remote[1],
                    ssl=context,
                    server_hostname=self.server_hostname if self.tls else None,
                    local_addr=(local_ip, 0),
                ),
                timeout,
            )
        except TlsSettingsError as exc:
            raise TransportError(f"cannot connect over tls: {exc}") from None
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise TransportError(f"cannot connect to {self.remote[0]}:{self.remote[1]} over {self.kind}: {exc}") from None
        sockname = self._writer.get_extra_info("sockname")
        if sockname is None:  # the far end closed it at once (a TLS server refusing our certificate, say)
            self._writer.close()
            raise TransportError(f"{self.remote[0]}:{self.remote[1]} closed the {self.kind} connection as it opened")
        self.local = sockname[:2]
        self._reader_task = asyncio.get_running_loop().create_task(self._read(reader), name="sip-stream-reader")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        framer = StreamFramer()
        try:
            while data := await reader.read(65536):
                try:
                    for message in framer.feed(data):
                        self.incoming.put_nowait(message)
                except SipParseError as exc:  # a stream cannot resynchronise after garbage (or an overflow)
                    log.warning("closing the SIP connection after a malformed message: %s", exc)
                    self.dropped += 1
                    if self._writer is not None:  # refuse the rest: nothing more is read or buffered from it
                        self._writer.close()
                    return
        except (OSError, ssl.SSLError):
            pass
        finally:
            self.closed.set()

    def send(self, data: bytes) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._writer is not None:
            self._writer.close()


class SharedUdp(asyncio.DatagramProtocol):
    """One UDP socket on a fixed port, shared by every call of the process through it and by its registrations:
    a registration trunk (and a NAT's port forward) knows us by this one port. What arrives goes to the call whose
    Call-ID it carries; a request for no call we hold gets 481, and the trunk's OPTIONS probes get 200."""

    _open: dict[tuple[asyncio.AbstractEventLoop, str, int], SharedUdp] = {}

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.views: dict[str, SharedView] = {}
        self.local: tuple[str, int] = ("", 0)
        self.dropped = self.unmatched = 0

    @classmethod
    async def bound(cls, local_ip: str, port: int) -> SharedUdp:
        """The shared socket on local_ip:port in this event loop, bound on first use. TransportError when the
        port is taken by another program (or another worker process on this host)."""
        loop = asyncio.get_running_loop()
        key = (loop, local_ip, port)
        shared = cls._open.get(key)
        if shared is None or shared.transport is None or shared.transport.is_closing():
            family = socket.AF_INET6 if ":" in local_ip else socket.AF_INET
            try:
                _, shared = await loop.create_datagram_endpoint(cls, local_addr=(local_ip, port), family=family)
            except OSError as exc:
                raise TransportError(
                    f"cannot listen for SIP on {local_ip}:{port} (udp): {exc.strerror or exc}; another process "
                    "holds the port"
                ) from None
            cls._open[key] = shared
        return shared

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.local = self.transport.get_extra_info("sockname")[:2]

    def view(self, remote: tuple[str, int], call_id: str) -> SharedView:
        if call_id in self.views:
            raise TransportError(f"Call-ID {call_id} is already in use on {self.local[0]}:{self.local[1]}")
        view = SharedView(self, remote, call_id)
        self.views[call_id] = view
        return view

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if not data.strip(b"\r\n\x00"):
            return  # CRLF keep-alives
        try:
            message = parse(data)
        except SipParseError as exc:
            self.dropped += 1
            log.log(logging.WARNING if self.dropped == 1 else logging.DEBUG,
                    "dropped a malformed SIP message on the shared port (%d so far): %s", self.dropped, exc)
            return  # fmt: skip
        view = self.views.get(message.get("call-id", "") or "")
        if view is not None:
            view.incoming.put_nowait(message)
            return
        self.unmatched += 1
        if message.is_request and message.method != "ACK" and self.transport is not None:
            status, reason = (200, "OK") if message.method == "OPTIONS" else (481, "Call/Transaction Does Not Exist")
            self.transport.sendto(response_to(message, status, reason, to_tag="herald-shared"), addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors of one destination say nothing about the others

    def release(self, call_id: str) -> None:
        self.views.pop(call_id, None)


class SharedView(Transport):
    """One call's (or one registration's) share of a SharedUdp socket: its own incoming queue, the same port."""

    kind, reliable = "udp", False

    def __init__(self, shared: SharedUdp, remote: tuple[str, int], call_id: str) -> None:
        super().__init__()
        self.shared, self.remote, self.call_id = shared, remote, call_id
        self.local = shared.local

    def send(self, data: bytes) -> None:
        transport = self.shared.transport
        if transport is not None and not transport.is_closing():
            transport.sendto(data, self.remote)

    def close(self) -> None:
        self.shared.release(self.call_id)


async def open_transport(
    kind: str, host: str, port: int, local_ip: str = "", *, server_hostname: str = "", tls: TlsSettings | None = None,
    local_port: int = 0, call_id: str = "",
) -> Transport:
    """A transport to host:port. With `local_port` (UDP only), a view of the process's shared socket on that port
    for `call_id`, instead of a socket of the call's own."""
    if kind not in TRANSPORTS:
        raise ValueError(f"transport {kind!r} is not one of {', '.join(TRANSPORTS)}")
    remote = await resolve(host, port)
    local_ip = local_ip or local_ip_towards(remote[0])
    transport: Transport
    if local_port and kind == "udp":
        shared = await SharedUdp.bound(local_ip, local_port)
        return shared.view(remote, call_id)
    if kind == "udp":
        transport = UdpTransport(remote)
        await transport.open(local_ip)
    else:
        transport = StreamTransport(
            remote, tls=kind == "tls", server_hostname=server_hostname or host, tls_settings=tls
        )
        await transport.open(local_ip)
    return transport
