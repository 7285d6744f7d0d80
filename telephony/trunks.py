"""The servers of a SIP trunk and their health: OPTIONS to each, on beat, so calls try live servers first.

A trunk's servers are its host (or the servers its DNS SRV records name) and its backup hosts, in the order a
call tries them (telephony.sip.srv). Every HERALD_SIP_HEALTH_SECONDS, check_trunks sends each an OPTIONS request
at once; a server that cannot be reached, stays silent or answers 5xx is marked down, and calls try it after
the others until a check finds it answering. Any other answer (401, 403, 404, 405 …) means it is there.

The marks live in the shared cache for three rounds: when beat stops, they expire and calls go back to the
configured order instead of trusting a stale view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError

from herald.logmask import mask_text
from telephony.credentials import CredentialsError, auth_token, decrypt
from telephony.models import TelephonyAccount, parse_backup_hosts
from telephony.sip import options, ua
from telephony.sip.message import uri_host
from telephony.sip.register import RegistrationSpec
from telephony.sip.srv import Hop
from telephony.sip.tls import TlsSettings
from telephony.sip.transport import TransportError
from telephony.sip.types import CallSpec

log = logging.getLogger(__name__)
PING_SECONDS = 4.0  # each server's answer to OPTIONS; all servers of a trunk are asked at once
ROUNDS_KEPT = 3  # a health mark outlives this many missed rounds, then calls stop trusting it


def _key(account: TelephonyAccount) -> str:
    return f"sip-trunk-health:{account.pk}"


def tls_settings(account: TelephonyAccount) -> TlsSettings | None:
    """The account's TLS settings for a tls trunk, None when it uses the defaults (system CAs, no client
    certificate). CredentialsError when the stored client key cannot be decrypted."""
    if account.sip_transport != TelephonyAccount.Transport.TLS:
        return None
    key = ""
    if account.sip_tls_client_key_encrypted:
        key = decrypt(account.sip_tls_client_key_encrypted, what=f"account {account.name}: the TLS client key")
    if not (account.sip_tls_ca.strip() or account.sip_tls_client_cert.strip() or key):
        return None
    return TlsSettings(ca_pem=account.sip_tls_ca, cert_pem=account.sip_tls_client_cert, key_pem=key)


def registration_spec(account: TelephonyAccount, password: str) -> RegistrationSpec:
    """What the account's registration sends: to its registrar (or SIP server), for account_sid@domain."""
    registrar = (account.sip_host, account.sip_port)
    if account.sip_registrar:
        with contextlib.suppress(ValidationError):  # saved before validation: the SIP server instead
            registrar = (parse_backup_hosts(account.sip_registrar, account.sip_port) or [registrar])[0]
    return RegistrationSpec(
        registrar=registrar, domain=account.sip_domain or account.sip_host, user=account.account_sid or "herald",
        local_port=account.sip_local_port, username=account.account_sid, password=password,
        external_ip=settings.SIP_EXTERNAL_ADDRESS, expires=account.sip_register_expires,
    )


def publish_registration(account_id: int, state: dict) -> None:
    """A worker's registration state for the account page (telephony.providers.sip's runtime calls this)."""
    lifetime = max(600.0, 2.0 * (state.get("expires_at") or 0) - 2.0 * time.time())
    cache.set(f"sip-registration:{account_id}", state | {"published_at": time.time()}, timeout=lifetime)


def registration(account: TelephonyAccount) -> dict | None:
    """The latest registration state a worker published for this account, or None."""
    return cache.get(f"sip-registration:{account.pk}")


def request_uri(account: TelephonyAccount, user: str) -> str:
    """The INVITE's request URI for `user`: at the request URI domain when the carrier names one, else at the
    SIP server and port."""
    if account.sip_request_domain:
        return f"sip:{user}@{uri_host(account.sip_request_domain)}"
    return f"sip:{user}@{uri_host(account.sip_host)}:{account.sip_port}"


def outbound_proxy(account: TelephonyAccount) -> tuple[str, int] | None:
    """Where every request goes when the account routes through a proxy (saved unreadable: none)."""
    if not account.sip_outbound_proxy:
        return None
    with contextlib.suppress(ValidationError):
        return (parse_backup_hosts(account.sip_outbound_proxy, account.sip_port) or [None])[0]
    return None


def routing(account: TelephonyAccount) -> dict:
    """The CallSpec fields that say where a call to this trunk goes and how it gets back: SRV, backup hosts, DNS
    servers, and the deployment's NAT settings."""
    return {
        "proxy": outbound_proxy(account),
        "srv": account.sip_srv,
        "dns_servers": settings.SIP_DNS_SERVERS,
        "backup_hops": tuple(account.backup_hops()),
        "local_port": account.sip_local_port if account.sip_transport == TelephonyAccount.Transport.UDP else 0,
        # Where this deployment sits (the same for every trunk): its NAT and firewall.
        "external_ip": settings.SIP_EXTERNAL_ADDRESS,
        "stun_server": settings.SIP_STUN_SERVER,
        "rtp_port_range": settings.SIP_RTP_PORTS,
        "symmetric_rtp": settings.SIP_SYMMETRIC_RTP,
        "srtp": account.sip_srtp,
    }


async def servers(account: TelephonyAccount) -> tuple[list[Hop], str]:
    """The trunk's servers in the order a call tries them (no health applied), and why SRV was not used."""
    uri = f"sip:herald@{uri_host(account.sip_host)}:{account.sip_port}"
    spec = CallSpec(to=uri, audio=b"\xff", transport=account.sip_transport, **routing(account))
    return await ua.next_hops(spec, ua.parse_uri(uri))


async def _ping(account: TelephonyAccount, hop: Hop, password: str, tls: TlsSettings | None) -> dict:
    try:
        answer = await options.ping(
            host=hop.host, port=hop.port, transport=account.sip_transport, domain=account.sip_domain or account.sip_host,
            username=account.account_sid, password=password, timeout=PING_SECONDS, tls_name=hop.tls_name, tls=tls,
        )  # fmt: skip
    except TransportError as exc:
        return {"server": str(hop), "up": False, "said": str(exc)}
    if answer.status == 0:
        return {"server": str(hop), "up": False, "said": f"no answer to OPTIONS within {PING_SECONDS:g} s"}
    said = f"{answer.status} {answer.reason}".strip()
    return {"server": str(hop), "up": not 500 <= answer.status < 600, "said": said}


def check_trunk(account: TelephonyAccount) -> dict:
    """Ask every server of the trunk now; store and return {"checked_at", "servers": [{server, up, said}], "note"}."""
    try:
        password = auth_token(account) if account.account_sid else ""
    except CredentialsError:
        password = ""  # a server that challenges us still answered: up
    try:
        tls = tls_settings(account)
    except CredentialsError as exc:
        log.error("SIP trunk %s: checked with the system's TLS defaults: %s", account.name, exc)
        tls = None

    async def ask_all() -> tuple[list[dict], str]:
        hops, note = await servers(account)
        return list(await asyncio.gather(*(_ping(account, hop, password, tls) for hop in hops))), note

    checked, note = asyncio.run(ask_all())
    health = {"checked_at": time.time(), "servers": checked, "note": note}
    lifetime = max(settings.SIP_HEALTH_SECONDS, PING_SECONDS) * ROUNDS_KEPT
    cache.set(_key(account), health, timeout=lifetime)
    for server in checked:
        if not server["up"]:
            log.warning("SIP trunk %s: server %s is down: %s", account.name, server["server"], mask_text(server["said"]))
    return health


def check_trunks() -> int:
    """One round over every SIP account with health checks on; the number of servers found down."""
    down = 0
    for account in TelephonyAccount.objects.filter(kind=TelephonyAccount.Kind.SIP, sip_health_checks=True):
        if not account.sip_host:
            continue
        down += sum(not server["up"] for server in check_trunk(account)["servers"])
    return down


def health(account: TelephonyAccount) -> dict | None:
    """The latest check of this trunk, or None when none is recent."""
    return cache.get(_key(account))


def down_servers(account: TelephonyAccount) -> frozenset[str]:
    """The servers ("host:port") the latest recent check found down; empty when checks are off or none is recent."""
    if not account.sip_health_checks:
        return frozenset()
    found = health(account) or {}
    return frozenset(server["server"] for server in found.get("servers", ()) if not server["up"])
