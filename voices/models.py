"""Voices a campaign can speak with, and the speaker consent a cloned voice needs."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy


class Voice(models.Model):
    class Engine(models.TextChoices):
        EMBEDDED = "embedded", gettext_lazy("Embedded (eSpeak NG)")
        GPT_SOVITS = "gpt-sovits", gettext_lazy("GPT-SoVITS (cloned voice)")
        RECORDED = "recorded", gettext_lazy("Recorded (uploaded recordings)")

    class Source(models.TextChoices):
        TRAINED = "trained", gettext_lazy("Trained weights (upload the .ckpt and .pth files)")
        INSTANT = "instant", gettext_lazy("Instant voice (base models + the reference clip, no training)")

    class BaseVersion(models.TextChoices):
        V2 = "v2", "v2"
        V2_PRO = "v2Pro", "v2Pro"
        V2_PRO_PLUS = "v2ProPlus", gettext_lazy("v2ProPlus (closest to the speaker)")

    class Language(models.TextChoices):
        MANDARIN = "zh", gettext_lazy("Mandarin Chinese")
        ENGLISH = "en", gettext_lazy("English")

    name = models.CharField(verbose_name=gettext_lazy("name"), max_length=100, unique=True)
    language = models.CharField(verbose_name=gettext_lazy("language"), max_length=8, choices=Language.choices, default=Language.MANDARIN)
    engine = models.CharField(verbose_name=gettext_lazy("engine"), max_length=20, choices=Engine.choices, default=Engine.EMBEDDED)
    parameters = models.JSONField(
        verbose_name=gettext_lazy("parameters"),
        default=dict, blank=True, help_text=gettext_lazy("Engine parameters, e.g. {\"rate\": 170, \"pitch\": 50} for eSpeak.")
    )
    source = models.CharField(
        verbose_name=gettext_lazy("source"),
        max_length=10, choices=Source.choices, default=Source.TRAINED,
        help_text=gettext_lazy(
            "GPT-SoVITS only: the voice's own trained weights, or an instant voice made from the reference "
            "clip alone with the base models (HERALD_GPTSOVITS_BASE_DIR)."
        ),
    )
    base_version = models.CharField(
        verbose_name=gettext_lazy("base version"),
        max_length=12, choices=BaseVersion.choices, default=BaseVersion.V2_PRO_PLUS,
        help_text=gettext_lazy("Instant voices: which base models speak. Trained voices: ignored (the files say)."),
    )
    reference_audio = models.FileField(verbose_name=gettext_lazy("reference audio"), upload_to="voices/reference/", blank=True)
    reference_text = models.TextField(verbose_name=gettext_lazy("reference text"), blank=True, help_text=gettext_lazy("Exact transcript of the reference clip."))
    gpt_weights = models.FileField(verbose_name=gettext_lazy("gpt weights"), upload_to="voices/weights/", blank=True, help_text=gettext_lazy("GPT-SoVITS .ckpt"))
    sovits_weights = models.FileField(verbose_name=gettext_lazy("sovits weights"), upload_to="voices/weights/", blank=True, help_text=gettext_lazy("GPT-SoVITS .pth"))
    weights_digest = models.CharField(
        verbose_name=gettext_lazy("weights digest"),
        max_length=64, blank=True, editable=False, help_text=gettext_lazy("sha256 over the weight files; part of every render key.")
    )
    fill_voice = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        verbose_name=gettext_lazy("fill voice"),
        help_text=gettext_lazy(
            "Recorded voices only: the synthesis voice that speaks what no recording says (names, order numbers, "
            "dates), brought to the recordings' loudness. Leave it empty when every message is recorded whole."
        ),
    )
    created_at = models.DateTimeField(verbose_name=gettext_lazy("created at"), default=timezone.now, editable=False)

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
    def is_recorded(self) -> bool:
        return self.engine == self.Engine.RECORDED

    @property
    def needs_consent(self) -> bool:
        """Only a cloned voice is somebody's voice; the embedded synthetic voice needs no consent. A recorded
        voice speaks its variables with its fill voice: that voice's consent is what it needs."""
        if self.is_recorded:
            return self.fill_voice is not None and self.fill_voice.needs_consent
        return self.engine != self.Engine.EMBEDDED

    def active_consent(self) -> SpeakerConsent | None:
        if self.is_recorded:
            return self.fill_voice.active_consent() if self.fill_voice is not None else None
        return self.consents.filter(revoked_at__isnull=True).order_by("-signed_on").first()

    def is_usable(self) -> bool:
        return not self.needs_consent or self.active_consent() is not None


class VoiceRecording(models.Model):
    """One exact text of a recorded voice, in the speaker's own recording: a whole message, or a fixed part of a
    script whose variables the voice's fill voice speaks."""

    voice = models.ForeignKey(Voice, on_delete=models.CASCADE, related_name="recordings", verbose_name=gettext_lazy("voice"))
    text = models.CharField(
        verbose_name=gettext_lazy("text"), max_length=500,
        help_text=gettext_lazy(
            "Exactly what the recording says, as the script writes it (e.g. “，您的订单” or “将于明天送达，确认请按1。”)."
        ),
    )
    audio = models.FileField(
        verbose_name=gettext_lazy("recording"), upload_to="voices/recordings/",
        help_text=gettext_lazy("WAV or FLAC, at least 8 kHz, up to 2 minutes."),
    )
    duration = models.FloatField(verbose_name=gettext_lazy("seconds"), default=0.0, editable=False)
    sha256 = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(verbose_name=gettext_lazy("created at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = gettext_lazy("recording")
        verbose_name_plural = gettext_lazy("recordings")
        ordering = ["voice", "text"]
        constraints = [models.UniqueConstraint(fields=["voice", "text"], name="one_recording_per_text")]

    def __str__(self) -> str:
        return self.text


class SpeakerConsent(models.Model):
    voice = models.ForeignKey(Voice, verbose_name=gettext_lazy("voice"), on_delete=models.PROTECT, related_name="consents")
    speaker_name = models.CharField(verbose_name=gettext_lazy("speaker name"), max_length=100)
    signed_on = models.DateField(verbose_name=gettext_lazy("signed on"))
    document = models.FileField(verbose_name=gettext_lazy("document"), upload_to="voices/consent/", help_text=gettext_lazy("Signed consent form (PDF or image)."))
    scope = models.TextField(verbose_name=gettext_lazy("scope"), blank=True, help_text=gettext_lazy("What the speaker agreed to, in their words."))
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=gettext_lazy("recorded by"), null=True, blank=True, on_delete=models.SET_NULL)
    recorded_at = models.DateTimeField(verbose_name=gettext_lazy("recorded at"), default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(verbose_name=gettext_lazy("revoked at"), null=True, blank=True)

    class Meta:
        verbose_name = gettext_lazy("speaker consent")
        verbose_name_plural = gettext_lazy("speaker consents")

    def __str__(self) -> str:
        state = gettext("revoked") if self.revoked_at else gettext("active")
        return gettext("%(speaker)s for %(voice)s (%(state)s)") % {
            "speaker": self.speaker_name,
            "voice": self.voice,
            "state": state,
        }


# --- the voice studio: one minute of an agent's speech becomes a fine-tuned voice ---------------------------


class VoiceDraft(models.Model):
    """A voice being made in the studio: its recordings, their slices and transcripts, the speaker's spoken
    consent and the training job. The Voice it becomes exists only once training has exported every file."""

    class Stage(models.TextChoices):
        CLIPS = "clips", gettext_lazy("Upload or record speech")
        TRANSCRIPTS = "transcripts", gettext_lazy("Check the transcripts")
        CONSENT = "consent", gettext_lazy("Record the speaker's consent")
        APPROVAL = "approval", gettext_lazy("Waiting for a second staff member's approval")
        READY = "ready", gettext_lazy("Approved: ready to train")
        TRAINING = "training", gettext_lazy("Training")
        DONE = "done", gettext_lazy("Trained")

    name = models.CharField(verbose_name=gettext_lazy("name"), max_length=100, unique=True, help_text=gettext_lazy("Name of the voice this draft becomes."))
    language = models.CharField(verbose_name=gettext_lazy("language"), max_length=8, choices=Voice.Language.choices, default=Voice.Language.MANDARIN)
    speaker_name = models.CharField(verbose_name=gettext_lazy("speaker name"), max_length=100, help_text=gettext_lazy("The person whose voice this is."))
    company = models.CharField(verbose_name=gettext_lazy("company"), max_length=100, help_text=gettext_lazy("Who will use the voice (read out in the consent)."))
    purpose = models.CharField(
        verbose_name=gettext_lazy("purpose"),
        max_length=200, default="delivery and order notification calls",
        help_text=gettext_lazy("What the voice will say to customers (read out in the consent)."),
    )
    stage = models.CharField(verbose_name=gettext_lazy("stage"), max_length=12, choices=Stage.choices, default=Stage.CLIPS)
    reference_clip = models.ForeignKey(
        "TrainingClip", verbose_name=gettext_lazy("reference clip"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text=gettext_lazy("The 3-10 s clip the voice speaks its prompts with."),
    )
    voice = models.OneToOneField(Voice, verbose_name=gettext_lazy("voice"), null=True, blank=True, on_delete=models.SET_NULL, related_name="draft")
    instant_voice = models.ForeignKey(
        Voice, verbose_name=gettext_lazy("instant voice"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text=gettext_lazy("The instant (zero-shot) voice of the same reference clip, for an A/B against the trained one."),
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=gettext_lazy("created by"), null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(verbose_name=gettext_lazy("created at"), default=timezone.now, editable=False)

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

    draft = models.ForeignKey(VoiceDraft, verbose_name=gettext_lazy("draft"), on_delete=models.CASCADE, related_name="recordings")
    audio = models.FileField(verbose_name=gettext_lazy("audio"), upload_to="voices/studio/recordings/")
    original_name = models.CharField(verbose_name=gettext_lazy("original name"), max_length=200, blank=True)
    sha256 = models.CharField(verbose_name=gettext_lazy("sha256"), max_length=64)
    duration_s = models.FloatField(verbose_name=gettext_lazy("duration s"), default=0.0)
    problem = models.TextField(verbose_name=gettext_lazy("problem"), blank=True, help_text=gettext_lazy("Why this file gave no clips, if it gave none."))
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=gettext_lazy("uploaded by"), null=True, on_delete=models.SET_NULL, related_name="+")
    uploaded_at = models.DateTimeField(verbose_name=gettext_lazy("uploaded at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = gettext_lazy("studio recording")
        verbose_name_plural = gettext_lazy("studio recordings")
        ordering = ["uploaded_at", "pk"]


class TrainingClip(models.Model):
    """One slice of a recording: normalised 32 kHz audio, its transcript, or the reason it is not used."""

    class TranscriptSource(models.TextChoices):
        NONE = "", gettext_lazy("none yet")
        ASR = "asr", gettext_lazy("speech recognition (check it)")
        TYPED = "typed", gettext_lazy("typed or corrected by staff")

    draft = models.ForeignKey(VoiceDraft, verbose_name=gettext_lazy("draft"), on_delete=models.CASCADE, related_name="clips")
    recording = models.ForeignKey(StudioRecording, verbose_name=gettext_lazy("recording"), on_delete=models.CASCADE, related_name="clips")
    position = models.PositiveIntegerField(verbose_name=gettext_lazy("position"), help_text=gettext_lazy("Order of the clip in the draft."))
    audio = models.FileField(verbose_name=gettext_lazy("audio"), upload_to="voices/studio/clips/")
    sha256 = models.CharField(verbose_name=gettext_lazy("sha256"), max_length=64)
    start_s = models.FloatField(verbose_name=gettext_lazy("start s"))
    end_s = models.FloatField(verbose_name=gettext_lazy("end s"))
    duration_s = models.FloatField(verbose_name=gettext_lazy("duration s"))
    snr_db = models.FloatField(verbose_name=gettext_lazy("snr db"), null=True, blank=True)
    problem = models.TextField(verbose_name=gettext_lazy("problem"), blank=True, help_text=gettext_lazy("Empty when the clip is usable; otherwise why not."))
    transcript = models.TextField(verbose_name=gettext_lazy("transcript"), blank=True)
    transcript_source = models.CharField(verbose_name=gettext_lazy("transcript source"), max_length=8, choices=TranscriptSource.choices, blank=True, default="")

    class Meta:
        verbose_name = gettext_lazy("training clip")
        verbose_name_plural = gettext_lazy("training clips")
        ordering = ["draft", "position"]
        constraints = [models.UniqueConstraint(fields=["draft", "position"], name="clip_position_unique")]


class SpokenConsent(models.Model):
    """The speaker reading a fixed statement and a random challenge, checked against the training audio and
    approved by a second staff member. No training starts without an approved one that matches the clips."""

    draft = models.ForeignKey(VoiceDraft, verbose_name=gettext_lazy("draft"), on_delete=models.CASCADE, related_name="spoken_consents")
    statement = models.TextField(verbose_name=gettext_lazy("statement"))
    challenge = models.CharField(verbose_name=gettext_lazy("challenge"), max_length=100)
    audio = models.FileField(verbose_name=gettext_lazy("audio"), upload_to="voices/studio/consent/", blank=True)
    audio_sha256 = models.CharField(verbose_name=gettext_lazy("audio sha256"), max_length=64, blank=True)
    training_digest = models.CharField(
        verbose_name=gettext_lazy("training digest"),
        max_length=64, blank=True, help_text=gettext_lazy("Digest of the clips and transcripts the consent was checked against.")
    )
    heard_text = models.TextField(verbose_name=gettext_lazy("heard text"), blank=True, help_text=gettext_lazy("What speech recognition heard, when a model is present."))
    words_ok = models.BooleanField(verbose_name=gettext_lazy("words ok"), null=True, help_text=gettext_lazy("None: not checked (no ASR model): the approver listens."))
    words_detail = models.TextField(verbose_name=gettext_lazy("words detail"), blank=True)
    similarity = models.FloatField(verbose_name=gettext_lazy("similarity"), null=True, blank=True, help_text=gettext_lazy("Cosine similarity of speaker embeddings."))
    speaker_ok = models.BooleanField(verbose_name=gettext_lazy("speaker ok"), null=True)
    speaker_detail = models.TextField(verbose_name=gettext_lazy("speaker detail"), blank=True)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=gettext_lazy("recorded by"), null=True, on_delete=models.SET_NULL, related_name="+")
    recorded_at = models.DateTimeField(verbose_name=gettext_lazy("recorded at"), null=True, blank=True)
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=gettext_lazy("approved by"), null=True, on_delete=models.SET_NULL, related_name="+")
    approved_at = models.DateTimeField(verbose_name=gettext_lazy("approved at"), null=True, blank=True)
    rejected_reason = models.TextField(verbose_name=gettext_lazy("rejected reason"), blank=True)
    created_at = models.DateTimeField(verbose_name=gettext_lazy("created at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = gettext_lazy("spoken consent")
        verbose_name_plural = gettext_lazy("spoken consents")
        ordering = ["-created_at"]

    @property
    def checks_pass(self) -> bool:
        return bool(self.audio) and self.speaker_ok is True and self.words_ok is not False


class TrainingJob(models.Model):
    """Fine-tuning one draft on a training worker: stage, epoch and losses as it goes; resumable."""

    class State(models.TextChoices):
        QUEUED = "queued", gettext_lazy("Queued")
        RUNNING = "running", gettext_lazy("Running")
        SUCCEEDED = "succeeded", gettext_lazy("Succeeded")
        FAILED = "failed", gettext_lazy("Failed")
        CANCELLED = "cancelled", gettext_lazy("Cancelled")

    class Stage(models.TextChoices):
        WAITING = "waiting", gettext_lazy("waiting for a training worker")
        PREPARE = "prepare", gettext_lazy("preparing the dataset (phones, BERT, HuBERT, semantic codes)")
        SOVITS = "sovits", gettext_lazy("training SoVITS")
        GPT = "gpt", gettext_lazy("training GPT")
        EXPORT = "export", gettext_lazy("exporting the voice")
        DONE = "done", gettext_lazy("done")

    draft = models.ForeignKey(VoiceDraft, verbose_name=gettext_lazy("draft"), on_delete=models.CASCADE, related_name="jobs")
    state = models.CharField(verbose_name=gettext_lazy("state"), max_length=10, choices=State.choices, default=State.QUEUED)
    stage = models.CharField(verbose_name=gettext_lazy("stage"), max_length=10, choices=Stage.choices, default=Stage.WAITING)
    sovits_epochs = models.PositiveIntegerField(verbose_name=gettext_lazy("sovits epochs"), default=8)
    gpt_epochs = models.PositiveIntegerField(verbose_name=gettext_lazy("gpt epochs"), default=15, help_text=gettext_lazy("0 keeps the base GPT (zero-shot prosody)."))
    batch_size = models.PositiveIntegerField(verbose_name=gettext_lazy("batch size"), default=4)
    time_limit_s = models.PositiveIntegerField(verbose_name=gettext_lazy("time limit s"), default=3 * 3600)
    epoch = models.PositiveIntegerField(verbose_name=gettext_lazy("epoch"), default=0)
    step = models.PositiveIntegerField(verbose_name=gettext_lazy("step"), default=0)
    progress = models.FloatField(verbose_name=gettext_lazy("progress"), default=0.0, help_text=gettext_lazy("0..1 over every stage"))
    losses = models.JSONField(verbose_name=gettext_lazy("losses"), default=dict, blank=True, help_text=gettext_lazy("Last losses of the running stage."))
    history = models.JSONField(verbose_name=gettext_lazy("history"), default=list, blank=True, help_text=gettext_lazy("Per-epoch losses of every stage."))
    message = models.TextField(verbose_name=gettext_lazy("message"), blank=True)
    error = models.TextField(verbose_name=gettext_lazy("error"), blank=True)
    cancel_requested = models.BooleanField(verbose_name=gettext_lazy("cancel requested"), default=False)
    attempts = models.PositiveIntegerField(verbose_name=gettext_lazy("attempts"), default=0, help_text=gettext_lazy("Workers that started this job (resumes count)."))
    worker = models.CharField(verbose_name=gettext_lazy("worker"), max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(verbose_name=gettext_lazy("heartbeat at"), null=True, blank=True)
    training_digest = models.CharField(verbose_name=gettext_lazy("training digest"), max_length=64)
    artefacts = models.JSONField(verbose_name=gettext_lazy("artefacts"), default=dict, blank=True, help_text=gettext_lazy("sha256 of each exported file."))
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=gettext_lazy("requested by"), null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(verbose_name=gettext_lazy("created at"), default=timezone.now, editable=False)
    started_at = models.DateTimeField(verbose_name=gettext_lazy("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(verbose_name=gettext_lazy("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = gettext_lazy("training job")
        verbose_name_plural = gettext_lazy("training jobs")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["draft"], condition=models.Q(state__in=["queued", "running"]), name="one_active_job_per_draft"
            )
        ]

    def __str__(self) -> str:
        return gettext("training %(draft)s (%(state)s)") % {"draft": self.draft, "state": self.get_state_display()}

    @property
    def is_active(self) -> bool:
        return self.state in (self.State.QUEUED, self.State.RUNNING)
