"""Twilio webhooks: the signature is checked first, every accepted request is stored, then applied."""

from __future__ import annotations

import logging
import secrets
from urllib.parse import urlencode

import pytest

from campaigns.models import Call, CallAttempt, DoNotCall
from telephony.actions import set_auth_token
from telephony.models import ProviderEvent, TelephonyAccount
from tests.telephony.conftest import FORM, gather_path, sign, status_path, twilio_params

pytestmark = pytest.mark.django_db


def assert_untouched(attempt: CallAttempt) -> None:
    before_call = (attempt.call.state, attempt.call.outcome, attempt.call.next_attempt_at)
    attempt.refresh_from_db()
    attempt.call.refresh_from_db()
    assert attempt.status == CallAttempt.Status.QUEUED
    assert attempt.timeline == []
    assert (attempt.call.state, attempt.call.outcome, attempt.call.next_attempt_at) == before_call


def test_valid_status_callback_is_stored_and_moves_the_attempt(attempt, send_status, account):
    response = send_status(attempt, "ringing", SequenceNumber="1")

    assert response.status_code == 204
    attempt.refresh_from_db()
    assert attempt.status == CallAttempt.Status.RINGING
    assert [status for status, _ in attempt.timeline] == ["ringing"]
    (event,) = ProviderEvent.objects.all()
    assert event.kind == ProviderEvent.Kind.STATUS
    assert event.attempt_id == attempt.pk
    assert event.account_id == account.pk
    assert event.provider_call_id == attempt.provider_call_id
    assert event.payload["CallStatus"] == "ringing"
    assert event.payload["SequenceNumber"] == "1"
    assert event.signature_valid and event.applied and event.note == ""


def test_missing_signature_is_refused_and_logged(client, attempt, public_url, caplog):
    params = twilio_params(attempt, CallStatus="completed")
    with caplog.at_level(logging.WARNING, logger="telephony.views"):
        response = client.post(status_path(attempt.pk), urlencode(params), content_type=FORM)

    assert response.status_code == 403
    (record,) = [r for r in caplog.records if r.name == "telephony.views"]
    assert record.levelno == logging.WARNING
    assert "X-Twilio-Signature" in record.getMessage()
    assert str(attempt.pk) in record.getMessage()
    assert not ProviderEvent.objects.exists()
    assert_untouched(attempt)


def test_forged_signature_is_refused(client, attempt, public_url):
    params = twilio_params(attempt, CallStatus="completed")
    forged = sign(secrets.token_hex(16), public_url + status_path(attempt.pk), params)

    response = client.post(status_path(attempt.pk), urlencode(params), content_type=FORM, headers={"X-Twilio-Signature": forged})

    assert response.status_code == 403
    assert not ProviderEvent.objects.exists()
    assert_untouched(attempt)


@pytest.mark.parametrize(
    "signed_url",
    [
        "https://herald.example.test/telephony/twilio/999999/status",  # another attempt's URL
        "https://attacker.example/telephony/twilio/{pk}/status",  # another host
        "http://herald.example.test/telephony/twilio/{pk}/status",  # another scheme
        "https://herald.example.test/telephony/twilio/{pk}/gather",  # the gather URL replayed on status
    ],
)
def test_signature_over_another_url_is_refused(client, attempt, public_url, token, signed_url):
    params = twilio_params(attempt, CallStatus="completed")
    signature = sign(token, signed_url.format(pk=attempt.pk), params)

    response = client.post(
        status_path(attempt.pk), urlencode(params), content_type=FORM, headers={"X-Twilio-Signature": signature}
    )

    assert response.status_code == 403
    assert not ProviderEvent.objects.exists()
    assert_untouched(attempt)


@pytest.mark.parametrize("change", ["altered", "added", "removed"])
def test_params_changed_after_signing_are_refused(client, attempt, public_url, token, change):
    params = twilio_params(attempt, CallStatus="ringing", AnsweredBy="machine_start")
    signature = sign(token, public_url + status_path(attempt.pk), params)
    if change == "altered":
        params["CallStatus"] = "completed"
    elif change == "added":
        params["Digits"] = "9"
    else:
        del params["AnsweredBy"]

    response = client.post(
        status_path(attempt.pk), urlencode(params), content_type=FORM, headers={"X-Twilio-Signature": signature}
    )

    assert response.status_code == 403
    assert not ProviderEvent.objects.exists()
    assert_untouched(attempt)


def test_gather_with_bad_signature_does_not_opt_out(client, attempt, public_url):
    params = twilio_params(attempt, Digits="9")
    forged = sign("not-the-token", public_url + gather_path(attempt.pk), params)

    response = client.post(gather_path(attempt.pk), urlencode(params), content_type=FORM, headers={"X-Twilio-Signature": forged})

    assert response.status_code == 403
    assert not DoNotCall.objects.exists()
    assert not ProviderEvent.objects.exists()
    attempt.refresh_from_db()
    assert attempt.digits == "" and not attempt.listened_to_end


def test_signature_of_another_of_our_accounts_is_refused_for_a_known_attempt(client, attempt, public_url):
    other = TelephonyAccount.objects.create(name="Other", account_sid="AC" + secrets.token_hex(16))
    set_auth_token(other, "other-token")
    params = twilio_params(attempt, CallStatus="completed")
    signature = sign("other-token", public_url + status_path(attempt.pk), params)

    response = client.post(
        status_path(attempt.pk), urlencode(params), content_type=FORM, headers={"X-Twilio-Signature": signature}
    )

    assert response.status_code == 403
    assert_untouched(attempt)


def test_unknown_attempt_signed_by_a_known_account_is_stored_with_a_note(attempt, post_signed, account, caplog):
    unknown = attempt.pk + 1000
    params = twilio_params(attempt, CallSid="CA" + secrets.token_hex(16), CallStatus="completed")

    with caplog.at_level(logging.WARNING, logger="telephony.views"):
        response = post_signed(status_path(unknown), params)

    assert response.status_code == 204
    (event,) = ProviderEvent.objects.all()
    assert event.attempt is None
    assert event.account_id == account.pk
    assert event.signature_valid and not event.applied
    assert event.note == "unknown attempt"
    assert event.payload == params
    assert_untouched(attempt)
    assert CallAttempt.objects.count() == 1
    assert any("unknown attempt" in r.getMessage() for r in caplog.records)


def test_unknown_attempt_with_unknown_signature_is_refused(client, attempt, public_url):
    unknown = attempt.pk + 1000
    params = twilio_params(attempt, CallStatus="completed")
    signature = sign(secrets.token_hex(16), public_url + status_path(unknown), params)

    response = client.post(status_path(unknown), urlencode(params), content_type=FORM, headers={"X-Twilio-Signature": signature})

    assert response.status_code == 403
    assert not ProviderEvent.objects.exists()


def test_unknown_attempt_on_the_gather_url_is_stored_and_hung_up(attempt, post_signed):
    unknown = attempt.pk + 1000

    response = post_signed(gather_path(unknown), twilio_params(attempt, Digits="9"))

    assert response.status_code == 200
    assert b"<Hangup" in response.content
    (event,) = ProviderEvent.objects.all()
    assert event.kind == ProviderEvent.Kind.GATHER and event.note == "unknown attempt" and not event.applied


def test_call_sid_mismatch_is_stored_but_not_applied(attempt, post_signed):
    stranger = "CA" + secrets.token_hex(16)

    response = post_signed(status_path(attempt.pk), twilio_params(attempt, CallSid=stranger, CallStatus="completed"))

    assert response.status_code == 204
    (event,) = ProviderEvent.objects.all()
    assert event.attempt_id == attempt.pk
    assert event.provider_call_id == stranger
    assert not event.applied
    assert "CallSid does not match" in event.note
    assert_untouched(attempt)


def test_gather_with_call_sid_mismatch_does_not_opt_out(attempt, post_signed):
    response = post_signed(gather_path(attempt.pk), twilio_params(attempt, CallSid="CA" + "0" * 32, Digits="9"))

    assert response.status_code == 200
    assert not DoNotCall.objects.exists()
    (event,) = ProviderEvent.objects.all()
    assert not event.applied and "CallSid does not match" in event.note


@pytest.mark.parametrize("status", ["exploded", "", "COMPLETED"])
def test_unknown_call_status_is_stored_with_a_note(attempt, post_signed, status):
    response = post_signed(status_path(attempt.pk), twilio_params(attempt, CallStatus=status))

    assert response.status_code == 204
    (event,) = ProviderEvent.objects.all()
    assert not event.applied
    assert "unknown call status" in event.note
    assert_untouched(attempt)


def test_missing_call_status_does_not_crash(attempt, post_signed):
    params = twilio_params(attempt)

    response = post_signed(status_path(attempt.pk), params)

    assert response.status_code == 204
    (event,) = ProviderEvent.objects.all()
    assert not event.applied and event.note


def test_non_numeric_duration_is_ignored(attempt, send_status):
    send_status(attempt, "completed", CallDuration="abc", AnsweredBy="human")

    attempt.refresh_from_db()
    assert attempt.status == CallAttempt.Status.COMPLETED
    assert attempt.duration is None


@pytest.mark.parametrize("path", [status_path, gather_path])
def test_get_is_not_allowed(client, attempt, path):
    response = client.get(path(attempt.pk), twilio_params(attempt, CallStatus="completed"))

    assert response.status_code == 405
    assert not ProviderEvent.objects.exists()
    assert_untouched(attempt)


def test_attempt_of_a_non_twilio_account_is_refused_not_a_server_error(attempt, post_signed, account):
    TelephonyAccount.objects.filter(pk=account.pk).update(kind=TelephonyAccount.Kind.SIP)

    response = post_signed(status_path(attempt.pk), twilio_params(attempt, CallStatus="completed"))

    assert response.status_code == 403
    assert not ProviderEvent.objects.exists()


def test_account_without_a_token_cannot_verify(attempt, post_signed, account):
    TelephonyAccount.objects.filter(pk=account.pk).update(auth_token_encrypted="")

    response = post_signed(status_path(attempt.pk), twilio_params(attempt, CallStatus="completed"))

    assert response.status_code == 403
    assert_untouched(attempt)


def test_callback_adopts_the_call_sid_of_an_ambiguous_attempt(call, send_status):
    """The create response was lost, but Twilio's callbacks name the call: the attempt learns its sid."""
    attempt = CallAttempt.objects.create(call=call, number=1, provider="twilio", status=CallAttempt.Status.UNKNOWN)
    sid = "CA" + secrets.token_hex(16)

    send_status(attempt, "completed", CallSid=sid, AnsweredBy="human", CallDuration="12")

    attempt.refresh_from_db()
    call.refresh_from_db()
    assert attempt.provider_call_id == sid
    assert attempt.status == CallAttempt.Status.COMPLETED and attempt.duration == 12
    assert (call.state, call.outcome) == (Call.State.DONE, Call.Outcome.ANSWERED)
