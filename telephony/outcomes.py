"""One state machine per attempt: events only move an attempt forward, and a final status is final.

Duplicated, reordered and late webhooks are therefore harmless: they are stored, and ignored here.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from campaigns.models import Call, CallAttempt, Campaign

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
RETRYABLE = frozenset({S.BUSY, S.NO_ANSWER})
OPT_OUT_DIGIT = "9"


def is_machine(answered_by: str) -> bool:
    return answered_by.startswith("machine") or answered_by == "fax"


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
            _finalise_call(attempt, permanent_error=permanent_error, at=at)
    return True


def apply_gather(attempt_id: int, digits: str, *, at: datetime | None = None) -> bool:
    """The callee reached the end of the message (or answered it with a key); digit 9 opts them out."""
    from campaigns.actions import add_to_do_not_call

    at = at or timezone.now()
    with transaction.atomic():
        attempt = CallAttempt.objects.select_for_update().select_related("call").get(pk=attempt_id)
        if attempt.listened_to_end and attempt.digits == digits:
            return False  # a duplicate delivery
        attempt.listened_to_end = True
        if digits and not attempt.digits:
            attempt.digits = digits[:20]
        attempt.timeline = [*attempt.timeline, [f"gather:{digits or '-'}", at.isoformat()]]
        attempt.save(update_fields=["listened_to_end", "digits", "timeline"])
        if attempt.digits == OPT_OUT_DIGIT:
            add_to_do_not_call(
                attempt.call.phone,
                reason=f"pressed {OPT_OUT_DIGIT} on call {attempt.call_id}",
                source="keypress",
            )
            Call.objects.filter(pk=attempt.call_id).update(outcome=Call.Outcome.OPTED_OUT, updated_at=at)
    return True


def _finalise_call(attempt: CallAttempt, *, permanent_error: bool, at: datetime) -> None:
    # Lock the call only: locking its campaign too would queue every webhook of a campaign behind one row.
    call = Call.objects.select_for_update(of=("self",)).select_related("campaign").get(pk=attempt.call_id)
    if call.state != Call.State.IN_PROGRESS or attempt.number != call.attempts_made:
        return  # a late event for an attempt the call has moved past
    campaign = call.campaign
    call.error = attempt.error_message  # the latest attempt's word: an answered retry clears an earlier failure
    if attempt.digits == OPT_OUT_DIGIT:
        call.state, call.outcome = Call.State.DONE, Call.Outcome.OPTED_OUT
    elif attempt.status == S.COMPLETED:
        call.state = Call.State.DONE
        call.outcome = Call.Outcome.MACHINE if is_machine(attempt.answered_by) else Call.Outcome.ANSWERED
    else:
        call.outcome = {
            S.BUSY: Call.Outcome.BUSY,
            S.NO_ANSWER: Call.Outcome.NO_ANSWER,
        }.get(attempt.status, Call.Outcome.FAILED)
        retry = (
            (attempt.status in RETRYABLE or (attempt.status == S.FAILED and not permanent_error))
            and call.attempts_made < campaign.max_attempts
            and campaign.status
            in (Campaign.Status.RUNNING, Campaign.Status.PAUSED, Campaign.Status.SCHEDULED)
        )
        if retry:
            call.state = Call.State.READY
            call.next_attempt_at = at + campaign.retry_delay
        else:
            call.state = Call.State.FAILED if attempt.status == S.FAILED else Call.State.DONE
    call.updated_at = at
    call.save(update_fields=["state", "outcome", "next_attempt_at", "error", "updated_at"])
