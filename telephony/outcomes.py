"""One state machine per attempt: events only move an attempt forward, and a final status is final.

Duplicated, reordered and late webhooks are therefore harmless: they are stored, and ignored here. Webhooks
and the SIP runtime (through `EVENTS`) feed it. What an attempt's change means for its call (report facts,
an opt-out, the outcome, a retry, the breaker) is the campaign lifecycle's, and reported to it here.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from campaigns import lifecycle
from campaigns.models import CallAttempt
from campaigns.policy import ENDED, is_provider_failure
from telephony import pacing
from telephony.providers.base import Ending

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
TERMINAL = ENDED  # a final status is final: the same set campaign policy counts as ended


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
    """Move the attempt to `status` if that is forward; the lifecycle settles the call on a final status. True if
    moved."""
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
        if status in TERMINAL:
            campaign = lifecycle.attempt_ended(attempt, permanent_error=permanent_error, at=at)
        elif answered_by or duration is not None:
            lifecycle.attempt_changed(attempt)
    if campaign is not None:
        pacing.call_ended(attempt)  # the attempt's channel is free again (never raises)
        # Outside the attempt's transaction: the breaker reads other attempts and may update the campaign row.
        lifecycle.attempt_settled(campaign, provider_failure=is_provider_failure(attempt.status, attempt.error_code))
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
        lifecycle.attempt_changed(attempt)
    return True


def apply_gather(attempt_id: int, digits: str, *, at: datetime | None = None) -> bool:
    """The callee reached the end of the message (or answered it with a key): recorded on the attempt, and
    reported to the lifecycle (an opt-out key stops every call to the number at once)."""
    at = at or timezone.now()
    with transaction.atomic():
        attempt = (
            CallAttempt.objects.select_for_update(of=("self", "call"))
            .select_related("call__campaign")
            .get(pk=attempt_id)
        )
        if attempt.listened_to_end and attempt.digits == digits:
            return False  # a duplicate delivery
        if attempt.status in TERMINAL and (attempt.listened_to_end or attempt.digits):
            # The attempt ended with its keys recorded: they are a report fact now and never change. (A gather
            # that arrives after `completed` and finds none recorded is a reordered delivery, applied below.)
            # An opt-out is still honoured: the number goes on the list, the finished attempt stays as it is.
            opt_out_digit = attempt.call.campaign.opt_out_digit
            if digits and digits == opt_out_digit and attempt.digits != opt_out_digit:
                lifecycle.do_not_call(
                    {attempt.call.phone: f"pressed {opt_out_digit} on call {attempt.call_id}"}, source="keypress"
                )
            log.warning("late gather %r for finished attempt %s not applied", digits[:20], attempt_id)
            return False
        attempt.listened_to_end = True
        if digits and not attempt.digits:
            attempt.digits = digits[:20]
        attempt.timeline = [*attempt.timeline, [f"gather:{digits or '-'}", at.isoformat()]]
        attempt.save(update_fields=["listened_to_end", "digits", "timeline"])
        lifecycle.key_pressed(attempt, at)
    return True


def record_ending(attempt_id: int, ending: Ending) -> None:
    """Apply a call's end as one provider reports it in-process: the keypress first (it decides an opt-out),
    then the final status."""
    if ending.gather is not None:
        apply_gather(attempt_id, ending.gather)
    apply_status(
        attempt_id,
        ending.status,
        duration=ending.duration,
        error_code=ending.error_code,
        error_message=ending.error_message,
        permanent_error=ending.permanent,
    )


def record_progress(attempt_id: int, status: str) -> None:
    apply_status(attempt_id, status)


class _Events:
    """How a provider that runs calls in this process (SIP) reports them: telephony.providers.base.CallEvents."""

    def progressed(self, attempt_id: int, status: str) -> None:
        record_progress(attempt_id, status)

    def ended(self, attempt_id: int, ending: Ending) -> None:
        record_ending(attempt_id, ending)


EVENTS = _Events()
