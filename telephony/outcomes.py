"""One state machine per attempt: events only move an attempt forward, and a final status is final.

Duplicated, reordered and late webhooks are therefore harmless: they are stored, and ignored here.
When an attempt ends, its call is settled here too: retried after the campaign's delay for that outcome,
or finished (answered, opted out, invalid number, …); and a provider failure may trip the campaign's breaker.
"""

from __future__ import annotations

import logging
import math
import random
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from campaigns.actions import record_call_facts
from campaigns.models import Call, CallAttempt, Campaign
from herald.logmask import mask_text
from telephony import pacing

log = logging.getLogger(__name__)

S = CallAttempt.Status
RANK = {
    S.CREATED: 0,
    S.UNKNOWN: 0,
    S.QUEUED: 1,
    S.INITIATED: 2,
    S.RINGING: 3,
    S.IN_PROGRESS: 4,
    S.COMPLETED: 5,
    S.BUSY: 5,
    S.NO_ANSWER: 5,
    S.FAILED: 5,
    S.CANCELED: 5,
}
TERMINAL = frozenset({S.COMPLETED, S.BUSY, S.NO_ANSWER, S.FAILED, S.CANCELED})

# Error codes that say the number itself is wrong: dialling it again cannot help.
# Twilio: 21211 invalid 'To' number, 21217 number does not appear valid, 13223 invalid number format,
# 13224 number invalid or not callable. SIP (written by telephony.providers.sip as "sip-<code>"): 404 Not Found,
# 410 Gone, 484 Address Incomplete, 604 Does Not Exist Anywhere; "number": not an E.164 number, refused
# before dialling. (Twilio 21215 is the account's geographic permissions, not the number: a provider failure.)
INVALID_NUMBER_CODES = frozenset(
    {"21211", "21217", "13223", "13224", "sip-404", "sip-410", "sip-484", "sip-604", "number"}
)
# The callee refused the call (SIP 603 Decline): their decision, not a provider's failure. Never retried.
DECLINED_CODES = frozenset({"sip-603"})

# Retry policy: minutes before another attempt by outcome, None = never.
RETRY_OUTCOMES = ("busy", "no_answer", "failed", "machine")
MAX_RETRY_MINUTES = 30 * 24 * 60  # a month: beyond any campaign, and far from timedelta's limits

_jitter = random.Random()


def validate_retry_policy(value: Any) -> None:
    """Raise ValueError saying what is wrong with a campaign's retry policy (None if it is fine)."""
    example = '{"busy": 10, "no_answer": 30, "failed": 15, "machine": null}'
    if not isinstance(value, dict):
        raise ValueError(f"the retry policy must be an object of minutes by outcome, e.g. {example}")
    for outcome, minutes in value.items():
        if outcome not in RETRY_OUTCOMES:
            raise ValueError(
                f"the retry policy names an unknown outcome {outcome!r}; use {', '.join(RETRY_OUTCOMES)}"
            )
        if minutes is None:
            continue
        if (
            isinstance(minutes, bool)
            or not isinstance(minutes, int | float)
            or not math.isfinite(minutes)
            or not 0 <= minutes <= MAX_RETRY_MINUTES
        ):
            raise ValueError(
                f"the retry policy's {outcome!r} must be minutes from 0 to {MAX_RETRY_MINUTES} "
                f"or null (never retry), not {minutes!r}"
            )


def retry_delay_for(campaign: Campaign, outcome: str) -> timedelta | None:
    """How long before the next attempt after `outcome` (a RETRY_OUTCOMES name), with jitter; None = never."""
    policy = campaign.retry_policy if isinstance(campaign.retry_policy, dict) else {}
    if outcome in policy:
        minutes = policy[outcome]
        try:
            validate_retry_policy({outcome: minutes})
        except ValueError as exc:
            # Edited into something unusable after launch: the call still gets the campaign's default.
            log.warning("campaign %s: %s; using the default", campaign.pk, exc)
        else:
            if minutes is None:
                return None
            return _spread(timedelta(minutes=minutes), campaign.retry_jitter)
    if outcome == "machine":
        return None  # a machine answered the message: dialling again is opt-in
    return _spread(campaign.retry_delay, campaign.retry_jitter)


def _spread(delay: timedelta, jitter_percent: int) -> timedelta:
    # Calls that failed together (a trunk outage, a busy hour) come back spread out, not as one burst.
    spread = max(0, min(jitter_percent or 0, 100)) / 100
    return delay * _jitter.uniform(1 - spread, 1 + spread)


def is_machine(answered_by: str) -> bool:
    return answered_by.startswith("machine") or answered_by == "fax"


def is_invalid_number(error_code: str) -> bool:
    return error_code in INVALID_NUMBER_CODES


def is_provider_failure(status: str, error_code: str) -> bool:
    """A failure the provider (or our side of it) caused: not busy, no answer, a bad number or a refusal."""
    return status == S.FAILED and error_code not in INVALID_NUMBER_CODES and error_code not in DECLINED_CODES


def apply_status(
    attempt_id: int,
    status: str,
    *,
    answered_by: str = "",
    duration: int | None = None,
    error_code: str = "",
    error_message: str = "",
    permanent_error: bool = False,
    at: datetime | None = None,
) -> bool:
    """Move the attempt to `status` if that is forward; finalise the call on a final status. True if moved."""
    if status not in RANK:
        raise ValueError(f"unknown call status {status!r}")
    at = at or timezone.now()
    campaign = None
    with transaction.atomic():
        attempt = CallAttempt.objects.select_for_update().get(pk=attempt_id)
        if attempt.status in TERMINAL or RANK[status] <= RANK[attempt.status]:
            return False
        attempt.status = status
        attempt.timeline = [*attempt.timeline, [status, at.isoformat()]]
        if answered_by:
            attempt.answered_by = answered_by[:20]
        if status == S.IN_PROGRESS and attempt.answered_at is None:
            attempt.answered_at = at
        if duration is not None:
            attempt.duration = duration
        if error_code:
            attempt.error_code = error_code[:20]
        if error_message:
            attempt.error_message = error_message[:2000]
        if status in TERMINAL:
            attempt.ended_at = at
        attempt.save()
        if status in TERMINAL or answered_by or duration is not None:
            record_call_facts(attempt.call_id)
        if status in TERMINAL:
            campaign = _finalise_call(attempt, permanent_error=permanent_error, at=at)
    if status in TERMINAL:
        pacing.call_ended(attempt)  # the attempt's channel is free again (never raises)
    if campaign is not None:
        # Outside the attempt's transaction: the breaker reads other attempts and may update the campaign row.
        check_breaker(campaign, provider_failure=is_provider_failure(attempt.status, attempt.error_code))
    return True


def apply_amd(attempt_id: int, answered_by: str, *, at: datetime | None = None) -> bool:
    """Record what async answering-machine detection said about the attempt; False for a repeat delivery.

    Only the fact is recorded here: the outcome follows from it when the call ends (a machine: Outcome.MACHINE).
    """
    at = at or timezone.now()
    with transaction.atomic():
        attempt = CallAttempt.objects.select_for_update().get(pk=attempt_id)
        if any(str(entry[0]).startswith("amd:") for entry in attempt.timeline):
            return False  # Twilio reports detection once; a second report is a duplicate delivery
        if answered_by:
            attempt.answered_by = answered_by[:20]
        attempt.timeline = [*attempt.timeline, [f"amd:{answered_by or '-'}", at.isoformat()]]
        attempt.save(update_fields=["answered_by", "timeline"])
        record_call_facts(attempt.call_id)
    return True


def apply_gather(attempt_id: int, digits: str, *, at: datetime | None = None) -> bool:
    """The callee reached the end of the message (or answered it with a key); the campaign's opt-out key
    puts the number on the do-not-call list and cancels its queued calls in every campaign, at once."""
    from campaigns.actions import add_to_do_not_call

    at = at or timezone.now()
    with transaction.atomic():
        attempt = (
            CallAttempt.objects.select_for_update(of=("self", "call"))
            .select_related("call__campaign")
            .get(pk=attempt_id)
        )
        if attempt.listened_to_end and attempt.digits == digits:
            return False  # a duplicate delivery
        attempt.listened_to_end = True
        if digits and not attempt.digits:
            attempt.digits = digits[:20]
        attempt.timeline = [*attempt.timeline, [f"gather:{digits or '-'}", at.isoformat()]]
        attempt.save(update_fields=["listened_to_end", "digits", "timeline"])
        record_call_facts(attempt.call_id)
        opt_out_digit = attempt.call.campaign.opt_out_digit
        if attempt.digits and attempt.digits == opt_out_digit:
            add_to_do_not_call(
                attempt.call.phone,
                reason=f"pressed {opt_out_digit} on call {attempt.call_id}",
                source="keypress",
            )
            # The callee's own call: opted out, whatever it was waiting for (a retry is cancelled above).
            Call.objects.filter(pk=attempt.call_id).update(outcome=Call.Outcome.OPTED_OUT, updated_at=at)
            Call.objects.filter(pk=attempt.call_id, state=Call.State.CANCELLED).update(
                state=Call.State.DONE, error=""
            )
    return True


def _finalise_call(attempt: CallAttempt, *, permanent_error: bool, at: datetime) -> Campaign:
    """Settle the call after its attempt ended: finished, or ready again after the outcome's retry delay."""
    # Lock the call only: locking its campaign too would queue every webhook of a campaign behind one row.
    call = Call.objects.select_for_update(of=("self",)).select_related("campaign").get(pk=attempt.call_id)
    campaign = call.campaign
    if call.state != Call.State.IN_PROGRESS or attempt.number != call.attempts_made:
        return campaign  # a late event for an attempt the call has moved past
    call.error = attempt.error_message  # the latest attempt's word: an answered retry clears an earlier failure
    retry_as: str | None = None  # the retry policy's name for this outcome, when it may be retried
    if attempt.digits and attempt.digits == campaign.opt_out_digit:
        call.outcome = Call.Outcome.OPTED_OUT
    elif attempt.status == S.COMPLETED:
        if is_machine(attempt.answered_by):
            call.outcome, retry_as = Call.Outcome.MACHINE, "machine"
        else:
            call.outcome = Call.Outcome.ANSWERED
    elif attempt.status == S.BUSY:
        call.outcome, retry_as = Call.Outcome.BUSY, "busy"
    elif attempt.status == S.NO_ANSWER:
        call.outcome, retry_as = Call.Outcome.NO_ANSWER, "no_answer"
    elif attempt.status == S.FAILED and is_invalid_number(attempt.error_code):
        call.outcome = Call.Outcome.INVALID_NUMBER
    else:  # failed, or canceled: only a transient failure is worth another try
        call.outcome = Call.Outcome.FAILED
        if attempt.status == S.FAILED and not permanent_error and attempt.error_code not in DECLINED_CODES:
            retry_as = "failed"
    delay = None
    if (
        retry_as
        and call.attempts_made < campaign.max_attempts
        and campaign.status in (Campaign.Status.RUNNING, Campaign.Status.PAUSED, Campaign.Status.SCHEDULED)
    ):
        delay = retry_delay_for(campaign, retry_as)
    if delay is not None:
        call.state = Call.State.READY
        call.next_attempt_at = at + delay
    elif attempt.status == S.FAILED and call.outcome != Call.Outcome.OPTED_OUT:
        call.state = Call.State.FAILED
    else:
        call.state = Call.State.DONE
    call.updated_at = at
    call.save(update_fields=["state", "outcome", "next_attempt_at", "error", "updated_at"])
    return campaign


def check_breaker(campaign: Campaign, *, provider_failure: bool = True) -> bool:
    """Pause a running campaign when at least half of its last N ended attempts failed at the provider.

    N is the campaign's breaker_window (0 = never); nothing is decided before N attempts have ended. Called as
    each attempt ends (`provider_failure`: whether it was one): one query reads the campaign's latest N + 1
    ended attempts, newest first down the attempts' primary key. Only a failure can raise the count, except
    when the N-th attempt ends and the window is first full. After a resume the same attempts are still the
    last N: successes are let through, and the next provider failure pauses again until enough successes have
    pushed the old failures out (a half-open breaker). True if this call paused the campaign.
    """
    from campaigns.actions import pause_campaign

    window = campaign.breaker_window
    if not window or campaign.status != Campaign.Status.RUNNING:
        return False
    latest = list(
        CallAttempt.objects.filter(call__campaign_id=campaign.pk, status__in=TERMINAL)
        .order_by("-pk")
        .values_list("status", "error_code", "error_message")[: window + 1]
    )
    if len(latest) < window or (len(latest) > window and not provider_failure):
        return False
    failures = [(code, message) for status, code, message in latest[:window] if is_provider_failure(status, code)]
    if 2 * len(failures) < window:
        return False
    code, message = failures[0]
    latest_error = message.strip().splitlines()[0] if message.strip() else f"error {code or 'without a code'}"
    reason = mask_text(
        f"paused automatically: {len(failures)} of the last {window} attempts failed at the provider "
        f"(latest: {latest_error[:120]})"
    )
    paused = pause_campaign(campaign, reason=reason[:255])
    if paused:
        log.warning("campaign %s %s", campaign.pk, reason)
    return paused
