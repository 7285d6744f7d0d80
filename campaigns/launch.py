"""Launch a campaign: every check that can stop it first, in words staff understand; then plan its calls."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from campaigns import phones
from campaigns.models import Campaign, ContactList, FlowNode, Variant
from campaigns.planning import assignment_conflict, plan_calls
from campaigns.policy import validate_retry_policy
from campaigns.preflight import campaign_scripts, describe_dropped, dropped, variables_problem
from campaigns.templating import TemplateSyntaxError, parse_template, validate_template
from campaigns.windows import WindowError, check_rules
from synthesis.actions import instant_voice_problem, voice_problem
from synthesis.engines.base import EngineError
from telephony.credentials import CredentialsError, auth_token
from telephony.models import TelephonyAccount

log = logging.getLogger(__name__)


class LaunchError(Exception):
    """The campaign cannot start; the message says why in words staff understand."""


def validate_script(text: str) -> None:
    """Raise ValidationError naming the position and problem of a bad template."""
    try:
        validate_template(text)
    except TemplateSyntaxError as exc:
        raise ValidationError(str(exc), code="template") from exc


def caller_id_problem(caller_id: str, account: TelephonyAccount) -> str | None:
    """What is wrong with presenting `caller_id` through `account` (checked on save and at launch), or None."""
    if phones.parse_phone(caller_id, None)[0] is None:
        return gettext("%(caller_id)r is not a valid E.164 number (+country code)") % {"caller_id": caller_id}
    if account.caller_ids and caller_id not in account.caller_ids:
        return gettext("%(caller_id)s is not one of account %(account)s's numbers: %(numbers)s") % {
            "caller_id": caller_id, "account": account.name, "numbers": ", ".join(account.caller_ids)
        }
    return None


def check_launchable(campaign: Campaign) -> None:
    """Raise LaunchError with the first reason the campaign cannot run."""
    if campaign.status not in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED):
        raise LaunchError(
            gettext("campaign is %(status)s; only draft or scheduled campaigns can be launched")
            % {"status": campaign.status}
        )
    variants = list(campaign.variants.select_related("voice", "script"))
    if not variants:
        raise LaunchError(gettext("add at least one variant (voice + script) before launching"))
    for variant in variants:
        names = {"script": variant.script, "voice": variant.voice, "variant": variant.name}
        try:
            validate_template(variant.script.text)
        except TemplateSyntaxError as exc:
            raise LaunchError(
                gettext("script '%(script)s' of variant %(variant)s: %(problem)s") % {**names, "problem": exc}
            ) from exc
        if not variant.voice.is_usable():
            raise LaunchError(
                gettext(
                    "voice '%(voice)s' (variant %(variant)s) is a cloned voice without a valid speaker consent; "
                    "record the speaker's consent first"
                ) % names
            )
        try:
            problem = voice_problem(variant.voice) or instant_voice_problem(variant.voice)
        except EngineError as exc:
            problem = str(exc)
        if problem:
            raise LaunchError(
                gettext("voice '%(voice)s' (variant %(variant)s): %(problem)s") % {**names, "problem": problem}
            )
    try:
        check_rules(campaign)
    except WindowError as exc:
        raise LaunchError(str(exc)) from exc
    try:
        validate_retry_policy(campaign.retry_policy)
    except ValueError as exc:
        raise LaunchError(str(exc)) from exc
    check_compliance(campaign)
    problem = flow_problem(campaign)
    if problem:
        raise LaunchError(problem)
    clash = key_clash(campaign) or assignment_conflict(campaign)
    if clash:
        raise LaunchError(clash)
    account = campaign.telephony_account
    for number in campaign.caller_ids():  # the caller id and its pool
        problem = caller_id_problem(number, account)
        if problem:
            raise LaunchError(gettext("caller id %(problem)s") % {"problem": problem})
    if account.kind == account.Kind.SIP and not account.sip_host:
        raise LaunchError(
            gettext("SIP trunk account %(account)s has no SIP server (host) set") % {"account": account.name}
        )
    # A trunk that admits us by IP address has no username and needs no password; everything else does.
    if account.kind != account.Kind.SIP or account.account_sid:
        try:
            auth_token(account)
        except CredentialsError as exc:
            raise LaunchError(str(exc)) from exc
    if campaign.ends_at and campaign.ends_at <= timezone.now():
        raise LaunchError(gettext("the campaign's end time is already past"))
    if not campaign.contact_list.contacts.exists():
        raise LaunchError(gettext("contact list '%(list)s' is empty") % {"list": campaign.contact_list})
    problem = variables_problem(campaign.contact_list_id, campaign_scripts(campaign), stop_early=True)
    if problem:
        raise LaunchError(problem)


def flow_problem(campaign: Campaign) -> str | None:
    """Why the campaign's call flow cannot run (every problem, in one sentence), or None. Opt-out is confirmed
    to the callee: a flow must offer it in the message's menu, on the campaign's opt-out key."""
    flow = campaign.flow
    if flow is None:
        return None
    problems = flow.problems()
    opt_out = flow.nodes.filter(parent=None, action=FlowNode.Action.OPT_OUT).values_list("key", flat=True)
    if campaign.opt_out_digit not in opt_out:
        problems.append(
            gettext(
                "the message's menu has no opt-out on key %(key)s (the campaign's opt-out key): add it, so callees "
                "can stop the calls and hear that they will not be called again"
            ) % {"key": campaign.opt_out_digit}
        )
    if problems:
        return gettext("call flow '%(flow)s': %(problems)s") % {"flow": flow, "problems": "; ".join(problems)}
    return None


def key_clash(campaign: Campaign) -> str | None:
    """Why the campaign's keys cannot work together (one key with two meanings), or None."""
    keys = {
        gettext("opt-out"): campaign.opt_out_digit,
        gettext("confirm"): campaign.confirm_digit,
        gettext("reschedule"): campaign.reschedule_digit,
    }
    seen: dict[str, str] = {}
    for meaning, key in keys.items():
        if key and key in seen:
            return gettext("key %(key)s cannot mean both %(first)s and %(second)s: choose different keys") % {
                "key": key, "first": seen[key], "second": meaning
            }
        seen[key] = meaning
    return None


def check_compliance(campaign: Campaign) -> None:
    """Rules for automated calls in a cloned voice: the disclosure is spoken first and cannot be removed."""
    cloned = [v.name for v in campaign.variants.select_related("voice") if v.voice.needs_consent]
    if cloned and not campaign.disclosure_text.strip():
        raise LaunchError(
            gettext(
                "variant %(variants)s uses a cloned voice: the disclosure sentence (e.g. 这是一通智能语音通知。) "
                "is required and spoken first in every call"
            ) % {"variants": ", ".join(cloned)}
        )
    if campaign.fallback_text.strip():
        try:
            template = parse_template(campaign.fallback_text)
        except TemplateSyntaxError as exc:
            raise LaunchError(gettext("generic clip text: %(problem)s") % {"problem": exc}) from exc
        if any(not isinstance(part, str) for part in template):
            raise LaunchError(gettext("the generic clip text is said to everybody: it cannot contain {variables}"))
    if campaign.machine_action == Campaign.MachineAction.VOICEMAIL:
        if campaign.voicemail_script is None:
            raise LaunchError(
                gettext(
                    "answering machines get a voicemail: choose the voicemail script, or hang up on machines instead"
                )
            )
        try:
            validate_template(campaign.voicemail_script.text)
        except TemplateSyntaxError as exc:
            raise LaunchError(
                gettext("voicemail script '%(script)s': %(problem)s")
                % {"script": campaign.voicemail_script, "problem": exc}
            ) from exc


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
            raise LaunchError(gettext("the campaign was launched by somebody else just now"))
        result = plan_calls(campaign)
        if not result.planned:
            # Nothing to call: undo the plan and the status (the transaction), and say why, instead of a
            # campaign that completes at once with every call invalid.
            why = describe_dropped(dropped(campaign)) or gettext("no contact could be planned")
            raise LaunchError(
                gettext("no contact of list '%(list)s' can be called: %(why)s")
                % {"list": campaign.contact_list, "why": why}
            )
    campaign.refresh_from_db()
    log.info(
        "launched campaign %s: %d planned, %d invalid, %d on do-not-call, %d renders queued",
        campaign.pk, result.planned, result.invalid, result.do_not_call, result.render_batches,
    )
    return result.planned


# Set for the new campaign, not copied: who and what it is, and where it is in its life.
NOT_COPIED = {
    "id", "name", "contact_list", "status", "launched_at", "finished_at", "created_at", "created_by", "paused_reason",
    "starts_at", "ends_at",
}  # fmt: skip


def copy_campaign(
    template: Campaign,
    *,
    name: str,
    contact_list: ContactList,
    by: Any = None,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
) -> Campaign:
    """A draft campaign like `template` over `contact_list`: its variants (voice, script, weight), call flow,
    calling windows, retries, caller id, pacing and compliance settings; launched separately."""
    values = {
        f.attname: getattr(template, f.attname)
        for f in Campaign._meta.concrete_fields
        if f.name not in NOT_COPIED
    }
    with transaction.atomic():
        campaign = Campaign.objects.create(
            **values,
            name=name,
            contact_list=contact_list,
            created_by=by,
            starts_at=starts_at or timezone.now(),
            ends_at=ends_at,
        )
        Variant.objects.bulk_create(
            Variant(
                campaign=campaign, name=v.name, voice_id=v.voice_id, script_id=v.script_id, weight=v.weight
            )
            for v in template.variants.order_by("name")
        )
    log.info("campaign %s copied from %s over list %s", campaign.pk, template.pk, contact_list.pk)
    return campaign
