"""The audio cache: one row per distinct render key, shared by every call that says the same thing."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy


class RenderedAudio(models.Model):
    """Content-addressed: the key hashes engine + version, voice + weights, normalised text, parameters
    and output format, so the same key always means the same audio bytes."""

    class State(models.TextChoices):
        PENDING = "pending"
        RENDERING = "rendering"
        READY = "ready"
        FAILED = "failed"

    render_key = models.CharField(max_length=64)  # unique through Meta: no unused LIKE index on PostgreSQL
    engine = models.CharField(max_length=20)
    engine_version = models.CharField(max_length=64, blank=True)
    voice = models.ForeignKey("voices.Voice", null=True, on_delete=models.SET_NULL, related_name="renders")
    text = models.TextField()
    parameters = models.JSONField(default=dict)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    telephony_file = models.CharField(max_length=255, blank=True, help_text="8 kHz mono mu-law WAV, under MEDIA_ROOT")
    original_file = models.CharField(max_length=255, blank=True, help_text="engine-rate WAV, under MEDIA_ROOT")
    sample_rate = models.PositiveIntegerField(null=True, blank=True)
    original_sample_rate = models.PositiveIntegerField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text="seconds")
    size_bytes = models.PositiveIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True, help_text="of the telephony file")
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(
        max_length=64, blank=True, help_text="Task id holding the claim; its redelivery may take the claim over."
    )
    created_at = models.DateTimeField(default=timezone.now)
    rendered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = gettext_lazy("rendered audio")
        verbose_name_plural = gettext_lazy("rendered audio")
        constraints = [models.UniqueConstraint(fields=["render_key"], name="renderedaudio_unique_key")]
        indexes = [models.Index(fields=["state"], name="renderedaudio_state")]

    def __str__(self) -> str:
        return f"{self.render_key[:12]} ({self.state})"
