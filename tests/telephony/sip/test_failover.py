"""Several servers per trunk (RFC 3263): DNS SRV order, backup hosts, failover, and the health check's order.

Calls go to real sipp UASes; SRV records come from a real DNS server on 127.0.0.1 (tests/dns_server.py) that
dnspython's resolver queries over UDP. A server that cannot be reached, stays silent or answers 408/5xx before
anything rang gives the call to the next; once a phone may have rung (18x) or the callee said something (4xx,
6xx), the answer stands.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections import Counter

import pytest

from telephony.sip import srv
from telephony.sip.srv import Hop, SrvRecord, srv_order
from telephony.sip.types import ANSWERED, BUSY, FAILED
from tests.dns_server import DnsServer
from tests.sipp import HOST, Sipp, free_port
from tests.telephony.sip.test_sipp import call, cli, received, sipp_ok, write_wav

T1 = 0.05  # Timer B: 3.2 s


def closed_tcp_port() -> int:
    return free_port(socket.SOCK_STREAM)  # nothing listens on it once the probe socket is closed


# --- failover between configured servers ------------------------------------------------------------------


def test_a_server_that_refuses_the_connection_hands_the_call_to_the_backup():
    dead = closed_tcp_port()
    with Sipp("answer.xml", transport="tcp") as uas:
        result = call(uas, to=f"sip:alice@{HOST}:{dead}", backup_hops=((HOST, uas.port),))
        sipp_ok(uas)
    assert (result.outcome, result.sip_code) == (ANSWERED, 200), result
    assert result.trunk == f"{HOST}:{uas.port} (tcp)"
    [failover] = result.failovers
    assert failover.startswith(f"{HOST}:{dead} (tcp): cannot connect to {HOST}:{dead} over tcp")
    # The backup got the same request URI and the same Call-ID the first server would have.
    [invite] = received(uas, "INVITE")
    assert invite.startswith(f"INVITE sip:alice@{HOST}:{dead} SIP/2.0")
    assert f"Call-ID: {result.call_id}" in invite


def test_a_silent_server_is_left_after_timer_b_and_a_503_after_its_answer():
    with Sipp("silent_trunk.xml") as silent, Sipp("retry_after_503_long.xml") as busy, Sipp("answer.xml") as good:
        result = call(
            silent, t1=T1, backup_hops=((HOST, busy.port), (HOST, good.port)),
        )
        for uas in (silent, busy, good):
            sipp_ok(uas)
    assert (result.outcome, result.trunk) == (ANSWERED, f"{HOST}:{good.port} (udp)"), result
    assert result.failovers == [
        f"{HOST}:{silent.port} (udp): the trunk {HOST}:{silent.port} (udp) did not answer the INVITE within "
        "3.2 s (Timer B)",
        f"{HOST}:{busy.port} (udp): answered 503 Service Unavailable",
    ]
    assert result.started_at < result.answered_at  # from the first INVITE, on the first server
    call_ids = {line for uas in (silent, busy, good) for line in received(uas, "INVITE")[0].splitlines()
                if line.startswith("Call-ID:")}  # fmt: skip
    assert call_ids == {f"Call-ID: {result.call_id}"}


def test_a_server_whose_callee_rang_keeps_the_call_even_when_it_then_fails():
    dead = closed_tcp_port()
    with Sipp("ring_then_503.xml") as uas:
        result = call(uas, backup_hops=((HOST, dead),))
        sipp_ok(uas)
    assert (result.outcome, result.sip_code, result.failovers) == (FAILED, 503, []), result
    assert result.trunk == f"{HOST}:{uas.port} (udp)"


def test_a_callee_busy_is_the_callees_answer_not_the_servers():
    dead = closed_tcp_port()
    with Sipp("busy_486.xml") as uas:
        result = call(uas, backup_hops=((HOST, dead),))
        sipp_ok(uas)
    assert (result.outcome, result.sip_code, result.failovers) == (BUSY, 486, []), result


def test_when_every_server_fails_the_last_answer_is_the_calls_and_each_is_named():
    first, second = closed_tcp_port(), closed_tcp_port()
    result = asyncio.run(_place(to=f"sip:alice@{HOST}:{first}", transport="tcp", backup_hops=((HOST, second),)))
    assert result.outcome == FAILED and result.sip_code is None
    assert result.trunk == f"{HOST}:{second} (tcp)"
    assert result.error.startswith(f"cannot connect to {HOST}:{second} over tcp")
    assert [line.split(":")[1] for line in result.failovers] == [f"{first} (tcp)"]


def test_servers_a_health_check_found_down_are_tried_last():
    dead = closed_tcp_port()
    with Sipp("answer.xml", transport="tcp") as uas:
        result = call(
            uas, to=f"sip:alice@{HOST}:{dead}", backup_hops=((HOST, uas.port),), down_hops=frozenset({f"{HOST}:{dead}"})
        )
        sipp_ok(uas)
    assert (result.outcome, result.failovers) == (ANSWERED, []), result  # the down server was never needed


def test_servers_all_marked_down_are_still_tried():
    dead = closed_tcp_port()
    with Sipp("answer.xml", transport="tcp") as uas:
        hops = frozenset({f"{HOST}:{dead}", f"{HOST}:{uas.port}"})
        result = call(uas, to=f"sip:alice@{HOST}:{dead}", backup_hops=((HOST, uas.port),), down_hops=hops)
        sipp_ok(uas)
    assert result.outcome == ANSWERED and len(result.failovers) == 1


async def _place(**spec):
    from telephony.sip.types import CallSpec
    from telephony.sip.ua import place_call

    return await asyncio.wait_for(place_call(CallSpec(audio=b"\xff" * 800, **spec)), 30)


# --- DNS SRV ----------------------------------------------------------------------------------------------


def test_srv_records_order_the_servers_by_priority_and_the_call_follows_them():
    with Sipp("retry_after_503_long.xml") as busy, Sipp("answer.xml") as good:
        records = {
            ("_sip._udp.trunk.test", "SRV"): [f"10 0 {busy.port} sip1.trunk.test.", f"20 0 {good.port} sip2.trunk.test."],
            ("sip1.trunk.test", "A"): [HOST],
            ("sip2.trunk.test", "A"): [HOST],
        }
        with DnsServer(records) as dns:
            result = call(good, to="sip:alice@trunk.test", srv=True, dns_servers=(dns.address,))
        sipp_ok(busy)
        sipp_ok(good)
    assert (result.outcome, result.route_note) == (ANSWERED, ""), result
    assert result.failovers == [f"{HOST}:{busy.port} (udp): answered 503 Service Unavailable"]
    assert ("_sip._udp.trunk.test", "SRV") in dns.asked
    [invite] = received(good, "INVITE")
    assert invite.startswith("INVITE sip:alice@trunk.test SIP/2.0")  # the request URI keeps the domain


def test_srv_targets_come_from_the_answers_additional_section_when_the_server_sends_them():
    records = {
        ("_sips._tcp.trunk.test", "SRV"): ["10 0 5061 edge.trunk.test."],
        ("edge.trunk.test", "A"): ["192.0.2.7"],
    }
    with DnsServer(records, additional=True) as dns:
        hops, why = asyncio.run(srv.lookup("trunk.test", "tls", servers=(dns.address,)))
    assert (hops, why) == ([Hop("192.0.2.7", 5061, name="edge.trunk.test")], "")
    assert hops[0].tls_name == "edge.trunk.test"  # the certificate is checked against the name, not the address
    assert ("edge.trunk.test", "A") not in dns.asked


@pytest.mark.parametrize(
    ("records", "why"),
    [
        ({}, "_sip._udp.trunk.test. does not exist"),
        ({("_sip._udp.trunk.test", "A"): ["192.0.2.1"]}, "_sip._udp.trunk.test. has no SRV records"),
        ({("_sip._udp.trunk.test", "SRV"): ["0 0 0 ."]}, "_sip._udp.trunk.test. says the service is not offered"),
    ],
)
def test_a_domain_without_usable_srv_records_says_why(records, why):
    with DnsServer(records) as dns:
        hops, note = asyncio.run(srv.lookup("trunk.test", "udp", servers=(dns.address,)))
    assert hops == [] and note.startswith(why)


def test_without_srv_records_the_call_goes_to_the_host_itself_and_says_why():
    with Sipp("answer.xml") as uas, DnsServer({}) as dns:
        result = call(
            uas, to="sip:alice@localhost", srv=True, dns_servers=(dns.address,), backup_hops=((HOST, uas.port),), t1=T1
        )
        sipp_ok(uas)
    assert result.route_note == "_sip._udp.localhost. does not exist"
    assert result.outcome == ANSWERED
    assert result.failovers and result.failovers[0].startswith("localhost:5060 (udp): ")


def test_a_dns_server_that_never_answers_costs_at_most_the_lookup_budget():
    with DnsServer({}, silent=True) as dns:
        hops, why = asyncio.run(srv.lookup("trunk.test", "udp", servers=(dns.address,)))
    assert hops == [] and why.startswith("no DNS server answered for _sip._udp.trunk.test.")


def test_srv_weights_share_the_calls_within_a_priority():
    records = [SrvRecord(10, 60, 5060, "a"), SrvRecord(10, 30, 5060, "b"), SrvRecord(10, 10, 5060, "c"),
               SrvRecord(10, 0, 5060, "zero"), SrvRecord(5, 0, 5060, "first"), SrvRecord(20, 90, 5060, "last")]  # fmt: skip
    rng = random.Random(2782)
    firsts: Counter[str] = Counter()
    for _ in range(3000):
        ordered = [record.target for record in srv_order(records, rng)]
        assert ordered[0] == "first" and ordered[-1] == "last"  # priority decides before any weight
        assert ordered[-2] == "zero"  # weight 0 comes after every weighted record of its priority
        assert sorted(ordered) == sorted(record.target for record in records)
        firsts[ordered[1]] += 1
    shares = {target: count / 3000 for target, count in firsts.items()}
    assert set(shares) == {"a", "b", "c"}
    for target, expected in (("a", 0.6), ("b", 0.3), ("c", 0.1)):
        assert abs(shares[target] - expected) < 0.04, shares


def test_only_zero_weights_keep_every_record():
    records = [SrvRecord(1, 0, 5060, name) for name in "xyz"]
    assert sorted(record.target for record in srv_order(records)) == ["x", "y", "z"]


@pytest.mark.parametrize("server", ["dns.example", "127.0.0.1:0", "127.0.0.1:99999", ""])
def test_a_dns_server_setting_that_is_not_an_address_is_refused(server):
    with pytest.raises(ValueError, match="is not a DNS server address"):
        srv.split_server(server)


def test_dns_server_settings_parse():
    assert srv.split_server("10.0.0.2") == ("10.0.0.2", 53)
    assert srv.split_server("10.0.0.2:5353") == ("10.0.0.2", 5353)
    assert srv.split_server("[2001:db8::1]:53") == ("2001:db8::1", 53)
    assert srv.split_server("2001:db8::1") == ("2001:db8::1", 53)


# --- the CLI ----------------------------------------------------------------------------------------------


def test_the_cli_follows_srv_records_and_backup_servers(tmp_path):
    wav = write_wav(tmp_path / "clip.wav")
    dead = closed_tcp_port()
    with Sipp("answer.xml", transport="tcp") as good:
        records = {("_sip._tcp.trunk.test", "SRV"): [f"10 0 {dead} sip1.trunk.test."], ("sip1.trunk.test", "A"): [HOST]}
        with DnsServer(records) as dns:
            done = cli(
                "--to", "sip:alice@trunk.test", "--audio", str(wav), "--transport", "tcp", "--digit-timeout", "0.3",
                "--srv", "--dns-server", dns.address, "--backup", f"{HOST}:{good.port}",
            )
        sipp_ok(good)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["outcome"], result["trunk"]) == (ANSWERED, f"{HOST}:{good.port} (tcp)")
    assert [line.split(" (tcp)")[0] for line in result["failovers"]] == [f"{HOST}:{dead}"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dns-server", "dns.example"], "'dns.example' is not a DNS server address"),
        (["--backup", "sip2.example.com"], "'sip2.example.com' is not HOST:PORT"),
    ],
)
def test_the_cli_refuses_bad_server_arguments(tmp_path, args, message):
    wav = write_wav(tmp_path / "clip.wav")
    done = cli("--to", "sip:alice@127.0.0.1:5060", "--audio", str(wav), *args)
    assert done.returncode == 2 and message in done.stderr
