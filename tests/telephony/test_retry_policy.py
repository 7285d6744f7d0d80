"""Retries by outcome: each campaign says how long to wait after busy, no answer, a failure or a machine."""

from __future__ import annotations

import statistics
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Call, CallAttempt, Campaign
from campaigns.policy import retry_delay_for, validate_retry_policy
from telephony import outcomes
from telephony.outcomes import record_ending
from telephony.providers.sip import ending_for
from telephony.sip import types as sip

pytestmark = pytest.mark.django_db
S = CallAttempt.Status
Out = Call.Outcome


@pytest.fixture
def exact(campaign) -> Campaign:
    """The telephony campaign without jitter, so every delay can be checked to the microsecond."""
    campaign.retry_jitter = 0
    campaign.save(update_fields=["retry_jitter"])
    return campaign


def set_policy(campaign: Campaign, policy: dict, **fields) -> None:
    for name, value in {"retry_policy": policy, **fields}.items():
        setattr(campaign, name, value)
    campaign.save()


def end(attempt: CallAttempt, status: str, **fields) -> Call:
    """End the attempt at a known time; return its call as the state machine left it."""
    at = timezone.now()
    assert outcomes.apply_status(attempt.pk, status, at=at, **fields)
    call = Call.objects.get(pk=attempt.call_id)
    call.ended = at  # type: ignore[attr-defined]
    return call


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [{}, {"busy": 10}, {"busy": 0, "no_answer": 2.5, "failed": 15, "machine": None}, {"machine": 1440}],
)
def test_valid_policies_pass(policy):
    validate_retry_policy(policy)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"voicemail": 10}, "unknown outcome 'voicemail'; use busy, no_answer, failed, machine"),
        ({"no-answer": 10}, "unknown outcome 'no-answer'"),
        ({"busy": -1}, "'busy' must be minutes from 0 to 43200 or null (never retry), not -1"),
        ({"failed": "15"}, "'failed' must be minutes"),
        ({"machine": True}, "'machine' must be minutes"),
        ({"busy": float("nan")}, "'busy' must be minutes"),
        ({"busy": 10**9}, "'busy' must be minutes from 0 to 43200"),
        ([10, 20], "must be an object of minutes by outcome"),
        ("busy=10", "must be an object of minutes by outcome"),
    ],
)
def test_bad_policies_are_refused_with_a_clear_message(policy, message):
    with pytest.raises(ValueError, match="retry policy") as caught:
        validate_retry_policy(policy)
    assert message in str(caught.value)


# --- delay by outcome ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "fields", "minutes", "outcome"),
    [
        (S.BUSY, {}, 10, Out.BUSY),
        (S.NO_ANSWER, {}, 60, Out.NO_ANSWER),
        (S.FAILED, {"error_code": "31005", "error_message": "Connection error"}, 5, Out.FAILED),
        (S.FAILED, {"error_code": "sip-503"}, 5, Out.FAILED),
    ],
)
def test_each_outcome_waits_its_own_delay(exact, attempt, status, fields, minutes, outcome):
    set_policy(exact, {"busy": 10, "no_answer": 60, "failed": 5})

    call = end(attempt, status, **fields)

    assert (call.state, call.outcome) == (Call.State.READY, outcome)
    assert call.next_attempt_at == call.ended + timedelta(minutes=minutes)


@pytest.mark.parametrize(("status", "outcome"), [(S.BUSY, Out.BUSY), (S.NO_ANSWER, Out.NO_ANSWER)])
def test_missing_outcomes_use_the_campaign_retry_delay(exact, attempt, status, outcome):
    set_policy(exact, {"failed": 1}, retry_delay=timedelta(minutes=45))

    call = end(attempt, status)

    assert (call.state, call.outcome) == (Call.State.READY, outcome)
    assert call.next_attempt_at == call.ended + timedelta(minutes=45)


def test_a_missing_failed_entry_retries_a_transient_failure_after_the_retry_delay(exact, attempt):
    call = end(attempt, S.FAILED, error_code="31005")

    assert call.state == Call.State.READY
    assert call.next_attempt_at == call.ended + exact.retry_delay


@pytest.mark.parametrize(
    ("status", "fields", "outcome", "state"),
    [
        (S.BUSY, {}, Out.BUSY, Call.State.DONE),
        (S.NO_ANSWER, {}, Out.NO_ANSWER, Call.State.DONE),
        (S.FAILED, {"error_code": "31005"}, Out.FAILED, Call.State.FAILED),
    ],
)
def test_null_means_never(exact, attempt, status, fields, outcome, state):
    set_policy(exact, {"busy": None, "no_answer": None, "failed": None})
    before = Call.objects.get(pk=attempt.call_id).next_attempt_at

    call = end(attempt, status, **fields)

    assert (call.state, call.outcome) == (state, outcome)
    assert call.next_attempt_at == before


def test_a_machine_is_not_called_again_unless_the_policy_says_so(exact, attempt, make_call):
    call = end(attempt, S.COMPLETED, answered_by="machine_end_beep", duration=20)
    assert (call.state, call.outcome) == (Call.State.DONE, Out.MACHINE)

    set_policy(exact, {"machine": 120})
    other = make_call(phone="+8613800138001")
    second = CallAttempt.objects.create(call=other, number=1, provider="twilio", status=S.IN_PROGRESS)

    call = end(second, S.COMPLETED, answered_by="machine_start", duration=20)

    assert (call.state, call.outcome) == (Call.State.READY, Out.MACHINE)
    assert call.next_attempt_at == call.ended + timedelta(minutes=120)


def test_a_person_who_answered_is_never_retried_whatever_the_policy(exact, attempt):
    set_policy(exact, {"busy": 1, "no_answer": 1, "failed": 1, "machine": 1})

    call = end(attempt, S.COMPLETED, answered_by="human", duration=20)

    assert (call.state, call.outcome) == (Call.State.DONE, Out.ANSWERED)


@pytest.mark.parametrize(
    ("status", "fields"),
    [(S.BUSY, {}), (S.COMPLETED, {"answered_by": "machine_start"}), (S.FAILED, {"error_code": "31005"})],
)
def test_max_attempts_still_caps(exact, make_call, status, fields):
    set_policy(exact, {"busy": 1, "failed": 1, "machine": 1})
    call = make_call(attempts_made=3)
    last = CallAttempt.objects.create(call=call, number=3, provider="twilio", status=S.RINGING)

    call = end(last, status, **fields)

    assert call.state in (Call.State.DONE, Call.State.FAILED)


def test_permanent_failures_and_refusals_are_never_retried(exact, attempt, make_call):
    set_policy(exact, {"failed": 1})

    call = end(attempt, S.FAILED, error_code="21215", error_message="geo permissions", permanent_error=True)
    assert (call.state, call.outcome) == (Call.State.FAILED, Out.FAILED)

    declined = make_call(phone="+8613800138001")
    second = CallAttempt.objects.create(call=declined, number=1, provider="sip", status=S.RINGING)
    call = end(second, S.FAILED, error_code="sip-603", error_message="SIP 603 Decline")  # even unflagged
    assert (call.state, call.outcome) == (Call.State.FAILED, Out.FAILED)


def test_a_policy_edited_into_nonsense_after_launch_falls_back_to_the_retry_delay(exact, attempt):
    set_policy(exact, {"busy": "soon"})

    call = end(attempt, S.BUSY)

    assert call.state == Call.State.READY
    assert call.next_attempt_at == call.ended + exact.retry_delay


# --- invalid numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["21211", "21217", "13223", "13224", "sip-404", "sip-410", "sip-484", "sip-604"])
def test_an_invalid_number_ends_the_call_and_is_never_retried(exact, attempt, code):
    set_policy(exact, {"failed": 1})

    call = end(attempt, S.FAILED, error_code=code, error_message="not a number")

    assert (call.state, call.outcome) == (Call.State.FAILED, Out.INVALID_NUMBER)
    assert call.error == "not a number"


def test_twilio_reports_an_invalid_number_in_its_status_callback(exact, attempt, send_status):
    send_status(attempt, "failed", ErrorCode="13224", ErrorMessage="Dial: invalid phone number")

    call = Call.objects.get(pk=attempt.call_id)
    assert (call.state, call.outcome) == (Call.State.FAILED, Out.INVALID_NUMBER)


@pytest.mark.parametrize("code", [404, 410, 484, 604])
def test_a_sip_trunk_reports_an_invalid_number(exact, attempt, code):
    result = sip.CallResult(outcome=sip.INVALID_NUMBER, call_id="x", sip_code=code, sip_reason="Not Found")

    record_ending(attempt.pk, ending_for(result))

    call = Call.objects.get(pk=attempt.call_id)
    assert (call.state, call.outcome) == (Call.State.FAILED, Out.INVALID_NUMBER)


def test_other_failures_are_not_invalid_numbers(exact, attempt):
    call = end(attempt, S.FAILED, error_code="21215", error_message="geographic permissions", permanent_error=True)

    assert call.outcome == Out.FAILED


# --- jitter ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("jitter", [10, 25, 50])
def test_jitter_spreads_delays_within_its_bounds(campaign, jitter):
    campaign.retry_jitter = jitter
    campaign.retry_policy = {"busy": 20}
    base = 20 * 60
    samples = [retry_delay_for(campaign, "busy").total_seconds() for _ in range(4000)]

    low, high = base * (1 - jitter / 100), base * (1 + jitter / 100)
    assert low <= min(samples) and max(samples) <= high
    # Spread over the whole range, not bunched: 4000 uniform draws reach within 1% of each end.
    width = high - low
    assert min(samples) < low + 0.01 * width and max(samples) > high - 0.01 * width
    assert abs(statistics.fmean(samples) - base) < 0.03 * width
    assert len(set(samples)) > 3900


def test_jitter_applies_to_the_default_delay_too(campaign):
    campaign.retry_jitter = 20
    samples = [retry_delay_for(campaign, "no_answer") for _ in range(500)]

    assert min(samples) >= campaign.retry_delay * 0.8 and max(samples) <= campaign.retry_delay * 1.2
    assert max(samples) - min(samples) > campaign.retry_delay * 0.3


def test_without_jitter_the_delay_is_exact(campaign):
    campaign.retry_jitter = 0

    assert {retry_delay_for(campaign, "busy") for _ in range(50)} == {campaign.retry_delay}


def test_a_retried_call_is_scheduled_within_the_jitter(campaign, make_call):
    set_policy(campaign, {"busy": 10}, retry_jitter=50)
    delays = []
    for i in range(40):
        call = make_call(phone=f"+86138001{i:05d}")
        attempt = CallAttempt.objects.create(call=call, number=1, provider="twilio", status=S.RINGING)
        ended = end(attempt, S.BUSY)
        delays.append(ended.next_attempt_at - ended.ended)

    assert all(timedelta(minutes=5) <= d <= timedelta(minutes=15) for d in delays)
    assert len(set(delays)) == len(delays)  # spread, not one burst
