"""A SIP trunk with several servers, through the account: backup hosts and SRV in the admin, the OPTIONS health
check that orders them, and real calls that fail over (the SIP runtime and Herald's user agent against sipp).
"""

from __future__ import annotations

import socket

import pytest
from django.core.cache import cache

from campaigns.models import CallAttempt
from telephony import trunks
from telephony.actions import place_call
from telephony.models import TelephonyAccount
from telephony.providers.base import Dial
from telephony.providers.sip import SipProvider
from tests.sipp import HOST, Sipp, free_port
from tests.telephony.conftest import CALLER_ID, PHONE
from tests.telephony.sip.test_sipp import PASSWORD as OPTIONS_PASSWORD
from tests.telephony.sip.test_sipp import received
from tests.telephony.test_sip_provider import account, account_form, audio, claimed, finished  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)
S = CallAttempt.Status


@pytest.fixture(autouse=True)
def fresh_cache():
    """Each test starts with no health marks or registration states (the shared cache outlives tests)."""
    cache.clear()
    yield
    cache.clear()


def closed_tcp_port() -> int:
    return free_port(socket.SOCK_STREAM)


def dial_for(audio) -> Dial:  # noqa: F811
    from django.conf import settings

    return Dial(attempt_id=1, to=PHONE, caller_id=CALLER_ID, audio_url="",
                audio_path=f"{settings.MEDIA_ROOT}/{audio.telephony_file}")  # fmt: skip


# --- the account's settings -----------------------------------------------------------------------------------


def test_backup_servers_are_read_one_per_line_with_the_accounts_port_by_default():
    form = account_form(sip_backup_hosts="sip2.example.com\n\n  192.0.2.9:5080 \n[2001:db8::7]:5062\n2001:db8::8")
    assert form.is_valid(), form.errors
    saved = form.save()
    assert saved.backup_hops() == [
        ("sip2.example.com", 5060), ("192.0.2.9", 5080), ("2001:db8::7", 5062), ("2001:db8::8", 5060),
    ]


def test_each_bad_backup_server_line_is_named():
    form = account_form(sip_backup_hosts="sip2.example.com\nsip:x@y\nok.example.com:70000\nfine.example.com:5070")
    assert not form.is_valid()
    assert form.errors["sip_backup_hosts"] == [
        "Line 2 (sip:x@y) is not host or host:port, e.g. sip2.example.com:5060.",
        "Line 3 (ok.example.com:70000) is not host or host:port, e.g. sip2.example.com:5060.",
    ]


def test_the_user_agent_gets_the_trunks_servers_and_their_health(account, audio, settings):  # noqa: F811
    settings.SIP_DNS_SERVERS = ("10.0.0.2:5353",)
    account.sip_srv, account.sip_backup_hosts = True, "sip2.example.com:5080\n192.0.2.9"
    spec = SipProvider(account).call_spec(dial_for(audio), "abc")
    assert (spec.srv, spec.dns_servers) == (True, ("10.0.0.2:5353",))
    assert spec.backup_hops == (("sip2.example.com", 5080), ("192.0.2.9", 5070))
    assert spec.down_hops == frozenset()


def test_the_deployments_nat_settings_reach_every_call(account, audio, settings):  # noqa: F811
    settings.SIP_EXTERNAL_ADDRESS, settings.SIP_STUN_SERVER = "203.0.113.5", "stun.example.com"
    settings.SIP_RTP_PORTS, settings.SIP_SYMMETRIC_RTP = (10000, 10999), False
    spec = SipProvider(account).call_spec(dial_for(audio), "abc")
    assert (spec.external_ip, spec.stun_server, spec.rtp_port_range, spec.symmetric_rtp) == (
        "203.0.113.5", "stun.example.com", (10000, 10999), False,
    )


# --- the health check ---------------------------------------------------------------------------------------


def test_the_health_check_asks_every_server_and_calls_try_the_live_ones_first(account, audio):  # noqa: F811
    dead = closed_tcp_port()
    with Sipp("options_auth.xml", transport="tcp") as live:
        TelephonyAccount.objects.filter(pk=account.pk).update(
            sip_port=dead, sip_backup_hosts=f"{HOST}:{live.port}", account_sid="herald"
        )
        account.refresh_from_db()
        from telephony.actions import set_auth_token

        set_auth_token(account, OPTIONS_PASSWORD)
        assert trunks.check_trunks() == 1
        assert live.wait(10) == 0, live.report()  # it challenged us and our credentials verified
    health = trunks.health(account)
    assert [(server["server"], server["up"]) for server in health["servers"]] == [
        (f"{HOST}:{dead}", False), (f"{HOST}:{live.port}", True),
    ]
    assert health["servers"][0]["said"].startswith(f"cannot connect to {HOST}:{dead} over tcp")
    assert health["servers"][1]["said"] == "200 OK"
    assert trunks.down_servers(account) == {f"{HOST}:{dead}"}
    assert SipProvider(account).call_spec(dial_for(audio), "abc").down_hops == {f"{HOST}:{dead}"}

    # Checks switched off: the marks no longer steer calls.
    account.sip_health_checks = False
    assert trunks.down_servers(account) == frozenset()


def test_accounts_with_checks_off_are_not_asked(account):  # noqa: F811
    TelephonyAccount.objects.filter(pk=account.pk).update(sip_health_checks=False, sip_port=closed_tcp_port())
    assert trunks.check_trunks() == 0
    assert trunks.health(account) is None


def test_the_admin_shows_each_servers_health_and_checks_on_demand(admin_client, account):  # noqa: F811
    dead = closed_tcp_port()
    TelephonyAccount.objects.filter(pk=account.pk).update(sip_port=dead)
    page = admin_client.get(f"/admin/telephony/telephonyaccount/{account.pk}/change/").content.decode()
    assert "No recent check" in page and "sip_backup_hosts" in page and "sip_srv" in page

    response = admin_client.post(
        "/admin/telephony/telephonyaccount/",
        {"action": "check_servers", "_selected_action": [account.pk]},
        follow=True,
    )
    said = response.content.decode()
    assert f"Trunk: 0 of 1 servers answer ({HOST}:{dead} cannot connect to {HOST}:{dead} over tcp" in said
    page = admin_client.get(f"/admin/telephony/telephonyaccount/{account.pk}/change/").content.decode()
    assert f"{HOST}:{dead} — down (cannot connect" in page and "checked " in page


# --- calls --------------------------------------------------------------------------------------------------


def test_a_call_the_first_server_cannot_take_is_answered_by_the_backup(account, claimed):  # noqa: F811
    dead = closed_tcp_port()
    with Sipp("answer.xml", transport="tcp") as backup:
        TelephonyAccount.objects.filter(pk=account.pk).update(
            sip_port=dead, sip_backup_hosts=f"{HOST}:{backup.port}"
        )
        place_call(claimed.pk)
        attempt = finished(claimed)
        assert backup.wait(10) == 0, backup.report()
    assert attempt.status == S.COMPLETED, attempt.error_message
    [invite] = received(backup, "INVITE")
    assert invite.startswith(f"INVITE sip:{PHONE}@{HOST}:{dead} SIP/2.0")
    assert f"Call-ID: {attempt.provider_call_id}" in invite


def test_a_call_every_server_refuses_names_each_of_them(account, claimed):  # noqa: F811
    first, second = closed_tcp_port(), closed_tcp_port()
    TelephonyAccount.objects.filter(pk=account.pk).update(sip_port=first, sip_backup_hosts=f"{HOST}:{second}")
    place_call(claimed.pk)
    attempt = finished(claimed)
    assert attempt.status == S.FAILED
    assert attempt.error_message == (
        f"cannot connect to {HOST}:{second} over tcp: [Errno 111] Connect call failed ('{HOST}', {second}); "
        f"at {HOST}:{second} (tcp), after {HOST}:{first} (tcp): cannot connect to {HOST}:{first} over tcp: "
        f"[Errno 111] Connect call failed ('{HOST}', {first})"
    )


def test_the_accounts_srtp_choice_reaches_every_call(account, audio):  # noqa: F811
    assert SipProvider(account).call_spec(dial_for(audio), "abc").srtp == ""
    account.sip_srtp = TelephonyAccount.Srtp.REQUIRED
    assert SipProvider(account).call_spec(dial_for(audio), "abc").srtp == "required"
    form = account_form(sip_srtp="sometimes")
    assert not form.is_valid() and "sip_srtp" in form.errors


def test_a_call_through_the_outbound_proxy_names_the_carriers_domain(account, claimed):  # noqa: F811
    with Sipp("answer.xml", transport="tcp") as proxy:
        TelephonyAccount.objects.filter(pk=account.pk).update(
            sip_host="sip.carrier.test", sip_outbound_proxy=f"{HOST}:{proxy.port}", sip_request_domain="ims.carrier.test"
        )
        place_call(claimed.pk)
        attempt = finished(claimed)
        assert proxy.wait(10) == 0, proxy.report()
    assert attempt.status == S.COMPLETED, attempt.error_message
    [invite] = received(proxy, "INVITE")
    assert invite.startswith(f"INVITE sip:{PHONE}@ims.carrier.test SIP/2.0")


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"sip_outbound_proxy": "sip:proxy"}, "sip_outbound_proxy", "host or host:port"),
        ({"sip_request_domain": "ims example"}, "sip_request_domain", "Enter a domain only"),
    ],
)
def test_proxy_and_request_domain_are_checked(fields, field, message):
    form = account_form(**fields)
    assert not form.is_valid() and any(message in error for error in form.errors[field]), form.errors
