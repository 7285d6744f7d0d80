"""A SIP-over-TLS trunk for tests (Debian's sipp is built without TLS), and the certificates it needs.

    pki = Pki()                                          # a CA, a server certificate, a client certificate
    with TlsTrunk(pki, require_client=True) as trunk:    # 127.0.0.1, its own event loop in a thread
        ...place a call to trunk.port over tls...
        assert trunk.client_names == ["herald-client"]

The trunk answers OPTIONS with 200 and an INVITE with 100 Trying then 486 Busy Here, waits for the ACK, and
records every request it parsed. Its certificate names sip.trunk.test and 127.0.0.1. Messages are framed and
parsed by Herald's own SIP parser: what is tested is the TLS, not the parsing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from telephony.sip.message import Message, StreamFramer, response_to

HOST = "127.0.0.1"
SERVER_NAME = "sip.trunk.test"
CLIENT_NAME = "herald-client"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass
class Issued:
    cert_pem: str
    key_pem: str = field(repr=False)


class Pki:
    """A throwaway CA with a server and a client certificate (P-256), valid from yesterday for `days`."""

    def __init__(self, *, days: int = 30, ca_name: str = "Herald Test Carrier CA") -> None:
        self.now = dt.datetime.now(dt.UTC)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name(ca_name))
            .issuer_name(_name(ca_name))
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - dt.timedelta(days=1))
            .not_valid_after(self.now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                              key_encipherment=False, data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False),
                critical=True,
            )  # fmt: skip
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_pem = self.ca_cert.public_bytes(serialization.Encoding.PEM).decode()
        self.server = self.issue(SERVER_NAME, server=True)
        self.client = self.issue(CLIENT_NAME, server=False)

    def issue(
        self, common_name: str, *, server: bool, not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> Issued:  # fmt: skip
        key = ec.generate_private_key(ec.SECP256R1())
        usage = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or self.now - dt.timedelta(days=1))
            .not_valid_after(not_after or self.now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(common_name), x509.IPAddress(ipaddress.ip_address(HOST))]),
                critical=False,
            )
        certificate = builder.sign(self.ca_key, hashes.SHA256())
        return Issued(certificate.public_bytes(serialization.Encoding.PEM).decode(), _pem_key(key))


class TlsTrunk:
    def __init__(self, pki: Pki, *, require_client: bool = False) -> None:
        self.pki = pki
        self.require_client = require_client
        self.requests: list[Message] = []
        self.client_names: list[str] = []
        self.handshake_errors: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tls-trunk", daemon=True)
        self._server: asyncio.Server | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="tls-trunk-")

    def _context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert, key = Path(self._tmp.name) / "server.pem", Path(self._tmp.name) / "server.key"
        cert.write_text(self.pki.server.cert_pem)
        key.write_text(self.pki.server.key_pem)
        context.load_cert_chain(cert, key)
        if self.require_client:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=self.pki.ca_pem)
        return context

    def __enter__(self) -> TlsTrunk:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the TLS trunk did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._tmp.cleanup()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._serve, HOST, 0, ssl=self._context())
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def methods(self) -> list[str]:
        return [request.method for request in self.requests]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        if peer:
            self.client_names += [value for ((key, value),) in peer["subject"] if key == "commonName"]
        framer = StreamFramer()
        try:
            while data := await reader.read(65536):
                for message in framer.feed(data):
                    if not message.is_request:
                        continue
                    self.requests.append(message)
                    for status, reason in self._answers(message):
                        writer.write(response_to(message, status, reason, to_tag="tls-trunk" if status > 100 else ""))
                    await writer.drain()
        except (ssl.SSLError, ConnectionError) as exc:
            self.handshake_errors.append(str(exc))
        finally:
            writer.close()

    @staticmethod
    def _answers(request: Message) -> list[tuple[int, str]]:
        if request.method == "OPTIONS":
            return [(200, "OK")]
        if request.method == "INVITE":
            return [(100, "Trying"), (486, "Busy Here")]
        return []  # ACK
