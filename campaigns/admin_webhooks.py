"""Result webhooks in the admin: endpoints (the signing secret is shown once, when one is created) and the
delivery log with status codes, latency and tries, filterable, with *redeliver*."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from campaigns import webhooks
from campaigns.models import WEBHOOK_EVENT_TYPES, WebhookDelivery, WebhookEndpoint


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https", help_text=WebhookEndpoint._meta.get_field("url").help_text)
    events = forms.MultipleChoiceField(
        choices=[(t, t) for t in WEBHOOK_EVENT_TYPES], widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["name", "url", "campaign", "events", "active"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["name", "url", "campaign", "events", "active", "secret_prefix", "created_at"]
    list_filter = ["active"]
    list_select_related = ["campaign"]
    search_fields = ["name", "url", "secret_prefix"]
    ordering = ["-created_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> list[str]:
        return [] if obj is None else ["secret_prefix", "created_at"]

    def get_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> list[str]:
        fields = ["name", "url", "campaign", "events", "active"]
        return fields if obj is None else [*fields, "secret_prefix", "created_at"]

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        # A new endpoint gets its secret from the action, and `obj` takes the row's values so the admin's log
        # entry and redirect point at it. The secret is in this one message and nowhere else.
        endpoint, secret = webhooks.create_endpoint(
            name=obj.name, url=obj.url, events=obj.events, campaign=obj.campaign, active=obj.active
        )
        for name in ("pk", "secret_encrypted", "secret_prefix", "created_at"):
            setattr(obj, name, getattr(endpoint, name))
        self.message_user(
            request,
            format_html(
                "Signing secret for {}: <code>{}</code> — copy it into the receiver now, it cannot be shown again.",
                endpoint.name,
                secret,
            ),
            messages.SUCCESS,
        )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "pk", "event_type", "event_id", "endpoint", "state", "attempts", "last_status_code", "last_latency_ms",
        "next_attempt_at", "delivered_at",
    ]  # fmt: skip
    list_filter = ["state", "event__type", "endpoint"]
    list_select_related = ["event", "endpoint"]
    search_fields = ["event__event_id"]
    ordering = ["-created_at"]
    actions = ["redeliver"]
    fields = [
        "event_type", "event_id", "endpoint", "state", "attempts", "next_attempt_at", "last_status_code",
        "last_latency_ms", "last_error", "delivered_at", "created_at", "tries_table",
    ]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="event", ordering="event__type")
    def event_type(self, delivery: WebhookDelivery) -> str:
        return delivery.event.type

    @admin.display(description="event id")
    def event_id(self, delivery: WebhookDelivery) -> str:
        return str(delivery.event.event_id)

    @admin.display(description="tries")
    def tries_table(self, delivery: WebhookDelivery) -> SafeString:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (entry.get("at", ""), entry.get("status") or "-", entry.get("latency_ms") or "-", entry.get("error", ""))
                for entry in delivery.tries
            ),
        )
        return format_html(
            "<table><tr><th>at</th><th>status</th><th>ms</th><th>error</th></tr>{}</table>", rows
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WebhookDelivery | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WebhookDelivery | None = None) -> bool:
        return False

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("campaigns.change_webhookdelivery")

    @admin.action(description="Redeliver selected deliveries (a new try now)", permissions=["redeliver"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = webhooks.redeliver(list(queryset.values_list("pk", flat=True)))
        self.message_user(
            request, f"{count} deliver{'ies' if count != 1 else 'y'} will be tried again at the next sweep.",
            messages.SUCCESS,
        )
