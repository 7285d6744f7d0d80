"""A small authoritative DNS server for tests: answers from a dict of records on 127.0.0.1, in a thread.

    with DnsServer({("_sip._udp.trunk.test", "SRV"): ["10 60 5071 sip1.trunk.test."],
                    ("sip1.trunk.test", "A"): ["127.0.0.1"]}) as dns:
        hops, why = asyncio.run(srv.lookup("trunk.test", "udp", servers=(dns.address,)))

A name with no records is NXDOMAIN; a name that has records of another type answers NOERROR with none. The
wire format is dnspython's, so the resolver under test parses what any DNS server would send. `silent=True`
reads queries and never answers (a DNS server that is down). Each question asked is kept in `asked`.
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from tests.udp_server import UdpServer


class DnsServer(UdpServer):
    name = "test-dns"

    def __init__(self, records: dict[tuple[str, str], list[str]], *, additional: bool = False, silent: bool = False):
        super().__init__(silent=silent)
        self.records = {(name.lower().rstrip("."), kind): values for (name, kind), values in records.items()}
        self.additional = additional  # send the SRV targets' A records with an SRV answer
        self.asked: list[tuple[str, str]] = []

    def handle(self, data: bytes) -> bytes | None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        self.asked.append((name, kind))
        return self._answer(query, name, kind).to_wire()

    def _answer(self, query: dns.message.Message, name: str, kind: str) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if not any(known == name for known, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        values = self.records.get((name, kind), [])
        if values:
            response.answer.append(dns.rrset.from_text_list(name + ".", 60, "IN", kind, values))
        if kind == "SRV" and self.additional:
            for value in values:
                target = value.split()[-1].rstrip(".").lower()
                for address_kind in ("A", "AAAA"):
                    addresses = self.records.get((target, address_kind))
                    if addresses:
                        response.additional.append(
                            dns.rrset.from_text_list(target + ".", 60, "IN", address_kind, addresses)
                        )
        return response
