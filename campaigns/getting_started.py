"""The getting-started page of an empty install (issue 21): the steps from a telephony account to a launched
campaign, each with its state and a link, and the account checks done from there (credentials, numbers, and
whether carriers can reach HERALD_PUBLIC_URL)."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _

from campaigns.models import Campaign, Contact, ScriptTemplate
from telephony import accounts
from telephony.models import TelephonyAccount
from telephony.providers.base import ProviderError
from voices.models import Voice


@dataclass
class Step:
    title: str
    done: bool
    detail: str
    url: str
    action: str  # the link's words


def steps() -> list[Step]:
    """The way to a first campaign, in order, with what is done already."""
    accounts_n = TelephonyAccount.objects.count()
    numbers = sum(len(ids or []) for ids in TelephonyAccount.objects.values_list("caller_ids", flat=True))
    voices_n = Voice.objects.count()
    contacts_n = Contact.objects.count()
    scripts_n = ScriptTemplate.objects.count()
    campaigns_n = Campaign.objects.count()
    launched = Campaign.objects.exclude(status=Campaign.Status.DRAFT).count()
    return [
        Step(_("Add a telephony account"), accounts_n > 0,
             _("%(n)d account(s): a Twilio account (SID and auth token) or a SIP trunk. Test its credentials below.")
             % {"n": accounts_n}, reverse("admin:telephony_telephonyaccount_add"), _("Add an account")),
        Step(_("Give it caller ids"), numbers > 0,
             _("%(n)d number(s) to present to callees. A Twilio account's own numbers can be imported below.")
             % {"n": numbers}, reverse("admin:telephony_telephonyaccount_changelist"), _("Telephony accounts")),
        Step(_("Add a voice"), voices_n > 0,
             _("%(n)d voice(s): a built-in synthetic voice, a GPT-SoVITS model, or one cloned in the voice studio "
               "from a minute of speech.") % {"n": voices_n}, reverse("admin:voices_voice_add"), _("Add a voice")),
        Step(_("Import contacts"), contacts_n > 0,
             _("%(n)d contact(s): a CSV from Excel (UTF-8 or GBK) or the API.") % {"n": contacts_n},
             reverse("admin:campaigns_contactlist_import"), _("Import a CSV")),
        Step(_("Write a script"), scripts_n > 0,
             _("%(n)d script(s), e.g. 您好{name}，您的订单{订单号}将于明天送达，确认请按1。") % {"n": scripts_n},
             reverse("admin:campaigns_scripttemplate_add"), _("Write a script")),
        Step(_("Create a campaign"), campaigns_n > 0,
             _("%(n)d campaign(s): the list, the account, one or more variants (voice and script).")
             % {"n": campaigns_n}, reverse("admin:campaigns_campaign_add"), _("Create a campaign")),
        Step(_("Check and launch it"), launched > 0,
             _("%(n)d launched. Each campaign's Preflight page shows sample messages, a test call to your own phone "
               "and what launch will do.") % {"n": launched}, reverse("admin:campaigns_campaign_changelist"),
             _("Campaigns")),
    ]  # fmt: skip


def progress() -> tuple[int, int]:
    shown = steps()
    return sum(step.done for step in shown), len(shown)


def page(request: HttpRequest) -> HttpResponse:
    """GET: the steps and the accounts; POST: one check (credentials, numbers or the public URL)."""
    if not request.user.has_perm("telephony.view_telephonyaccount"):
        raise PermissionDenied
    public_url_checks = None
    if request.method == "POST":
        check = request.POST.get("check", "")
        if check == "public-url":
            public_url_checks = accounts.public_url_problems()
        else:
            _account_check(request, check, request.POST.get("account", ""))
            return HttpResponseRedirect(reverse("getting_started"))
    context = {
        **admin.site.each_context(request),
        "title": _("Getting started"),
        "steps": steps(),
        "accounts": TelephonyAccount.objects.order_by("name"),
        "public_url_checks": public_url_checks,
        "can_change_accounts": request.user.has_perm("telephony.change_telephonyaccount"),
    }
    return TemplateResponse(request, "admin/campaigns/getting_started.html", context)


def _account_check(request: HttpRequest, check: str, account_id: str) -> None:
    account = TelephonyAccount.objects.filter(pk=int(account_id) if account_id.isdigit() else None).first()
    if account is None:
        messages.error(request, _("No telephony account %(id)r.") % {"id": account_id})
        return
    if check == "credentials":
        result = accounts.check_credentials(account)
        messages.add_message(request, messages.SUCCESS if result.ok else messages.ERROR, result.message)
    elif check == "numbers":
        if not request.user.has_perm("telephony.change_telephonyaccount"):
            raise PermissionDenied
        tell_imported(request, account)
    else:
        messages.error(request, _("Unknown check %(check)r.") % {"check": check})


def tell_imported(request: HttpRequest, account: TelephonyAccount) -> None:
    """Import the account's numbers as caller ids and say what happened (shared with the accounts' admin)."""
    try:
        imported = accounts.import_numbers(account)
    except ProviderError as exc:
        messages.error(request, _("%(account)s: the numbers could not be listed: %(why)s") % {"account": account.name, "why": exc})
        return
    parts = [
        _("%(n)d added (%(numbers)s)") % {"n": len(imported.added), "numbers": ", ".join(imported.added) or _("none")},
        _("%(n)d already there") % {"n": len(imported.already)},
    ]
    if imported.refused:
        parts.append(_("refused: %(numbers)s") % {"numbers": "; ".join(f"{n} ({why})" for n, why in imported.refused)})
    level = messages.WARNING if imported.refused or not (imported.added or imported.already) else messages.SUCCESS
    said = _("%(account)s: caller ids from the account's numbers: %(what)s") % {"account": account.name, "what": ", ".join(parts)}
    messages.add_message(request, level, said)
