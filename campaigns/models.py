"""Contacts, scripts, campaigns and the calls they make."""

from __future__ import annotations

import zoneinfo
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.timezone import now

from campaigns import phones
from herald.logmask import mask_phone

ALL_WEEKDAYS = "0123456"  # Monday=0, as datetime.weekday()
# Keys a callee can press to answer the script; not #: it ends the key wait, as in Twilio's <Gather>.
KEY_CHOICES = [(d, d) for d in "0123456789*"]


def validate_region(value: str) -> None:
    """An ISO country code phonenumbers knows, in capitals (CN, US, GB…)."""
    if not phones.is_region(value):
        hint = " (use capitals)" if phones.is_region(value.upper()) else ""
        raise ValidationError(f"{value!r} is not a two-letter country code phone numbers can use{hint}, e.g. CN")


def validate_timezone(value: str) -> None:
    if value and value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a time zone name; use one like Asia/Shanghai or America/New_York")


class ContactList(models.Model):
    name = models.CharField(max_length=200, unique=True)
    default_region = models.CharField(
        max_length=2,
        default="CN",
        validators=[validate_region],
        help_text="ISO country for numbers written without +country code.",
    )
    default_timezone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_timezone],
        help_text="IANA zone (e.g. America/New_York) for numbers whose region spans several zones, when the CSV "
        "has no timezone column; blank = such rows are rejected with the reason.",
    )
    created_at = models.DateTimeField(default=now, editable=False)

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    contact_list = models.ForeignKey(ContactList, on_delete=models.CASCADE, related_name="contacts")
    phone = models.CharField(max_length=20, help_text="E.164")
    name = models.CharField(max_length=200, blank=True)
    timezone = models.CharField(max_length=64)
    fields = models.JSONField(default=dict, blank=True)
    source_line = models.PositiveIntegerField(null=True, blank=True)
    # Consent to automated calls: the basis, when it was given and where it was recorded.
    consent_basis = models.CharField(
        max_length=20,
        blank=True,
        choices=[
            ("consent", "Consent"),
            ("contract", "Contract (e.g. an order being delivered)"),
            ("legal_obligation", "Legal obligation"),
            ("legitimate_interest", "Legitimate interest"),
        ],
    )
    consent_at = models.DateTimeField(null=True, blank=True)
    consent_source = models.CharField(max_length=200, blank=True, help_text="e.g. checkout page, CSV import 2026-11")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["contact_list", "phone"], name="contact_unique_phone")]

    def __str__(self) -> str:
        # Shown in admin history and messages: keep the number masked there.
        return f"{self.name or '-'} {mask_phone(self.phone)}"


class ContactImport(models.Model):
    """What happened to each line of an uploaded CSV: nothing is dropped without a trace."""

    contact_list = models.ForeignKey(ContactList, on_delete=models.CASCADE, related_name="imports")
    filename = models.CharField(max_length=255)
    encoding = models.CharField(max_length=20, blank=True)
    total_rows = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    merged = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    rejected_rows = models.JSONField(default=list, blank=True, help_text="[{line, reason, raw}]")
    error = models.TextField(blank=True, help_text="Whole-file problem, when the file could not be read at all.")
    imported_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    imported_at = models.DateTimeField(default=now)

    def __str__(self) -> str:
        return f"{self.filename} → {self.contact_list}"


class ScriptTemplate(models.Model):
    name = models.CharField(max_length=200, unique=True)
    language = models.CharField(max_length=8, default="zh")
    text = models.TextField(help_text="Use {variable} for contact fields, e.g. 您好{name}，您的订单{order_id}…")
    created_at = models.DateTimeField(default=now, editable=False)

    def __str__(self) -> str:
        return self.name


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        SCHEDULED = "scheduled"
        RUNNING = "running"
        PAUSED = "paused"
        COMPLETED = "completed"
        CANCELLED = "cancelled"

    class MachineAction(models.TextChoices):
        HANGUP = "hangup", "Hang up"
        VOICEMAIL = "voicemail", "Leave a voicemail"

    name = models.CharField(max_length=200, unique=True)
    contact_list = models.ForeignKey(ContactList, on_delete=models.PROTECT, related_name="campaigns")
    telephony_account = models.ForeignKey(
        "telephony.TelephonyAccount", on_delete=models.PROTECT, related_name="campaigns"
    )
    caller_id = models.CharField(max_length=20, help_text="E.164 number presented to callees")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT, db_index=True)
    starts_at = models.DateTimeField(default=now)
    ends_at = models.DateTimeField(null=True, blank=True)
    window_start = models.TimeField(
        default="09:00", help_text="Earliest local time of the callee (never before 08:00, whatever is set here)"
    )
    window_end = models.TimeField(
        default="20:00", help_text="Latest local time of the callee (never after 21:00, whatever is set here)"
    )
    weekdays = models.CharField(
        max_length=7, default=ALL_WEEKDAYS, help_text="Days to call, Monday=0 … Sunday=6, e.g. 01234"
    )
    weekday_hours = models.JSONField(
        default=dict,
        blank=True,
        help_text='Other hours on some weekdays, e.g. {"5": ["10:00", "18:00"]} for Saturday; the hard cap still applies.',
    )
    holidays = models.JSONField(
        default=list, blank=True, help_text='Callee-local dates with no calls, e.g. ["2026-10-01", "2026-10-02"].'
    )
    max_attempts = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1), MaxValueValidator(10)])
    retry_delay = models.DurationField(
        default=timedelta(minutes=30), help_text="Wait before another attempt, unless the retry policy says otherwise."
    )
    retry_policy = models.JSONField(
        default=dict,
        blank=True,
        help_text='Minutes before retrying by outcome, null = never: e.g. {"busy": 10, "no_answer": 30, '
        '"failed": 15, "machine": null}. Missing outcomes use the retry delay (machine: never).',
    )
    retry_jitter = models.PositiveSmallIntegerField(
        default=10, validators=[MaxValueValidator(50)], help_text="± percent of random spread on each retry delay."
    )
    opt_out_digit = models.CharField(
        max_length=1,
        default="9",
        choices=KEY_CHOICES,
        help_text="The key that puts the callee on the do-not-call list at once.",
    )
    confirm_digit = models.CharField(
        max_length=1,
        blank=True,
        default="1",
        choices=KEY_CHOICES,
        help_text="The key the script asks callees to press to confirm; counted as confirmations in the report.",
    )
    reschedule_digit = models.CharField(
        max_length=1,
        blank=True,
        default="2",
        choices=KEY_CHOICES,
        help_text="The key the script asks callees to press to reschedule; counted as reschedules in the report.",
    )
    assignment_key = models.SlugField(
        max_length=50,
        blank=True,
        help_text="A/B tests over several campaigns (e.g. daily reminders): campaigns with the same key give each "
        "number the same variant, by variant name. Blank = this campaign alone.",
    )
    min_effect = models.FloatField(
        default=2.0,
        validators=[MinValueValidator(0.1), MaxValueValidator(50)],
        help_text="A/B tests: the smallest difference in percentage points worth acting on. Variants closer than "
        "this are reported as no difference.",
    )
    breaker_window = models.PositiveSmallIntegerField(
        default=20,
        help_text="Pause the campaign when at least half of its last N attempts failed for provider reasons "
        "(0 = never).",
    )
    paused_reason = models.CharField(max_length=255, blank=True, help_text="Why the campaign paused itself.")
    disclosure_text = models.CharField(
        max_length=200,
        blank=True,
        default="这是一通智能语音通知。",
        help_text="Spoken first in every call in a cloned voice; it cannot be left out for such a voice.",
    )
    require_consent = models.BooleanField(
        default=False, help_text="Call only contacts with a consent record (basis, time, source)."
    )
    fallback_text = models.TextField(
        blank=True,
        help_text="A generic message (no variables) for callees whose personalised audio failed to render; "
        "blank = such callees are reported, not called.",
    )
    fallback_audio = models.ForeignKey(
        "synthesis.RenderedAudio",
        to_field="render_key",
        db_column="fallback_render_key",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    machine_action = models.CharField(
        max_length=10,
        choices=MachineAction.choices,
        default=MachineAction.HANGUP,
        help_text="When an answering machine picks up: hang up, or leave the voicemail clip after the beep.",
    )
    voicemail_script = models.ForeignKey(
        ScriptTemplate,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="voicemail_campaigns",
        help_text="Said to answering machines after the beep, rendered per callee in the variant's voice.",
    )
    calls_per_second = models.FloatField(default=1.0, validators=[MinValueValidator(0.01)])
    max_concurrent_calls = models.PositiveIntegerField(default=5, validators=[MinValueValidator(1)])
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=now, editable=False)
    launched_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class Variant(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="variants")
    name = models.CharField(max_length=50)
    voice = models.ForeignKey("voices.Voice", on_delete=models.PROTECT, related_name="variants")
    script = models.ForeignKey(ScriptTemplate, on_delete=models.PROTECT, related_name="variants")
    weight = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "name"], name="variant_unique_name")]
        ordering = ["campaign", "name"]

    def __str__(self) -> str:
        return f"{self.campaign} / {self.name}"


class Call(models.Model):
    """One per campaign × contact: what to say, to whom, and where it stands.

    Indexes are chosen for planning speed: the (campaign, contact) unique constraint and (campaign, state)
    cover campaign lookups, so the foreign keys to campaign and audio carry no extra (or LIKE) index.

    Three keys have no database constraint (db_constraint=False): PostgreSQL checks a constrained key of each
    new call with one lookup per row when planning commits, and those checks were the largest part of
    planning's time. The rows they point at exist anyway:
    - campaign: a call's variant is one of its campaign's variants (planning picks it from
      campaign.variants; neither key changes later), so the constrained keys Call.variant and
      Variant.campaign keep the campaign: it cannot go while its variants have calls.
    - audio, voicemail_audio: planning inserts a call's clips in the same transaction, before the call; the
      lifecycle only ever points a call at its campaign's generic clip (a constrained key on Campaign); and
      nothing deletes rendered audio (the admin cannot; the ORM's PROTECT still refuses while a call points
      at it).
    The ORM's on_delete rules (CASCADE, PROTECT) apply to all three as before.
    """

    class State(models.TextChoices):
        INVALID = "invalid", "Invalid (script error)"
        RENDERING = "rendering", "Waiting for audio"
        READY = "ready", "Ready to dial"
        DIALING = "dialing", "Dialling"
        IN_PROGRESS = "in_progress", "In progress"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Outcome(models.TextChoices):
        ANSWERED = "answered"
        MACHINE = "machine"
        BUSY = "busy"
        NO_ANSWER = "no_answer"
        FAILED = "failed"
        OPTED_OUT = "opted_out"
        DO_NOT_CALL = "do_not_call"
        INVALID_NUMBER = "invalid_number"
        NO_CONSENT = "no_consent"

    class Hold(models.TextChoices):
        """What holds a ready call back beyond its next_attempt_at, for the waiting page (blank: nothing)."""

        NUMBER_CAP = "number_cap", "Per-number daily cap"

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="calls", db_index=False, db_constraint=False
    )  # see the class docstring
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="calls")
    variant = models.ForeignKey(Variant, on_delete=models.PROTECT, related_name="calls")
    phone = models.CharField(max_length=20)
    timezone = models.CharField(max_length=64)
    text = models.TextField(blank=True)
    audio = models.ForeignKey(
        "synthesis.RenderedAudio",
        to_field="render_key",
        db_column="render_key",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="calls",
        db_index=False,
        db_constraint=False,  # see the class docstring
    )
    # Played after an answering machine's beep, when the campaign leaves voicemails; null otherwise.
    voicemail_audio = models.ForeignKey(
        "synthesis.RenderedAudio",
        to_field="render_key",
        db_column="voicemail_render_key",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="voicemail_calls",
        db_index=False,
        db_constraint=False,
    )
    state = models.CharField(max_length=12, choices=State.choices, default=State.RENDERING)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True)
    error = models.TextField(blank=True)
    used_fallback = models.BooleanField(
        default=False, help_text="Its personalised audio failed to render; the campaign's generic clip plays instead."
    )
    attempts_made = models.PositiveSmallIntegerField(default=0)
    # What its attempts add up to, kept by campaigns.lifecycle.record_call_facts whenever an attempt changes, so
    # reports count calls in one pass over this table instead of grouping millions of attempts.
    answered = models.BooleanField(default=False, help_text="An attempt was answered (by anyone).")
    human_answered = models.BooleanField(default=False, help_text="An attempt was answered by a person.")
    listened_to_end = models.BooleanField(default=False, help_text="A person heard the message to the end.")
    final_digits = models.CharField(max_length=20, blank=True, help_text="Keys pressed in the latest attempt with keys.")
    timed_attempts = models.PositiveSmallIntegerField(default=0, help_text="Answered attempts whose duration is known.")
    talk_seconds = models.PositiveIntegerField(default=0, help_text="Seconds of all answered attempts.")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    hold = models.CharField(
        max_length=16, choices=Hold.choices, blank=True,
        help_text="Why next_attempt_at was pushed back, when a rule (not a retry) holds the call.",
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "contact"], name="call_unique_contact")]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="call_dialable"),
            models.Index(fields=["campaign", "state"], name="call_campaign_state"),
            models.Index(fields=["audio"], name="call_render_key"),
            # Only voicemail campaigns fill it: a partial index stays small.
            models.Index(
                fields=["voicemail_audio"],
                name="call_voicemail_render_key",
                condition=models.Q(voicemail_audio__isnull=False),
            ),
            models.Index(fields=["phone"], name="call_phone"),  # per-number cap, opt-out across campaigns
        ]

    def __str__(self) -> str:
        return f"call {self.pk} ({self.state})"


class CallAttempt(models.Model):
    """Written before the provider is asked to dial: the record that stops a person being dialled twice."""

    class Status(models.TextChoices):
        CREATED = "created"  # row written, provider not yet asked
        QUEUED = "queued"
        INITIATED = "initiated"
        RINGING = "ringing"
        IN_PROGRESS = "in-progress"
        COMPLETED = "completed"
        BUSY = "busy"
        NO_ANSWER = "no-answer"
        FAILED = "failed"
        CANCELED = "canceled"
        UNKNOWN = "unknown"  # the provider request failed ambiguously; never re-dialled automatically

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    provider = models.CharField(max_length=10)
    provider_call_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.CREATED)
    answered_by = models.CharField(max_length=20, blank=True)
    duration = models.PositiveIntegerField(null=True, blank=True, help_text="seconds")
    digits = models.CharField(max_length=20, blank=True)
    listened_to_end = models.BooleanField(default=False)
    error_code = models.CharField(max_length=20, blank=True)
    error_message = models.TextField(blank=True)
    timeline = models.JSONField(default=list, blank=True, help_text="[[status, iso time], …]")
    created_at = models.DateTimeField(default=now)
    placed_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["call", "number"], name="attempt_unique_number")]
        indexes = [
            # Open attempts only (a few per channel): what the sweep's ambiguous-create lookup and the settle
            # pass read every few seconds, without scanning millions of finished attempts.
            models.Index(
                fields=["status", "created_at"],
                name="attempt_open",
                condition=models.Q(status__in=["created", "unknown", "queued", "initiated", "ringing", "in-progress"]),
            )
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of call {self.call_id} ({self.status})"


class DoNotCall(models.Model):
    phone = models.CharField(max_length=20, unique=True, help_text="E.164")
    reason = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=50, blank=True, help_text="keypress, admin, import …")
    created_at = models.DateTimeField(default=now)

    class Meta:
        verbose_name = "do-not-call entry"
        verbose_name_plural = "do-not-call list"

    def __str__(self) -> str:
        return mask_phone(self.phone)


class ApiToken(models.Model):
    """A read-only key for BI tools to fetch reports (Authorization: Bearer <token>).

    Only a SHA-256 digest is stored: the token itself is shown once, when it is created.
    """

    name = models.CharField(max_length=100, help_text="Who uses it, e.g. Metabase or the finance sheet")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_tokens",
        help_text="The token sees what this user may view, no more.",
    )
    prefix = models.CharField(max_length=12, editable=False, help_text="First characters, to tell tokens apart")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class Worker(models.Model):
    """One run of a Celery worker process, as its heartbeat tells it (campaigns.workers).

    A worker writes `seen_at` every HERALD_WORKER_HEARTBEAT_SECONDS, and `held` (the tasks it has taken from
    the broker and not finished: waiting for their time, queued in the process or running) each time it takes
    one, before the task can start. When the heartbeat stops for HERALD_WORKER_DEAD_SECONDS, or the worker stops, the
    recovery sweep hands what it held to others and sets `recovered_at`. A restarted worker is a new row.
    """

    instance = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200, help_text="Celery's node name, e.g. telephony@host.")
    queues = models.CharField(max_length=200, blank=True)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=now)
    seen_at = models.DateTimeField(default=now, help_text="The latest heartbeat.")
    stopped_at = models.DateTimeField(null=True, blank=True, help_text="Set when it shut down cleanly.")
    recovered_at = models.DateTimeField(null=True, blank=True, help_text="When its held tasks were handed on.")
    # [[task id, task name, args, kwargs], …]: JSON only (the task protocol's own arguments), never pickles.
    held = models.JSONField(default=list, blank=True)

    class Meta:
        indexes = [models.Index(fields=["recovered_at", "seen_at"], name="worker_unrecovered")]

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid})"
