"""Telephony verbs: place a claimed call, settle attempts the provider went quiet about, manage secrets."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Call, CallAttempt, Campaign, DoNotCall
from campaigns.windows import is_open
from synthesis.models import RenderedAudio
from synthesis.signing import signed_audio_url
from telephony import outcomes
from telephony.credentials import encrypt
from telephony.models import TelephonyAccount
from telephony.providers import get_provider
from telephony.providers.base import Dial, ProviderError

log = logging.getLogger(__name__)
S = CallAttempt.Status
SIP_SETUP_LIMIT = timedelta(minutes=2)  # ring timeout (30 s) + Timer B (32 s) + a short 503 retry, with room
SIP_CALL_LIMIT = timedelta(minutes=15)  # a notification clip plus the wait for a key, with a wide margin


def set_auth_token(account: TelephonyAccount, token: str) -> None:
    """Store the token encrypted; it is never shown again."""
    account.auth_token_encrypted = encrypt(token)
    account.save(update_fields=["auth_token_encrypted"])


def webhook_url(name: str, attempt_id: int) -> str:
    return f"{settings.PUBLIC_URL}{reverse(name, args=[attempt_id])}"


def place_call(call_id: int) -> str:
    """Dial a call the sweep claimed. The attempt row is committed before the provider hears of it."""
    now = timezone.now()
    with transaction.atomic():
        call = (
            # of=self: PostgreSQL cannot lock the nullable side of the outer join to audio, and only the call
            # needs the lock.
            Call.objects.select_for_update(of=("self",))
            .select_related("campaign__telephony_account", "audio")
            .filter(pk=call_id)
            .first()
        )
        if call is None or call.state != Call.State.DIALING:
            return "not claimed"  # somebody else has it, or it was cancelled
        campaign = call.campaign
        if campaign.status in (Campaign.Status.CANCELLED, Campaign.Status.COMPLETED):
            # Claimed just before the campaign ended: back to ready it would sit in a finished campaign forever.
            call.state, call.updated_at = Call.State.CANCELLED, now
            call.error = f"campaign {campaign.status} before this call could be made"
            call.save(update_fields=["state", "error", "updated_at"])
            return "campaign over"
        if campaign.status != Campaign.Status.RUNNING:
            _unclaim(call, now)
            return "campaign not running"
        if DoNotCall.objects.filter(phone=call.phone).exists():
            call.state, call.outcome, call.error = (
                Call.State.DONE,
                Call.Outcome.DO_NOT_CALL,
                "on the do-not-call list",
            )
            call.updated_at = now
            call.save(update_fields=["state", "outcome", "error", "updated_at"])
            return "do not call"
        if not is_open(call.timezone, now, campaign.window_start, campaign.window_end, campaign.weekdays):
            _unclaim(call, now)
            return "window closed"
        if call.audio is None or call.audio.state != RenderedAudio.State.READY:
            call.state, call.updated_at = Call.State.RENDERING, now
            call.save(update_fields=["state", "updated_at"])
            return "audio not ready"
        number = call.attempts_made + 1
        attempt = CallAttempt.objects.create(
            call=call,
            number=number,
            provider=campaign.telephony_account.kind,
            status=S.CREATED,
            timeline=[[S.CREATED, now.isoformat()]],
        )
        call.attempts_made, call.state, call.updated_at = number, Call.State.IN_PROGRESS, now
        call.save(update_fields=["attempts_made", "state", "updated_at"])
    dial = Dial(
        attempt_id=attempt.pk,
        to=call.phone,
        caller_id=campaign.caller_id,
        audio_url=signed_audio_url(call.audio_id),
        status_url=webhook_url("telephony:twilio-status", attempt.pk),
        gather_url=webhook_url("telephony:twilio-gather", attempt.pk),
        audio_path=str(Path(settings.MEDIA_ROOT) / call.audio.telephony_file) if call.audio.telephony_file else "",
    )
    try:
        sid = get_provider(campaign.telephony_account).place(dial)
    except ProviderError as exc:
        if exc.ambiguous:
            CallAttempt.objects.filter(pk=attempt.pk, status=S.CREATED).update(
                status=S.UNKNOWN, error_message=str(exc)[:2000], error_code=exc.code[:20]
            )
            log.warning(
                "call %s attempt %s: %s; waiting for the provider, not re-dialling", call.pk, number, exc
            )
            return "ambiguous"
        outcomes.apply_status(
            attempt.pk, S.FAILED, error_code=exc.code, error_message=str(exc), permanent_error=exc.permanent
        )
        log.warning("call %s attempt %s failed before dialling: %s", call.pk, number, exc)
        return "failed"
    CallAttempt.objects.filter(pk=attempt.pk).update(provider_call_id=sid, placed_at=timezone.now())
    outcomes.apply_status(attempt.pk, S.QUEUED)
    log.info("call %s attempt %s placed as %s to %s", call.pk, number, sid, call.phone)
    return "placed"


def _unclaim(call: Call, now) -> None:
    call.state, call.claimed_at, call.updated_at = Call.State.READY, None, now
    call.save(update_fields=["state", "claimed_at", "updated_at"])


def settle_silent_attempts(now=None) -> int:
    """Attempts the provider has gone quiet about: ask it; if it cannot say, close without re-dialling."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.DIAL_STALE_SECONDS)
    settled = 0
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
