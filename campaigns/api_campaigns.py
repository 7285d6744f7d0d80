"""Campaigns through the API: create one from a template campaign, then launch, pause, resume or cancel it, and
add contacts to it while it runs.

The verbs are the admin's own (campaigns.launch, campaigns.lifecycle); a verb that does not apply to the
campaign's state is refused with 409 and the reason. Every POST honours an Idempotency-Key header.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns import api, lifecycle
from campaigns.api_contacts import (
    IDEMPOTENCY_KEY,
    WRITE_ERRORS,
    UpsertRequestSerializer,
    UpsertResultSerializer,
    audit_of,
    upsert_answer,
    upsert_body,
)
from campaigns.launch import LaunchError, copy_campaign, launch_campaign
from campaigns.models import Call, Campaign, ContactList
from campaigns.planning import plan_calls

VERB_PERMISSION = (["campaigns.change_campaign"], "to launch, pause, resume or cancel campaigns")


class FromTemplateSerializer(serializers.Serializer):
    template = serializers.IntegerField(
        help_text="The id of the campaign to copy: variants, flow, windows, retries."
    )
    name = serializers.CharField(max_length=200)
    contact_list = serializers.IntegerField(help_text="The id of the contact list to call.")
    starts_at = serializers.DateTimeField(required=False, help_text="Not before; now when left out.")
    ends_at = serializers.DateTimeField(required=False, allow_null=True)

    def validate_template(self, value: int) -> Campaign:
        template = Campaign.objects.filter(pk=value).first()
        if template is None:
            raise serializers.ValidationError(f"No campaign with id {value} to copy.")
        return template

    def validate_contact_list(self, value: int) -> ContactList:
        contact_list = ContactList.objects.filter(pk=value).first()
        if contact_list is None:
            raise serializers.ValidationError(f"No contact list with id {value}.")
        return contact_list

    def validate_name(self, value: str) -> str:
        if Campaign.objects.filter(name=value).exists():
            raise serializers.ValidationError(f"A campaign named {value!r} already exists.")
        return value

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        starts_at, ends_at = data.get("starts_at"), data.get("ends_at")
        if starts_at and ends_at and ends_at <= starts_at:
            raise serializers.ValidationError({"ends_at": "ends_at must be after starts_at."})
        return data


class CampaignStateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=Campaign.Status.values)
    contact_list = serializers.IntegerField()
    variants = serializers.ListField(child=serializers.CharField())
    flow = serializers.CharField(allow_null=True)
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField(allow_null=True)
    planned = serializers.IntegerField(required=False, help_text="Calls planned (launch).")
    cancelled = serializers.IntegerField(
        required=False, help_text="Calls not yet dialled that were dropped (cancel)."
    )


def _state(campaign: Campaign, **extra: int) -> dict[str, Any]:
    return {
        "id": campaign.pk,
        "name": campaign.name,
        "status": campaign.status,
        "contact_list": campaign.contact_list_id,
        "variants": [v.name for v in campaign.variants.order_by("name")],
        "flow": campaign.flow.name if campaign.flow_id else None,
        "starts_at": campaign.starts_at,
        "ends_at": campaign.ends_at,
        **extra,
    }


class CampaignsView(api.CampaignsView):
    """GET: the report list (campaigns.api); POST: a new draft campaign copied from a template."""

    http_method_names = ["get", "head", "post"]
    permissions = {
        **api.ApiView.permissions,
        "POST": (["campaigns.add_campaign"], "to create campaigns"),
    }

    @extend_schema(
        request=FromTemplateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: CampaignStateSerializer, **WRITE_ERRORS},
    )
    @api.idempotent
    def post(self, request: Request) -> Response:
        """Create a draft campaign from a template campaign: its variants, flow, windows and retries."""
        serializer = FromTemplateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        campaign = copy_campaign(
            data["template"],
            name=data["name"],
            contact_list=data["contact_list"],
            by=request.user,
            starts_at=data.get("starts_at"),
            ends_at=data.get("ends_at"),
        )
        self.audit_ids, self.audit_summary = [campaign.pk], f"campaign copied from {data['template'].pk}"
        return Response(_state(campaign), status=201)


class CampaignVerbView(api.ApiView):
    """POST /campaigns/<id>/<verb>: the admin's launch, pause, resume and cancel."""

    http_method_names = ["post"]
    permissions = {"POST": VERB_PERMISSION}
    verb = ""  # set by the URL: launch, pause, resume or cancel

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: CampaignStateSerializer, 409: api.ErrorSerializer, **WRITE_ERRORS},
    )
    @api.idempotent
    def post(self, request: Request, campaign_id: int) -> Response:
        """Launch (preflight checks, then plan one call per contact), pause, resume or cancel the campaign."""
        campaign = api.campaign_or_404(campaign_id)
        extra: dict[str, int] = {}
        if self.verb == "launch":
            try:
                extra["planned"] = launch_campaign(campaign, by=request.user)
            except LaunchError as error:
                raise api.ApiError(409, f"Not launched: {error}.") from None
        elif self.verb == "pause":
            if not lifecycle.pause(campaign):
                raise api.ApiError(
                    409,
                    f"Not paused: the campaign is {campaign.status}; only running or scheduled campaigns pause.",
                )
        elif self.verb == "resume":
            if not lifecycle.resume(campaign):
                raise api.ApiError(409, f"Not resumed: the campaign is {campaign.status}, not paused.")
        else:
            if campaign.status in (Campaign.Status.COMPLETED, Campaign.Status.CANCELLED):
                raise api.ApiError(409, f"Not cancelled: the campaign is already {campaign.status}.")
            extra["cancelled"] = lifecycle.cancel(campaign)
        self.audit_ids, self.audit_summary = [campaign.pk], f"{self.verb}: now {campaign.status}"
        return Response(_state(campaign, **extra))


class AddedContactsSerializer(UpsertResultSerializer):
    planned = serializers.IntegerField(help_text="New calls planned for the contacts sent (0 before launch).")
    already_planned = serializers.IntegerField(
        help_text="Contacts sent that had a call in this campaign already; it is not planned twice."
    )


# Contacts may join a campaign until it is over; before launch they only join its list (launch plans them).
OPEN = (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED, Campaign.Status.RUNNING, Campaign.Status.PAUSED)


class CampaignContactsView(api.ApiView):
    """POST /campaigns/<id>/contacts: contacts upserted into the campaign's list and planned into it at once."""

    http_method_names = ["post"]
    permissions = {
        "POST": (
            ["campaigns.add_contact", "campaigns.change_contact", "campaigns.change_campaign"],
            "to add contacts to campaigns",
        )
    }

    @extend_schema(
        request=UpsertRequestSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: AddedContactsSerializer, 409: api.ErrorSerializer, **WRITE_ERRORS},
    )
    @api.idempotent
    def post(self, request: Request, campaign_id: int) -> Response:
        """Upsert up to 10,000 contacts into the campaign's contact list (the same rules and answer as
        POST /contact-lists/<id>/contacts) and, when the campaign is launched, plan a call for each one it has
        not planned yet: their audio renders and they are dialled within the campaign's windows like the rest."""
        campaign = api.campaign_or_404(campaign_id)
        with transaction.atomic():
            # Locked: the campaign cannot finish (or be cancelled) between the check and the new calls.
            campaign = Campaign.objects.select_for_update().select_related("contact_list").get(pk=campaign.pk)
            if campaign.status not in OPEN:
                raise api.ApiError(
                    409, f"Contacts not added: the campaign is {campaign.status}; start a new one from it."
                )
            result = upsert_body(campaign.contact_list, request.data)
            ids = sorted({c["id"] for c in result.contacts})
            planned = already = 0
            if campaign.status != Campaign.Status.DRAFT and ids:
                already = Call.objects.filter(campaign=campaign, contact_id__in=ids).count()
                before = Call.objects.filter(campaign=campaign).count()
                plan_calls(campaign, contact_ids=ids)
                planned = Call.objects.filter(campaign=campaign).count() - before
        self.audit_ids, summary = audit_of(campaign.contact_list, result)
        self.audit_summary = f"campaign {campaign.pk}: {planned} planned; {summary}"
        return Response({**upsert_answer(result), "planned": planned, "already_planned": already})
