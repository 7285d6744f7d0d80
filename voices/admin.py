"""Voice profiles and the speaker consent a cloned voice needs before any campaign may use it."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from voices.actions import revoke_consent
from voices.models import SpeakerConsent, Voice


class SpeakerConsentInline(admin.StackedInline):
    model = SpeakerConsent
    extra = 0
    can_delete = False  # consent is revoked (a dated record), never deleted
    fields = ["speaker_name", "signed_on", "document", "scope", "recorded_by", "recorded_at", "revoked_at"]
    readonly_fields = ["recorded_by", "recorded_at", "revoked_at"]


@admin.register(Voice)
class VoiceAdmin(admin.ModelAdmin):
    inlines = [SpeakerConsentInline]
    list_display = ["name", "engine", "language", "consent_status"]
    list_filter = ["engine", "language"]
    search_fields = ["name"]
    readonly_fields = ["weights_digest", "created_at"]

    @admin.display(description="consent")
    def consent_status(self, obj: Voice) -> str:
        if not obj.needs_consent:
            return "not needed (synthetic)"
        consent = obj.active_consent()
        return (
            f"signed by {consent.speaker_name} on {consent.signed_on}"
            if consent
            else "MISSING: cannot be used"
        )

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        for consent in formset.save(commit=False):
            if consent.pk is None:
                consent.recorded_by = request.user
            consent.save()
        formset.save_m2m()


@admin.register(SpeakerConsent)
class SpeakerConsentAdmin(admin.ModelAdmin):
    list_display = ["speaker_name", "voice", "signed_on", "recorded_by", "revoked_at"]
    list_filter = ["voice", "revoked_at"]
    search_fields = ["speaker_name", "voice__name"]
    readonly_fields = ["recorded_by", "recorded_at", "revoked_at"]
    actions = ["revoke"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: SpeakerConsent, form: Any, change: bool) -> None:
        if not change:
            obj.recorded_by = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke consent", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[SpeakerConsent]) -> None:
        revoked, paused = 0, []
        for consent in queryset.filter(revoked_at__isnull=True):
            paused += revoke_consent(consent)
            revoked += 1
        message = f"Revoked {revoked} consent record(s). Voices left without consent cannot be used."
        if paused:
            message += f" Paused {len(paused)} campaign(s) that spoke with them: ids {', '.join(map(str, paused))}."
        self.message_user(request, message, messages.WARNING if paused else messages.SUCCESS)
