"""Telephony verbs: place a claimed call, settle attempts the provider went quiet about, manage secrets."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from campaigns import callflow, lifecycle
from campaigns.models import CallAttempt, Campaign
from campaigns.policy import is_machine
from herald.logmask import mask_text
from synthesis.models import RenderedAudio
from synthesis.signing import signed_audio_url
from telephony import flows, outcomes, pacing
from telephony.credentials import encrypt
from telephony.models import TelephonyAccount
from telephony.providers import get_provider
from telephony.providers.base import Dial, FoundCall, ProviderError

log = logging.getLogger(__name__)
S = CallAttempt.Status
SIP_SETUP_LIMIT = timedelta(minutes=2)  # ring timeout (30 s) + Timer B (32 s) + a short 503 retry, with room
SIP_CALL_LIMIT = timedelta(minutes=15)  # a notification clip plus the wait for a key, with a wide margin
UNKNOWN_LOOKUP_AFTER = timedelta(seconds=10)  # an ambiguous create is looked up this long after its attempt began
LOOKUP_CONFIRM = timedelta(seconds=10)  # "no such call" is believed when a look this much later agrees
PLACE_WINDOW = timedelta(seconds=30)  # a create is sent within this of its attempt row (20429 backoff, timeout)
NO_CALL_YET = "lookup:none"  # timeline mark: the provider had no call for the attempt at that time
LOOKUP_PENDING = "pending"  # _look_up: nothing to decide yet


def set_auth_token(account: TelephonyAccount, token: str) -> None:
    """Store the token encrypted; it is never shown again."""
    account.auth_token_encrypted = encrypt(token)
    account.save(update_fields=["auth_token_encrypted"])


def _telephony_path(audio: RenderedAudio | None) -> str:
    if audio is None or not audio.telephony_file:
        return ""
    return str(Path(settings.MEDIA_ROOT) / audio.telephony_file)


def set_tls_client_key(account: TelephonyAccount, key_pem: str) -> None:
    """Store the TLS client key encrypted ("" removes it); it is never shown again."""
    account.sip_tls_client_key_encrypted = encrypt(key_pem) if key_pem else ""
    account.save(update_fields=["sip_tls_client_key_encrypted"])


def place_call(call_id: int) -> str:
    """Dial a call the sweep claimed, within its account's pacing and its number's daily cap.

    The attempt row is committed before the provider hears of it. The wait for a pacing slot (up to a second)
    comes between two transactions: the checks run before it, so a call that may not be dialled costs no slot,
    and again after it, under the call's lock, where the attempt is written.
    """
    with transaction.atomic():
        call, refused = lifecycle.dialable(call_id, timezone.now())
    if call is None:
        return refused
    account = call.campaign.telephony_account
    number = call.attempts_made + 1
    lease = pacing.lease_id(call.pk, number)
    # A SIP call lives in this process: its channel lease is short and renewed here, and dies with the process.
    keep_alive_for = SIP_CALL_LIMIT.total_seconds() if account.kind == TelephonyAccount.Kind.SIP else 0.0
    paced = pacing.acquire_dial(account, lease, keep_alive_for=keep_alive_for)
    if isinstance(paced, pacing.Refusal):
        lifecycle.unclaim(call.pk, number)  # the next sweep claims it again
        log.info("call %s: account %s refused (%s), back to ready", call.pk, account.pk, paced.reason)
        return paced.reason
    try:
        attempt, refused = lifecycle.start_attempt(call_id, number, timezone.now())
    except BaseException:
        pacing.release(account, lease)  # nothing was written, so nobody is dialled under this lease
        raise
    if attempt is None:
        if CallAttempt.objects.filter(call_id=call_id, number=number).exists():
            pacing.forget(account, lease)  # a copy of this task dialled under it: the channel is that call's
        else:
            pacing.release(account, lease)
        return refused
    call = attempt.call
    campaign = call.campaign
    run = flows.flow_run(call)
    clip_paths: dict[str, str] = {}
    if run is not None and account.kind == TelephonyAccount.Kind.SIP:  # SIP plays the clips itself
        files = dict(RenderedAudio.objects.filter(render_key__in=set(run.clips.values())).values_list(
            "render_key", "telephony_file"
        ))
        clip_paths = {name: str(Path(settings.MEDIA_ROOT) / files[key]) for name, key in run.clips.items() if files.get(key)}
    wait_for_beep = campaign.machine_action == Campaign.MachineAction.VOICEMAIL and call.voicemail_audio_id is not None
    dial = Dial(
        attempt_id=attempt.pk,
        to=call.phone,
        caller_id=campaign.caller_id_for(call.phone),
        audio_url=signed_audio_url(call.audio_id),
        wait_for_beep=wait_for_beep,
        voicemail_path=_telephony_path(call.voicemail_audio) if wait_for_beep else "",
        audio_path=str(Path(settings.MEDIA_ROOT) / call.audio.telephony_file) if call.audio.telephony_file else "",
        flow_token=flows.node_token(attempt.pk, callflow.ROOT, 1) if run is not None else "",
        input_timeout=run.input_timeout if run is not None else 5,
        flow=run.flow if run is not None else None,
        clip_paths=clip_paths,
        said=run.said if run is not None else {},
    )
    try:
        sid = get_provider(campaign.telephony_account).place(dial, outcomes.EVENTS)
    except ProviderError as exc:
        if exc.ambiguous:
            # The channel stays taken: the call may be ringing. Its final status (or the lease's end) frees it.
            CallAttempt.objects.filter(pk=attempt.pk, status=S.CREATED).update(
                status=S.UNKNOWN, error_message=str(exc)[:2000], error_code=exc.code[:20]
            )
            log.warning(
                "call %s attempt %s: %s; waiting for the provider, not re-dialling", call.pk, number, exc
            )
            return "ambiguous"
        pacing.release(account, lease)  # nobody was dialled
        if exc.account:
            # Every call of the campaign would meet it: pause with what to fix; this call goes back, unspent.
            lifecycle.attempt_not_placed(attempt, reason=str(exc), at=timezone.now())
            log.warning(
                "call %s attempt %s not placed, campaign %s paused: %s", call.pk, number, campaign.pk, mask_text(str(exc))
            )
            return "account refused"
        outcomes.apply_status(
            attempt.pk, S.FAILED, error_code=exc.code, error_message=str(exc), permanent_error=exc.permanent
        )
        log.warning("call %s attempt %s failed before dialling: %s", call.pk, number, exc)
        return "failed"
    CallAttempt.objects.filter(pk=attempt.pk).update(provider_call_id=sid, placed_at=timezone.now())
    outcomes.apply_status(attempt.pk, S.QUEUED)
    log.info("call %s attempt %s placed as %s to %s", call.pk, number, sid, call.phone)
    return "placed"


def answer_machine(attempt_id: int, answered_by: str) -> str:
    """Act on async answering-machine detection: record it; hang up on a machine, or leave the campaign's
    voicemail once the machine's greeting has ended (the beep). Returns what was done, for the event log.

    A repeated report does nothing: the voicemail is never started twice. Raises ProviderError when the
    provider refused the hang-up or the voicemail (the result is recorded all the same).
    """
    if not outcomes.apply_amd(attempt_id, answered_by):
        return "duplicate"
    attempt = CallAttempt.objects.select_related(
        "call__campaign__telephony_account", "call__voicemail_audio"
    ).get(pk=attempt_id)
    if not is_machine(answered_by):
        return "recorded"  # a person (or unknown): the message is already playing
    if attempt.status in outcomes.TERMINAL or not attempt.provider_call_id:
        return "call already over"
    provider = get_provider(attempt.call.campaign.telephony_account)
    if not provider.async_amd:
        return "recorded"  # the provider decides about machines within the call
    call, campaign = attempt.call, attempt.call.campaign
    voicemail = (
        campaign.machine_action == Campaign.MachineAction.VOICEMAIL
        and call.voicemail_audio is not None
        and call.voicemail_audio.state == RenderedAudio.State.READY
        and answered_by != "fax"
    )
    if voicemail and answered_by == "machine_start":
        # Only synchronous detection stops here; with DetectMessageEnd the end of the greeting follows.
        return "waiting for the beep"
    if voicemail:
        provider.play_and_hang_up(attempt.provider_call_id, signed_audio_url(call.voicemail_audio_id))
        log.info("call %s attempt %s: voicemail after %s", call.pk, attempt.number, answered_by)
        return "voicemail"
    provider.hang_up(attempt.provider_call_id)
    log.info("call %s attempt %s: hung up on %s", call.pk, attempt.number, answered_by)
    return "hung up"


def worker_died(*, placing: list[int], sip_attempts: list[int], worker: str) -> int:
    """What a dead worker was dialling is settled now rather than when it turns stale; returns how many attempts.

    placing: the calls whose dial tasks it held. An attempt row it wrote without a call id from the provider may
    or may not have reached the provider: it becomes ambiguous at once, and look_up_ambiguous_creates asks the
    provider within seconds (found: adopted; surely never placed: failed, and dialled again). A SIP call lived in
    the dead process (sip_attempts: the calls its heartbeat named, and those of its dial tasks): it ended with it.
    The attempt is closed without a re-dial, as settle_silent_attempts would close it after SIP_CALL_LIMIT.
    """
    open_statuses = [S.CREATED, S.UNKNOWN, S.QUEUED, S.INITIATED, S.RINGING, S.IN_PROGRESS]
    named = set(sip_attempts)
    settled = 0
    for attempt in (
        CallAttempt.objects.filter(Q(call_id__in=placing) | Q(pk__in=sip_attempts), status__in=open_statuses)
        .select_related("call")
        .order_by("pk")
    ):
        if attempt.pk not in named and attempt.number != attempt.call.attempts_made:
            continue  # an earlier attempt of the call, left to its own callbacks
        if attempt.provider == "sip":
            outcomes.apply_status(
                attempt.pk,
                S.FAILED,
                error_code="worker-died",
                error_message=f"the worker process holding this SIP call ({worker}) died during it; not re-dialled",
                permanent_error=True,
            )
            settled += 1
        elif attempt.status == S.CREATED and not attempt.provider_call_id:
            settled += CallAttempt.objects.filter(pk=attempt.pk, status=S.CREATED, provider_call_id=None).update(
                status=S.UNKNOWN,
                error_code="worker-died",
                error_message=f"its worker ({worker}) died while placing it; asking the provider whether it was placed",
            )
    return settled


def look_up_ambiguous_creates(now=None) -> int:
    """Ask the provider about creates that failed ambiguously (status unknown, no call id) a few seconds ago.

    Cheap when there are none (one indexed query), so the dialer sweep runs it every time: an ambiguous call
    is identified within a sweep or two rather than when it turns stale.
    """
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.DIAL_STALE_SECONDS)
    ambiguous = CallAttempt.objects.filter(
        status=S.UNKNOWN,
        provider_call_id__isnull=True,
        created_at__lt=now - UNKNOWN_LOOKUP_AFTER,
        created_at__gte=stale,
    ).select_related("call__campaign__telephony_account")
    return sum(_look_up(attempt, now) not in (None, LOOKUP_PENDING) for attempt in ambiguous[:200])


def settle_silent_attempts(now=None) -> int:
    """Attempts the provider has gone quiet about: ask it; if it cannot say, close without re-dialling.

    An ambiguous create (status unknown, no call id) is looked up within seconds rather than when stale:
    found, the attempt adopts the call; surely never placed, it fails as transient and the call may be dialled
    again, the only re-dial after an ambiguous create. Returns how many attempts were settled or identified.
    """
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.DIAL_STALE_SECONDS)
    settled = look_up_ambiguous_creates(now)
    quiet = CallAttempt.objects.filter(
        status__in=[S.CREATED, S.UNKNOWN, S.QUEUED, S.INITIATED, S.RINGING, S.IN_PROGRESS],
        created_at__lt=stale,
    ).select_related("call__campaign__telephony_account")
    for attempt in quiet[:500]:
        if attempt.provider == "sip":
            # A SIP call lives in the worker process that placed it, and the user agent bounds it: ringing
            # ends within ring timeout + Timer B, an answered call soon after its clip. Past these limits
            # the process holding it is gone, and its channel must not stay taken for hours.
            limit = SIP_CALL_LIMIT if attempt.status == S.IN_PROGRESS else SIP_SETUP_LIMIT
            if attempt.created_at > now - limit:
                continue
        elif attempt.status == S.IN_PROGRESS and attempt.created_at > now - timedelta(hours=2):
            continue  # a long call is still a call
        status = None
        if attempt.provider_call_id:
            try:
                found = get_provider(attempt.call.campaign.telephony_account).fetch(attempt.provider_call_id)
            except ProviderError as exc:
                log.warning("attempt %s: provider lookup failed: %s", attempt.pk, exc)
                if exc.permanent:  # the provider has no such call: left open, it would hold a call slot forever
                    outcomes.apply_status(
                        attempt.pk,
                        S.FAILED,
                        error_code="unknown",
                        error_message=f"the provider has no record of this call ({exc}); not re-dialled",
                        permanent_error=True,
                    )
                    status = S.FAILED
            else:
                if found.status in outcomes.TERMINAL:
                    status = found.status
                    outcomes.apply_status(
                        attempt.pk, found.status, answered_by=found.answered_by, duration=found.duration
                    )
        elif attempt.status in (S.CREATED, S.UNKNOWN):
            # No call id: the create failed ambiguously, or its worker died around it. Look the call up.
            status = _look_up(attempt, now)
            if status == LOOKUP_PENDING:
                continue
        if status is None and attempt.status in (S.CREATED, S.UNKNOWN):
            outcomes.apply_status(
                attempt.pk,
                S.FAILED,
                error_code="unknown",
                error_message="the provider never confirmed this call; not re-dialled to avoid calling twice",
                permanent_error=True,
            )
            status = S.FAILED
        settled += status is not None
    return settled


def _look_up(attempt: CallAttempt, now) -> str | None:
    """Ask the provider which call, if any, it placed for an attempt with no call id; act on the answer.

    Returns the status the attempt took (adopted, or failed as never placed); LOOKUP_PENDING when there is
    nothing to decide now (no call on record yet, which one look cannot conclude, or its callbacks just settled
    it); None when the provider cannot tell.
    """
    campaign = attempt.call.campaign
    dial = Dial(
        attempt_id=attempt.pk,
        to=attempt.call.phone,
        caller_id=campaign.caller_id_for(attempt.call.phone),  # the number it was dialled from
        audio_url="",
    )
    try:
        found = get_provider(campaign.telephony_account).find(
            dial, since=attempt.created_at, until=attempt.created_at + PLACE_WINDOW
        )
    except ProviderError as exc:
        log.info("attempt %s: cannot look its call up: %s", attempt.pk, exc)
        return None
    # A call adopted by another attempt is that attempt's (it could be a retry's, or another campaign's).
    owned = set(
        CallAttempt.objects.filter(provider_call_id__in=[f.provider_call_id for f in found])
        .exclude(pk=attempt.pk)
        .values_list("provider_call_id", flat=True)
    )
    candidates = [f for f in found if f.provider_call_id not in owned]
    if len(candidates) > 1:
        log.warning("attempt %s: %d calls to this number could be its own; waiting", attempt.pk, len(candidates))
        return None
    with transaction.atomic():
        current = CallAttempt.objects.select_for_update().get(pk=attempt.pk)
        if current.provider_call_id or current.status not in (S.CREATED, S.UNKNOWN):
            return LOOKUP_PENDING  # its callbacks got here first
        if candidates:
            return _adopt(current, candidates[0])
        # A list can lag a create it has just seen: only a second look, a while after the first, is conclusive.
        looked = [datetime.fromisoformat(at) for mark, at in current.timeline if mark == NO_CALL_YET]
        if not looked:
            current.timeline = [*current.timeline, [NO_CALL_YET, now.isoformat()]]
            current.save(update_fields=["timeline"])
        if not looked or now - looked[0] < LOOKUP_CONFIRM:
            return LOOKUP_PENDING
        outcomes.apply_status(
            current.pk,
            S.FAILED,
            error_code="never-placed",
            error_message="the provider has no call for this attempt: it was never placed, and may be retried",
        )
    log.warning("call %s attempt %s was never placed; it may be dialled again", attempt.call_id, attempt.number)
    return S.FAILED


def _adopt(attempt: CallAttempt, found: FoundCall) -> str:
    attempt.provider_call_id, attempt.placed_at = found.provider_call_id, found.created_at
    try:
        with transaction.atomic():
            attempt.save(update_fields=["provider_call_id", "placed_at"])
    except IntegrityError:  # another attempt adopted it a moment ago
        return LOOKUP_PENDING
    log.info(
        "attempt %s adopted %s (%s) from the provider's call list", attempt.pk, found.provider_call_id, found.status
    )
    if found.status in outcomes.RANK:
        outcomes.apply_status(attempt.pk, found.status, answered_by=found.answered_by, duration=found.duration)
    return found.status
