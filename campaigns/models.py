"""Contacts, scripts, campaigns and the calls they make."""

from __future__ import annotations

import hashlib
import os
import uuid
import zoneinfo
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.timezone import now
from django.utils.translation import gettext, gettext_lazy

from campaigns import callflow, phones
from campaigns.templating import TemplateSyntaxError, validate_template
from herald.logmask import mask_phone

ALL_WEEKDAYS = "0123456"  # Monday=0, as datetime.weekday()
# Keys a callee can press to answer the script; not #: it ends the key wait, as in Twilio's <Gather>.
KEY_CHOICES = [(d, d) for d in "0123456789*"]


def validate_region(value: str) -> None:
    """An ISO country code phonenumbers knows, in capitals (CN, US, GB…)."""
    if not phones.is_region(value):
        hint = gettext(" (use capitals)") if phones.is_region(value.upper()) else ""
        raise ValidationError(
            gettext("%(value)s is not a two-letter country code phone numbers can use%(hint)s, e.g. CN")
            % {"value": repr(value), "hint": hint}
        )


def validate_timezone(value: str) -> None:
    if value and value not in zoneinfo.available_timezones():
        raise ValidationError(
            gettext("%(value)s is not a time zone name; use one like Asia/Shanghai or America/New_York")
            % {"value": repr(value)}
        )


class ContactList(models.Model):
    name = models.CharField(max_length=200, unique=True, verbose_name=gettext_lazy("name"))
    default_region = models.CharField(
        max_length=2,
        default="CN",
        validators=[validate_region],
        help_text=gettext_lazy("ISO country for numbers written without +country code."),
        verbose_name=gettext_lazy("default region"),
    )
    default_timezone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_timezone],
        help_text=gettext_lazy("IANA zone (e.g. America/New_York) for numbers whose region spans several zones, when the CSV "
        "has no timezone column; blank = such rows are rejected with the reason."),
        verbose_name=gettext_lazy("default timezone"),
    )
    created_at = models.DateTimeField(default=now, editable=False, verbose_name=gettext_lazy("created at"))

    class Meta:
        verbose_name = gettext_lazy("contact list")
        verbose_name_plural = gettext_lazy("contact lists")

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    contact_list = models.ForeignKey(
        ContactList, on_delete=models.CASCADE, related_name="contacts", verbose_name=gettext_lazy("contact list")
    )
    phone = models.CharField(max_length=20, help_text="E.164", verbose_name=gettext_lazy("phone"))
    external_id = models.CharField(
        max_length=100, blank=True, help_text=gettext_lazy("The order system's own key for this contact, e.g. the order number"),
        verbose_name=gettext_lazy("external id")
    )
    name = models.CharField(max_length=200, blank=True, verbose_name=gettext_lazy("name"))
    timezone = models.CharField(max_length=64, verbose_name=gettext_lazy("timezone"))
    fields = models.JSONField(default=dict, blank=True, verbose_name=gettext_lazy("fields"))
    source_line = models.PositiveIntegerField(null=True, blank=True, verbose_name=gettext_lazy("source line"))
    # Consent to automated calls: the basis, when it was given and where it was recorded.
    consent_basis = models.CharField(
        max_length=20,
        blank=True,
        choices=[
            ("consent", gettext_lazy("Consent")),
            ("contract", gettext_lazy("Contract (e.g. an order being delivered)")),
            ("legal_obligation", gettext_lazy("Legal obligation")),
            ("legitimate_interest", gettext_lazy("Legitimate interest")),
        ],
        verbose_name=gettext_lazy("consent basis"),
    )
    consent_at = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("consent at"))
    consent_source = models.CharField(max_length=200, blank=True, help_text=gettext_lazy("e.g. checkout page, CSV import 2026-11"), verbose_name=gettext_lazy("consent source"))

    class Meta:
        verbose_name = gettext_lazy("contact")
        verbose_name_plural = gettext_lazy("contacts")
        constraints = [
            models.UniqueConstraint(fields=["contact_list", "phone"], name="contact_unique_phone"),
            models.UniqueConstraint(
                fields=["contact_list", "external_id"], condition=~Q(external_id=""), name="contact_unique_external_id"
            ),
        ]

    def __str__(self) -> str:
        # Shown in admin history and messages: keep the number masked there.
        return f"{self.name or '-'} {mask_phone(self.phone)}"


class ContactImport(models.Model):
    """What happened to each line of an uploaded CSV: nothing is dropped without a trace."""

    contact_list = models.ForeignKey(
        ContactList, on_delete=models.CASCADE, related_name="imports", verbose_name=gettext_lazy("contact list")
    )
    filename = models.CharField(max_length=255, verbose_name=gettext_lazy("filename"))
    encoding = models.CharField(max_length=20, blank=True, verbose_name=gettext_lazy("encoding"))
    total_rows = models.PositiveIntegerField(default=0, verbose_name=gettext_lazy("total rows"))
    created = models.PositiveIntegerField(default=0, verbose_name=gettext_lazy("created"))
    updated = models.PositiveIntegerField(default=0, verbose_name=gettext_lazy("updated"))
    merged = models.PositiveIntegerField(default=0, verbose_name=gettext_lazy("merged"))
    rejected = models.PositiveIntegerField(default=0, verbose_name=gettext_lazy("rejected"))
    rejected_rows = models.JSONField(default=list, blank=True, help_text="[{line, reason, raw}]", verbose_name=gettext_lazy("rejected rows"))
    duplicates = models.CharField(
        max_length=10,
        default="combine",
        choices=[
            ("combine", gettext_lazy("One call per number, saying every row's values")),
            ("latest", gettext_lazy("Later rows win")),
        ],
        help_text=gettext_lazy("What was done with rows whose number came earlier in the file."),
        verbose_name=gettext_lazy("duplicates"),
    )
    merged_rows = models.JSONField(default=list, blank=True, help_text="[{line, into_line, changes}]", verbose_name=gettext_lazy("merged rows"))
    header = models.JSONField(default=list, blank=True, help_text=gettext_lazy("The file's header row, for the rejected rows' CSV."), verbose_name=gettext_lazy("header"))
    delimiter = models.CharField(max_length=1, default=",", blank=True, verbose_name=gettext_lazy("delimiter"))
    error = models.TextField(blank=True, help_text=gettext_lazy("Whole-file problem, when the file could not be read at all."), verbose_name=gettext_lazy("error"))
    imported_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, verbose_name=gettext_lazy("imported by"))
    imported_at = models.DateTimeField(default=now, verbose_name=gettext_lazy("imported at"))

    class Meta:
        verbose_name = gettext_lazy("contact import")
        verbose_name_plural = gettext_lazy("contact imports")

    def __str__(self) -> str:
        return f"{self.filename} → {self.contact_list}"


class ScriptTemplate(models.Model):
    name = models.CharField(max_length=200, unique=True, verbose_name=gettext_lazy("name"))
    language = models.CharField(max_length=8, default="zh", verbose_name=gettext_lazy("language"))
    text = models.TextField(help_text=gettext_lazy("Use {variable} for contact fields, e.g. 您好{name}，您的订单{order_id}…"), verbose_name=gettext_lazy("text"))
    created_at = models.DateTimeField(default=now, editable=False, verbose_name=gettext_lazy("created at"))

    class Meta:
        verbose_name = gettext_lazy("script template")
        verbose_name_plural = gettext_lazy("script templates")

    def __str__(self) -> str:
        return self.name


def transfer_target_problem(target: str) -> str | None:
    """Why a transfer target is not an E.164 number or a sip:/sips: address (None when it is one)."""
    if target.startswith(("sip:", "sips:")):
        if "@" in target and " " not in target:
            return None
        return gettext("%(target)s is not a SIP address like sip:desk@pbx.example.com") % {"target": repr(target)}
    try:
        if phones.to_e164(target, None) == target:
            return None
    except ValueError as exc:
        return gettext("%(target)s: %(problem)s; write it as E.164 (+8640080012345) or a sip: address") % {
            "target": repr(target), "problem": exc,
        }
    return gettext("%(target)s is not in E.164 form (+8640080012345)") % {"target": repr(target)}


class CallFlow(models.Model):
    """What happens after the message: a menu of keys, each leading to a node (campaigns.callflow walks it).

    Every text here is rendered in the variant's voice ahead of the call: once per voice where it has no
    variables, per callee where it has. The message itself is the variant's script.
    """

    name = models.CharField(max_length=200, unique=True, verbose_name=gettext_lazy("name"))
    menu_text = models.TextField(
        blank=True,
        help_text=gettext_lazy("Said when the message's menu is offered again (after an invalid key or silence), e.g. "
        "确认请按1，改期请按2，重听请按星号。 Blank = the whole message again."),
        verbose_name=gettext_lazy("menu text"),
    )
    invalid_text = models.CharField(max_length=200, default="抱歉，您按的键无效。", help_text=gettext_lazy("Said after a key no node takes."), verbose_name=gettext_lazy("invalid text"))
    no_input_text = models.CharField(
        max_length=200, default="抱歉，没有听到您的按键。", help_text=gettext_lazy("Said when no key came before the wait ended."),
        verbose_name=gettext_lazy("no input text")
    )
    goodbye_text = models.CharField(
        max_length=200,
        default="感谢您的接听，再见。",
        help_text=gettext_lazy("Said when a menu has been offered its last time without an answer; then the call ends."),
        verbose_name=gettext_lazy("goodbye text"),
    )
    max_prompts = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text=gettext_lazy("Times a menu is offered (the first time included) before the goodbye."),
        verbose_name=gettext_lazy("max prompts"),
    )
    input_timeout = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(2), MaxValueValidator(20)], help_text=gettext_lazy("Seconds to wait for a key."),
        verbose_name=gettext_lazy("input timeout")
    )
    created_at = models.DateTimeField(default=now, editable=False, verbose_name=gettext_lazy("created at"))

    class Meta:
        verbose_name = gettext_lazy("call flow")
        verbose_name_plural = gettext_lazy("call flows")

    def __str__(self) -> str:
        return self.name

    def build(self) -> callflow.Flow:
        """The flow as campaigns.callflow walks it; FlowError names the first node that would strand a callee."""
        nodes = list(self.nodes.all())
        under: dict[int, list[FlowNode]] = {}
        for node in nodes:
            if node.parent_id is not None:
                under.setdefault(node.parent_id, []).append(node)
        rows = []
        for node in nodes:
            if node.parent_id is None:
                subkeys = [(c.key, c.action, c.transfer_to) for c in under.pop(node.pk, [])]
                rows.append((node.key, node.action, node.transfer_to, subkeys))
        for orphans in under.values():  # a parent that is itself under another key
            raise callflow.FlowError(
                gettext("key %(path)s: menus may be %(depth)s deep at most")
                % {"path": orphans[0].path, "depth": callflow.MAX_DEPTH}
            )
        keys = [row[0] for row in rows]
        for key in keys:
            if keys.count(key) > 1:
                raise callflow.FlowError(gettext("key %(key)s is used twice in the message's menu") % {"key": key})
        for key, _, _, subkeys in rows:
            sub = [k for k, _, _ in subkeys]
            for k in sub:
                if sub.count(k) > 1:
                    raise callflow.FlowError(
                        gettext("key %(key)s.%(sub)s is used twice in the menu of key %(key)s") % {"key": key, "sub": k}
                    )
        return callflow.build(
            rows,
            max_prompts=self.max_prompts,
            has_menu_prompt=bool(self.menu_text.strip()),
            transfer_fallback=[n.path for n in nodes if n.action == FlowNode.Action.TRANSFER and n.transfer_fallback_text.strip()],
        )

    def problems(self) -> list[str]:
        """What would strand a callee or fail a render, in words staff understand; empty when the flow can run."""
        try:
            problems = callflow.check(self.build())
        except callflow.FlowError as exc:  # the node checks below still run
            problems = list(exc.problems)
        for node in self.nodes.select_related("parent"):
            where = gettext("key %(path)s") % {"path": node.path}
            if node.action != FlowNode.Action.REPEAT and not node.text.strip():
                problems.append(
                    gettext("%(where)s (%(action)s) says nothing: write its text")
                    % {"where": where, "action": node.get_action_display()}
                )
            if node.action == FlowNode.Action.SLOT and node.slot_days is None and not node.slot_field:
                problems.append(
                    gettext("%(where)s: a slot needs its day (days after the first calling day) or a contact field")
                    % {"where": where}
                )
            if node.action == FlowNode.Action.TRANSFER and node.transfer_to:
                problem = transfer_target_problem(node.transfer_to)
                if problem:
                    problems.append(f"{where}: {problem}")
        for name, text in self.clip_texts().items():
            try:
                validate_template(text)
            except TemplateSyntaxError as exc:
                problems.append(f"{name}: {exc}")
        return problems

    def clip_texts(self) -> dict[str, str]:
        """The template of every clip the flow may play except the message (the variant's script), by clip name."""
        texts = {"invalid": self.invalid_text, "no_input": self.no_input_text, "goodbye": self.goodbye_text}
        if self.menu_text.strip():
            texts["menu"] = self.menu_text
        for node in self.nodes.select_related("parent"):
            if node.action != FlowNode.Action.REPEAT:
                texts[node.path] = node.text
            if node.action == FlowNode.Action.TRANSFER and node.transfer_fallback_text.strip():
                texts[f"{node.path}:fallback"] = node.transfer_fallback_text
        return texts


class FlowNode(models.Model):
    """One key of a flow's menu and what it does. A reschedule key's own keys are its slots (parent)."""

    class Action(models.TextChoices):
        CONFIRM = "confirm", gettext_lazy("Confirm (thank-you clip, end)")
        RESCHEDULE = "reschedule", gettext_lazy("Reschedule (menu of slots)")
        SLOT = "slot", gettext_lazy("Slot (under a reschedule key: repeats the slot, end)")
        OPT_OUT = "opt_out", gettext_lazy("Opt out (do-not-call at once, confirmation, end)")
        TRANSFER = "transfer", gettext_lazy("Transfer to a person")
        REPEAT = "repeat", gettext_lazy("Repeat the menu")

    flow = models.ForeignKey(CallFlow, on_delete=models.CASCADE, related_name="nodes", verbose_name=gettext_lazy("flow"))
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="children",
        help_text=gettext_lazy("Blank: a key of the message's menu. A reschedule key: a key of its slot menu."),
        verbose_name=gettext_lazy("parent"),
    )
    key = models.CharField(max_length=1, choices=KEY_CHOICES, verbose_name=gettext_lazy("key"))
    action = models.CharField(max_length=12, choices=Action.choices, verbose_name=gettext_lazy("action"))
    text = models.TextField(
        blank=True,
        help_text=gettext_lazy("What is said: the thank-you, the slot menu (明天上午请按1…), the slot's confirmation ({slot} "
        "is the slot as said), the opt-out confirmation, the transfer announcement. Contact {variables} work as "
        "in scripts."),
        verbose_name=gettext_lazy("text"),
    )
    slot_label = models.CharField(
        max_length=50, blank=True, help_text=gettext_lazy("Slots: the time of day as said, e.g. 上午9点到12点."),
        verbose_name=gettext_lazy("slot label")
    )
    slot_days = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(30)],
        help_text=gettext_lazy("Slots: days after the campaign's first calling day, in the callee's time zone (1 = the next day)."),
        verbose_name=gettext_lazy("slot days"),
    )
    slot_field = models.CharField(
        max_length=64, blank=True, help_text=gettext_lazy("Slots: a contact field holding the date instead (e.g. 改期日期)."),
        verbose_name=gettext_lazy("slot field")
    )
    transfer_to = models.CharField(
        max_length=200, blank=True, help_text=gettext_lazy("Transfers: an E.164 number or a sip: address of the service desk."),
        verbose_name=gettext_lazy("transfer to")
    )
    transfer_fallback_text = models.TextField(
        blank=True,
        help_text=gettext_lazy("Transfers: said when the carrier refuses the transfer, e.g. 请拨打400-800-1234联系人工客服。"),
        verbose_name=gettext_lazy("transfer fallback text"),
    )

    class Meta:
        verbose_name = gettext_lazy("flow node")
        verbose_name_plural = gettext_lazy("flow nodes")
        ordering = ["flow", "parent_id", "key"]

    def __str__(self) -> str:
        return f"{self.flow} / {self.path}: {self.get_action_display()}"

    @property
    def path(self) -> str:
        return f"{self.parent.key}.{self.key}" if self.parent_id else self.key


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", gettext_lazy("Draft")
        SCHEDULED = "scheduled", gettext_lazy("Scheduled")
        RUNNING = "running", gettext_lazy("Running")
        PAUSED = "paused", gettext_lazy("Paused")
        COMPLETED = "completed", gettext_lazy("Completed")
        CANCELLED = "cancelled", gettext_lazy("Cancelled")

    class MachineAction(models.TextChoices):
        HANGUP = "hangup", gettext_lazy("Hang up")
        VOICEMAIL = "voicemail", gettext_lazy("Leave a voicemail")

    name = models.CharField(max_length=200, unique=True, verbose_name=gettext_lazy("name"))
    contact_list = models.ForeignKey(
        ContactList, on_delete=models.PROTECT, related_name="campaigns", verbose_name=gettext_lazy("contact list")
    )
    telephony_account = models.ForeignKey(
        "telephony.TelephonyAccount",
        on_delete=models.PROTECT,
        related_name="campaigns",
        verbose_name=gettext_lazy("telephony account"),
    )
    caller_id = models.CharField(max_length=20, help_text=gettext_lazy("E.164 number presented to callees"), verbose_name=gettext_lazy("caller id"))
    caller_id_pool = models.JSONField(
        default=list, blank=True, verbose_name=gettext_lazy("more caller ids"),
        help_text=gettext_lazy(
            "More of the account's numbers to spread the calls over, one per line. Each callee is shown one number, "
            "the same on every attempt: the one sharing the most leading digits with the callee's own (its area), "
            "else one picked by the callee's number. Blank: the caller id alone."
        ),
    )
    status = models.CharField(
        gettext_lazy("status"), max_length=10, choices=Status.choices, default=Status.DRAFT, db_index=True
    )
    starts_at = models.DateTimeField(default=now, verbose_name=gettext_lazy("starts at"))
    ends_at = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("ends at"))
    window_start = models.TimeField(
        default="09:00", help_text=gettext_lazy("Earliest local time of the callee (never before 08:00, whatever is set here)"),
        verbose_name=gettext_lazy("window start")
    )
    window_end = models.TimeField(
        default="20:00", help_text=gettext_lazy("Latest local time of the callee (never after 21:00, whatever is set here)"),
        verbose_name=gettext_lazy("window end")
    )
    weekdays = models.CharField(
        max_length=7, default=ALL_WEEKDAYS, help_text=gettext_lazy("Days to call, Monday=0 … Sunday=6, e.g. 01234"),
        verbose_name=gettext_lazy("weekdays")
    )
    weekday_hours = models.JSONField(
        default=dict,
        blank=True,
        help_text=gettext_lazy('Other hours on some weekdays, e.g. {"5": ["10:00", "18:00"]} for Saturday; the hard cap still applies.'),
        verbose_name=gettext_lazy("weekday hours"),
    )
    holidays = models.JSONField(
        default=list, blank=True, help_text=gettext_lazy('Callee-local dates with no calls, e.g. ["2026-10-01", "2026-10-02"].'),
        verbose_name=gettext_lazy("holidays")
    )
    max_attempts = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1), MaxValueValidator(10)], verbose_name=gettext_lazy("max attempts"))
    retry_delay = models.DurationField(
        default=timedelta(minutes=30), help_text=gettext_lazy("Wait before another attempt, unless the retry policy says otherwise."),
        verbose_name=gettext_lazy("retry delay")
    )
    retry_policy = models.JSONField(
        default=dict,
        blank=True,
        help_text=gettext_lazy('Minutes before retrying by outcome, null = never: e.g. {"busy": 10, "no_answer": 30, '
        '"failed": 15, "machine": null}. Missing outcomes use the retry delay (machine: never).'),
        verbose_name=gettext_lazy("retry policy"),
    )
    retry_jitter = models.PositiveSmallIntegerField(
        default=10, validators=[MaxValueValidator(50)], help_text=gettext_lazy("± percent of random spread on each retry delay."),
        verbose_name=gettext_lazy("retry jitter")
    )
    opt_out_digit = models.CharField(
        max_length=1,
        default="9",
        choices=KEY_CHOICES,
        help_text=gettext_lazy("The key that puts the callee on the do-not-call list at once."),
        verbose_name=gettext_lazy("opt out digit"),
    )
    confirm_digit = models.CharField(
        max_length=1,
        blank=True,
        default="1",
        choices=KEY_CHOICES,
        help_text=gettext_lazy("The key the script asks callees to press to confirm; counted as confirmations in the report."),
        verbose_name=gettext_lazy("confirm digit"),
    )
    reschedule_digit = models.CharField(
        max_length=1,
        blank=True,
        default="2",
        choices=KEY_CHOICES,
        help_text=gettext_lazy("The key the script asks callees to press to reschedule; counted as reschedules in the report."),
        verbose_name=gettext_lazy("reschedule digit"),
    )
    assignment_key = models.SlugField(
        max_length=50,
        blank=True,
        help_text=gettext_lazy("A/B tests over several campaigns (e.g. daily reminders): campaigns with the same key give each "
        "number the same variant, by variant name. Blank = this campaign alone."),
        verbose_name=gettext_lazy("assignment key"),
    )
    min_effect = models.FloatField(
        default=2.0,
        validators=[MinValueValidator(0.1), MaxValueValidator(50)],
        help_text=gettext_lazy("A/B tests: the smallest difference in percentage points worth acting on. Variants closer than "
        "this are reported as no difference."),
        verbose_name=gettext_lazy("min effect"),
    )
    breaker_window = models.PositiveSmallIntegerField(
        default=20,
        help_text=gettext_lazy("Pause the campaign when at least half of its last N attempts failed for provider reasons "
        "(0 = never)."),
        verbose_name=gettext_lazy("breaker window"),
    )
    paused_reason = models.CharField(max_length=255, blank=True, help_text=gettext_lazy("Why the campaign paused itself."), verbose_name=gettext_lazy("paused reason"))
    disclosure_text = models.CharField(
        max_length=200,
        blank=True,
        default="这是一通智能语音通知。",
        help_text=gettext_lazy("Spoken first in every call in a cloned voice; it cannot be left out for such a voice."),
        verbose_name=gettext_lazy("disclosure text"),
    )
    require_consent = models.BooleanField(
        default=False, help_text=gettext_lazy("Call only contacts with a consent record (basis, time, source)."),
        verbose_name=gettext_lazy("require consent")
    )
    fallback_text = models.TextField(
        blank=True,
        help_text=gettext_lazy("A generic message (no variables) for callees whose personalised audio failed to render; "
        "blank = such callees are reported, not called."),
        verbose_name=gettext_lazy("fallback text"),
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
        verbose_name=gettext_lazy("fallback audio"),
    )
    machine_action = models.CharField(
        max_length=10,
        choices=MachineAction.choices,
        default=MachineAction.HANGUP,
        help_text=gettext_lazy("When an answering machine picks up: hang up, or leave the voicemail clip after the beep."),
        verbose_name=gettext_lazy("machine action"),
    )
    voicemail_script = models.ForeignKey(
        ScriptTemplate,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="voicemail_campaigns",
        help_text=gettext_lazy("Said to answering machines after the beep, rendered per callee in the variant's voice."),
        verbose_name=gettext_lazy("voicemail script"),
    )
    flow = models.ForeignKey(
        CallFlow,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="campaigns",
        help_text=gettext_lazy("What the callee can do after the message: confirm, reschedule, opt out, reach a person. Blank "
        "= the call ends after the message's key (the key is recorded)."),
        verbose_name=gettext_lazy("flow"),
    )
    calls_per_second = models.FloatField(default=1.0, validators=[MinValueValidator(0.01)], verbose_name=gettext_lazy("calls per second"))
    max_concurrent_calls = models.PositiveIntegerField(default=5, validators=[MinValueValidator(1)], verbose_name=gettext_lazy("max concurrent calls"))
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, verbose_name=gettext_lazy("created by"))
    created_at = models.DateTimeField(default=now, editable=False, verbose_name=gettext_lazy("created at"))
    launched_at = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("launched at"))
    finished_at = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("finished at"))

    class Meta:
        verbose_name = gettext_lazy("campaign")
        verbose_name_plural = gettext_lazy("campaigns")

    def __str__(self) -> str:
        return self.name

    def caller_ids(self) -> list[str]:
        """The numbers this campaign presents: its caller id, then its pool, each once."""
        return list(dict.fromkeys([self.caller_id, *(self.caller_id_pool or [])]))

    def caller_id_for(self, phone: str) -> str:
        """The number `phone` is shown: among the campaign's numbers, those sharing the most leading digits with
        it (a local number where there is one), then one of them by a hash of the callee's number, so that a
        callee sees the same number on every attempt and in every campaign with the same numbers."""
        numbers = self.caller_ids()
        if len(numbers) == 1:
            return numbers[0]
        shared = {n: len(os.path.commonprefix([n, phone])) for n in numbers}
        best = max(shared.values())
        local = sorted(n for n in numbers if shared[n] == best)
        return local[int(hashlib.sha256(phone.encode()).hexdigest()[:12], 16) % len(local)]


class Variant(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="variants", verbose_name=gettext_lazy("campaign"))
    name = models.CharField(max_length=50, verbose_name=gettext_lazy("name"))
    voice = models.ForeignKey("voices.Voice", on_delete=models.PROTECT, related_name="variants", verbose_name=gettext_lazy("voice"))
    script = models.ForeignKey(ScriptTemplate, on_delete=models.PROTECT, related_name="variants", verbose_name=gettext_lazy("script"))
    weight = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)], verbose_name=gettext_lazy("weight"))

    class Meta:
        verbose_name = gettext_lazy("variant")
        verbose_name_plural = gettext_lazy("variants")
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
        INVALID = "invalid", gettext_lazy("Invalid (script error)")
        RENDERING = "rendering", gettext_lazy("Waiting for audio")
        READY = "ready", gettext_lazy("Ready to dial")
        DIALING = "dialing", gettext_lazy("Dialling")
        IN_PROGRESS = "in_progress", gettext_lazy("In progress")
        DONE = "done", gettext_lazy("Done")
        FAILED = "failed", gettext_lazy("Failed")
        CANCELLED = "cancelled", gettext_lazy("Cancelled")

    class Outcome(models.TextChoices):
        ANSWERED = "answered", gettext_lazy("Answered")
        MACHINE = "machine", gettext_lazy("Machine")
        BUSY = "busy", gettext_lazy("Busy")
        NO_ANSWER = "no_answer", gettext_lazy("No Answer")
        FAILED = "failed", gettext_lazy("Failed")
        OPTED_OUT = "opted_out", gettext_lazy("Opted Out")
        DO_NOT_CALL = "do_not_call", gettext_lazy("Do Not Call")
        INVALID_NUMBER = "invalid_number", gettext_lazy("Invalid Number")
        NO_CONSENT = "no_consent", gettext_lazy("No Consent")

    class Hold(models.TextChoices):
        """What holds a ready call back beyond its next_attempt_at, for the waiting page (blank: nothing)."""

        NUMBER_CAP = "number_cap", gettext_lazy("Per-number daily cap")

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="calls", db_index=False, db_constraint=False,
        verbose_name=gettext_lazy("campaign")
    )  # see the class docstring
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="calls", verbose_name=gettext_lazy("contact"))
    variant = models.ForeignKey(Variant, on_delete=models.PROTECT, related_name="calls", verbose_name=gettext_lazy("variant"))
    phone = models.CharField(max_length=20, verbose_name=gettext_lazy("phone"))
    timezone = models.CharField(max_length=64, verbose_name=gettext_lazy("timezone"))
    text = models.TextField(blank=True, verbose_name=gettext_lazy("text"))
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
        verbose_name=gettext_lazy("audio"),
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
        verbose_name=gettext_lazy("voicemail audio"),
    )
    state = models.CharField(max_length=12, choices=State.choices, default=State.RENDERING, verbose_name=gettext_lazy("state"))
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True, verbose_name=gettext_lazy("outcome"))
    error = models.TextField(blank=True, verbose_name=gettext_lazy("error"))
    used_fallback = models.BooleanField(
        default=False, help_text=gettext_lazy("Its personalised audio failed to render; the campaign's generic clip plays instead."),
        verbose_name=gettext_lazy("used fallback")
    )
    attempts_made = models.PositiveSmallIntegerField(default=0, verbose_name=gettext_lazy("attempts made"))
    # What its attempts add up to, kept by campaigns.lifecycle.record_call_facts whenever an attempt changes, so
    # reports count calls in one pass over this table instead of grouping millions of attempts.
    answered = models.BooleanField(default=False, help_text=gettext_lazy("An attempt was answered (by anyone)."), verbose_name=gettext_lazy("answered"))
    human_answered = models.BooleanField(default=False, help_text=gettext_lazy("An attempt was answered by a person."), verbose_name=gettext_lazy("human answered"))
    listened_to_end = models.BooleanField(default=False, help_text=gettext_lazy("A person heard the message to the end."), verbose_name=gettext_lazy("listened to end"))
    final_digits = models.CharField(max_length=20, blank=True, help_text=gettext_lazy("Keys pressed in the latest attempt with keys."), verbose_name=gettext_lazy("final digits"))
    final_action = models.CharField(
        max_length=20, blank=True, help_text=gettext_lazy("How the latest attempt that reached the flow's menu ended."),
        verbose_name=gettext_lazy("final action")
    )
    timed_attempts = models.PositiveSmallIntegerField(default=0, help_text=gettext_lazy("Answered attempts whose duration is known."), verbose_name=gettext_lazy("timed attempts"))
    talk_seconds = models.PositiveIntegerField(default=0, help_text=gettext_lazy("Seconds of all answered attempts."), verbose_name=gettext_lazy("talk seconds"))
    next_attempt_at = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("next attempt at"))
    hold = models.CharField(
        max_length=16, choices=Hold.choices, blank=True,
        help_text=gettext_lazy("Why next_attempt_at was pushed back, when a rule (not a retry) holds the call."),
        verbose_name=gettext_lazy("hold"),
    )
    claimed_at = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("claimed at"))
    updated_at = models.DateTimeField(default=now, verbose_name=gettext_lazy("updated at"))

    class Meta:
        verbose_name = gettext_lazy("call")
        verbose_name_plural = gettext_lazy("calls")
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
        permissions = [("view_full_number", "Can see callees' full phone numbers in the admin")]

    def __str__(self) -> str:
        return gettext("call %(id)s (%(state)s)") % {"id": self.pk, "state": self.get_state_display()}


class CallAttempt(models.Model):
    """Written before the provider is asked to dial: the record that stops a person being dialled twice."""

    class Status(models.TextChoices):
        CREATED = "created", gettext_lazy("Created")  # row written, provider not yet asked
        QUEUED = "queued", gettext_lazy("Queued")
        INITIATED = "initiated", gettext_lazy("Initiated")
        RINGING = "ringing", gettext_lazy("Ringing")
        IN_PROGRESS = "in-progress", gettext_lazy("In Progress")
        COMPLETED = "completed", gettext_lazy("Completed")
        BUSY = "busy", gettext_lazy("Busy")
        NO_ANSWER = "no-answer", gettext_lazy("No Answer")
        FAILED = "failed", gettext_lazy("Failed")
        CANCELED = "canceled", gettext_lazy("Canceled")
        UNKNOWN = "unknown", gettext_lazy("Unknown")  # the provider request failed ambiguously; never re-dialled automatically

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="attempts", verbose_name=gettext_lazy("call"))
    number = models.PositiveSmallIntegerField(verbose_name=gettext_lazy("number"))
    provider = models.CharField(max_length=10, verbose_name=gettext_lazy("provider"))
    provider_call_id = models.CharField(max_length=64, null=True, blank=True, unique=True, verbose_name=gettext_lazy("provider call id"))
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.CREATED, verbose_name=gettext_lazy("status"))
    answered_by = models.CharField(max_length=20, blank=True, verbose_name=gettext_lazy("answered by"))
    duration = models.PositiveIntegerField(null=True, blank=True, help_text=gettext_lazy("seconds"), verbose_name=gettext_lazy("duration"))
    digits = models.CharField(max_length=20, blank=True, verbose_name=gettext_lazy("digits"))
    listened_to_end = models.BooleanField(default=False, verbose_name=gettext_lazy("listened to end"))
    # Flows (campaigns.callflow): the nodes visited in order ("message", "2", "2.1"), and how it ended.
    path = models.JSONField(default=list, blank=True, verbose_name=gettext_lazy("path"))
    action = models.CharField(max_length=20, blank=True, verbose_name=gettext_lazy("action"))
    action_detail = models.CharField(max_length=200, blank=True, help_text=gettext_lazy("The slot chosen, the menu left…"), verbose_name=gettext_lazy("action detail"))
    error_code = models.CharField(max_length=20, blank=True, verbose_name=gettext_lazy("error code"))
    error_message = models.TextField(blank=True, verbose_name=gettext_lazy("error message"))
    timeline = models.JSONField(default=list, blank=True, help_text="[[status, iso time], …]", verbose_name=gettext_lazy("timeline"))
    created_at = models.DateTimeField(default=now, verbose_name=gettext_lazy("created at"))
    placed_at = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("placed at"))
    answered_at = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("answered at"))
    ended_at = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("ended at"))

    class Meta:
        verbose_name = gettext_lazy("call attempt")
        verbose_name_plural = gettext_lazy("call attempts")
        constraints = [models.UniqueConstraint(fields=["call", "number"], name="attempt_unique_number")]
        indexes = [
            # Open attempts only (a few per channel): what the sweep's ambiguous-create lookup and the settle
            # pass read every few seconds, without scanning millions of finished attempts.
            models.Index(
                fields=["status", "created_at"],
                name="attempt_open",
                condition=models.Q(status__in=["created", "unknown", "queued", "initiated", "ringing", "in-progress"]),
            ),
            # The dashboard's today's outcomes and recent calls: attempts by when they ended.
            models.Index(fields=["ended_at"], name="attempt_ended"),
        ]

    def __str__(self) -> str:
        return gettext("attempt %(n)s of call %(id)s (%(status)s)") % {
            "n": self.number, "id": self.call_id, "status": self.get_status_display()
        }


class VariantClip(models.Model):
    """A flow clip without variables: rendered once per variant (its voice), shared by all its calls."""

    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="clips")
    name = models.CharField(max_length=20, help_text="message, invalid, no_input, goodbye, menu, or a key path")
    audio = models.ForeignKey(
        "synthesis.RenderedAudio", to_field="render_key", db_column="render_key", on_delete=models.PROTECT,
        related_name="variant_clips",
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["variant", "name"], name="variant_clip_unique_name")]


class CallClip(models.Model):
    """A flow clip with the callee's own variables (or slot dates): rendered per callee.

    Its two keys have no database constraint, for the reason Call's have none (see Call): planning writes
    these rows with their calls and clips in one transaction, a few per call, and PostgreSQL's per-row checks
    at commit were the largest part of planning a campaign with a flow. The ORM's CASCADE and PROTECT apply.
    """

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="clips", db_constraint=False)
    name = models.CharField(max_length=20)
    said = models.CharField(max_length=200, blank=True, help_text="Slots: the slot as said to this callee.")
    audio = models.ForeignKey(
        "synthesis.RenderedAudio", to_field="render_key", db_column="render_key", on_delete=models.PROTECT,
        related_name="call_clips", db_constraint=False,
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["call", "name"], name="call_clip_unique_name")]


class DoNotCall(models.Model):
    phone = models.CharField(max_length=20, unique=True, help_text="E.164", verbose_name=gettext_lazy("phone"))
    reason = models.CharField(max_length=200, blank=True, verbose_name=gettext_lazy("reason"))
    source = models.CharField(max_length=50, blank=True, help_text=gettext_lazy("keypress, admin, import …"), verbose_name=gettext_lazy("source"))
    created_at = models.DateTimeField(default=now, verbose_name=gettext_lazy("created at"))

    class Meta:
        verbose_name = gettext_lazy("do-not-call entry")
        verbose_name_plural = gettext_lazy("do-not-call list")

    def __str__(self) -> str:
        return mask_phone(self.phone)


class ApiToken(models.Model):
    """A key for the API (Authorization: Bearer <token>): BI tools read reports, order systems write contacts.

    Only a SHA-256 digest is stored: the token itself is shown once, when it is created. `scopes` is what the
    token may do on top of its user's permissions: "read", and "write" for the endpoints that change things.
    """

    class Scope(models.TextChoices):
        READ = "read", gettext_lazy("Read: reports, campaigns, contact lists")
        WRITE = "write", gettext_lazy("Write: create contact lists, upsert contacts")

    name = models.CharField(max_length=100, help_text=gettext_lazy("Who uses it, e.g. Metabase or the finance sheet"), verbose_name=gettext_lazy("name"))
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_tokens",
        help_text=gettext_lazy("The token sees what this user may view, no more."),
        verbose_name=gettext_lazy("user"),
    )
    prefix = models.CharField(max_length=12, editable=False, help_text=gettext_lazy("First characters, to tell tokens apart"), verbose_name=gettext_lazy("prefix"))
    digest = models.CharField(max_length=64, unique=True, editable=False, verbose_name=gettext_lazy("digest"))
    created_at = models.DateTimeField(default=now, editable=False, verbose_name=gettext_lazy("created at"))
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False, verbose_name=gettext_lazy("last used at"))
    revoked_at = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("revoked at"))
    # Space-separated, as OAuth writes scopes; tokens made before scopes existed are read-only.
    scopes = models.CharField(max_length=50, default="read", help_text=gettext_lazy("What the token may do: read, write."), verbose_name=gettext_lazy("scopes"))

    class Meta:
        verbose_name = gettext_lazy("API token")
        verbose_name_plural = gettext_lazy("API tokens")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())


class ApiAuditEntry(models.Model):
    """One write through the API: who (token and user), what (method, path, objects), the answer's status."""

    token = models.ForeignKey(ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit", verbose_name=gettext_lazy("token"))
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, verbose_name=gettext_lazy("user"))
    method = models.CharField(max_length=10, verbose_name=gettext_lazy("method"))
    path = models.CharField(max_length=300, verbose_name=gettext_lazy("path"))
    status = models.PositiveSmallIntegerField(verbose_name=gettext_lazy("status"))
    object_ids = models.JSONField(default=list, blank=True, help_text=gettext_lazy("Ids of the rows written (at most 100)."), verbose_name=gettext_lazy("object ids"))
    summary = models.CharField(max_length=300, blank=True, verbose_name=gettext_lazy("summary"))
    replayed = models.BooleanField(default=False, help_text=gettext_lazy("Answered from a stored Idempotency-Key answer."), verbose_name=gettext_lazy("replayed"))
    at = models.DateTimeField(default=now, db_index=True, verbose_name=gettext_lazy("at"))

    class Meta:
        verbose_name = gettext_lazy("API audit entry")
        verbose_name_plural = gettext_lazy("API audit log")

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.status}"


class IdempotentRequest(models.Model):
    """The first answer to a write sent with an Idempotency-Key, replayed when the same key comes again."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=300)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the method, path and canonical body.")
    status = models.PositiveSmallIntegerField()
    response = models.JSONField()
    created_at = models.DateTimeField(default=now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotent_request_unique_key")]


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


# --- result webhooks out (campaigns.outbox writes events, campaigns.webhooks delivers them) ----------------

CALL_FINISHED, CALL_ACTION, CAMPAIGN_FINISHED = "call.finished", "call.action", "campaign.finished"
WEBHOOK_EVENT_TYPES = (CALL_FINISHED, CALL_ACTION, CAMPAIGN_FINISHED)
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def webhook_url_problem(url: str) -> str | None:
    """Why results may not be posted to this URL, or None. https only (the body carries customers' numbers);
    http to this machine only where HERALD_WEBHOOK_LOCAL_HTTP is on (demo machines, tests)."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018  (a bad port raises here)
    except ValueError:
        return gettext("Enter a URL such as https://shop.example.com/herald/webhooks.")
    if not host:
        return gettext("Enter a URL such as https://shop.example.com/herald/webhooks.")
    if parts.username or parts.password or parts.fragment:
        return gettext("No user:password@ and no #fragment in the URL: receivers check the signature instead.")
    if settings.WEBHOOK_LOCAL_HTTP and host in _LOCAL_HOSTS and parts.scheme in ("http", "https"):
        return None
    if parts.scheme != "https":
        return gettext("Only https URLs: the results carry customers' phone numbers and order keys.")
    return None


class WebhookEndpoint(models.Model):
    """Where an order system wants results posted: one campaign's, or every campaign's (campaign blank).

    The signing secret is shown once, when the endpoint is created (campaigns.webhooks.create_endpoint), and
    stored Fernet-encrypted (it must be read back to sign each delivery, so it cannot be a one-way hash).
    """

    name = models.CharField(max_length=100, help_text=gettext_lazy("Who receives it, e.g. the order system"), verbose_name=gettext_lazy("name"))
    url = models.URLField(max_length=500, help_text=gettext_lazy("https URL that receives signed JSON posts"), verbose_name=gettext_lazy("url"))
    campaign = models.ForeignKey(
        "Campaign",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhook_endpoints",
        help_text=gettext_lazy("Blank: every campaign's events."),
        verbose_name=gettext_lazy("campaign"),
    )
    events = models.JSONField(default=list, help_text=gettext_lazy("Which events: call.finished, call.action, campaign.finished"), verbose_name=gettext_lazy("events"))
    secret_encrypted = models.TextField(editable=False, verbose_name=gettext_lazy("secret encrypted"))
    secret_prefix = models.CharField(
        max_length=12, editable=False, help_text=gettext_lazy("First characters of the secret, to tell endpoints apart"),
        verbose_name=gettext_lazy("secret prefix")
    )
    active = models.BooleanField(default=True, verbose_name=gettext_lazy("active"))
    created_at = models.DateTimeField(default=now, editable=False, verbose_name=gettext_lazy("created at"))

    class Meta:
        verbose_name = gettext_lazy("webhook endpoint")
        verbose_name_plural = gettext_lazy("webhook endpoints")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        problem = webhook_url_problem(self.url)
        if problem:
            raise ValidationError({"url": problem})
        if not isinstance(self.events, list) or not self.events:
            raise ValidationError({"events": gettext("Choose at least one event.")})
        unknown = [e for e in self.events if e not in WEBHOOK_EVENT_TYPES]
        if unknown:
            raise ValidationError(
                {
                    "events": gettext("Unknown event %(event)s: choose from %(events)s.")
                    % {"event": repr(unknown[0]), "events": ", ".join(WEBHOOK_EVENT_TYPES)}
                }
            )


class WebhookEvent(models.Model):
    """One thing that happened, written in the transaction that made it happen (the outbox); `event_id` is what
    receivers deduplicate on: the same on every try of every delivery."""

    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, verbose_name=gettext_lazy("event id"))
    type = models.CharField(max_length=20, choices=[(t, t) for t in WEBHOOK_EVENT_TYPES], verbose_name=gettext_lazy("type"))
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="webhook_events", verbose_name=gettext_lazy("campaign"))
    payload = models.JSONField(verbose_name=gettext_lazy("payload"))
    created_at = models.DateTimeField(default=now, verbose_name=gettext_lazy("created at"))

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class WebhookDelivery(models.Model):
    """One event to one endpoint: retried with backoff until delivered or 24 h after the event."""

    class State(models.TextChoices):
        PENDING = "pending", gettext_lazy("Pending")
        DELIVERED = "delivered", gettext_lazy("Delivered")
        FAILED = "failed", gettext_lazy("Failed for good")

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries", verbose_name=gettext_lazy("event"))
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries", verbose_name=gettext_lazy("endpoint"))
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, verbose_name=gettext_lazy("state"))
    attempts = models.PositiveIntegerField(default=0, help_text=gettext_lazy("Tries so far."), verbose_name=gettext_lazy("attempts"))
    next_attempt_at = models.DateTimeField(default=now, help_text=gettext_lazy("When the next try is due (while pending)."), verbose_name=gettext_lazy("next attempt at"))
    # Set when a sweep claims the delivery for one worker's try (campaigns.webhooks.claim_due): nobody else may
    # post it until then. A worker that dies mid-try leaves it to expire, and the delivery is taken up again.
    leased_until = models.DateTimeField(null=True, blank=True, editable=False, verbose_name=gettext_lazy("leased until"))
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True, verbose_name=gettext_lazy("last status code"))
    last_error = models.CharField(max_length=500, blank=True, verbose_name=gettext_lazy("last error"))
    last_latency_ms = models.PositiveIntegerField(null=True, blank=True, verbose_name=gettext_lazy("last latency ms"))
    delivered_at = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("delivered at"))
    # [{"at": iso, "status": int|null, "latency_ms": int|null, "error": str}, …]: the latest tries, oldest first.
    tries = models.JSONField(default=list, blank=True, verbose_name=gettext_lazy("tries"))
    created_at = models.DateTimeField(default=now, verbose_name=gettext_lazy("created at"))

    class Meta:
        verbose_name = gettext_lazy("webhook delivery")
        verbose_name_plural = gettext_lazy("webhook deliveries")
        constraints = [models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_unique")]
        indexes = [
            # Pending only: what the sweep reads every few seconds, without scanning delivered history.
            models.Index(fields=["next_attempt_at"], name="webhook_delivery_due", condition=Q(state="pending")),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.state})"


class StaffPreference(models.Model):
    """What one staff member chose for themselves: the admin's language (settings.LANGUAGES)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="herald_preference", verbose_name=gettext_lazy("user"))
    language = models.CharField(max_length=10, choices=settings.LANGUAGES, default="en", verbose_name=gettext_lazy("language"))

    class Meta:
        verbose_name = gettext_lazy("staff preference")
        verbose_name_plural = gettext_lazy("staff preferences")

    def __str__(self) -> str:
        return f"{self.user}: {self.language}"
