"""The audio cache: one row per distinct render key, shared by every call that says the same thing."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy


class RenderedAudio(models.Model):
    """Content-addressed: the key hashes engine + version, voice + weights, normalised text, parameters
    and output format, so the same key always means the same audio bytes."""

    class State(models.TextChoices):
        PENDING = "pending", gettext_lazy("Pending")
        RENDERING = "rendering", gettext_lazy("Rendering")
        READY = "ready", gettext_lazy("Ready")
        FAILED = "failed", gettext_lazy("Failed")

    # unique through Meta: no unused LIKE index on PostgreSQL
    render_key = models.CharField(gettext_lazy("render key"), max_length=64)
    engine = models.CharField(gettext_lazy("engine"), max_length=20)
    engine_version = models.CharField(gettext_lazy("engine version"), max_length=64, blank=True)
    voice = models.ForeignKey(
        "voices.Voice",
        null=True,
        on_delete=models.SET_NULL,
        related_name="renders",
        verbose_name=gettext_lazy("voice"),
    )
    text = models.TextField(gettext_lazy("text"))
    parameters = models.JSONField(gettext_lazy("parameters"), default=dict)
    state = models.CharField(
        gettext_lazy("state"), max_length=10, choices=State.choices, default=State.PENDING
    )
    telephony_file = models.CharField(
        gettext_lazy("telephony file"),
        max_length=255,
        blank=True,
        help_text=gettext_lazy("8 kHz mono mu-law WAV, under MEDIA_ROOT"),
    )
    original_file = models.CharField(
        gettext_lazy("original file"),
        max_length=255,
        blank=True,
        help_text=gettext_lazy("engine-rate WAV, under MEDIA_ROOT"),
    )
    sample_rate = models.PositiveIntegerField(gettext_lazy("sample rate"), null=True, blank=True)
    original_sample_rate = models.PositiveIntegerField(
        gettext_lazy("original sample rate"), null=True, blank=True
    )
    duration = models.FloatField(
        gettext_lazy("duration"), null=True, blank=True, help_text=gettext_lazy("seconds")
    )
    size_bytes = models.PositiveIntegerField(gettext_lazy("size bytes"), null=True, blank=True)
    sha256 = models.CharField(
        gettext_lazy("sha256"), max_length=64, blank=True, help_text=gettext_lazy("of the telephony file")
    )
    error = models.TextField(gettext_lazy("error"), blank=True)
    attempts = models.PositiveSmallIntegerField(gettext_lazy("attempts"), default=0)
    claimed_at = models.DateTimeField(gettext_lazy("claimed at"), null=True, blank=True)
    claimed_by = models.CharField(
        gettext_lazy("claimed by"),
        max_length=64,
        blank=True,
        help_text=gettext_lazy("Task id holding the claim; its redelivery may take the claim over."),
    )
    created_at = models.DateTimeField(gettext_lazy("created at"), default=timezone.now)
    rendered_at = models.DateTimeField(gettext_lazy("rendered at"), null=True, blank=True)

    class Meta:
        verbose_name = gettext_lazy("rendered audio")
        verbose_name_plural = gettext_lazy("rendered audio")
        constraints = [models.UniqueConstraint(fields=["render_key"], name="renderedaudio_unique_key")]
        indexes = [models.Index(fields=["state"], name="renderedaudio_state")]

    def __str__(self) -> str:
        return f"{self.render_key[:12]} ({self.state})"
