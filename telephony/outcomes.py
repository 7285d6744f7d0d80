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

from campaigns import callflow, lifecycle
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
            if attempt.path and not attempt.action:
                # The callee left the flow without choosing: hung up in the node it was in.
                attempt.action, attempt.action_detail = callflow.HUNG_UP, (attempt.path[-1] or "message")[:200]
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


def apply_flow_key(
    attempt_id: int, flow: callflow.Flow, menu: str, prompts: int, key: str, *, said: dict[str, str] | None = None,
    at: datetime | None = None,
) -> callflow.Step | None:
    """The callee answered the menu at `menu` (offered `prompts` times) with `key` ("" for nothing): the flow's
    next step, recorded on the attempt (path, keys, final action) and reported to the lifecycle. The same key
    wait delivered again gets the same step and records nothing; None for an attempt that already ended with its
    action recorded (a late key changes nothing; an opt-out is still honoured)."""
    at = at or timezone.now()
    step = callflow.press(flow, menu, prompts, key)
    with transaction.atomic():
        attempt = (
            CallAttempt.objects.select_for_update(of=("self", "call"))
            .select_related("call__campaign")
            .get(pk=attempt_id)
        )
        mark = f"flow:{menu or '-'}:{prompts}"
        answered = [entry[0] for entry in attempt.timeline if str(entry[0]).startswith(f"{mark}:")]
        if answered and answered[0] == f"{mark}:{key[:1] or '-'}":
            return step  # the same key wait delivered again: the same answer, recorded once
        if answered or attempt.action or (attempt.status in TERMINAL and attempt.listened_to_end):
            if step.opt_out and attempt.action != callflow.OPTED_OUT:  # an opt-out is honoured however late
                lifecycle.do_not_call({attempt.call.phone: f"chose opt-out on call {attempt.call_id}"}, source="keypress")
            log.warning("late flow key %r for attempt %s (%s) not applied", key[:1], attempt_id,
                        attempt.action or attempt.status)
            return None
        if menu == callflow.ROOT and not attempt.listened_to_end:
            attempt.listened_to_end = True  # the message played to its end (or was answered with a key)
        if key:
            attempt.digits = (attempt.digits + key[:1])[: callflow.MAX_KEYS]
        attempt.path = callflow.record(attempt.path, step)
        if step.action:
            attempt.action = step.action
            attempt.action_detail = (said or {}).get(step.node, step.detail)[:200]
        attempt.timeline = [*attempt.timeline, [f"{mark}:{key[:1] or '-'}", at.isoformat()]]
        attempt.save(update_fields=["listened_to_end", "digits", "path", "action", "action_detail", "timeline"])
        lifecycle.flow_step(attempt, opt_out=step.opt_out, at=at)
    return step


def transfer_ended(attempt_id: int, connected: bool, *, at: datetime | None = None) -> bool:
    """The transfer the flow asked for connected, or the carrier refused it (the fallback clip plays)."""
    at = at or timezone.now()
    with transaction.atomic():
        attempt = CallAttempt.objects.select_for_update().get(pk=attempt_id)
        if attempt.action != callflow.TRANSFERRED or connected:
            return False
        attempt.action = callflow.TRANSFER_REFUSED
        attempt.timeline = [*attempt.timeline, ["transfer:refused", at.isoformat()]]
        attempt.save(update_fields=["action", "timeline"])
        lifecycle.attempt_changed(attempt)
    return True


def record_ending(attempt_id: int, ending: Ending) -> None:
    """Apply a call's end as one provider reports it in-process: the keypress first (it decides an opt-out),
    then the final status. A refusal of the account (Ending.account) that came before anyone's phone rang
    pauses the campaign instead and gives the call back its attempt (lifecycle.attempt_not_placed)."""
    if ending.account:
        attempt = CallAttempt.objects.filter(pk=attempt_id).first()
        if attempt is not None and attempt.status in NOT_RINGING:
            lifecycle.attempt_not_placed(
                attempt, reason=ending.error_message, at=timezone.now(), statuses=NOT_RINGING
            )
            if not CallAttempt.objects.filter(pk=attempt_id).exists():
                pacing.call_ended(attempt)  # its channel is free again
                log.warning("attempt %s not placed: %s", attempt_id, ending.error_message)
                return
    if ending.gather is not None:
        apply_gather(attempt_id, ending.gather)
    apply_status(
        attempt_id,
        ending.status,
        answered_by=ending.answered_by,
        duration=ending.duration,
        error_code=ending.error_code,
        error_message=ending.error_message,
        permanent_error=ending.permanent,
    )


# Statuses of an attempt whose callee's phone has not rung (created, handed to the provider, 100 Trying).
NOT_RINGING = (CallAttempt.Status.CREATED, CallAttempt.Status.QUEUED, CallAttempt.Status.INITIATED)


def record_progress(attempt_id: int, status: str) -> None:
    apply_status(attempt_id, status)


class _Events:
    """How a provider that runs calls in this process (SIP) reports them: telephony.providers.base.CallEvents."""

    def progressed(self, attempt_id: int, status: str) -> None:
        record_progress(attempt_id, status)

    def ended(self, attempt_id: int, ending: Ending) -> None:
        record_ending(attempt_id, ending)


EVENTS = _Events()
