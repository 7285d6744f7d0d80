"""SIP over TLS as carriers set it up: their own CA, a client certificate (mutual TLS), the server's name checked.

The far end is a real TLS server on 127.0.0.1 (tests/tls_sip.py) with certificates made here by `cryptography`;
the user agent connects with the standard library's ssl exactly as it would to a carrier.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from telephony.sip import options, tls
from telephony.sip.srv import Hop
from telephony.sip.tls import TlsSettings, TlsSettingsError, client_context
from telephony.sip.transport import TransportError
from telephony.sip.types import BUSY, FAILED, CallSpec
from telephony.sip.ua import place_call
from tests.tls_sip import CLIENT_NAME, HOST, SERVER_NAME, Pki, TlsTrunk

T1 = 0.05


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def dial(port: int, settings: TlsSettings | None, **spec):
    call = CallSpec(to=f"sip:+8613800138000@{HOST}:{port}", audio=b"\xff" * 800, transport="tls", tls=settings,
                    t1=T1, **spec)  # fmt: skip
    return asyncio.run(asyncio.wait_for(place_call(call), 30))


def test_a_call_over_tls_to_a_trunk_signed_by_the_carriers_own_ca(pki):
    with TlsTrunk(pki) as trunk:
        result = dial(trunk.port, TlsSettings(ca_pem=pki.ca_pem))
    assert (result.outcome, result.sip_code) == (BUSY, 486), result
    assert trunk.methods() == ["INVITE", "ACK"]  # the whole transaction went over the TLS connection
    invite = trunk.requests[0]
    assert invite.get("via", "").startswith("SIP/2.0/TLS ")
    assert ";transport=tls>" in (invite.get("contact") or "")


def test_the_system_cas_do_not_trust_a_private_carrier_ca(pki):
    with TlsTrunk(pki) as trunk:
        result = dial(trunk.port, None)
    assert result.outcome == FAILED and result.sip_code is None
    assert f"cannot connect to {HOST}:{trunk.port} over tls" in result.error
    assert "CERTIFICATE_VERIFY_FAILED" in result.error
    assert trunk.requests == []


def test_a_certificate_for_another_name_is_refused(pki):
    with TlsTrunk(pki) as trunk, pytest.raises(TransportError, match="Hostname mismatch"):
        asyncio.run(options.ping(host=HOST, port=trunk.port, transport="tls", tls_name="sip.other.test",
                                 tls=TlsSettings(ca_pem=pki.ca_pem), timeout=5))  # fmt: skip
    assert trunk.requests == []


def test_an_srv_target_is_verified_by_its_name_while_dialled_by_address(pki):
    with TlsTrunk(pki) as trunk:
        hop = Hop(HOST, trunk.port, name=SERVER_NAME)
        answer = asyncio.run(options.ping(host=hop.host, port=hop.port, transport="tls", tls_name=hop.tls_name,
                                          tls=TlsSettings(ca_pem=pki.ca_pem), timeout=5))  # fmt: skip
    assert answer.status == 200


def test_a_trunk_that_requires_a_client_certificate_gets_ours(pki):
    settings = TlsSettings(ca_pem=pki.ca_pem, cert_pem=pki.client.cert_pem, key_pem=pki.client.key_pem)
    with TlsTrunk(pki, require_client=True) as trunk:
        result = dial(trunk.port, settings)
    assert (result.outcome, result.sip_code) == (BUSY, 486), result
    assert trunk.client_names == [CLIENT_NAME]


def test_without_a_client_certificate_such_a_trunk_fails_the_call(pki):
    with TlsTrunk(pki, require_client=True) as trunk:
        result = dial(trunk.port, TlsSettings(ca_pem=pki.ca_pem))
    assert result.outcome == FAILED and result.sip_code is None, result
    assert trunk.requests == [] and trunk.client_names == []


def test_the_key_never_appears_in_a_repr(pki):
    settings = TlsSettings(ca_pem=pki.ca_pem, cert_pem=pki.client.cert_pem, key_pem=pki.client.key_pem)
    assert pki.client.key_pem not in repr(settings)
    assert pki.client.key_pem not in repr(CallSpec(to="sip:a@b", audio=b"x", tls=settings))


def test_one_context_serves_every_call_with_the_same_settings(pki):
    settings = TlsSettings(ca_pem=pki.ca_pem, cert_pem=pki.client.cert_pem, key_pem=pki.client.key_pem)
    assert client_context(settings) is client_context(TlsSettings(settings.ca_pem, settings.cert_pem, settings.key_pem))
    assert client_context(settings) is not client_context(TlsSettings(ca_pem=pki.ca_pem))


# --- what the account form is told ---------------------------------------------------------------------------


def test_usable_settings_have_no_problems(pki):
    assert tls.problems(TlsSettings(ca_pem=pki.ca_pem, cert_pem=pki.client.cert_pem, key_pem=pki.client.key_pem)) == []
    assert tls.problems(TlsSettings()) == []


def test_each_unusable_setting_is_named(pki):
    other = Pki()
    assert tls.problems(TlsSettings(ca_pem="hello")) == [
        (tls.CA, "the CA bundle holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    ]
    broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    [(part, problem)] = tls.problems(TlsSettings(ca_pem=broken))
    assert part == tls.CA and problem.startswith("the CA bundle is not valid PEM")
    assert tls.problems(TlsSettings(cert_pem=pki.client.cert_pem)) == [
        (tls.KEY, "the client certificate needs its private key")
    ]
    assert tls.problems(TlsSettings(key_pem=pki.client.key_pem)) == [
        (tls.CERT, "a client key was given without its certificate")
    ]
    assert tls.problems(TlsSettings(cert_pem=pki.client.cert_pem, key_pem=other.client.key_pem)) == [
        (tls.KEY, "the client key does not belong to the client certificate")
    ]
    encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
    [(part, problem)] = tls.problems(TlsSettings(cert_pem=pki.client.cert_pem, key_pem=encrypted))
    assert part == tls.KEY and "protected by a passphrase" in problem


def test_expired_and_not_yet_valid_certificates_are_named_with_their_dates(pki):
    now = dt.datetime.now(dt.UTC)
    expired = pki.issue("old-client", server=False, not_before=now - dt.timedelta(days=60),
                        not_after=now - dt.timedelta(days=2))  # fmt: skip
    future = pki.issue("new-client", server=False, not_before=now + dt.timedelta(days=3))
    [(part, problem)] = tls.problems(TlsSettings(cert_pem=expired.cert_pem, key_pem=expired.key_pem))
    assert part == tls.CERT
    assert problem == f"the client certificate expired on {now - dt.timedelta(days=2):%Y-%m-%d} (CN=old-client)"
    [(part, problem)] = tls.problems(TlsSettings(cert_pem=future.cert_pem, key_pem=future.key_pem))
    assert problem.startswith("the client certificate is not valid before") and "CN=new-client" in problem


def test_a_broken_setting_met_at_call_time_fails_the_call_saying_why(pki):
    result = dial(5061, TlsSettings(cert_pem=pki.client.cert_pem))
    assert result.outcome == FAILED
    assert result.error == "cannot connect over tls: the client certificate needs its private key"


def test_the_certificates_are_described_for_the_account_page(pki):
    assert tls.describe(pki.ca_pem).startswith("CN=Herald Test Carrier CA — until ")
    assert tls.describe("nothing") == ""
    with pytest.raises(TlsSettingsError):
        tls.certificates_in("nothing", "CA bundle")
