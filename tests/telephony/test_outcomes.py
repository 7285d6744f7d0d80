"""The attempt state machine, driven the way production drives it: signed Twilio webhooks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Call, CallAttempt, Campaign, DoNotCall
from telephony import outcomes
from telephony.models import ProviderEvent
from tests.telephony.conftest import PHONE

pytestmark = pytest.mark.django_db
S = CallAttempt.Status


def applied_flags() -> list[tuple[str, bool]]:
    return [(e.payload.get("CallStatus", e.payload.get("Digits")), e.applied) for e in ProviderEvent.objects.all()]


def refreshed(attempt: CallAttempt) -> tuple[CallAttempt, Call]:
    attempt.refresh_from_db()
    return attempt, Call.objects.get(pk=attempt.call_id)


def test_events_in_order_reach_an_answered_call(attempt, send_status):
    send_status(attempt, "initiated", SequenceNumber="0")
    send_status(attempt, "ringing", SequenceNumber="1")
    send_status(attempt, "in-progress", SequenceNumber="2", AnsweredBy="human")
    attempt, call = refreshed(attempt)
    assert attempt.status == S.IN_PROGRESS and attempt.answered_at is not None
    assert call.state == Call.State.IN_PROGRESS and call.outcome == ""

    send_status(attempt, "completed", SequenceNumber="3", AnsweredBy="human", CallDuration="17")

    attempt, call = refreshed(attempt)
    assert [status for status, _ in attempt.timeline] == ["initiated", "ringing", "in-progress", "completed"]
    assert attempt.status == S.COMPLETED
    assert attempt.answered_by == "human" and attempt.duration == 17
    assert attempt.ended_at is not None and attempt.ended_at >= attempt.answered_at
    assert (call.state, call.outcome) == (Call.State.DONE, Call.Outcome.ANSWERED)
    assert all(applied for _, applied in applied_flags())


def test_duplicates_are_recorded_and_not_applied(attempt, send_status):
    send_status(attempt, "ringing")
    send_status(attempt, "ringing")
    send_status(attempt, "completed", AnsweredBy="human", CallDuration="5")
    send_status(attempt, "completed", AnsweredBy="human", CallDuration="5")

    attempt, call = refreshed(attempt)
    assert [status for status, _ in attempt.timeline] == ["ringing", "completed"]
    assert applied_flags() == [("ringing", True), ("ringing", False), ("completed", True), ("completed", False)]
    assert (call.state, call.outcome) == (Call.State.DONE, Call.Outcome.ANSWERED)


@pytest.mark.parametrize("late", ["ringing", "in-progress", "initiated", "queued", "busy", "failed", "no-answer"])
def test_late_events_after_completed_never_move_backwards(attempt, send_status, late):
    send_status(attempt, "completed", AnsweredBy="human", CallDuration="30")
    attempt, call = refreshed(attempt)
    before = (attempt.status, attempt.timeline, attempt.ended_at, call.state, call.outcome, call.updated_at)

    send_status(attempt, late, AnsweredBy="machine_start", CallDuration="1")

    attempt, call = refreshed(attempt)
    assert (attempt.status, attempt.timeline, attempt.ended_at, call.state, call.outcome, call.updated_at) == before
    assert attempt.answered_by == "human" and attempt.duration == 30
    assert applied_flags() == [("completed", True), (late, False)]


def test_out_of_order_events_only_move_forward(attempt, send_status):
    send_status(attempt, "in-progress", AnsweredBy="human")
    send_status(attempt, "ringing")  # delivered late
    send_status(attempt, "initiated")  # later still

    attempt, _ = refreshed(attempt)
    assert attempt.status == S.IN_PROGRESS
    assert [status for status, _ in attempt.timeline] == ["in-progress"]
    assert applied_flags() == [("in-progress", True), ("ringing", False), ("initiated", False)]


@pytest.mark.parametrize(("status", "outcome"), [("busy", Call.Outcome.BUSY), ("no-answer", Call.Outcome.NO_ANSWER)])
def test_unanswered_with_attempts_left_is_retried_after_the_delay(attempt, send_status, status, outcome):
    before = timezone.now()
    send_status(attempt, status, CallDuration="0")
    after = timezone.now()

    attempt, call = refreshed(attempt)
    delay = call.campaign.retry_delay
    assert attempt.status == status
    assert call.state == Call.State.READY
    assert call.outcome == outcome
    assert before + delay <= call.next_attempt_at <= after + delay
    assert call.attempts_made == 1


@pytest.mark.parametrize(("status", "outcome"), [("busy", Call.Outcome.BUSY), ("no-answer", Call.Outcome.NO_ANSWER)])
def test_unanswered_at_max_attempts_is_done(make_call, send_status, status, outcome):
    call = make_call(attempts_made=3)
    next_attempt_at = call.next_attempt_at
    last = CallAttempt.objects.create(call=call, number=3, provider="twilio", status=S.RINGING, provider_call_id="CA" + "3" * 32)

    send_status(last, status)

    _, call = refreshed(last)
    assert (call.state, call.outcome) == (Call.State.DONE, outcome)
    assert call.next_attempt_at == next_attempt_at


def test_failed_callback_with_attempts_left_is_retried(attempt, send_status):
    send_status(attempt, "failed", ErrorCode="31005", ErrorMessage="Connection error")

    attempt, call = refreshed(attempt)
    assert attempt.status == S.FAILED
    assert attempt.error_code == "31005" and attempt.error_message == "Connection error"
    assert (call.state, call.outcome) == (Call.State.READY, Call.Outcome.FAILED)
    assert call.error == "Connection error"


def test_failed_at_max_attempts_is_failed(make_call, send_status):
    call = make_call(attempts_made=3)
    last = CallAttempt.objects.create(call=call, number=3, provider="twilio", status=S.QUEUED, provider_call_id="CA" + "3" * 32)

    send_status(last, "failed", ErrorCode="31005", ErrorMessage="Connection error")

    _, call = refreshed(last)
    assert (call.state, call.outcome, call.error) == (Call.State.FAILED, Call.Outcome.FAILED, "Connection error")


@pytest.mark.parametrize(("permanent", "state"), [(True, Call.State.FAILED), (False, Call.State.READY)])
def test_permanent_failure_stops_and_transient_failure_retries(attempt, permanent, state):
    moved = outcomes.apply_status(
        attempt.pk, S.FAILED, error_code="13227", error_message="No international authorization", permanent_error=permanent
    )

    attempt, call = refreshed(attempt)
    assert moved
    assert attempt.status == S.FAILED
    assert (call.state, call.outcome) == (state, Call.Outcome.FAILED)
    assert call.error == "No international authorization"
    assert (call.next_attempt_at > timezone.now()) is (not permanent)


@pytest.mark.parametrize("status", [Campaign.Status.CANCELLED, Campaign.Status.COMPLETED])
def test_no_retry_once_the_campaign_is_over(attempt, send_status, status):
    Campaign.objects.filter(pk=attempt.call.campaign_id).update(status=status)

    send_status(attempt, "busy")

    _, call = refreshed(attempt)
    assert (call.state, call.outcome) == (Call.State.DONE, Call.Outcome.BUSY)


def test_paused_campaign_still_schedules_the_retry(attempt, send_status):
    Campaign.objects.filter(pk=attempt.call.campaign_id).update(status=Campaign.Status.PAUSED)

    send_status(attempt, "no-answer")

    _, call = refreshed(attempt)
    assert call.state == Call.State.READY


@pytest.mark.parametrize(
    ("answered_by", "outcome"),
    [
        ("machine_start", Call.Outcome.MACHINE),
        ("machine_end_beep", Call.Outcome.MACHINE),
        ("fax", Call.Outcome.MACHINE),
        ("human", Call.Outcome.ANSWERED),
        ("unknown", Call.Outcome.ANSWERED),
        ("", Call.Outcome.ANSWERED),
    ],
)
def test_completed_outcome_follows_answering_machine_detection(attempt, send_status, answered_by, outcome):
    params = {"AnsweredBy": answered_by} if answered_by else {}
    send_status(attempt, "completed", CallDuration="20", **params)

    attempt, call = refreshed(attempt)
    assert (call.state, call.outcome) == (Call.State.DONE, outcome)
    assert attempt.answered_by == answered_by


def test_answered_by_from_the_answer_event_is_kept_when_completed_omits_it(attempt, send_status):
    send_status(attempt, "in-progress", AnsweredBy="machine_start")
    send_status(attempt, "completed", CallDuration="9")

    _, call = refreshed(attempt)
    assert call.outcome == Call.Outcome.MACHINE


def test_digit_9_before_completed_opts_out(attempt, send_status, send_gather):
    send_status(attempt, "in-progress", AnsweredBy="human")
    response = send_gather(attempt, "9")
    assert b"<Hangup" in response.content

    attempt, call = refreshed(attempt)
    assert attempt.digits == "9" and attempt.listened_to_end
    assert DoNotCall.objects.filter(phone=PHONE, source="keypress").exists()

    send_status(attempt, "completed", AnsweredBy="human", CallDuration="14")

    _, call = refreshed(attempt)
    assert (call.state, call.outcome) == (Call.State.DONE, Call.Outcome.OPTED_OUT)
    assert DoNotCall.objects.count() == 1


def test_digit_9_after_completed_opts_out(attempt, send_status, send_gather):
    send_status(attempt, "completed", AnsweredBy="human", CallDuration="14")
    send_gather(attempt, "9")

    _, call = refreshed(attempt)
    assert (call.state, call.outcome) == (Call.State.DONE, Call.Outcome.OPTED_OUT)
    (entry,) = DoNotCall.objects.all()
    assert entry.phone == PHONE and entry.source == "keypress" and str(call.pk) in entry.reason


def test_opting_out_twice_keeps_one_entry(attempt, send_gather):
    send_gather(attempt, "9")
    send_gather(attempt, "9")

    assert DoNotCall.objects.count() == 1
    assert [e.applied for e in ProviderEvent.objects.all()] == [True, False]


def test_empty_gather_means_listened_to_the_end(attempt, send_status, send_gather):
    send_status(attempt, "in-progress", AnsweredBy="human")
    send_gather(attempt, "")
    send_status(attempt, "completed", AnsweredBy="human", CallDuration="20")

    attempt, call = refreshed(attempt)
    assert attempt.listened_to_end and attempt.digits == ""
    assert (call.state, call.outcome) == (Call.State.DONE, Call.Outcome.ANSWERED)
    assert not DoNotCall.objects.exists()


def test_digit_1_is_recorded(attempt, send_status, send_gather):
    send_status(attempt, "in-progress", AnsweredBy="human")
    send_gather(attempt, "1")
    send_status(attempt, "completed", AnsweredBy="human", CallDuration="20")

    attempt, call = refreshed(attempt)
    assert attempt.digits == "1" and attempt.listened_to_end
    assert [s for s, _ in attempt.timeline] == ["in-progress", "gather:1", "completed"]
    assert (call.state, call.outcome) == (Call.State.DONE, Call.Outcome.ANSWERED)
    assert not DoNotCall.objects.exists()


def test_events_for_an_earlier_attempt_do_not_touch_the_call(make_call, send_status):
    call = make_call(attempts_made=2)
    first = CallAttempt.objects.create(call=call, number=1, provider="twilio", status=S.RINGING, provider_call_id="CA" + "1" * 32)
    second = CallAttempt.objects.create(call=call, number=2, provider="twilio", status=S.QUEUED, provider_call_id="CA" + "2" * 32)
    before = Call.objects.get(pk=call.pk)

    send_status(first, "busy")
    send_status(first, "completed", AnsweredBy="human")

    first.refresh_from_db()
    assert first.status == S.BUSY  # the fact about attempt 1 is recorded on attempt 1
    after = Call.objects.get(pk=call.pk)
    assert (after.state, after.outcome, after.next_attempt_at, after.updated_at) == (
        before.state, before.outcome, before.next_attempt_at, before.updated_at
    )

    send_status(second, "completed", AnsweredBy="human", CallDuration="8")

    after = Call.objects.get(pk=call.pk)
    assert (after.state, after.outcome) == (Call.State.DONE, Call.Outcome.ANSWERED)


def test_answered_retry_clears_the_error_of_the_earlier_attempt(make_call, send_status):
    call = make_call()
    first = CallAttempt.objects.create(call=call, number=1, provider="twilio", status=S.QUEUED, provider_call_id="CA" + "1" * 32)
    send_status(first, "failed", ErrorCode="31005", ErrorMessage="Connection error")
    Call.objects.filter(pk=call.pk).update(state=Call.State.IN_PROGRESS, attempts_made=2)
    second = CallAttempt.objects.create(call=call, number=2, provider="twilio", status=S.QUEUED, provider_call_id="CA" + "2" * 32)

    send_status(second, "completed", AnsweredBy="human", CallDuration="8")

    call.refresh_from_db()
    assert (call.state, call.outcome, call.error) == (Call.State.DONE, Call.Outcome.ANSWERED, "")


def test_unknown_status_is_a_value_error(attempt):
    with pytest.raises(ValueError, match="unknown call status"):
        outcomes.apply_status(attempt.pk, "exploded")


def test_apply_status_reports_whether_it_moved(attempt):
    at = timezone.now() - timedelta(minutes=1)
    assert outcomes.apply_status(attempt.pk, S.RINGING, at=at)
    assert not outcomes.apply_status(attempt.pk, S.RINGING)
    assert not outcomes.apply_status(attempt.pk, S.QUEUED)
    attempt.refresh_from_db()
    assert attempt.timeline == [["ringing", at.isoformat()]]


def test_canceled_call_ends_without_retry(attempt, send_status):
    send_status(attempt, "canceled")

    attempt, call = refreshed(attempt)
    assert attempt.status == S.CANCELED
    assert call.state == Call.State.DONE
