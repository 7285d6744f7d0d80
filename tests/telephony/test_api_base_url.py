"""A Twilio account's api_base_url decides where its stored token is sent: https only, allowed hosts only, and
moving it needs the token typed again. Checked through the admin, as staff would change it."""

from __future__ import annotations

import secrets

import pytest
from django.urls import reverse

from telephony.actions import set_auth_token
from telephony.credentials import auth_token
from telephony.models import TelephonyAccount
from telephony.providers import get_provider
from telephony.providers.base import Dial, ProviderError

pytestmark = pytest.mark.django_db
TOKEN = "stored-token-" + "0" * 20


@pytest.fixture(autouse=True)
def production_machine(settings) -> None:
    settings.TWILIO_SANDBOX = False  # not a demo machine: the local sandbox is refused like any other host


@pytest.fixture
def twilio_account() -> TelephonyAccount:
    account = TelephonyAccount.objects.create(
        name="Twilio", kind=TelephonyAccount.Kind.TWILIO, account_sid="AC" + "1" * 32, caller_ids=["+862161234567"]
    )
    set_auth_token(account, TOKEN)
    return account


def form_data(account: TelephonyAccount | None = None, **fields: str) -> dict[str, str]:
    data = {
        "name": account.name if account else "New Twilio", "kind": "twilio",
        "account_sid": account.account_sid if account else "AC" + "2" * 32, "auth_token": "", "auth_token_env": "",
        "api_base_url": account.api_base_url if account else "", "caller_ids": '["+862161234567"]',
        "calls_per_second": "1", "max_concurrent_calls": "10", "sip_host": "", "sip_port": "5060",
        "sip_transport": "udp", "sip_domain": "",
    }  # fmt: skip
    data.update(fields)
    return data


def change(admin_client, account: TelephonyAccount, **fields: str):
    url = reverse("admin:telephony_telephonyaccount_change", args=[account.pk])
    return admin_client.post(url, form_data(account, **fields))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://api.twilio.com", "Only https"),
        ("https://attacker.example", "not an allowed Twilio API host"),
        ("https://api.twilio.com.attacker.example", "not an allowed Twilio API host"),
        ("https://api.twilio.com:8443", "not an allowed Twilio API host"),
        ("https://user@api.twilio.com", "no user@"),
        ("http://127.0.0.1:9000", "Only https"),  # the sandbox only where HERALD_TWILIO_SANDBOX says so
    ],
)
def test_token_cannot_be_pointed_at_another_host(admin_client, twilio_account, url, message):
    response = change(admin_client, twilio_account, api_base_url=url, auth_token=TOKEN)

    assert response.status_code == 200  # the form again, with the error
    assert message in response.content.decode()
    twilio_account.refresh_from_db()
    assert twilio_account.api_base_url == ""


def test_changing_the_url_needs_the_token_again(admin_client, twilio_account):
    response = change(admin_client, twilio_account, api_base_url="https://api.twilio.com")

    assert response.status_code == 200
    assert "Re-enter the auth token" in response.content.decode()
    twilio_account.refresh_from_db()
    assert twilio_account.api_base_url == ""


def test_allowed_host_with_the_token_is_saved(admin_client, twilio_account):
    response = change(admin_client, twilio_account, api_base_url="https://api.twilio.com", auth_token=TOKEN)

    assert response.status_code == 302
    twilio_account.refresh_from_db()
    assert twilio_account.api_base_url == "https://api.twilio.com"
    assert auth_token(twilio_account) == TOKEN


def test_other_changes_keep_working_without_the_token(admin_client, twilio_account):
    response = change(admin_client, twilio_account, calls_per_second="5")

    assert response.status_code == 302
    twilio_account.refresh_from_db()
    assert twilio_account.calls_per_second == 5


def test_hosts_come_from_the_setting(admin_client, twilio_account, settings):
    settings.TWILIO_API_HOSTS = ["api.twilio.com", "twilio-proxy.internal.example"]

    response = change(
        admin_client, twilio_account, api_base_url="https://twilio-proxy.internal.example", auth_token=TOKEN
    )

    assert response.status_code == 302


def test_sandbox_allowed_when_the_setting_says_so(admin_client, settings):
    settings.TWILIO_SANDBOX = True
    url = reverse("admin:telephony_telephonyaccount_add")

    response = admin_client.post(url, form_data(api_base_url="http://127.0.0.1:9000", auth_token=secrets.token_hex(8)))

    assert response.status_code == 302
    assert TelephonyAccount.objects.get(name="New Twilio").api_base_url == "http://127.0.0.1:9000"
    response = admin_client.post(url, form_data(name="Other", api_base_url="http://10.0.0.5:9000"))
    assert "Only https" in response.content.decode()


def test_the_token_is_not_sent_to_a_url_that_got_past_the_form(twilio_account):
    """A row changed outside the admin (a shell, a script, a restored backup): the provider checks again."""
    TelephonyAccount.objects.filter(pk=twilio_account.pk).update(api_base_url="http://attacker.example")
    twilio_account.refresh_from_db()
    dial = Dial(attempt_id=1, to="+8613800000000", caller_id="+862161234567", audio_url="https://x/a.wav")
    with pytest.raises(ProviderError) as refused:
        get_provider(twilio_account).place(dial)
    assert refused.value.permanent and refused.value.code == "credentials"
    assert "not sent to 'http://attacker.example'" in str(refused.value) and "Only https" in str(refused.value)
