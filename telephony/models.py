"""Carrier accounts and the raw events they send us."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class TelephonyAccount(models.Model):
    class Kind(models.TextChoices):
        TWILIO = "twilio", "Twilio"
        SIP = "sip", "SIP trunk"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.TWILIO)
    account_sid = models.CharField(max_length=64, blank=True, help_text="Twilio Account SID (or SIP username)")
    auth_token_env = models.CharField(
        max_length=100,
        blank=True,
        help_text="Name of the environment variable that holds the auth token (preferred in production).",
    )
    auth_token_encrypted = models.TextField(
        blank=True, editable=False, help_text="Fernet-encrypted auth token, when not taken from the environment."
    )
    api_base_url = models.URLField(
        blank=True, help_text="Override of the REST API base URL (a local Twilio-compatible sandbox); blank = Twilio."
    )
    caller_ids = models.JSONField(default=list, blank=True, help_text="E.164 numbers this account may present.")
    calls_per_second = models.FloatField(default=1.0, help_text="Account-wide dialling rate limit.")
    max_concurrent_calls = models.PositiveIntegerField(default=10)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class ProviderEvent(models.Model):
    """Every webhook as it arrived, verified or not: facts first, state changes after."""

    class Kind(models.TextChoices):
        STATUS = "status"
        GATHER = "gather"

    account = models.ForeignKey(TelephonyAccount, null=True, on_delete=models.SET_NULL, related_name="events")
    attempt = models.ForeignKey(
        "campaigns.CallAttempt", null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    provider_call_id = models.CharField(max_length=64, blank=True, db_index=True)
    payload = models.JSONField(default=dict)
    signature_valid = models.BooleanField(default=False)
    applied = models.BooleanField(default=False, help_text="Did this event change the attempt?")
    note = models.CharField(max_length=255, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["received_at", "pk"]
