"""Registration with a trunk (RFC 3261 10): for carriers that accept calls only from a registered contact.

A Registration binds sip:USER@DOMAIN to our contact on the process's fixed SIP port (transport.SharedUdp, so
the contact stays the same port every call uses), answers the registrar's digest challenge, follows a 423 with
its Min-Expires, and refreshes before the binding runs out: at the granted time less half of it, at most a
minute early. A registrar that refuses or does not answer is tried again with backoff (30 s doubling to 5 min);
meanwhile `state` says why, in words, for the account page. stop() removes the binding (Expires: 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field

from telephony.sip import digest
from telephony.sip.message import (
    Message,
    SipParseError,
    header_param,
    new_branch,
    new_tag,
    serialise,
    split_values,
    uri_host,
    uri_of,
)
from telephony.sip.options import transaction
from telephony.sip.transport import Transport, TransportError, open_transport

log = logging.getLogger(__name__)
RETRY_SECONDS = (30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True)
class RegistrationSpec:
    registrar: tuple[str, int]  # where REGISTER goes
    domain: str  # of the address of record and the request URI (sip:DOMAIN)
    user: str  # the address of record's user part, usually the username
    local_port: int  # the shared SIP port our contact names
    username: str = ""
    password: str = field(default="", repr=False)
    external_ip: str = ""  # the NAT's public address for the contact; default the local address
    expires: int = 3600  # seconds asked for
    t1: float = 0.5
    timeout: float = 8.0  # one REGISTER transaction's answer
    retry_seconds: tuple[float, ...] = RETRY_SECONDS
    user_agent: str = "Herald"


@dataclass
class RegistrationState:
    state: str = "unregistered"  # unregistered | registering | registered | failed
    detail: str = ""  # the registrar's last answer, or what went wrong, in words
    expires_at: float | None = None  # wall-clock end of the binding while registered
    contact: str = ""
    refreshes: int = 0  # REGISTERs that renewed a binding


class Registration:
    def __init__(self, spec: RegistrationSpec) -> None:
        self.spec = spec
        self.status = RegistrationState()
        self.call_id = f"{secrets.token_hex(10)}@herald"  # one Call-ID and From tag for every refresh (RFC 3261 10.2.4)
        self.tag = new_tag()
        self.cseq = 0
        self.link: Transport | None = None
        self.attempted = asyncio.Event()  # set once the first REGISTER got an answer, or none in time
        self.task: asyncio.Task | None = None

    @property
    def aor(self) -> str:
        return f"sip:{self.spec.user}@{self.spec.domain}"

    def contact_uri(self) -> str:
        assert self.link is not None
        ip = self.spec.external_ip or self.link.local[0]
        return f"sip:{self.spec.user}@{uri_host(ip)}:{self.link.local[1]}"

    def start(self) -> asyncio.Task:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.run(), name=f"sip-register {self.aor}")
        return self.task

    async def run(self) -> None:
        failures = 0
        while True:
            granted = await self.register(self.spec.expires)
            self.attempted.set()
            if granted:
                failures = 0
                await asyncio.sleep(max(1.0, granted - min(granted / 2, 60.0)))
                self.status.refreshes += 1
                continue
            delay = self.spec.retry_seconds[min(failures, len(self.spec.retry_seconds) - 1)]
            failures += 1
            log.warning("SIP registration of %s failed (%s); trying again in %g s", self.aor, self.status.detail, delay)
            await asyncio.sleep(delay)

    async def register(self, expires: int) -> int:
        """One REGISTER exchange (challenge and 423 answered); the seconds granted, 0 when it failed."""
        if self.status.state != "registered":
            self.status.state = "registering"
        try:
            if self.link is None:
                host, port = self.spec.registrar
                self.link = await open_transport(
                    "udp", host, port, local_port=self.spec.local_port, call_id=self.call_id
                )
        except (TransportError, OSError) as exc:
            return self._failed(str(exc))
        extra: tuple[tuple[str, str], ...] = ()
        answered: set[str] = set()
        asked = expires
        for _ in range(4):  # a challenge, a 423 and a stale nonce at most
            self.cseq += 1
            branch = new_branch()
            deadline = time.monotonic() + self.spec.timeout
            response = await transaction(self.link, (branch, self._request(branch, asked, extra)), deadline, self.spec.t1)
            if response is None:
                return self._failed(
                    f"the registrar {self.spec.registrar[0]}:{self.spec.registrar[1]} did not answer REGISTER "
                    f"within {self.spec.timeout:g} s"
                )
            said = f"{response.status} {response.reason}".strip()
            if 200 <= response.status < 300:
                if asked == 0:
                    self.status = RegistrationState("unregistered", said)
                    return 0
                granted = self._granted(response, asked)
                self.status.state, self.status.detail = "registered", said
                self.status.expires_at = time.time() + granted
                self.status.contact = self.contact_uri()
                return granted
            if response.status in (401, 407) and self.spec.username:
                header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
                try:
                    challenge = digest.pick(response.get_all(header))
                except digest.DigestError as exc:
                    return self._failed(f"cannot answer the registrar's {said}: {exc}")
                if challenge.nonce in answered and not challenge.stale:
                    return self._failed(f"the registrar refused the credentials of user {self.spec.username!r} ({said})")
                answered.add(challenge.nonce)
                name = "Authorization" if response.status == 401 else "Proxy-Authorization"
                value = digest.authorization(challenge, method="REGISTER", uri=f"sip:{self.spec.domain}",
                                             username=self.spec.username, password=self.spec.password)  # fmt: skip
                extra = ((name, value),)
                continue
            if response.status == 423:
                minimum = (response.get("min-expires", "") or "").strip()
                if not minimum.isdigit() or int(minimum) <= asked:
                    return self._failed(f"the registrar answered {said} without a usable Min-Expires")
                asked = int(minimum)
                continue
            if response.status in (401, 407):
                return self._failed(f"the registrar asks for credentials ({said}) and none are configured")
            return self._failed(f"the registrar answered {said}")
        return self._failed("the registrar kept challenging REGISTER")

    def _failed(self, why: str) -> int:
        self.status.state, self.status.detail = "failed", why
        self.status.expires_at = None
        return 0

    def _granted(self, response: Message, asked: int) -> int:
        """The binding's lifetime: our contact's expires parameter in the 200, else its Expires header, else ours."""
        ours = self.contact_uri()
        for value in response.get_all("contact"):
            for contact in split_values(value):
                with contextlib.suppress(SipParseError, ValueError):
                    if uri_of(contact).split(";")[0] == ours:
                        seconds = header_param(contact, "expires")
                        if seconds and seconds.isdigit():
                            return int(seconds)
        header = (response.get("expires", "") or "").strip()
        return int(header) if header.isdigit() else asked

    def _request(self, branch: str, expires: int, extra: tuple[tuple[str, str], ...]) -> bytes:
        assert self.link is not None
        ip, port = self.link.local
        headers = [
            ("Via", f"SIP/2.0/UDP {uri_host(ip)}:{port};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<{self.aor}>;tag={self.tag}"),
            ("To", f"<{self.aor}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"),
            ("Contact", f"<{self.contact_uri()}>"),
            ("Expires", str(expires)),
            ("User-Agent", self.spec.user_agent),
            *extra,
        ]
        return serialise(f"REGISTER sip:{self.spec.domain} SIP/2.0", headers)

    async def stop(self) -> None:
        """Stop refreshing and remove the binding (best effort: one REGISTER with Expires: 0)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.status.state == "registered" and self.link is not None:
            await self.register(0)
        if self.link is not None:
            self.link.close()
            self.link = None
