"""Voices a campaign can speak with, and the speaker consent a cloned voice needs."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Voice(models.Model):
    class Engine(models.TextChoices):
        EMBEDDED = "embedded", "Embedded (eSpeak NG)"
        GPT_SOVITS = "gpt-sovits", "GPT-SoVITS (cloned voice)"

    class Source(models.TextChoices):
        TRAINED = "trained", "Trained weights (upload the .ckpt and .pth files)"
        INSTANT = "instant", "Instant voice (base models + the reference clip, no training)"

    class BaseVersion(models.TextChoices):
        V2 = "v2", "v2"
        V2_PRO = "v2Pro", "v2Pro"
        V2_PRO_PLUS = "v2ProPlus", "v2ProPlus (closest to the speaker)"

    class Language(models.TextChoices):
        MANDARIN = "zh", "Mandarin Chinese"
        ENGLISH = "en", "English"

    name = models.CharField(max_length=100, unique=True)
    language = models.CharField(max_length=8, choices=Language.choices, default=Language.MANDARIN)
    engine = models.CharField(max_length=20, choices=Engine.choices, default=Engine.EMBEDDED)
    parameters = models.JSONField(
        default=dict, blank=True, help_text="Engine parameters, e.g. {\"rate\": 170, \"pitch\": 50} for eSpeak."
    )
    source = models.CharField(
        max_length=10, choices=Source.choices, default=Source.TRAINED,
        help_text="GPT-SoVITS only: the voice's own trained weights, or an instant voice made from the reference "
        "clip alone with the base models (HERALD_GPTSOVITS_BASE_DIR).",
    )
    base_version = models.CharField(
        max_length=12, choices=BaseVersion.choices, default=BaseVersion.V2_PRO_PLUS,
        help_text="Instant voices: which base models speak. Trained voices: ignored (the files say).",
    )
    reference_audio = models.FileField(upload_to="voices/reference/", blank=True)
    reference_text = models.TextField(blank=True, help_text="Exact transcript of the reference clip.")
    gpt_weights = models.FileField(upload_to="voices/weights/", blank=True, help_text="GPT-SoVITS .ckpt")
    sovits_weights = models.FileField(upload_to="voices/weights/", blank=True, help_text="GPT-SoVITS .pth")
    weights_digest = models.CharField(
        max_length=64, blank=True, editable=False, help_text="sha256 over the weight files; part of every render key."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_instant(self) -> bool:
        return self.engine == self.Engine.GPT_SOVITS and self.source == self.Source.INSTANT

    @property
    def needs_consent(self) -> bool:
        """Only a cloned voice is somebody's voice; the embedded synthetic voice needs no consent."""
        return self.engine != self.Engine.EMBEDDED

    def active_consent(self) -> SpeakerConsent | None:
        return self.consents.filter(revoked_at__isnull=True).order_by("-signed_on").first()

    def is_usable(self) -> bool:
        return not self.needs_consent or self.active_consent() is not None


class SpeakerConsent(models.Model):
    voice = models.ForeignKey(Voice, on_delete=models.PROTECT, related_name="consents")
    speaker_name = models.CharField(max_length=100)
    signed_on = models.DateField()
    document = models.FileField(upload_to="voices/consent/", help_text="Signed consent form (PDF or image).")
    scope = models.TextField(blank=True, help_text="What the speaker agreed to, in their words.")
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    recorded_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "active"
        return f"{self.speaker_name} for {self.voice} ({state})"
