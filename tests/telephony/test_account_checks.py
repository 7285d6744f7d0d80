"""Setting up an account without a call (issue 21): credentials tested and the account's numbers imported as
caller ids, through the real twilio library talking HTTP to the local sandbox; whether carriers can reach
HERALD_PUBLIC_URL; the getting-started page that offers all three."""

from __future__ import annotations

import socket

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from campaigns.models import Campaign
from telephony import accounts
from telephony.actions import set_auth_token
from telephony.models import TelephonyAccount
from tests.telephony.conftest import CALLER_ID, closed_port_url

pytestmark = pytest.mark.django_db
OWNED = ["+8613800138000", CALLER_ID, "+1 415 555 0100", "12345"]  # as Twilio might list them, one not a number


def test_credentials_accepted_and_refused(account, make_sandbox):
    make_sandbox()
    accepted = accounts.check_credentials(account)
    assert accepted.ok and accepted.message == (
        f"Twilio: Twilio accepted the credentials: account 'Sandbox account {account.account_sid}' is active"
    )
    set_auth_token(account, "not-the-token")
    refused = accounts.check_credentials(account)
    assert not refused.ok and "Twilio refused to check the account: 20003" in refused.message
    assert "(the Account SID or Auth Token is wrong)" in refused.message and "not-the-token" not in refused.message


def test_a_sandbox_that_is_down_is_named(account):
    account.api_base_url = closed_port_url()
    account.save()
    result = accounts.check_credentials(account)
    assert not result.ok and f"cannot reach {account.api_base_url}: ConnectionError" in result.message


def test_a_silent_sip_trunk_is_named_with_its_deadline(db, monkeypatch):
    from telephony.providers import sip as sip_provider

    monkeypatch.setattr(sip_provider, "OPTIONS_TIMEOUT", 1.0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never read (tests/telephony/sip
        silent.bind(("127.0.0.1", 0))  # checks a trunk that answers, with sipp)
        trunk = TelephonyAccount.objects.create(name="trunk", kind=TelephonyAccount.Kind.SIP, sip_host="127.0.0.1",
                                                sip_port=silent.getsockname()[1])  # fmt: skip
        result = accounts.check_credentials(trunk)
    assert not result.ok
    assert result.message == f"trunk: the trunk at 127.0.0.1:{trunk.sip_port} over udp did not answer OPTIONS within 1 s"


def test_the_accounts_numbers_become_caller_ids_once(account, make_sandbox):
    make_sandbox(numbers={account.account_sid: OWNED})
    imported = accounts.import_numbers(account)
    assert imported.added == ["+8613800138000", "+14155550100"] and imported.already == [CALLER_ID]
    assert [number for number, _ in imported.refused] == ["12345"]
    account.refresh_from_db()
    assert account.caller_ids == [CALLER_ID, "+8613800138000", "+14155550100"]
    again = accounts.import_numbers(account)
    assert again.added == [] and sorted(again.already) == sorted(account.caller_ids)


def test_public_url_checks_say_what_carriers_would_meet(live_server):
    local = accounts.public_url_problems(live_server.url)
    said = [(c.ok, c.message) for c in local]
    assert said[0] == (False, f"{live_server.url} is not https: carriers' webhooks and audio fetches should be "
                              "encrypted, and Twilio signs the https address it calls")  # fmt: skip
    assert not said[1][0] and "carriers on the internet cannot reach it" in said[1][1]
    loopback = accounts.public_url_problems("https://127.0.0.1:8443", fetch=False)
    assert [c.message for c in loopback] == [
        "127.0.0.1 is this machine's loopback address (127.0.0.1): carriers on the internet cannot reach it; set "
        "HERALD_PUBLIC_URL to the address they can (a domain name in front of this server)"
    ]
    assert said[2] == (True, f"{live_server.url}/healthz answers from here (HTTP 200)")
    assert "private address (10.1.2.3)" in accounts.public_url_problems("https://10.1.2.3", fetch=False)[0].message
    assert "local name" in accounts.public_url_problems("https://herald.localhost", fetch=False)[0].message
    public = accounts.public_url_problems("https://8.8.8.8", fetch=False)
    assert [(c.ok, c.message) for c in public] == [(True, "https://8.8.8.8 is a public https address")]
    down = accounts.public_url_problems(closed_port_url(), fetch=True)
    assert "did not answer from here: ConnectionError" in down[-1].message


def test_healthz_answers(client):
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"ok": True})
    assert client.post("/healthz").status_code == 405


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_the_getting_started_page_walks_an_empty_install(admin_client, account, make_sandbox, live_server, settings):
    TelephonyAccount.objects.exclude(pk=account.pk).delete()
    Campaign.objects.all().delete()
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert "Getting started: 2 of 7 steps done" in index  # an account, with a caller id
    url = reverse("getting_started")
    page = admin_client.get(url)
    done = [step.done for step in page.context["steps"]]
    assert done == [True, True, False, False, False, False, False]
    assert f'data-account="{account.pk}"' in page.content.decode()

    make_sandbox(numbers={account.account_sid: ["+8613800138000"]})
    tested = admin_client.post(url, {"check": "credentials", "account": account.pk}, follow=True)
    assert any("Twilio accepted the credentials" in m for m in _messages(tested))
    imported = admin_client.post(url, {"check": "numbers", "account": account.pk}, follow=True)
    assert any("1 added (+8613800138000), 0 already there" in m for m in _messages(imported)), _messages(imported)
    account.refresh_from_db()
    assert "+8613800138000" in account.caller_ids

    settings.PUBLIC_URL = live_server.url
    checked = admin_client.post(url, {"check": "public-url"}).content.decode()
    assert 'id="public-url-checks"' in checked and "healthz answers from here (HTTP 200)" in checked


def test_the_accounts_admin_actions(admin_client, account, make_sandbox):
    make_sandbox(numbers={account.account_sid: ["+8613800138000"]})
    changelist = reverse("admin:telephony_telephonyaccount_changelist")
    for action, said in (("test_credentials", "Twilio accepted the credentials"), ("import_numbers", "1 added")):
        response = admin_client.post(changelist, {"action": action, "_selected_action": [account.pk]}, follow=True)
        assert any(said in m for m in _messages(response)), (action, _messages(response))


def test_staff_who_may_not_change_accounts_cannot_import_numbers(client, django_user_model, account):
    from django.contrib.auth.models import Permission

    clerk = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_telephonyaccount"))
    client.login(username="clerk", password="pw")
    url = reverse("getting_started")
    assert client.get(url).status_code == 200
    assert client.post(url, {"check": "numbers", "account": account.pk}).status_code == 403
    account.refresh_from_db()
    assert account.caller_ids == [CALLER_ID]
