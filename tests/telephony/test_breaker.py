"""The circuit breaker: a campaign whose calls keep failing at the provider pauses itself and says why."""

from __future__ import annotations

import itertools

import pytest

from campaigns import lifecycle
from campaigns.models import Call, CallAttempt, Campaign
from telephony import outcomes
from telephony.outcomes import record_ending
from telephony.providers.sip import ending_for
from telephony.sip import types as sip

pytestmark = pytest.mark.django_db
S = CallAttempt.Status
_phones = itertools.count()

# What each kind of ending looks like to the state machine: (status, apply_status keywords).
OK = (S.COMPLETED, {"answered_by": "human", "duration": 12})
MACHINE = (S.COMPLETED, {"answered_by": "machine_start", "duration": 12})
BUSY = (S.BUSY, {})
NO_ANSWER = (S.NO_ANSWER, {})
SERVER_ERROR = (S.FAILED, {"error_code": "20500", "error_message": "Twilio server error 503"})
CONNECTION = (S.FAILED, {"error_code": "31005", "error_message": "Connection error"})
INVALID = (S.FAILED, {"error_code": "21211", "error_message": "Invalid 'To' Phone Number", "permanent_error": True})
DECLINED = (S.FAILED, {"error_code": "sip-603", "error_message": "SIP 603 Decline", "permanent_error": True})


@pytest.fixture
def breaker(campaign) -> Campaign:
    campaign.breaker_window = 4
    campaign.save(update_fields=["breaker_window"])
    return campaign


@pytest.fixture
def ends(make_call):
    """ends(OK, SERVER_ERROR, …): one call per ending, each attempt ending in turn; returns the campaign."""

    def run(*endings) -> Campaign:
        for status, fields in endings:
            call = make_call(phone=f"+86139{next(_phones):08d}")
            attempt = CallAttempt.objects.create(call=call, number=1, provider="twilio", status=S.RINGING)
            assert outcomes.apply_status(attempt.pk, status, **fields)
        return Campaign.objects.get(pk=call.campaign_id)

    return run


def test_trips_at_exactly_half(breaker, ends):
    campaign = ends(OK, OK, CONNECTION, SERVER_ERROR)

    assert campaign.status == Campaign.Status.PAUSED
    assert campaign.paused_reason == (
        "paused automatically: 2 of the last 4 attempts failed at the provider (latest: Twilio server error 503)"
    )


def test_does_not_trip_below_half(breaker, ends):
    campaign = ends(OK, OK, OK, SERVER_ERROR)

    assert (campaign.status, campaign.paused_reason) == (Campaign.Status.RUNNING, "")


def test_window_of_twenty_trips_at_ten_and_not_at_nine(campaign, ends):
    campaign.breaker_window = 20
    campaign.save(update_fields=["breaker_window"])

    campaign = ends(*[OK] * 11, *[SERVER_ERROR] * 9)
    assert campaign.status == Campaign.Status.RUNNING

    campaign = ends(SERVER_ERROR)  # the oldest OK leaves the window: 10 of the last 20
    assert campaign.status == Campaign.Status.PAUSED
    assert campaign.paused_reason.startswith("paused automatically: 10 of the last 20 attempts failed at the provider")


def test_nothing_is_decided_before_the_window_is_full(breaker, ends):
    campaign = ends(SERVER_ERROR, SERVER_ERROR, SERVER_ERROR)
    assert campaign.status == Campaign.Status.RUNNING

    campaign = ends(SERVER_ERROR)
    assert campaign.status == Campaign.Status.PAUSED


def test_the_attempt_that_fills_the_window_decides_even_when_it_succeeded(breaker, ends):
    campaign = ends(SERVER_ERROR, SERVER_ERROR, OK)
    assert campaign.status == Campaign.Status.RUNNING

    campaign = ends(OK)  # 2 of the first 4: half
    assert campaign.status == Campaign.Status.PAUSED


def test_only_the_last_n_attempts_count(breaker, ends):
    campaign = ends(SERVER_ERROR, OK, OK, OK, OK, OK, SERVER_ERROR)

    assert campaign.status == Campaign.Status.RUNNING


@pytest.mark.parametrize(
    "others",
    [[BUSY, NO_ANSWER, INVALID, DECLINED], [MACHINE, BUSY, BUSY, INVALID], [DECLINED, DECLINED, INVALID, INVALID]],
    ids=["mixed", "busy-machine", "refusals"],
)
def test_the_callee_or_the_number_is_not_the_providers_fault(breaker, ends, others):
    campaign = ends(*others, *others)

    assert campaign.status == Campaign.Status.RUNNING


def test_a_sip_trunk_failing_trips_it(breaker, ends, make_call):
    ends(OK, OK, CONNECTION)
    call = make_call(phone="+8613912345678")
    attempt = CallAttempt.objects.create(call=call, number=1, provider="sip", status=S.RINGING)

    record_ending(attempt.pk, ending_for(sip.CallResult(outcome=sip.FAILED, call_id="x", sip_code=503,
                                                         sip_reason="Service Unavailable")))

    campaign = Campaign.objects.get(pk=call.campaign_id)
    assert campaign.status == Campaign.Status.PAUSED
    assert campaign.paused_reason.endswith("(latest: SIP 503 Service Unavailable)")


def test_zero_turns_it_off(campaign, ends):
    campaign.breaker_window = 0
    campaign.save(update_fields=["breaker_window"])

    campaign = ends(*[SERVER_ERROR] * 8)

    assert campaign.status == Campaign.Status.RUNNING


def test_a_campaign_paused_by_staff_keeps_its_state_and_no_reason_is_invented(breaker, ends, campaign):
    assert lifecycle.pause(campaign)

    campaign = ends(*[SERVER_ERROR] * 4)

    assert (campaign.status, campaign.paused_reason) == (Campaign.Status.PAUSED, "")


def test_a_cancelled_campaign_is_not_paused(breaker, ends, campaign):
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.CANCELLED)

    campaign = ends(*[SERVER_ERROR] * 4)

    assert campaign.status == Campaign.Status.CANCELLED


def test_a_failure_without_a_message_names_its_code(breaker, ends):
    campaign = ends(OK, OK, (S.FAILED, {"error_code": "31005"}), (S.FAILED, {"error_code": "31005"}))

    assert campaign.paused_reason.endswith("(latest: error 31005)")


def test_resume_is_one_click_and_clears_the_reason(breaker, ends):
    campaign = ends(OK, OK, SERVER_ERROR, SERVER_ERROR)
    assert campaign.status == Campaign.Status.PAUSED

    assert lifecycle.resume(campaign)

    assert (campaign.status, campaign.paused_reason) == (Campaign.Status.RUNNING, "")
    campaign.refresh_from_db()
    assert (campaign.status, campaign.paused_reason) == (Campaign.Status.RUNNING, "")
    assert not lifecycle.resume(campaign)  # not paused any more


def test_after_a_resume_successes_pass_and_a_failure_reopens_it(breaker, ends):
    ends(OK, OK, SERVER_ERROR, SERVER_ERROR)
    lifecycle.resume(Campaign.objects.get())

    # Calls answered after the resume do not pause it again, although the old failures are still in the window.
    campaign = ends(OK)
    assert campaign.status == Campaign.Status.RUNNING

    # The provider is still broken: the next failure makes it half again, and it pauses again at once.
    campaign = ends(SERVER_ERROR)
    assert campaign.status == Campaign.Status.PAUSED


def test_after_a_resume_enough_successes_push_the_old_failures_out(breaker, ends):
    ends(OK, OK, SERVER_ERROR, SERVER_ERROR)
    lifecycle.resume(Campaign.objects.get())

    campaign = ends(OK, OK, OK, SERVER_ERROR)  # last four: OK OK OK failure

    assert campaign.status == Campaign.Status.RUNNING


def test_calls_in_a_paused_campaign_still_get_their_retries(breaker, ends):
    ends(OK, OK, SERVER_ERROR, SERVER_ERROR)

    retried = Call.objects.filter(state=Call.State.READY).count()

    assert retried == 2  # transient failures: tried again once the campaign is resumed


def test_a_late_duplicate_failure_does_not_pause_twice_or_change_the_reason(breaker, ends):
    campaign = ends(OK, OK, SERVER_ERROR, SERVER_ERROR)
    reason = campaign.paused_reason

    assert not lifecycle.attempt_settled(campaign, provider_failure=True)
    campaign.refresh_from_db()
    assert campaign.paused_reason == reason


def test_the_reason_never_shows_a_full_phone_number(breaker, ends):
    failing = (S.FAILED, {"error_code": "sip", "error_message": "cannot dial +8613800138000: trunk refused"})

    campaign = ends(OK, OK, failing, failing)

    assert "+8613800138000" not in campaign.paused_reason
    assert "+86138****8000" in campaign.paused_reason
