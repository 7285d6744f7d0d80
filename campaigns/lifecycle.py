"""A call's life, in one place: the only code that changes a Call's state, outcome, holds and report facts.

Planning creates calls in their first state; from then on every move is a verb here, called by whoever saw
it happen:
- synthesis reports audio: `audio_ready`, `audio_failed`;
- the dialer claims due calls (`claim`, `release_stale_claims`; a dead worker's: `release_claims`); telephony checks a claimed call and writes
  its attempt row (`dialable`, `start_attempt`, `unclaim`);
- telephony's attempt state machine reports what became of an attempt: `attempt_changed`, `key_pressed`,
  `attempt_ended`, then `attempt_settled` (the breaker) once its transaction is over; `attempt_not_placed`
  when the provider refused the account before dialling (the campaign pauses, the call keeps its attempts);
- staff and the system stop and start campaigns: `pause`, `resume`, `cancel`, `finish`; numbers go on the
  do-not-call list with `do_not_call`.
Result webhooks (campaigns.outbox) are written here too, in the transaction of the change they report: a call
finished, a flow's final action chosen, a campaign finished.
Policy (retry delays, the per-number cap, the breaker, what an ended attempt means) is decided in
campaigns.policy; this module applies it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from campaigns import callflow, outbox, policy
from campaigns.models import Call, CallAttempt, CallClip, Campaign, DoNotCall, VariantClip
from campaigns.windows import calling_window
from herald.logmask import mask_text
from synthesis.models import RenderedAudio

log = logging.getLogger(__name__)

# A call may be dialled once its clip is ready, its voicemail clip too when it has one, and every clip of its
# flow: those its variant says to everyone and its own (campaigns.callflow).
_NOT_READY = ~Q(audio__state=RenderedAudio.State.READY)
AUDIO_READY = (
    Q(audio__state=RenderedAudio.State.READY)
    & (Q(voicemail_audio=None) | Q(voicemail_audio__state=RenderedAudio.State.READY))
    & ~Exists(VariantClip.objects.filter(_NOT_READY, variant_id=OuterRef("variant_id")))
    & ~Exists(CallClip.objects.filter(_NOT_READY, call_id=OuterRef("pk")))
)
# Calls not yet handed to a provider: a DIALING call is claimed, but its attempt row (written before any
# dialling, under the call's lock) would already have moved it on to IN_PROGRESS.
DNC_CANCELLABLE = (Call.State.RENDERING, Call.State.READY, Call.State.DIALING)
DNC_CHUNK = 500  # numbers per IN (…) query: well inside every database's parameter limit
QUEUED = (Call.State.RENDERING, Call.State.READY)  # planned, not yet claimed by the dialer
OPEN = (*QUEUED, Call.State.DIALING, Call.State.IN_PROGRESS)  # not finished: the campaign goes on


# --- audio -----------------------------------------------------------------------------------------


def ready_if_rendered(campaign_id: int | None = None) -> int:
    """The campaign's waiting calls whose audio exists already (a cache hit) may be dialled; returns how many.
    Without a campaign, every campaign's: housekeeping's backstop for audio_ready, for calls whose last render's
    worker died between storing the clip and waking them."""
    waiting = Call.objects.filter(state=Call.State.RENDERING)
    if campaign_id is not None:
        waiting = waiting.filter(campaign_id=campaign_id)
    return waiting.filter(AUDIO_READY).update(state=Call.State.READY, updated_at=timezone.now())


def audio_ready(render_key: str) -> int:
    """Audio for this key exists now: its waiting calls may be dialled (when their other clip is ready too)."""
    now = timezone.now()
    ready = 0
    # One update per place a key can be, not one OR: each uses its own index.
    for waiting in (
        Q(audio_id=render_key),
        Q(voicemail_audio_id=render_key),
        Q(pk__in=CallClip.objects.filter(audio_id=render_key).values("call_id")),
        Q(variant__in=VariantClip.objects.filter(audio_id=render_key).values("variant_id")),
    ):
        ready += (
            Call.objects.filter(waiting, state=Call.State.RENDERING)
            .filter(AUDIO_READY)
            .update(state=Call.State.READY, updated_at=now)
        )
    return ready


def audio_failed(render_key: str, message: str) -> int:
    """Audio for this key cannot be made. Callees of a campaign with a generic clip get that clip instead;
    the others fail with the reason, shown in the report and the waiting page: nobody is skipped silently."""
    now = timezone.now()
    waiting = Call.objects.filter(audio_id=render_key, state=Call.State.RENDERING)
    with transaction.atomic():
        # A voicemail clip that cannot be made costs only the voicemail: machines are hung up on instead.
        without_voicemail = Call.objects.filter(voicemail_audio_id=render_key, state=Call.State.RENDERING)
        dropped = dict(
            voicemail_audio=None,
            error=f"voicemail clip failed ({message[:1500]}); answering machines are hung up on instead",
            updated_at=now,
        )
        without_voicemail.filter(audio__state=RenderedAudio.State.READY).update(state=Call.State.READY, **dropped)
        without_voicemail.update(**dropped)  # the rest still wait for their message clip
        substituted = 0
        fallbacks = (
            waiting.exclude(campaign__fallback_audio_id=None)
            .exclude(campaign__fallback_audio_id=render_key)
            .values_list("campaign_id", "campaign__fallback_audio_id", "campaign__fallback_audio__state")
            .distinct()
        )
        for campaign_id, fallback_key, fallback_state in list(fallbacks):
            ready = fallback_state == RenderedAudio.State.READY
            substituted += waiting.filter(campaign_id=campaign_id).update(
                audio_id=fallback_key,
                used_fallback=True,
                state=Call.State.READY if ready else Call.State.RENDERING,
                error=f"personalised audio failed ({message[:1500]}); the campaign's generic clip plays instead",
                updated_at=now,
            )
        failed = waiting.update(
            state=Call.State.FAILED, outcome=Call.Outcome.FAILED, error=message[:2000], updated_at=now
        )
        # A flow clip that cannot be made fails the calls that would play it (one callee's, or a variant's).
        flow_error = f"a clip of the call flow failed: {message}"[:2000]
        for waiting_flow in (
            Q(pk__in=CallClip.objects.filter(audio_id=render_key).values("call_id")),
            Q(variant__in=VariantClip.objects.filter(audio_id=render_key).values("variant_id")),
        ):
            failed += Call.objects.filter(waiting_flow, state=Call.State.RENDERING).update(
                state=Call.State.FAILED, outcome=Call.Outcome.FAILED, error=flow_error, updated_at=now
            )
    if substituted:
        log.warning("%d call(s) fall back to their campaign's generic clip: %s", substituted, message[:200])
    return substituted + failed


# --- campaigns start and stop ----------------------------------------------------------------------


def pause(campaign: Campaign, *, reason: str = "") -> bool:
    """Stop dialling new calls; calls in progress finish normally. `reason`: why, when the system paused it
    (blank: staff did). True if this call paused it (a campaign already paused keeps its first reason)."""
    paused = Campaign.objects.filter(
        pk=campaign.pk, status__in=[Campaign.Status.RUNNING, Campaign.Status.SCHEDULED]
    ).update(status=Campaign.Status.PAUSED, paused_reason=reason[:255])
    campaign.refresh_from_db()
    return paused == 1


def resume(campaign: Campaign) -> bool:
    """Dial again from the next sweep, whoever paused it (staff, the breaker, a consent); True if it was paused."""
    resumed = Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.PAUSED).update(
        status=Campaign.Status.RUNNING, paused_reason=""
    )
    campaign.refresh_from_db()
    return resumed == 1


def cancel(campaign: Campaign) -> int:
    """Cancel the campaign and every call not yet dialled; returns how many calls were cancelled."""
    now = timezone.now()
    with transaction.atomic():
        ended = Campaign.objects.filter(pk=campaign.pk).exclude(
            status__in=[Campaign.Status.COMPLETED, Campaign.Status.CANCELLED]
        ).update(status=Campaign.Status.CANCELLED, finished_at=now)
        queued = Call.objects.filter(campaign=campaign, state__in=QUEUED)
        dialled = list(queued.filter(attempts_made__gt=0).values_list("pk", "campaign_id"))
        cancelled = queued.update(state=Call.State.CANCELLED, updated_at=now)
        outbox.calls_finished(dialled)
        if ended:
            outbox.campaign_finished(campaign.pk)
    campaign.refresh_from_db()
    return cancelled


def start_due(now: datetime) -> int:
    """Scheduled campaigns whose start time has come run now; returns how many."""
    return Campaign.objects.filter(status=Campaign.Status.SCHEDULED, starts_at__lte=now).update(
        status=Campaign.Status.RUNNING
    )


def finish(campaign: Campaign, now: datetime, *, cancel_remaining: bool) -> None:
    """Complete a running campaign (its end time came, or nothing is left to call)."""
    with transaction.atomic():
        if cancel_remaining:
            queued = Call.objects.filter(campaign=campaign, state__in=QUEUED)
            dialled = list(queued.filter(attempts_made__gt=0).values_list("pk", "campaign_id"))
            queued.update(
                state=Call.State.CANCELLED, error="campaign ended before this call could be made", updated_at=now
            )
            outbox.calls_finished(dialled)  # their retries will not be made
        completed = Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.RUNNING).update(
            status=Campaign.Status.COMPLETED, finished_at=now
        )
        if completed:
            outbox.campaign_finished(campaign.pk)
    log.info("campaign %s completed", campaign.pk)


# --- the dialer's claims ---------------------------------------------------------------------------


def claim(call_id: int, now: datetime) -> bool:
    """The dialer takes a ready call for the telephony queue; False if somebody else moved it first."""
    return (
        Call.objects.filter(pk=call_id, state=Call.State.READY).update(
            state=Call.State.DIALING, claimed_at=now, hold="", updated_at=now
        )
        == 1
    )


def release_stale_claims(now: datetime | None = None) -> int:
    """Calls claimed by a sweep whose telephony task never ran (lost message, dead worker) go back to ready.

    Only calls with no attempt row for the claim are touched: an attempt row means the provider may have been
    asked, and an ambiguous call is never re-dialled automatically.
    """
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.DIAL_STALE_SECONDS)
    return Call.objects.filter(state=Call.State.DIALING, claimed_at__lt=stale).update(
        state=Call.State.READY, claimed_at=None, updated_at=now
    )


def release_claims(call_ids: list[int], *, claimed_by: datetime, now: datetime | None = None) -> int:
    """Claims a dead worker held (its tasks had not dialled yet) go back to ready at once; returns how many.

    `claimed_by`: the worker's last heartbeat. A claim taken after it is a later sweep's, for a live worker,
    and is left alone. Calls the task got as far as an attempt row are IN_PROGRESS and not touched: the
    provider may have been asked, and an ambiguous call is never re-dialled automatically.
    """
    now = now or timezone.now()
    return Call.objects.filter(pk__in=call_ids, state=Call.State.DIALING, claimed_at__lte=claimed_by).update(
        state=Call.State.READY, claimed_at=None, updated_at=now
    )


def unclaim(call_id: int, number: int) -> bool:
    """A claimed call that cannot be dialled just now (no pacing slot) goes back to ready, keeping its place."""
    return (
        Call.objects.filter(pk=call_id, state=Call.State.DIALING, attempts_made=number - 1).update(
            state=Call.State.READY, claimed_at=None, updated_at=timezone.now()
        )
        == 1
    )


# --- attempts --------------------------------------------------------------------------------------


def dialable(call_id: int, now: datetime, *, number: int | None = None) -> tuple[Call | None, str]:
    """The claimed call, locked, if it may be dialled now; else None and why (the call is moved accordingly).

    Call inside a transaction. number: the attempt this task got pacing for; a call that has moved on since is
    no longer this task's.
    """
    call = (
        # of=self: PostgreSQL cannot lock the nullable side of the outer join to audio, and only the call
        # needs the lock.
        Call.objects.select_for_update(of=("self",))
        .select_related("campaign__telephony_account", "audio", "voicemail_audio")
        .filter(pk=call_id)
        .first()
    )
    if call is None or call.state != Call.State.DIALING:
        return None, "not claimed"  # somebody else has it, or it was cancelled
    if number is not None and call.attempts_made != number - 1:
        return None, "not claimed"
    campaign = call.campaign
    if campaign.status in (Campaign.Status.CANCELLED, Campaign.Status.COMPLETED):
        # Claimed just before the campaign ended: back to ready it would sit in a finished campaign forever.
        call.state, call.updated_at = Call.State.CANCELLED, now
        call.error = f"campaign {campaign.status} before this call could be made"
        call.save(update_fields=["state", "error", "updated_at"])
        return None, "campaign over"
    if campaign.status != Campaign.Status.RUNNING:
        _unclaim(call, now)
        return None, "campaign not running"
    if DoNotCall.objects.filter(phone=call.phone).exists():
        call.state, call.outcome, call.error = Call.State.DONE, Call.Outcome.DO_NOT_CALL, "on the do-not-call list"
        call.updated_at = now
        call.save(update_fields=["state", "outcome", "error", "updated_at"])
        outbox.call_finished(call.pk, campaign.pk)
        return None, "do not call"
    if not calling_window(campaign).is_open(call.timezone, now):
        _unclaim(call, now)
        return None, "window closed"
    if (call.audio is None or call.audio.state != RenderedAudio.State.READY) or (
        call.voicemail_audio is not None and call.voicemail_audio.state != RenderedAudio.State.READY
    ):
        call.state, call.updated_at = Call.State.RENDERING, now
        call.save(update_fields=["state", "updated_at"])
        return None, "audio not ready"
    again = policy.number_free_at(call.phone, now)
    if again is not None:
        call.state, call.claimed_at, call.next_attempt_at = Call.State.READY, None, again
        call.hold, call.updated_at = Call.Hold.NUMBER_CAP, now
        call.save(update_fields=["state", "claimed_at", "next_attempt_at", "hold", "updated_at"])
        return None, "number cap"
    return call, ""


def _unclaim(call: Call, now: datetime) -> None:
    call.state, call.claimed_at, call.updated_at = Call.State.READY, None, now
    call.save(update_fields=["state", "claimed_at", "updated_at"])


def start_attempt(call_id: int, number: int, now: datetime) -> tuple[CallAttempt | None, str]:
    """Write attempt `number` of a claimed call that may be dialled now, before any provider hears of it.

    Returns the attempt (its call loaded, in progress), or None and why the call was not dialled. Its own
    transaction: committed when this returns, so a crash after it can never dial the person a second time.
    """
    with transaction.atomic():
        call, refused = dialable(call_id, now, number=number)
        if call is None:
            return None, refused
        attempt = CallAttempt.objects.create(
            call=call,
            number=number,
            provider=call.campaign.telephony_account.kind,
            status=CallAttempt.Status.CREATED,
            timeline=[[CallAttempt.Status.CREATED, now.isoformat()]],
        )
        call.attempts_made, call.state, call.hold, call.updated_at = number, Call.State.IN_PROGRESS, "", now
        call.save(update_fields=["attempts_made", "state", "hold", "updated_at"])
    return attempt, ""


def attempt_not_placed(
    attempt: CallAttempt, *, reason: str, at: datetime, statuses: tuple[str, ...] = (CallAttempt.Status.CREATED,)
) -> bool:
    """The provider refused the account before dialling anyone (credentials, caller id, permissions): the
    attempt never happened, and the campaign pauses with `reason` (what staff must fix) until resumed.

    The attempt row goes: kept, it would count against the number's daily cap (every attempt row does) and the
    call's max_attempts, and its number would be taken for the real try after the resume. Its call goes back
    to ready with its attempts unspent, keeping its place. Only a row still in `statuses` is removed (CREATED:
    the provider said no to this very request, so no call and no callback exist for it; a SIP trunk's refusal
    also comes after 100 Trying, before any ringing). True if this paused the campaign.
    """
    reason = mask_text(reason)[:255]
    with transaction.atomic():
        call = Call.objects.select_for_update(of=("self",)).select_related("campaign").get(pk=attempt.call_id)
        removed, _ = CallAttempt.objects.filter(pk=attempt.pk, status__in=statuses).delete()
        if removed and call.state == Call.State.IN_PROGRESS and call.attempts_made == attempt.number:
            over = call.campaign.status in (Campaign.Status.CANCELLED, Campaign.Status.COMPLETED)
            call.state = Call.State.CANCELLED if over else Call.State.READY
            call.attempts_made, call.claimed_at, call.updated_at = attempt.number - 1, None, at
            call.error = f"not dialled: {reason}"[:2000]
            call.save(update_fields=["state", "attempts_made", "claimed_at", "error", "updated_at"])
            record_call_facts(call.pk)
    paused = pause(call.campaign, reason=reason)
    if paused:
        log.warning("campaign %s paused: %s", call.campaign_id, reason)
    return paused


def attempt_changed(attempt: CallAttempt) -> None:
    """An attempt learnt something the report counts (answered, by whom, how long): bring its call's facts up
    to date. Inside the transaction that changed the attempt."""
    record_call_facts(attempt.call_id)


def key_pressed(attempt: CallAttempt, at: datetime) -> None:
    """The callee heard the message to its end or answered it with a key (attempt.digits; the attempt is locked
    with its call and campaign loaded). The campaign's opt-out key puts the number on the do-not-call list and
    cancels its queued calls in every campaign, at once."""
    record_call_facts(attempt.call_id)
    opt_out_digit = attempt.call.campaign.opt_out_digit
    if attempt.call.campaign.flow_id is not None:
        return  # the flow's opt-out node says when (flow_step), wherever its key is
    if not (attempt.digits and attempt.digits == opt_out_digit):
        return
    _opted_out(attempt, f"pressed {opt_out_digit} on call {attempt.call_id}", at)
    outbox.call_action(attempt, attempt.call.campaign_id, action=callflow.OPTED_OUT)


def flow_step(attempt: CallAttempt, *, opt_out: bool, at: datetime) -> None:
    """The callee moved in the call flow (attempt.path, .digits, .action changed; the attempt is locked with its
    call and campaign loaded). Its opt-out node puts the number on the do-not-call list at once, before the
    confirmation plays, and cancels its queued calls in every campaign."""
    record_call_facts(attempt.call_id)
    if opt_out:
        _opted_out(attempt, f"chose opt-out (keys {attempt.digits}) on call {attempt.call_id}", at)
    outbox.call_action(attempt, attempt.call.campaign_id)  # when the step was a final action the shop acts on


def _opted_out(attempt: CallAttempt, reason: str, at: datetime) -> None:
    do_not_call({attempt.call.phone: reason}, source="keypress")
    # The callee's own call: opted out, whatever it was waiting for (a retry is cancelled above).
    Call.objects.filter(pk=attempt.call_id).update(outcome=Call.Outcome.OPTED_OUT, updated_at=at)
    Call.objects.filter(pk=attempt.call_id, state=Call.State.CANCELLED).update(state=Call.State.DONE, error="")


def attempt_ended(attempt: CallAttempt, *, permanent_error: bool, at: datetime) -> Campaign:
    """Settle the call after its attempt reached a final status: finished, or ready again after the outcome's
    retry delay. Inside the attempt's transaction; returns the campaign, for `attempt_settled` after it."""
    record_call_facts(attempt.call_id)
    # Lock the call only: locking its campaign too would queue every webhook of a campaign behind one row.
    call = Call.objects.select_for_update(of=("self",)).select_related("campaign").get(pk=attempt.call_id)
    campaign = call.campaign
    if call.state != Call.State.IN_PROGRESS or attempt.number != call.attempts_made:
        return campaign  # a late event for an attempt the call has moved past
    call.error = attempt.error_message  # the latest attempt's word: an answered retry clears an earlier failure
    call.outcome, retry_as = policy.outcome_of(attempt, campaign, permanent_error=permanent_error)
    delay = None
    if (
        retry_as
        and call.attempts_made < campaign.max_attempts
        and campaign.status in (Campaign.Status.RUNNING, Campaign.Status.PAUSED, Campaign.Status.SCHEDULED)
    ):
        delay = policy.retry_delay_for(campaign, retry_as)
    if delay is not None:
        call.state = Call.State.READY
        call.next_attempt_at = at + delay
    elif attempt.status == CallAttempt.Status.FAILED and call.outcome != Call.Outcome.OPTED_OUT:
        call.state = Call.State.FAILED
    else:
        call.state = Call.State.DONE
    call.updated_at = at
    call.save(update_fields=["state", "outcome", "next_attempt_at", "error", "updated_at"])
    if call.state != Call.State.READY:
        outbox.call_finished(call.pk, campaign.pk)
    return campaign


def attempt_settled(campaign: Campaign, *, provider_failure: bool) -> bool:
    """After an ended attempt's transaction: pause the campaign if its provider keeps failing (the breaker reads
    other attempts and updates the campaign row, so it runs outside). True if this paused it."""
    reason = policy.breaker_trips(campaign, provider_failure=provider_failure)
    if reason is None:
        return False
    reason = mask_text(reason)
    paused = pause(campaign, reason=reason[:255])
    if paused:
        log.warning("campaign %s %s", campaign.pk, reason)
    return paused


# --- do-not-call -----------------------------------------------------------------------------------


@dataclass
class DoNotCallAdded:
    added: set[str] = field(default_factory=set)  # numbers that were not on the list before
    cancelled: int = 0  # queued calls cancelled, in every campaign


def do_not_call(reasons: dict[str, str], *, source: str) -> DoNotCallAdded:
    """Put E.164 numbers (with a reason each) on the DNC list and cancel their queued calls in every campaign.

    One transaction: a number is never on the list while a call to it still waits in a queue. Numbers already
    on the list keep their entry; their queued calls are cancelled all the same.
    """
    now = timezone.now()
    result = DoNotCallAdded()
    phones = list(reasons)
    with transaction.atomic():
        for start in range(0, len(phones), DNC_CHUNK):
            chunk = phones[start : start + DNC_CHUNK]
            present = set(DoNotCall.objects.filter(phone__in=chunk).values_list("phone", flat=True))
            new = [p for p in chunk if p not in present]
            DoNotCall.objects.bulk_create(
                [DoNotCall(phone=p, reason=reasons[p][:200], source=source[:50], created_at=now) for p in new],
                ignore_conflicts=True,  # added by somebody else just now: on the list either way
            )
            result.added.update(new)
            cancellable = Call.objects.filter(phone__in=chunk, state__in=DNC_CANCELLABLE)
            dialled = list(cancellable.filter(attempts_made__gt=0).values_list("pk", "campaign_id"))
            result.cancelled += cancellable.update(
                state=Call.State.CANCELLED,
                outcome=Call.Outcome.DO_NOT_CALL,
                error=f"cancelled: the number was put on the do-not-call list ({source})"[:2000],
                updated_at=now,
            )
            outbox.calls_finished(dialled)  # their retries will not be made
    log.info(
        "do-not-call (%s): %d numbers, %d new, %d queued calls cancelled",
        source, len(phones), len(result.added), result.cancelled,
    )
    return result


def add_to_do_not_call(phone: str, *, reason: str, source: str) -> bool:
    """Put one number on the DNC list and cancel its queued calls in every campaign (idempotent); True if new."""
    return bool(do_not_call({phone: reason}, source=source).added)


# --- report facts ----------------------------------------------------------------------------------


def rebuild_call_facts(calls: QuerySet[Call]) -> int:
    """Recompute each call's report facts (answered, human, listened, final keys, talk time) from its attempts.

    One UPDATE with a correlated subquery per fact: the same statement serves one call after a webhook and a
    whole table in a repair (`manage.py rebuild_call_facts`). Machine means an answering machine or fax
    (campaigns.policy.is_machine). Returns how many calls were updated.
    """
    attempts = CallAttempt.objects.filter(call_id=OuterRef("pk"))
    answered = attempts.filter(status=CallAttempt.Status.COMPLETED)
    human = answered.exclude(answered_by__startswith="machine").exclude(answered_by="fax")

    def per_call(queryset: QuerySet, aggregate: Count | Sum) -> Coalesce:
        rolled = queryset.order_by().values("call_id").annotate(value=aggregate).values("value")
        return Coalesce(Subquery(rolled, output_field=IntegerField()), 0)

    return calls.update(
        answered=Exists(answered),
        human_answered=Exists(human),
        listened_to_end=Exists(human.filter(listened_to_end=True)),
        final_digits=Coalesce(Subquery(attempts.exclude(digits="").order_by("-number").values("digits")[:1]), Value("")),
        final_action=Coalesce(Subquery(attempts.exclude(action="").order_by("-number").values("action")[:1]), Value("")),
        timed_attempts=per_call(answered.filter(duration__isnull=False), Count("pk")),
        talk_seconds=per_call(answered, Sum("duration")),
    )


def record_call_facts(call_id: int) -> None:
    """Bring one call's report facts up to date after one of its attempts changed (inside that transaction).

    The call row is locked first, so two attempts of one call changing at once cannot each write facts
    computed without the other's change.
    """
    locked = Call.objects.select_for_update().filter(pk=call_id)
    list(locked.values_list("pk"))
    rebuild_call_facts(Call.objects.filter(pk=call_id))

