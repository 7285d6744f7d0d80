"""Registration trunks through the account: the fixed SIP port and REGISTER settings in the admin, a telephony
worker's runtime registering before its first call and keeping it fresh, the state on the account page, and the
binding removed when the worker stops. Against sipp (a registrar verifying the digest, and the trunk).
"""

from __future__ import annotations

import re

import pytest

from campaigns.models import CallAttempt
from telephony import trunks
from telephony.actions import place_call, set_auth_token
from telephony.models import TelephonyAccount
from telephony.providers.sip import RUNTIME
from tests.sipp import HOST, Sipp, free_port
from tests.telephony.sip.test_sipp import PASSWORD, USER, received
from tests.telephony.test_sip_provider import account, account_form, audio, claimed, finished  # noqa: F401
from tests.telephony.test_trunk_servers import fresh_cache  # noqa: F401
from tests.wait import wait_until

pytestmark = pytest.mark.django_db(transaction=True)
S = CallAttempt.Status


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"sip_register": "on", "sip_local_port": "5080", "sip_transport": "tcp"}, "sip_register", "over UDP only"),
        ({"sip_local_port": "5080", "sip_transport": "tls"}, "sip_local_port", "over UDP only"),
        ({"sip_register": "on"}, "sip_local_port", "Registration needs a fixed SIP port"),
        ({"sip_registrar": "sip:reg@x", "sip_local_port": "5080"}, "sip_registrar", "host or host:port"),
        ({"sip_register_expires": "30"}, "sip_register_expires", "At least 60 seconds."),
    ],
)
def test_registration_settings_say_what_is_wrong(fields, field, message):
    form = account_form(**fields)
    assert not form.is_valid()
    assert any(message in error for error in form.errors[field]), form.errors


def test_registration_settings_are_saved():
    form = account_form(sip_register="on", sip_local_port="5080", sip_registrar="reg.example.com:5070",
                        sip_register_expires="600")  # fmt: skip
    assert form.is_valid(), form.errors
    saved = form.save()
    spec = trunks.registration_spec(saved, "pw")
    assert (spec.registrar, spec.domain, spec.user, spec.local_port, spec.expires) == (
        ("reg.example.com", 5070), "sip.example.com", "herald", 5080, 600,
    )
    assert "pw" not in repr(spec)


def test_a_worker_registers_before_its_first_call_and_removes_the_binding_when_it_stops(
    account, claimed, admin_client  # noqa: F811
):
    port = free_port()
    with Sipp("register_auth.xml") as registrar, Sipp("answer.xml") as trunk:
        TelephonyAccount.objects.filter(pk=account.pk).update(
            sip_host=HOST, sip_port=trunk.port, sip_transport="udp", sip_domain="herald.test", account_sid=USER,
            sip_register=True, sip_local_port=port, sip_registrar=f"{HOST}:{registrar.port}",
        )  # fmt: skip
        account.refresh_from_db()
        set_auth_token(account, PASSWORD)
        place_call(claimed.pk)
        attempt = finished(claimed)
        assert attempt.status == S.COMPLETED, attempt.error_message
        assert trunk.wait(10) == 0, trunk.report()
        # Granted 2 s by the registrar: refreshed, and the account page says so.
        wait_until(lambda: (trunks.registration(account) or {}).get("refreshes"), "the registration's refresh", timeout=10)
        page = admin_client.get(f"/admin/telephony/telephonyaccount/{account.pk}/change/").content.decode()
        assert "registered: 200 OK" in page and f"contact sip:{USER}@{HOST}:{port}" in page
        RUNTIME.drain(timeout=5)  # the worker stops: Expires: 0
        assert registrar.wait(10) == 0, registrar.report()
    [invite] = received(trunk, "INVITE")
    assert re.search(rf"^Via: SIP/2.0/UDP {HOST}:{port};", invite, re.M)  # from the registered port
    assert f"<sip:herald@{HOST}:{port}>" in invite
    registers = received(registrar, "REGISTER")
    assert all(f"Contact: <sip:{USER}@{HOST}:{port}>" in message for message in registers[:4])


def test_the_account_page_says_when_no_worker_registered_yet(account, admin_client):  # noqa: F811
    TelephonyAccount.objects.filter(pk=account.pk).update(sip_transport="udp", sip_register=True, sip_local_port=5080)
    page = admin_client.get(f"/admin/telephony/telephonyaccount/{account.pk}/change/").content.decode()
    assert "Not registered yet: a telephony worker registers with its first call." in page
