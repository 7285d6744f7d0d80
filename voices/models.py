"""Voices a campaign can speak with, and the speaker consent a cloned voice needs."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy


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
        verbose_name = gettext_lazy("voice")
        verbose_name_plural = gettext_lazy("voices")
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

    class Meta:
        verbose_name = gettext_lazy("speaker consent")
        verbose_name_plural = gettext_lazy("speaker consents")

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "active"
        return f"{self.speaker_name} for {self.voice} ({state})"


# --- the voice studio: one minute of an agent's speech becomes a fine-tuned voice ---------------------------


class VoiceDraft(models.Model):
    """A voice being made in the studio: its recordings, their slices and transcripts, the speaker's spoken
    consent and the training job. The Voice it becomes exists only once training has exported every file."""

    class Stage(models.TextChoices):
        CLIPS = "clips", "Upload or record speech"
        TRANSCRIPTS = "transcripts", "Check the transcripts"
        CONSENT = "consent", "Record the speaker's consent"
        APPROVAL = "approval", "Waiting for a second staff member's approval"
        READY = "ready", "Approved: ready to train"
        TRAINING = "training", "Training"
        DONE = "done", "Trained"

    name = models.CharField(max_length=100, unique=True, help_text="Name of the voice this draft becomes.")
    language = models.CharField(max_length=8, choices=Voice.Language.choices, default=Voice.Language.MANDARIN)
    speaker_name = models.CharField(max_length=100, help_text="The person whose voice this is.")
    company = models.CharField(max_length=100, help_text="Who will use the voice (read out in the consent).")
    purpose = models.CharField(
        max_length=200, default="delivery and order notification calls",
        help_text="What the voice will say to customers (read out in the consent).",
    )
    stage = models.CharField(max_length=12, choices=Stage.choices, default=Stage.CLIPS)
    reference_clip = models.ForeignKey(
        "TrainingClip", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The 3-10 s clip the voice speaks its prompts with.",
    )
    voice = models.OneToOneField(Voice, null=True, blank=True, on_delete=models.SET_NULL, related_name="draft")
    instant_voice = models.ForeignKey(
        Voice, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The instant (zero-shot) voice of the same reference clip, for an A/B against the trained one.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = gettext_lazy("voice draft")
        verbose_name_plural = gettext_lazy("voice drafts")
        ordering = ["-created_at"]
        permissions = [("approve_consent", "Can approve a speaker's spoken consent")]

    def __str__(self) -> str:
        return self.name

    def usable_clips(self) -> models.QuerySet[TrainingClip]:
        return self.clips.filter(problem="")


class StudioRecording(models.Model):
    """One uploaded or browser-recorded file of the speaker, as received."""

    draft = models.ForeignKey(VoiceDraft, on_delete=models.CASCADE, related_name="recordings")
    audio = models.FileField(upload_to="voices/studio/recordings/")
    original_name = models.CharField(max_length=200, blank=True)
    sha256 = models.CharField(max_length=64)
    duration_s = models.FloatField(default=0.0)
    problem = models.TextField(blank=True, help_text="Why this file gave no clips, if it gave none.")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    uploaded_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["uploaded_at", "pk"]


class TrainingClip(models.Model):
    """One slice of a recording: normalised 32 kHz audio, its transcript, or the reason it is not used."""

    class TranscriptSource(models.TextChoices):
        NONE = "", "none yet"
        ASR = "asr", "speech recognition (check it)"
        TYPED = "typed", "typed or corrected by staff"

    draft = models.ForeignKey(VoiceDraft, on_delete=models.CASCADE, related_name="clips")
    recording = models.ForeignKey(StudioRecording, on_delete=models.CASCADE, related_name="clips")
    position = models.PositiveIntegerField(help_text="Order of the clip in the draft.")
    audio = models.FileField(upload_to="voices/studio/clips/")
    sha256 = models.CharField(max_length=64)
    start_s = models.FloatField()
    end_s = models.FloatField()
    duration_s = models.FloatField()
    snr_db = models.FloatField(null=True, blank=True)
    problem = models.TextField(blank=True, help_text="Empty when the clip is usable; otherwise why not.")
    transcript = models.TextField(blank=True)
    transcript_source = models.CharField(max_length=8, choices=TranscriptSource.choices, blank=True, default="")

    class Meta:
        ordering = ["draft", "position"]
        constraints = [models.UniqueConstraint(fields=["draft", "position"], name="clip_position_unique")]


class SpokenConsent(models.Model):
    """The speaker reading a fixed statement and a random challenge, checked against the training audio and
    approved by a second staff member. No training starts without an approved one that matches the clips."""

    draft = models.ForeignKey(VoiceDraft, on_delete=models.CASCADE, related_name="spoken_consents")
    statement = models.TextField()
    challenge = models.CharField(max_length=100)
    audio = models.FileField(upload_to="voices/studio/consent/", blank=True)
    audio_sha256 = models.CharField(max_length=64, blank=True)
    training_digest = models.CharField(
        max_length=64, blank=True, help_text="Digest of the clips and transcripts the consent was checked against."
    )
    heard_text = models.TextField(blank=True, help_text="What speech recognition heard, when a model is present.")
    words_ok = models.BooleanField(null=True, help_text="None: not checked (no ASR model): the approver listens.")
    words_detail = models.TextField(blank=True)
    similarity = models.FloatField(null=True, blank=True, help_text="Cosine similarity of speaker embeddings.")
    speaker_ok = models.BooleanField(null=True)
    speaker_detail = models.TextField(blank=True)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    recorded_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    approved_at = models.DateTimeField(null=True, blank=True)
    rejected_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]

    @property
    def checks_pass(self) -> bool:
        return bool(self.audio) and self.speaker_ok is True and self.words_ok is not False


class TrainingJob(models.Model):
    """Fine-tuning one draft on a training worker: stage, epoch and losses as it goes; resumable."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Stage(models.TextChoices):
        WAITING = "waiting", "waiting for a training worker"
        PREPARE = "prepare", "preparing the dataset (phones, BERT, HuBERT, semantic codes)"
        SOVITS = "sovits", "training SoVITS"
        GPT = "gpt", "training GPT"
        EXPORT = "export", "exporting the voice"
        DONE = "done", "done"

    draft = models.ForeignKey(VoiceDraft, on_delete=models.CASCADE, related_name="jobs")
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    stage = models.CharField(max_length=10, choices=Stage.choices, default=Stage.WAITING)
    sovits_epochs = models.PositiveIntegerField(default=8)
    gpt_epochs = models.PositiveIntegerField(default=15, help_text="0 keeps the base GPT (zero-shot prosody).")
    batch_size = models.PositiveIntegerField(default=4)
    time_limit_s = models.PositiveIntegerField(default=3 * 3600)
    epoch = models.PositiveIntegerField(default=0)
    step = models.PositiveIntegerField(default=0)
    progress = models.FloatField(default=0.0, help_text="0..1 over every stage")
    losses = models.JSONField(default=dict, blank=True, help_text="Last losses of the running stage.")
    history = models.JSONField(default=list, blank=True, help_text="Per-epoch losses of every stage.")
    message = models.TextField(blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0, help_text="Workers that started this job (resumes count).")
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    training_digest = models.CharField(max_length=64)
    artefacts = models.JSONField(default=dict, blank=True, help_text="sha256 of each exported file.")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["draft"], condition=models.Q(state__in=["queued", "running"]), name="one_active_job_per_draft"
            )
        ]

    def __str__(self) -> str:
        return f"training {self.draft} ({self.get_state_display()})"

    @property
    def is_active(self) -> bool:
        return self.state in (self.State.QUEUED, self.State.RUNNING)
