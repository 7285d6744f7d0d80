"""Registration trunks: REGISTER with digest, refresh before the binding ends, removal on stop, all on one fixed
SIP port that calls share (transport.SharedUdp). Against a sipp registrar that verifies the digest itself.
"""

from __future__ import annotations

import asyncio
import re
import socket

import pytest

from telephony.sip.register import Registration, RegistrationSpec
from telephony.sip.transport import SharedUdp, TransportError
from telephony.sip.types import ANSWERED, CallSpec
from telephony.sip.ua import place_call
from tests.sipp import HOST, Sipp, free_port
from tests.telephony.sip.test_sipp import CLIP, PASSWORD, USER, received, sipp_ok

T1 = 0.05


def spec(registrar: Sipp, port: int, **fields) -> RegistrationSpec:
    return RegistrationSpec(registrar=(HOST, registrar.port), domain="herald.test", user=USER, local_port=port,
                            username=USER, password=PASSWORD, t1=T1, **fields)  # fmt: skip


def via_port(message: str) -> int:
    return int(re.search(r"^Via: SIP/2.0/UDP [^:]+:(\d+);", message, re.M | re.I).group(1))


def test_a_trunk_registration_is_challenged_refreshed_and_removed():
    port = free_port()

    async def scenario(registrar: Sipp) -> list:
        registration = Registration(spec(registrar, port))
        registration.start()
        await asyncio.wait_for(registration.attempted.wait(), 10)
        first = (registration.status.state, registration.status.detail, registration.status.contact)
        for _ in range(100):  # granted 2 s: refreshed after about 1 s
            if registration.status.refreshes and registration.status.state == "registered":
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        refreshed = (registration.status.state, registration.status.refreshes)
        until = registration.status.expires_at
        await registration.stop()
        return [first, refreshed, until, registration.status.state]

    with Sipp("register_auth.xml") as registrar:
        first, refreshed, until, last = asyncio.run(scenario(registrar))
        sipp_ok(registrar)  # every digest verified, and the binding was removed with Expires: 0
    assert first == ("registered", "200 OK", f"sip:{USER}@{HOST}:{port}")
    assert refreshed == ("registered", 1)
    assert until is not None and 55 < until - __import__("time").time() < 61  # the refresh was granted 60 s
    assert last == "unregistered"
    registers = received(registrar, "REGISTER")
    assert len(registers) == 5
    assert {via_port(message) for message in registers} == {port}  # from the fixed port, every time
    assert len({re.search(r"^Call-ID: (.*)$", m, re.M).group(1) for m in registers}) == 1
    cseqs = [int(re.search(r"^CSeq: (\d+) REGISTER", m, re.M).group(1)) for m in registers]
    assert cseqs == sorted(cseqs) and len(set(cseqs)) == 5


def test_calls_share_the_registered_port():
    port = free_port()

    async def scenario(registrar: Sipp, trunk: Sipp):
        registration = Registration(spec(registrar, port))
        registration.start()
        await asyncio.wait_for(registration.attempted.wait(), 10)
        calls = [
            place_call(CallSpec(to=trunk.uri(f"callee{n}"), audio=CLIP, local_port=port, digit_timeout=0.3, t1=T1))
            for n in range(2)
        ]
        results = await asyncio.wait_for(asyncio.gather(*calls), 30)
        registration.task.cancel()
        return results

    with Sipp("register_auth.xml") as registrar, Sipp("answer.xml", calls=2) as trunk:
        results = asyncio.run(scenario(registrar, trunk))
        sipp_ok(trunk)
        registrar.stop()
    assert [result.outcome for result in results] == [ANSWERED, ANSWERED]
    invites = received(trunk, "INVITE")
    assert len(invites) == 2 and {via_port(invite) for invite in invites} == {port}
    assert all(f"<sip:herald@{HOST}:{port}>" in invite for invite in invites)  # Contact names the fixed port


def test_the_shared_port_answers_probes_and_refuses_strays():
    port = free_port()

    async def scenario() -> list[bytes]:
        shared = await SharedUdp.bound(HOST, port)
        answers = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((HOST, 0))
            probe.setblocking(False)
            loop = asyncio.get_running_loop()
            for method in ("OPTIONS", "BYE", "ACK"):
                request = (
                    f"{method} sip:herald@{HOST}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {HOST}:{probe.getsockname()[1]};"
                    f"branch=z9hG4bK{method}\r\nFrom: <sip:trunk@{HOST}>;tag=t\r\nTo: <sip:herald@{HOST}>\r\n"
                    f"Call-ID: stray-{method}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
                ).encode()
                probe.sendto(request, (HOST, port))
                try:
                    answers.append(await asyncio.wait_for(loop.sock_recv(probe, 4096), 0.5))
                except TimeoutError:
                    answers.append(b"")
        shared.transport.close()
        return answers

    options, bye, ack = asyncio.run(scenario())
    assert options.startswith(b"SIP/2.0 200 OK") and b"Call-ID: stray-OPTIONS" in options
    assert bye.startswith(b"SIP/2.0 481 ")
    assert ack == b""  # never answered


def test_a_fixed_port_another_program_holds_fails_the_call_saying_so():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind((HOST, 0))
        port = holder.getsockname()[1]
        result = asyncio.run(place_call(CallSpec(to=f"sip:a@{HOST}:5060", audio=CLIP, local_port=port)))
    assert result.outcome == "failed"
    assert result.error.startswith(f"cannot listen for SIP on {HOST}:{port} (udp)")
    assert "another process holds the port" in result.error


def test_a_silent_registrar_is_retried_with_backoff():
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as registrar:
        registrar.bind((HOST, 0))
        registrar.settimeout(0.05)
        spec = RegistrationSpec(registrar=(HOST, registrar.getsockname()[1]), domain="herald.test", user=USER,
                                local_port=port, t1=T1, retry_seconds=(0.2,), timeout=0.5)  # fmt: skip

        async def scenario():
            registration = Registration(spec)
            registration.start()
            await asyncio.wait_for(registration.attempted.wait(), 10)
            status = (registration.status.state, registration.status.detail)
            await asyncio.sleep(1.0)  # the retry after 0.2 s, and its own 0.5 s wait
            await registration.stop()
            return status

        state, detail = asyncio.run(scenario())
        seen = []
        while True:
            try:
                seen.append(registrar.recv(4096))
            except TimeoutError:
                break
    assert (state, detail) == ("failed", f"the registrar {HOST}:{spec.registrar[1]} did not answer REGISTER within 0.5 s")
    cseqs = {re.search(rb"CSeq: (\d+) REGISTER", message).group(1) for message in seen}
    assert len(cseqs) >= 2  # a new REGISTER after the backoff, not only retransmissions of the first


def test_one_view_per_call_id():
    async def scenario():
        shared = await SharedUdp.bound(HOST, free_port())
        shared.view((HOST, 5060), "one")
        try:
            with pytest.raises(TransportError, match="Call-ID one is already in use"):
                shared.view((HOST, 5060), "one")
        finally:
            shared.transport.close()

    asyncio.run(scenario())
