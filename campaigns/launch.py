"""Launch a campaign: every check that can stop it first, in words staff understand; then plan its calls."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from campaigns import phones
from campaigns.models import Campaign
from campaigns.planning import assignment_conflict, plan_calls
from campaigns.policy import validate_retry_policy
from campaigns.templating import TemplateSyntaxError, parse_template, validate_template
from campaigns.windows import WindowError, check_rules
from synthesis.engines import engine_problem
from synthesis.engines.base import EngineError
from synthesis.gptsovits import basemodels
from telephony.credentials import CredentialsError, auth_token
from voices.models import Voice

log = logging.getLogger(__name__)


class LaunchError(Exception):
    """The campaign cannot start; the message says why in words staff understand."""


def validate_script(text: str) -> None:
    """Raise ValidationError naming the position and problem of a bad template."""
    try:
        validate_template(text)
    except TemplateSyntaxError as exc:
        raise ValidationError(str(exc), code="template") from exc


def _instant_voice_problem(voice: Voice) -> str | None:
    """Why an instant voice's base models cannot serve it (listed against the manifest, not hashed)."""
    if not voice.is_instant:
        return None
    base = basemodels.base_dir()
    found = basemodels.problems(base, voice.base_version, verify=False)
    where = f" in {base}" if base else ""
    return f"its {voice.base_version} base models{where} are incomplete: {'; '.join(found)}" if found else None


def check_launchable(campaign: Campaign) -> None:
    """Raise LaunchError with the first reason the campaign cannot run."""
    if campaign.status not in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED):
        raise LaunchError(f"campaign is {campaign.status}; only draft or scheduled campaigns can be launched")
    variants = list(campaign.variants.select_related("voice", "script"))
    if not variants:
        raise LaunchError("add at least one variant (voice + script) before launching")
    for variant in variants:
        try:
            validate_template(variant.script.text)
        except TemplateSyntaxError as exc:
            raise LaunchError(f"script '{variant.script}' of variant {variant.name}: {exc}") from exc
        if not variant.voice.is_usable():
            raise LaunchError(
                f"voice '{variant.voice}' (variant {variant.name}) is a cloned voice without a valid "
                "speaker consent; record the speaker's consent first"
            )
        try:
            problem = engine_problem(variant.voice.engine) or _instant_voice_problem(variant.voice)
        except EngineError as exc:
            problem = str(exc)
        if problem:
            raise LaunchError(f"voice '{variant.voice}' (variant {variant.name}): {problem}")
    try:
        check_rules(campaign)
    except WindowError as exc:
        raise LaunchError(str(exc)) from exc
    try:
        validate_retry_policy(campaign.retry_policy)
    except ValueError as exc:
        raise LaunchError(str(exc)) from exc
    check_compliance(campaign)
    clash = key_clash(campaign) or assignment_conflict(campaign)
    if clash:
        raise LaunchError(clash)
    caller, _ = phones.parse_phone(campaign.caller_id, None)
    if caller is None:
        raise LaunchError(f"caller id {campaign.caller_id!r} is not a valid E.164 number (+country code)")
    account = campaign.telephony_account
    if account.caller_ids and campaign.caller_id not in account.caller_ids:
        raise LaunchError(f"caller id {campaign.caller_id} is not one of account {account.name}'s numbers")
    if account.kind == account.Kind.SIP and not account.sip_host:
        raise LaunchError(f"SIP trunk account {account.name} has no SIP server (host) set")
    # A trunk that admits us by IP address has no username and needs no password; everything else does.
    if account.kind != account.Kind.SIP or account.account_sid:
        try:
            auth_token(account)
        except CredentialsError as exc:
            raise LaunchError(str(exc)) from exc
    if campaign.ends_at and campaign.ends_at <= timezone.now():
        raise LaunchError("the campaign's end time is already past")
    if not campaign.contact_list.contacts.exists():
        raise LaunchError(f"contact list '{campaign.contact_list}' is empty")


def key_clash(campaign: Campaign) -> str | None:
    """Why the campaign's keys cannot work together (one key with two meanings), or None."""
    keys = {
        "opt-out": campaign.opt_out_digit,
        "confirm": campaign.confirm_digit,
        "reschedule": campaign.reschedule_digit,
    }
    seen: dict[str, str] = {}
    for meaning, key in keys.items():
        if key and key in seen:
            return f"key {key} cannot mean both {seen[key]} and {meaning}: choose different keys"
        seen[key] = meaning
    return None


def check_compliance(campaign: Campaign) -> None:
    """Rules for automated calls in a cloned voice: the disclosure is spoken first and cannot be removed."""
    cloned = [v.name for v in campaign.variants.select_related("voice") if v.voice.needs_consent]
    if cloned and not campaign.disclosure_text.strip():
        raise LaunchError(
            f"variant {', '.join(cloned)} uses a cloned voice: the disclosure sentence (e.g. 这是一通智能语音通知。) "
            "is required and spoken first in every call"
        )
    if campaign.fallback_text.strip():
        try:
            template = parse_template(campaign.fallback_text)
        except TemplateSyntaxError as exc:
            raise LaunchError(f"generic clip text: {exc}") from exc
        if any(not isinstance(part, str) for part in template):
            raise LaunchError("the generic clip text is said to everybody: it cannot contain {variables}")
    if campaign.machine_action == Campaign.MachineAction.VOICEMAIL:
        if campaign.voicemail_script is None:
            raise LaunchError(
                "answering machines get a voicemail: choose the voicemail script, or hang up on machines instead"
            )
        try:
            validate_template(campaign.voicemail_script.text)
        except TemplateSyntaxError as exc:
            raise LaunchError(f"voicemail script '{campaign.voicemail_script}': {exc}") from exc


def launch_campaign(campaign: Campaign, *, by: Any = None) -> int:
    """Validate, then plan one Call per contact and start rendering; returns how many calls were planned."""
    check_launchable(campaign)
    now = timezone.now()
    status = Campaign.Status.SCHEDULED if campaign.starts_at > now else Campaign.Status.RUNNING
    with transaction.atomic():
        updated = Campaign.objects.filter(
            pk=campaign.pk, status__in=[Campaign.Status.DRAFT, Campaign.Status.SCHEDULED]
        ).update(status=status, launched_at=now)
        if updated != 1:
            raise LaunchError("the campaign was launched by somebody else just now")
        result = plan_calls(campaign)
    campaign.refresh_from_db()
    log.info(
        "launched campaign %s: %d planned, %d invalid, %d on do-not-call, %d renders queued",
        campaign.pk, result.planned, result.invalid, result.do_not_call, result.render_batches,
    )
    return result.planned

