"""Twilio errors about the account, not the callee, and numbers the carrier does not know, through the real twilio
library against the sandbox.

An account refusal on create (credentials, caller id, geographic permissions) dials nobody: the campaign pauses
with what to fix, and the call keeps its place and its attempts. A status callback whose SipResponseCode says the
number does not exist is an invalid number: never retried, and no evidence against the provider (the breaker).
"""

from __future__ import annotations

import logging

import pytest
from django.utils import timezone

from campaigns.lifecycle import attempt_not_placed, claim, resume, start_attempt
from campaigns.models import Call, CallAttempt, Campaign
from campaigns.policy import number_free_at
from telephony.actions import place_call
from telephony.models import TelephonyAccount
from tests.telephony.conftest import CALLER_ID, PHONE

S = CallAttempt.Status
OTHER_PHONE = "+8613900139000"

# The fault, what the reason names (numbers masked as herald.logmask masks them), and what it says to fix.
ACCOUNT_REFUSALS = [
    ("20003", "Twilio refused the account's credentials (20003 Authenticate)", "account SID and auth token"),
    ("20005", "Twilio says the account is not active (20005: suspended or closed)", "reactivate it"),
    ("21210", "Twilio refused the caller id +8621****4567 (21210: not verified", "verify the number in the Twilio console"),
    ("21212", "Twilio refused the caller id +8621****4567 (21212: not a valid From", "valid E.164 caller id"),
    ("21215", "Twilio may not call +86138****8000 (21215: the account's geographic", "allow that country"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("fault", "names", "fix"), ACCOUNT_REFUSALS)
def test_an_account_refusal_pauses_the_campaign_and_keeps_the_call(
    fault, names, fix, claimed, make_call, audio, account, campaign, make_sandbox, unreachable_public_url, settings,
    caplog,
):
    settings.MAX_CALLS_PER_NUMBER_24H = 1  # an attempt row left behind would hold the number for a day
    TelephonyAccount.objects.filter(pk=account.pk).update(max_concurrent_calls=1)  # a channel left taken shows
    sandbox = make_sandbox(create_fault_script={PHONE: [fault]})
    other = make_call(phone=OTHER_PHONE, state=Call.State.DIALING, attempts_made=0, audio=audio,
                      claimed_at=timezone.now())

    with caplog.at_level(logging.INFO):
        assert place_call(claimed.pk) == "account refused"

    campaign.refresh_from_db()
    reason = campaign.paused_reason
    assert campaign.status == Campaign.Status.PAUSED
    assert names in reason and fix in reason and reason.endswith("then resume"), reason
    assert PHONE not in reason and CALLER_ID not in reason
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("telephony", "campaigns"))]
    assert any(fault in message for message in ours)
    assert not any(PHONE in message or CALLER_ID in message for message in ours)
    # Nobody was dialled, so nothing counts against the callee: no attempt, no number cap, its place kept.
    claimed.refresh_from_db()
    assert (claimed.state, claimed.attempts_made, claimed.claimed_at) == (Call.State.READY, 0, None)
    assert claimed.outcome == "" and fault in claimed.error and PHONE not in claimed.error
    assert not CallAttempt.objects.exists()
    assert number_free_at(PHONE, timezone.now()) is None
    assert [(r["fault"], r["sid"]) for r in sandbox.create_requests()] == [(fault, None)]
    # The campaign's other claimed call is not sent to Twilio while it is paused: it waits, ready.
    assert place_call(other.pk) == "campaign not running"
    other.refresh_from_db()
    assert (other.state, other.attempts_made) == (Call.State.READY, 0)
    assert len(sandbox.create_requests()) == 1

    # Fixed in the console (the script is used up), then resumed: the call is dialled as its first attempt, on
    # the account's one channel (the refused create gave it back).
    assert resume(campaign)
    assert claim(claimed.pk, timezone.now())
    assert place_call(claimed.pk) == "placed"
    (attempt,) = CallAttempt.objects.filter(call=claimed)
    claimed.refresh_from_db()
    assert attempt.number == 1 and attempt.provider_call_id == sandbox.calls()[0]["sid"]
    assert (claimed.state, claimed.attempts_made) == (Call.State.IN_PROGRESS, 1)


@pytest.mark.django_db
def test_a_second_refusal_gives_its_call_back_and_keeps_the_first_reason(claimed, make_call, audio, campaign):
    """Workers that had each written an attempt meet the refusal one after another: every call is given back,
    and the campaign keeps the first reason."""
    second = make_call(phone=OTHER_PHONE, state=Call.State.DIALING, attempts_made=0, audio=audio,
                       claimed_at=timezone.now())
    now = timezone.now()
    first_attempt, _ = start_attempt(claimed.pk, 1, now)
    second_attempt, _ = start_attempt(second.pk, 1, now)

    assert attempt_not_placed(first_attempt, reason=f"Twilio may not call {PHONE} (21215): fix it", at=now)
    assert not attempt_not_placed(second_attempt, reason="Twilio refused the caller id (21210): other", at=now)

    campaign.refresh_from_db()
    assert campaign.paused_reason == "Twilio may not call +86138****8000 (21215): fix it"
    for call in (claimed, second):
        call.refresh_from_db()
        assert (call.state, call.attempts_made, call.claimed_at) == (Call.State.READY, 0, None)
    assert not CallAttempt.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_number_the_carrier_does_not_know_is_invalid_and_not_a_provider_failure(
    claimed, campaign, make_sandbox, live_server, settings
):
    settings.PUBLIC_URL = live_server.url
    Campaign.objects.filter(pk=campaign.pk).update(breaker_window=1)  # one provider failure would pause it
    sandbox = make_sandbox(answer=0, busy=0, no_answer=0, machine=0, invalid_number=1.0)

    assert place_call(claimed.pk) == "placed"
    assert sandbox.wait_idle(10)

    (dialled,) = sandbox.calls()
    assert (dialled["status"], dialled["sip_response_code"]) == ("failed", 404)
    attempt = CallAttempt.objects.get(call=claimed)
    assert (attempt.status, attempt.error_code) == (S.FAILED, "sip-404")
    assert "SIP 404" in attempt.error_message and "13224" in attempt.error_message
    claimed.refresh_from_db()
    assert (claimed.state, claimed.outcome, claimed.attempts_made) == (Call.State.FAILED, Call.Outcome.INVALID_NUMBER, 1)
    assert "SIP 404" in claimed.error
    campaign.refresh_from_db()
    assert (campaign.status, campaign.paused_reason) == (Campaign.Status.RUNNING, "")


@pytest.mark.django_db(transaction=True)
def test_a_carrier_failure_still_counts_for_the_breaker(claimed, campaign, make_sandbox, live_server, settings):
    """The contrast: the same window trips on a failure that is the carrier's, and the call is retried."""
    settings.PUBLIC_URL = live_server.url
    Campaign.objects.filter(pk=campaign.pk).update(breaker_window=1)
    sandbox = make_sandbox(answer=0, busy=0, no_answer=0, machine=0, failed=1.0)

    assert place_call(claimed.pk) == "placed"
    assert sandbox.wait_idle(10)

    attempt = CallAttempt.objects.get(call=claimed)
    assert (attempt.status, attempt.error_code) == (S.FAILED, "31005")
    claimed.refresh_from_db()
    assert (claimed.state, claimed.outcome) == (Call.State.READY, Call.Outcome.FAILED)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED and "failed at the provider" in campaign.paused_reason


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "params", "code", "outcome", "retried"),
    [
        ("failed", {"SipResponseCode": "404"}, "sip-404", Call.Outcome.INVALID_NUMBER, False),
        ("busy", {"SipResponseCode": "410"}, "sip-410", Call.Outcome.INVALID_NUMBER, False),
        ("no-answer", {"SipResponseCode": "484"}, "sip-484", Call.Outcome.INVALID_NUMBER, False),
        # Twilio's ErrorCode says less than the carrier's 404: the number is the problem.
        ("failed", {"SipResponseCode": "404", "ErrorCode": "31005"}, "sip-404", Call.Outcome.INVALID_NUMBER, False),
        # Other SIP responses leave the outcome to the status; a failure without an ErrorCode keeps its SIP code.
        ("failed", {"SipResponseCode": "503"}, "sip-503", Call.Outcome.FAILED, True),
        ("failed", {"SipResponseCode": "503", "ErrorCode": "31005"}, "31005", Call.Outcome.FAILED, True),
        ("no-answer", {"SipResponseCode": "487"}, "", Call.Outcome.NO_ANSWER, True),
        ("busy", {"SipResponseCode": "486"}, "", Call.Outcome.BUSY, True),
        # A malformed code is ignored (the Latin O is not a zero).
        ("failed", {"SipResponseCode": "4O4", "ErrorCode": "31005"}, "31005", Call.Outcome.FAILED, True),
    ],
)
def test_the_sip_response_decides_an_invalid_number(attempt, send_status, status, params, code, outcome, retried):
    send_status(attempt, status, **params)

    attempt.refresh_from_db()
    call = Call.objects.get(pk=attempt.call_id)
    assert (attempt.status, attempt.error_code, call.outcome) == (status, code, outcome)
    assert (call.state == Call.State.READY) == retried
    if outcome == Call.Outcome.INVALID_NUMBER:
        assert f"SIP {params['SipResponseCode']}" in attempt.error_message
