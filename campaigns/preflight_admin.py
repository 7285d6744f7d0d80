"""The campaign admin's preflight: the variant inline checks the scripts' variables against the contact list
on save, and admin -> campaign -> Preflight shows sample messages and what launching would do
(campaigns.preflight)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_POST

from campaigns import preflight
from campaigns.models import Campaign, ScriptTemplate
from campaigns.planning import variant_order
from campaigns.testcall import TestCallError, place_test_call
from herald.logmask import mask_phone


class VariantFormSet(BaseInlineFormSet):
    """The campaign's variants: a script using a variable the contact list has no column for is refused with
    the variables it lacks and how many contacts lack each."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        scripts: list[ScriptTemplate] = [
            form.cleaned_data["script"]
            for form in self.forms
            if form.cleaned_data.get("script") and not form.cleaned_data.get("DELETE")
        ]
        campaign = self.instance  # carries the contact list chosen in the same form
        if campaign.machine_action == Campaign.MachineAction.VOICEMAIL and campaign.voicemail_script_id:
            scripts.append(campaign.voicemail_script)
        problem = preflight.variables_problem(campaign.contact_list_id, scripts, stop_early=True)
        if problem:
            raise forms.ValidationError(problem, code="variables")


class PreflightAdminMixin:
    """Adds admin -> campaign -> Preflight (linked from the change page) to the campaign admin."""

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view  # type: ignore[attr-defined]
        return [
            path("<path:object_id>/preflight/", wrap(self.preflight_view), name="campaigns_campaign_preflight"),
            path(
                "<path:object_id>/preflight/test-call/",
                wrap(require_POST(self.test_call_view)),
                name="campaigns_campaign_test_call",
            ),
            *super().get_urls(),  # type: ignore[misc]
        ]

    def _campaign(self, request: HttpRequest, object_id: str, *, change: bool = False) -> Campaign:
        campaign = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if campaign is None:
            raise Http404("No such campaign")
        allowed = self.has_change_permission if change else self.has_view_permission  # type: ignore[attr-defined]
        if not allowed(request, campaign):
            raise PermissionDenied
        return campaign

    def test_call_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Place one test call (campaigns.testcall) and go back to the Preflight page with what happened."""
        campaign = self._campaign(request, object_id, change=True)  # a call costs money: staff who may change it
        number = request.POST.get("number", "")[:64]
        try:
            call = place_test_call(campaign, number, user_id=request.user.pk)
        except TestCallError as exc:
            messages.error(request, gettext("Test call not placed: %(why)s") % {"why": exc})
        else:
            messages.success(
                request,
                gettext(
                    "Test call placed to %(phone)s with variant %(variant)s (%(call_id)s); "
                    "it is not counted in the campaign's reports."
                ) % {"phone": mask_phone(call.to), "variant": call.variant, "call_id": call.provider_call_id},
            )
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_preflight", args=[campaign.pk]))

    def preflight_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._campaign(request, object_id)
        contact_id: int | None = None
        raw = request.GET.get("contact", "").strip()
        if raw:
            try:
                contact_id = int(raw)
            except ValueError:
                contact_id = -1  # shows "no such contact in the list"
        summary = preflight.summarise(campaign)
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "opts": self.opts,  # type: ignore[attr-defined]
            "title": gettext("Preflight: %(campaign)s") % {"campaign": campaign},
            "campaign": campaign,
            "contact_id": raw,
            "samples": preflight.samples(campaign, contact_id),
            "gaps": preflight.variable_gaps(campaign.contact_list_id, preflight.campaign_scripts(campaign)),
            "summary": summary,
            "invalid": summary.invalid.most_common(),
            "per_variant": sorted(summary.per_variant.items()),
            "render_time": preflight.duration(summary.render_seconds),
            "dial_time": preflight.duration(summary.dial_seconds),
            "call_seconds": settings.PREFLIGHT_CALL_SECONDS,
            "test_call_interval": settings.PREFLIGHT_TEST_CALL_INTERVAL,
            "first_variant": campaign.variants.order_by(*variant_order(campaign)).values_list("name", flat=True).first(),
        }
        return TemplateResponse(request, "admin/campaigns/campaign/preflight.html", context)
