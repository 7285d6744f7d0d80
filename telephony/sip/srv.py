"""Where a call's requests go: the trunk's next hops, in the order to try them (RFC 3263).

A trunk is one host, or a domain whose DNS SRV records (RFC 2782) name several servers: lower priority first,
and within one priority a random order weighted by each record's weight, drawn anew for every call so the load
spreads as the carrier asked. Backup hosts configured on the account come after, and hops a health check found
down go last (tried still, when nothing else answers: a stale health mark must never stop all calls).

A lookup that fails (no such name, no records, no DNS server answering) falls back to the host itself on the
configured port and says why; it never fails the call by itself.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from telephony.sip.message import split_host_port, uri_host

log = logging.getLogger(__name__)
MAX_HOPS = 8  # servers one call may try; an SRV set bigger than this is cut after its best ones
LOOKUP_SECONDS = 2.0  # the whole SRV lookup, retries included: a call never waits longer for DNS
SERVICE = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}


@dataclass(frozen=True)
class Hop:
    """One server to send the call's requests to. `name` is the host name a TLS certificate must show, when the
    host was resolved to an address here (SRV targets through the configured DNS servers); else `host` itself."""

    host: str
    port: int
    name: str = ""

    def __str__(self) -> str:
        return f"{uri_host(self.host)}:{self.port}"

    @property
    def tls_name(self) -> str:
        return self.name or self.host


@dataclass(frozen=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str  # without the trailing dot; "" for "." (RFC 2782: the service is not offered here)


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def srv_order(records: Iterable[SrvRecord], rng: random.Random | None = None) -> list[SrvRecord]:
    """RFC 2782's order: by priority, and within a priority by weighted random selection (a record of weight 0
    is picked last but still picked). A lone "." target means the service is not offered: no records."""
    rng = rng or random.Random()
    records = [record for record in records if record.target]
    ordered: list[SrvRecord] = []
    for priority in sorted({record.priority for record in records}):
        # Zero weights first, as the RFC arranges them, so they come out last unless nothing else remains.
        group = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight != 0)
        while group:
            total = sum(record.weight for record in group)
            if total == 0:
                ordered.extend(group)
                break
            point = rng.uniform(0, total)
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= point and record.weight:
                    ordered.append(group.pop(index))
                    break
    return ordered


def _resolver(servers: tuple[str, ...]) -> dns.asyncresolver.Resolver:
    """The system's resolver (/etc/resolv.conf), or one asking only `servers` ("ip" or "ip:port" each)."""
    if not servers:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        addresses, ports = [], set()
        for server in servers:
            host, port = split_server(server)
            addresses.append(host)
            ports.add(port)
        if len(ports) > 1:
            raise ValueError(f"the DNS servers {', '.join(servers)} must share one port")
        resolver.nameservers = addresses
        resolver.port = ports.pop()
    resolver.lifetime = LOOKUP_SECONDS
    resolver.timeout = LOOKUP_SECONDS / 2
    return resolver


def split_server(server: str) -> tuple[str, int]:
    """'ip' or 'ip:port' ('[v6]:port') as (ip, port); ValueError when it is not an address."""
    try:
        host, port = split_host_port(server, 53)
    except ValueError:
        host, port = "", 0
    if not is_address(host):
        raise ValueError(f"{server!r} is not a DNS server address (IP or IP:PORT)")
    return host, port


async def lookup(
    domain: str, transport: str, *, servers: tuple[str, ...] = (), rng: random.Random | None = None
) -> tuple[list[Hop], str]:
    """The SRV hops of `domain` for `transport`, in the order to try them, and "" — or [] and why there are
    none (the caller then uses the domain itself). With `servers`, the targets are resolved through them too
    (the system resolver may not know names only those servers hold)."""
    name = f"{SERVICE[transport]}.{domain.rstrip('.')}."
    try:
        resolver = _resolver(servers)
        answer = await resolver.resolve(name, "SRV", raise_on_no_answer=True)
    except dns.resolver.NXDOMAIN:
        return [], f"{name} does not exist"
    except dns.resolver.NoAnswer:
        return [], f"{name} has no SRV records"
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        return [], f"no DNS server answered for {name}: {exc}"
    except (dns.exception.DNSException, ValueError) as exc:
        return [], f"the SRV lookup of {name} failed: {exc}"
    records = [
        SrvRecord(record.priority, record.weight, record.port, record.target.to_text(omit_final_dot=True).strip("."))
        for record in answer
    ]
    ordered = srv_order(records, rng)[:MAX_HOPS]
    if not ordered:
        return [], f"{name} says the service is not offered (target '.')"
    if not servers:
        return [Hop(record.target, record.port) for record in ordered], ""
    addresses = _additional_addresses(answer)
    hops = []
    for record in ordered:
        address = addresses.get(record.target.lower()) or await _address(resolver, record.target)
        if address:
            hops.append(Hop(address, record.port, name=record.target))
        else:
            log.warning("SRV target %s of %s has no address; skipped", record.target, name)
    return hops, "" if hops else f"no SRV target of {name} has an address"


def _additional_addresses(answer) -> dict[str, str]:
    """A and AAAA records the server sent with the SRV answer (RFC 2782 suggests it): target -> first address."""
    found: dict[str, str] = {}
    for rrset in answer.response.additional:
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            target = rrset.name.to_text(omit_final_dot=True).lower()
            for record in rrset:
                # IPv4 first, as the transport prefers it.
                if target not in found or (rrset.rdtype == dns.rdatatype.A and ":" in found[target]):
                    found[target] = record.address
    return found


async def _address(resolver: dns.asyncresolver.Resolver, target: str) -> str:
    if is_address(target):
        return target.strip("[]")
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(target + ".", rdtype)
        except dns.exception.DNSException:
            continue
        for record in answer:
            return record.address
    return ""


def order_by_health(hops: list[Hop], down: frozenset[str]) -> list[Hop]:
    """Hops a health check found down (`str(hop)` in `down`) moved to the end, the rest kept in order."""
    return [hop for hop in hops if str(hop) not in down] + [hop for hop in hops if str(hop) in down]
