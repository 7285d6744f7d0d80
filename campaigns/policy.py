"""Campaign policy: what an attempt's end means for its call, when to try again, when a number has had enough
calls, and when a campaign's provider is failing. Decisions only: campaigns.lifecycle acts on them.
"""

from __future__ import annotations

import logging
import math
import random
import zlib
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection

from campaigns import callflow
from campaigns.models import Call, CallAttempt, Campaign

log = logging.getLogger(__name__)

S = CallAttempt.Status
ENDED = frozenset({S.COMPLETED, S.BUSY, S.NO_ANSWER, S.FAILED, S.CANCELED})  # an attempt's final statuses

# Error codes that say the number itself is wrong: dialling it again cannot help.
# Twilio: 21211 invalid 'To' number, 21217 number does not appear valid, 13223 invalid number format,
# 13224 number invalid or not callable. SIP (written by telephony.providers.sip as "sip-<code>"): 404 Not Found,
# 410 Gone, 484 Address Incomplete, 604 Does Not Exist Anywhere (Twilio's status callbacks report these as
# SipResponseCode, stored the same way: telephony.providers.twilio.status_error); "number": not an E.164 number,
# refused before dialling. Such a code means an invalid number whatever status the call ended in (failed, busy,
# no answer). Twilio 21215 is the account's geographic permissions, not the number: it pauses the campaign
# (telephony.actions.place_call), as the account's other refusals do.
INVALID_NUMBER_CODES = frozenset(
    {"21211", "21217", "13223", "13224", "sip-404", "sip-410", "sip-484", "sip-604", "number",
     "ann-invalid_number", "sit-VC", "sit-IC"}
)
# What a carrier announcement said (SIP: telephony.sip.announce, written as "ann-<outcome>"): a phone switched
# off or out of reach is tried again like no answer, under its own retry rule; a suspended number is not tried
# again unless the campaign's policy says when.
ANNOUNCED_RETRY = {"ann-powered_off": "powered_off", "ann-unreachable": "unreachable", "ann-suspended": "suspended"}
# The callee refused the call (SIP 603 Decline): their decision, not a provider's failure. Never retried.
DECLINED_CODES = frozenset({"sip-603"})

# Retry policy: minutes before another attempt by outcome, None = never.
RETRY_OUTCOMES = ("busy", "no_answer", "failed", "machine", "powered_off", "unreachable", "suspended")
MAX_RETRY_MINUTES = 30 * 24 * 60  # a month: beyond any campaign, and far from timedelta's limits

NUMBER_CAP_PERIOD = timedelta(hours=24)  # the rolling period of settings.MAX_CALLS_PER_NUMBER_24H
NUMBER_LOCKS = 0x48524C44  # "HRLD": the PostgreSQL advisory-lock class of per-number caps

_jitter = random.Random()


# --- what an attempt's end means -----------------------------------------------------------------


def is_machine(answered_by: str) -> bool:
    return answered_by.startswith("machine") or answered_by == "fax"


def is_invalid_number(error_code: str) -> bool:
    return error_code in INVALID_NUMBER_CODES


def is_provider_failure(status: str, error_code: str) -> bool:
    """A failure the provider (or our side of it) caused: not busy, no answer, a bad number or a refusal."""
    return (
        status == S.FAILED
        and error_code not in INVALID_NUMBER_CODES
        and error_code not in DECLINED_CODES
        and error_code not in ANNOUNCED_RETRY  # a suspended number is the callee's, not the provider's
    )


def outcome_of(attempt: CallAttempt, campaign: Campaign, *, permanent_error: bool) -> tuple[str, str | None]:
    """The call outcome an ended attempt gives, and the retry policy's name for it when it may be retried."""
    if attempt.action == callflow.OPTED_OUT or (
        campaign.flow_id is None and attempt.digits and attempt.digits == campaign.opt_out_digit
    ):
        return Call.Outcome.OPTED_OUT, None
    if attempt.status == S.COMPLETED:
        if is_machine(attempt.answered_by):
            return Call.Outcome.MACHINE, "machine"
        return Call.Outcome.ANSWERED, None
    if attempt.status in (S.FAILED, S.BUSY, S.NO_ANSWER) and is_invalid_number(attempt.error_code):
        return Call.Outcome.INVALID_NUMBER, None
    if attempt.status == S.BUSY:
        return Call.Outcome.BUSY, "busy"
    announced = ANNOUNCED_RETRY.get(attempt.error_code)
    if attempt.status == S.NO_ANSWER:
        return Call.Outcome.NO_ANSWER, announced or "no_answer"
    if announced == "suspended":
        return Call.Outcome.FAILED, "suspended"
    # Failed, or canceled: only a transient failure is worth another try.
    transient = attempt.status == S.FAILED and not permanent_error and attempt.error_code not in DECLINED_CODES
    return Call.Outcome.FAILED, "failed" if transient else None


# --- retry policy ----------------------------------------------------------------------------------


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
    if outcome in ("machine", "suspended"):
        return None  # a machine answered the message, or the number is suspended: dialling again is opt-in
    return _spread(campaign.retry_delay, campaign.retry_jitter)


def _spread(delay: timedelta, jitter_percent: int) -> timedelta:
    # Calls that failed together (a trunk outage, a busy hour) come back spread out, not as one burst.
    spread = max(0, min(jitter_percent or 0, 100)) / 100
    return delay * _jitter.uniform(1 - spread, 1 + spread)


# --- per-number cap --------------------------------------------------------------------------------


def number_free_at(phone: str, now: datetime) -> datetime | None:
    """When `phone` may be called again if it had MAX_CALLS_PER_NUMBER_24H attempts (all campaigns together) in
    the last 24 hours; None if it may be called now. Call inside the transaction that writes the attempt."""
    if connection.vendor == "postgresql":
        # Two campaigns dialling one number at once must not both count the same earlier attempts (SQLite
        # already runs writing transactions one at a time). Held until the attempt row is committed.
        with connection.cursor() as cursor:
            key = zlib.crc32(phone.encode())
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [NUMBER_LOCKS, key - (1 << 32) * (key >> 31)])
    recent = list(
        CallAttempt.objects.filter(call__phone=phone, created_at__gt=now - NUMBER_CAP_PERIOD)
        .order_by("created_at")
        .values_list("created_at", flat=True)
    )
    cap = settings.MAX_CALLS_PER_NUMBER_24H
    if len(recent) < cap:
        return None
    return recent[len(recent) - cap] + NUMBER_CAP_PERIOD  # when enough of them have aged out


# --- the provider breaker --------------------------------------------------------------------------


def breaker_trips(campaign: Campaign, *, provider_failure: bool = True) -> str | None:
    """Why a running campaign must pause (at least half of its last N ended attempts failed at the provider),
    or None.

    N is the campaign's breaker_window (0 = never); nothing is decided before N attempts have ended. Asked as
    each attempt ends (`provider_failure`: whether it was one): one query reads the campaign's latest N + 1
    ended attempts, newest first down the attempts' primary key. Only a failure can raise the count, except
    when the N-th attempt ends and the window is first full. After a resume the same attempts are still the
    last N: successes are let through, and the next provider failure trips it again until enough successes
    have pushed the old failures out (a half-open breaker).
    """
    window = campaign.breaker_window
    if not window or campaign.status != Campaign.Status.RUNNING:
        return None
    latest = list(
        CallAttempt.objects.filter(call__campaign_id=campaign.pk, status__in=ENDED)
        .order_by("-pk")
        .values_list("status", "error_code", "error_message")[: window + 1]
    )
    if len(latest) < window or (len(latest) > window and not provider_failure):
        return None
    failures = [(code, message) for status, code, message in latest[:window] if is_provider_failure(status, code)]
    if 2 * len(failures) < window:
        return None
    code, message = failures[0]
    latest_error = message.strip().splitlines()[0] if message.strip() else f"error {code or 'without a code'}"
    return (
        f"paused automatically: {len(failures)} of the last {window} attempts failed at the provider "
        f"(latest: {latest_error[:120]})"
    )
