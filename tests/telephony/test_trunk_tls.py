"""A SIP trunk over TLS through the account: the carrier's CA and our client certificate in the admin (the key
write-only and stored encrypted), checked on save, and used by calls, the credentials check and health checks.
"""

from __future__ import annotations

import pytest

from campaigns.models import CallAttempt
from telephony import trunks
from telephony.accounts import check_credentials
from telephony.actions import place_call
from telephony.credentials import decrypt
from telephony.models import TelephonyAccount
from tests.telephony.test_sip_provider import account, account_form, audio, claimed, finished  # noqa: F401
from tests.telephony.test_trunk_servers import fresh_cache  # noqa: F401
from tests.tls_sip import CLIENT_NAME, HOST, Pki, TlsTrunk

pytestmark = pytest.mark.django_db(transaction=True)
S = CallAttempt.Status


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def tls_form(pki: Pki, **fields):
    data = {"sip_transport": "tls", "sip_port": "5061", "sip_tls_ca": pki.ca_pem,
            "sip_tls_client_cert": pki.client.cert_pem, "tls_client_key": pki.client.key_pem}  # fmt: skip
    return account_form(**(data | fields))


def use_trunk(account: TelephonyAccount, trunk: TlsTrunk, pki: Pki) -> None:  # noqa: F811
    from telephony.actions import set_tls_client_key

    TelephonyAccount.objects.filter(pk=account.pk).update(
        sip_host=HOST, sip_port=trunk.port, sip_transport="tls", sip_tls_ca=pki.ca_pem,
        sip_tls_client_cert=pki.client.cert_pem,
    )  # fmt: skip
    account.refresh_from_db()
    set_tls_client_key(account, pki.client.key_pem)


# --- the admin ------------------------------------------------------------------------------------------------


def test_the_tls_settings_are_saved_with_the_key_write_only(admin_client, pki):
    data = tls_form(pki).data | {"auth_token": "pw"}
    response = admin_client.post("/admin/telephony/telephonyaccount/add/", data)
    assert response.status_code == 302, response.content.decode()[-3000:]
    saved = TelephonyAccount.objects.get()
    assert saved.sip_tls_ca == pki.ca_pem.strip() and saved.sip_tls_client_cert == pki.client.cert_pem.strip()
    assert pki.client.key_pem not in saved.sip_tls_client_key_encrypted
    assert decrypt(saved.sip_tls_client_key_encrypted, what="key") == pki.client.key_pem.strip()

    page = admin_client.get(f"/admin/telephony/telephonyaccount/{saved.pk}/change/").content.decode()
    assert "PRIVATE KEY" not in page
    assert "CA: CN=Herald Test Carrier CA — until" in page
    assert f"client: CN={CLIENT_NAME} — until" in page and "client key: stored (encrypted)" in page

    # Saved again without the key: it is kept, and checked against the certificate it belongs to.
    again = tls_form(pki, tls_client_key="").data | {"auth_token": "", "name": "Carrier"}
    response = admin_client.post(f"/admin/telephony/telephonyaccount/{saved.pk}/change/", again)
    assert response.status_code == 302, response.content.decode()[-3000:]
    saved.refresh_from_db()
    assert decrypt(saved.sip_tls_client_key_encrypted, what="key") == pki.client.key_pem.strip()

    # Without a certificate there is no key to keep.
    cleared = again | {"sip_tls_client_cert": ""}
    response = admin_client.post(f"/admin/telephony/telephonyaccount/{saved.pk}/change/", cleared)
    assert response.status_code == 302, response.content.decode()[-3000:]
    saved.refresh_from_db()
    assert saved.sip_tls_client_key_encrypted == ""


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"sip_tls_ca": "not a certificate"}, "sip_tls_ca", "the CA bundle holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
        ({"tls_client_key": ""}, "tls_client_key", "the client certificate needs its private key"),
        ({"sip_tls_client_cert": ""}, "sip_tls_client_cert", "a client key was given without its certificate"),
    ],
)
def test_each_unusable_tls_setting_is_put_on_its_field(pki, fields, field, message):
    form = tls_form(pki, **fields)
    assert not form.is_valid()
    assert form.errors[field] == [message], form.errors


def test_a_key_of_another_certificate_is_refused_on_the_key_field(pki):
    form = tls_form(pki, tls_client_key=Pki().client.key_pem)
    assert not form.is_valid()
    assert form.errors["tls_client_key"] == ["the client key does not belong to the client certificate"]


# --- calls and checks over TLS ------------------------------------------------------------------------------


def test_a_campaign_call_reaches_a_trunk_that_admits_us_by_certificate(account, claimed, pki):  # noqa: F811
    with TlsTrunk(pki, require_client=True) as trunk:
        use_trunk(account, trunk, pki)
        place_call(claimed.pk)
        attempt = finished(claimed)
    assert (attempt.status, attempt.error_code) == (S.BUSY, "sip-486"), attempt.error_message
    assert trunk.client_names == [CLIENT_NAME] and trunk.methods() == ["INVITE", "ACK"]


def test_test_credentials_and_health_checks_use_the_certificate_too(account, pki):  # noqa: F811
    with TlsTrunk(pki, require_client=True) as trunk:
        use_trunk(account, trunk, pki)
        checked = check_credentials(account)
        health = trunks.check_trunk(account)
    assert checked.ok, checked.message
    assert [(server["up"], server["said"]) for server in health["servers"]] == [(True, "200 OK")]
    assert trunk.client_names == [CLIENT_NAME, CLIENT_NAME]


def test_a_key_that_cannot_be_decrypted_fails_the_call_naming_it(account, claimed, pki):  # noqa: F811
    TelephonyAccount.objects.filter(pk=account.pk).update(
        sip_transport="tls", sip_tls_client_cert=pki.client.cert_pem, sip_tls_client_key_encrypted="garbage"
    )
    place_call(claimed.pk)
    attempt = CallAttempt.objects.filter(call=claimed).first()
    claimed.refresh_from_db()
    message = attempt.error_message if attempt else claimed.last_error
    assert "the TLS client key: the stored secret cannot be decrypted" in message
