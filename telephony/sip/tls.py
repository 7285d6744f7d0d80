"""TLS to a SIP trunk as carriers set it up: their own CA instead of (or beside) the public ones, and a client
certificate for trunks that admit us by certificate (mutual TLS).

The certificates are PEM text, as an operator pastes them; the private key arrives decrypted from the account's
encrypted store and is never written anywhere but a private temporary file that lives only while the standard
library reads it (ssl can load a key from a file only). One SSLContext per distinct setting is kept and reused by
every call: loading CAs costs milliseconds, a call must not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import ssl
import tempfile
import threading
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

CACHED_CONTEXTS = 32


CA, CERT, KEY = "ca", "cert", "key"  # which part of the settings a problem is about


class TlsSettingsError(ValueError):
    """The CA bundle, the client certificate or its key cannot be used; the message says which and why, and
    `part` is CA, CERT or KEY."""

    def __init__(self, message: str, part: str) -> None:
        super().__init__(message)
        self.part = part


@dataclass(frozen=True)
class TlsSettings:
    ca_pem: str = ""  # certificates to trust instead of the system's; "" = the system's CAs
    cert_pem: str = ""  # our client certificate (and its chain); "" = none
    key_pem: str = field(default="", repr=False)  # its private key, unencrypted PEM

    @property
    def digest(self) -> str:
        material = "\0".join((self.ca_pem, self.cert_pem, self.key_pem)).encode()
        return hashlib.sha256(material).hexdigest()


_contexts: dict[str, ssl.SSLContext] = {}
_lock = threading.Lock()


def client_context(settings: TlsSettings | None) -> ssl.SSLContext:
    """The context to connect to the trunk with: certificate and host name verified, always."""
    settings = settings or TlsSettings()
    key = settings.digest
    with _lock:
        context = _contexts.get(key)
    if context is None:
        context = _build(settings)
        with _lock:
            if len(_contexts) >= CACHED_CONTEXTS:
                _contexts.pop(next(iter(_contexts)))
            _contexts[key] = context
    return context


def _build(settings: TlsSettings) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and the host name
    if settings.ca_pem.strip():
        context.load_verify_locations(cadata=_certificates_text(settings.ca_pem, "CA bundle"))  # only the carrier's
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.cert_pem.strip() or settings.key_pem.strip():
        _load_client_certificate(context, settings)
    return context


def _certificates_text(pem: str, what: str) -> str:
    certificates = certificates_in(pem, what)
    return "".join(certificate.public_bytes(Encoding.PEM).decode() for certificate in certificates)


def certificates_in(pem: str, what: str) -> list[x509.Certificate]:
    """The certificates of a PEM text; TlsSettingsError naming `what` when it holds none or a broken one."""
    part = CA if what == "CA bundle" else CERT
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise TlsSettingsError(f"the {what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", part)
    try:
        return x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise TlsSettingsError(f"the {what} is not valid PEM: {exc}", part) from None


def _load_client_certificate(context: ssl.SSLContext, settings: TlsSettings) -> None:
    if not settings.cert_pem.strip():
        raise TlsSettingsError("a client key was given without its certificate", CERT)
    if not settings.key_pem.strip():
        raise TlsSettingsError("the client certificate needs its private key", KEY)
    if "ENCRYPTED" in settings.key_pem:
        raise TlsSettingsError(
            "the client key is protected by a passphrase: paste it unencrypted (it is stored encrypted)", KEY
        )
    certificates_in(settings.cert_pem, "client certificate")
    with tempfile.TemporaryDirectory(prefix="herald-tls-") as private:
        os.chmod(private, 0o700)
        cert_path, key_path = os.path.join(private, "cert.pem"), os.path.join(private, "key.pem")
        for path, text in ((cert_path, settings.cert_pem), (key_path, settings.key_pem)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="ascii", errors="replace") as handle:
                handle.write(text)
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as exc:
            reason = exc.reason or str(exc)
            if "KEY_VALUES_MISMATCH" in str(exc) or reason == "KEY_VALUES_MISMATCH":
                raise TlsSettingsError("the client key does not belong to the client certificate", KEY) from None
            raise TlsSettingsError(f"the client certificate or key cannot be loaded: {reason}", CERT) from None


def problems(settings: TlsSettings, *, now: dt.datetime | None = None) -> list[tuple[str, str]]:
    """Everything wrong with these settings as (part, words), for the account form; empty when they can be used."""
    now = now or dt.datetime.now(dt.UTC)
    found = []
    for part, what, pem in ((CA, "CA bundle", settings.ca_pem), (CERT, "client certificate", settings.cert_pem)):
        if not pem.strip():
            continue
        try:
            certificates = certificates_in(pem, what)
        except TlsSettingsError as exc:
            found.append((exc.part, str(exc)))
            continue
        leaf = certificates[0]
        if leaf.not_valid_after_utc < now:
            found.append((part, f"the {what} expired on {leaf.not_valid_after_utc:%Y-%m-%d} ({_subject(leaf)})"))
        elif leaf.not_valid_before_utc > now:
            found.append(
                (part, f"the {what} is not valid before {leaf.not_valid_before_utc:%Y-%m-%d} ({_subject(leaf)})")
            )
    if found:
        return found
    try:
        _build(settings)
    except TlsSettingsError as exc:
        found.append((exc.part, str(exc)))
    except ssl.SSLError as exc:
        found.append((CA, f"the TLS settings cannot be loaded: {exc.reason or exc}"))
    return found


def _subject(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()[:120]


def describe(pem: str) -> str:
    """One line per certificate: subject and expiry, for the account page ("" when the text holds none)."""
    try:
        certificates = certificates_in(pem, "certificate")
    except TlsSettingsError:
        return ""
    return "\n".join(f"{_subject(c)} — until {c.not_valid_after_utc:%Y-%m-%d}" for c in certificates)
