"""Campaign verbs: import contacts, launch (plan calls in bulk), pause/resume/cancel, sweep the dialer.

Views, admin actions, tasks and commands call these; they hold no business logic of their own.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from campaigns.contacts_csv import CsvImportError, parse_contacts_csv
from campaigns.models import Call, Campaign, Contact, ContactImport, ContactList, DoNotCall, Variant
from campaigns.templating import (
    MissingVariables,
    TemplateSyntaxError,
    has_reading_hints,
    parse_template,
    render_marked,
    render_template,
    validate_template,
)
from campaigns.windows import WindowError, calling_window, check_rules
from synthesis.engines import engine_problem
from synthesis.engines.base import EngineError
from synthesis.frontend.marks import strip_marks
from synthesis.gptsovits import basemodels
from synthesis.keys import normalise_text
from synthesis.models import RenderedAudio
from voices.models import Voice

log = logging.getLogger(__name__)

OPEN_STATES = (Call.State.RENDERING, Call.State.READY, Call.State.DIALING, Call.State.IN_PROGRESS)
ACTIVE_STATES = (Call.State.DIALING, Call.State.IN_PROGRESS)
PLAN_CHUNK = 20000  # contacts per read-plan-write round; bounds memory on million-contact lists


class LaunchError(Exception):
    """The campaign cannot start; the message says why in words staff understand."""


# --- contacts --------------------------------------------------------------------------------------


def import_contacts(contact_list: ContactList, data: bytes, *, filename: str, by: Any = None) -> ContactImport:
    """Add or update contacts from a CSV; every line ends up created, updated, merged or rejected."""
    record = ContactImport(contact_list=contact_list, filename=filename[:255], imported_by=by)
    try:
        region = (contact_list.default_region or settings.DEFAULT_REGION).upper()
        parsed = parse_contacts_csv(data, default_region=region, default_timezone=contact_list.default_timezone or None)
    except (CsvImportError, ValueError) as exc:  # ValueError: a region phonenumbers does not know
        record.error = str(exc)
        record.save()
        return record
    record.encoding = parsed.encoding
    record.total_rows = parsed.total_rows
    record.merged = parsed.merged
    record.rejected = len(parsed.rejected)
    record.rejected_rows = [{"line": r.line, "reason": r.reason, "raw": r.raw} for r in parsed.rejected]
    with transaction.atomic():
        existing = dict(contact_list.contacts.values_list("phone", "pk"))
        new, changed = [], []
        for item in parsed.contacts:
            contact = Contact(
                contact_list=contact_list,
                phone=item.phone,
                name=item.name,
                timezone=item.timezone,
                fields=item.fields,
                source_line=item.line,
            )
            if item.phone in existing:
                contact.pk = existing[item.phone]
                changed.append(contact)
            else:
                new.append(contact)
        Contact.objects.bulk_create(new, batch_size=2000)
        Contact.objects.bulk_update(changed, ["name", "timezone", "fields", "source_line"], batch_size=2000)
        record.created, record.updated = len(new), len(changed)
        record.save()
    log.info(
        "import %s into %s: %d created, %d updated, %d merged, %d rejected",
        filename, contact_list, record.created, record.updated, record.merged, record.rejected,
    )
    return record


def add_to_do_not_call(phone: str, *, reason: str, source: str) -> bool:
    """Put a number on the DNC list and cancel its queued calls in every campaign (idempotent); True if new."""
    return bool(add_numbers_to_do_not_call({phone: reason}, source=source).added)


# --- scripts ---------------------------------------------------------------------------------------


def validate_script(text: str) -> None:
    """Raise ValidationError naming the position and problem of a bad template."""
    try:
        validate_template(text)
    except TemplateSyntaxError as exc:
        raise ValidationError(str(exc), code="template") from exc


# --- launch and planning ---------------------------------------------------------------------------


def _instant_voice_problem(voice: Voice) -> str | None:
    """Why an instant voice's base models cannot serve it (listed against the manifest, not hashed)."""
    if not voice.is_instant:
        return None
    base = basemodels.base_dir()
    found = basemodels.problems(base, voice.base_version, verify=False)
    where = f" in {base}" if base else ""
    return f"its {voice.base_version} base models{where} are incomplete: {'; '.join(found)}" if found else None


def check_launchable(campaign: Campaign) -> None:
    """Raise LaunchError with the first reason the campaign cannot run."""
    if campaign.status not in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED):
        raise LaunchError(f"campaign is {campaign.status}; only draft or scheduled campaigns can be launched")
    variants = list(campaign.variants.select_related("voice", "script"))
    if not variants:
        raise LaunchError("add at least one variant (voice + script) before launching")
    for variant in variants:
        try:
            validate_template(variant.script.text)
        except TemplateSyntaxError as exc:
            raise LaunchError(f"script '{variant.script}' of variant {variant.name}: {exc}") from exc
        if not variant.voice.is_usable():
            raise LaunchError(
                f"voice '{variant.voice}' (variant {variant.name}) is a cloned voice without a valid "
                "speaker consent; record the speaker's consent first"
            )
        try:
            problem = engine_problem(variant.voice.engine) or _instant_voice_problem(variant.voice)
        except EngineError as exc:
            problem = str(exc)
        if problem:
            raise LaunchError(f"voice '{variant.voice}' (variant {variant.name}): {problem}")
    try:
        check_rules(campaign)
    except WindowError as exc:
        raise LaunchError(str(exc)) from exc
    from telephony.outcomes import validate_retry_policy

    try:
        validate_retry_policy(campaign.retry_policy)
    except ValueError as exc:
        raise LaunchError(str(exc)) from exc
    check_compliance(campaign)
    clash = key_clash(campaign) or assignment_conflict(campaign)
    if clash:
        raise LaunchError(clash)
    try:
        caller = phonenumbers.parse(campaign.caller_id, None)
        valid_caller = phonenumbers.is_valid_number(caller)
    except phonenumbers.NumberParseException:
        valid_caller = False
    if not valid_caller:
        raise LaunchError(f"caller id {campaign.caller_id!r} is not a valid E.164 number (+country code)")
    account = campaign.telephony_account
    if account.caller_ids and campaign.caller_id not in account.caller_ids:
        raise LaunchError(f"caller id {campaign.caller_id} is not one of account {account.name}'s numbers")
    from telephony.credentials import CredentialsError, auth_token

    if account.kind == account.Kind.SIP and not account.sip_host:
        raise LaunchError(f"SIP trunk account {account.name} has no SIP server (host) set")
    # A trunk that admits us by IP address has no username and needs no password; everything else does.
    if account.kind != account.Kind.SIP or account.account_sid:
        try:
            auth_token(account)
        except CredentialsError as exc:
            raise LaunchError(str(exc)) from exc
    if campaign.ends_at and campaign.ends_at <= timezone.now():
        raise LaunchError("the campaign's end time is already past")
    if not campaign.contact_list.contacts.exists():
        raise LaunchError(f"contact list '{campaign.contact_list}' is empty")


def key_clash(campaign: Campaign) -> str | None:
    """Why the campaign's keys cannot work together (one key with two meanings), or None."""
    keys = {
        "opt-out": campaign.opt_out_digit,
        "confirm": campaign.confirm_digit,
        "reschedule": campaign.reschedule_digit,
    }
    seen: dict[str, str] = {}
    for meaning, key in keys.items():
        if key and key in seen:
            return f"key {key} cannot mean both {seen[key]} and {meaning}: choose different keys"
        seen[key] = meaning
    return None


def check_compliance(campaign: Campaign) -> None:
    """Rules for automated calls in a cloned voice: the disclosure is spoken first and cannot be removed."""
    cloned = [v.name for v in campaign.variants.select_related("voice") if v.voice.needs_consent]
    if cloned and not campaign.disclosure_text.strip():
        raise LaunchError(
            f"variant {', '.join(cloned)} uses a cloned voice: the disclosure sentence (e.g. 这是一通智能语音通知。) "
            "is required and spoken first in every call"
        )
    if campaign.fallback_text.strip():
        try:
            template = parse_template(campaign.fallback_text)
        except TemplateSyntaxError as exc:
            raise LaunchError(f"generic clip text: {exc}") from exc
        if any(not isinstance(part, str) for part in template):
            raise LaunchError("the generic clip text is said to everybody: it cannot contain {variables}")
    if campaign.machine_action == Campaign.MachineAction.VOICEMAIL:
        if campaign.voicemail_script is None:
            raise LaunchError(
                "answering machines get a voicemail: choose the voicemail script, or hang up on machines instead"
            )
        try:
            validate_template(campaign.voicemail_script.text)
        except TemplateSyntaxError as exc:
            raise LaunchError(f"voicemail script '{campaign.voicemail_script}': {exc}") from exc


def launch_campaign(campaign: Campaign, *, by: Any = None) -> int:
    """Validate, then plan one Call per contact and start rendering; returns how many calls were planned."""
    check_launchable(campaign)
    now = timezone.now()
    status = Campaign.Status.SCHEDULED if campaign.starts_at > now else Campaign.Status.RUNNING
    with transaction.atomic():
        updated = Campaign.objects.filter(
            pk=campaign.pk, status__in=[Campaign.Status.DRAFT, Campaign.Status.SCHEDULED]
        ).update(status=status, launched_at=now)
        if updated != 1:
            raise LaunchError("the campaign was launched by somebody else just now")
        result = plan_calls(campaign)
    campaign.refresh_from_db()
    log.info(
        "launched campaign %s: %d planned, %d invalid, %d on do-not-call, %d renders queued",
        campaign.pk, result.planned, result.invalid, result.do_not_call, result.render_batches,
    )
    return result.planned


@dataclass
class PlanResult:
    planned: int = 0
    invalid: int = 0
    do_not_call: int = 0
    no_consent: int = 0
    cached: int = 0
    render_batches: int = 0
    per_variant: Counter = field(default_factory=Counter)


class _PreparedVariant:
    def __init__(self, variant: Variant, disclosure: str = "", voicemail_text: str = "") -> None:
        from synthesis.actions import keyer_for

        self.variant = variant
        # A cloned voice says first that this is an automated call (check_compliance makes sure there is a text).
        self.disclosure = normalise_text(disclosure) if variant.voice.needs_consent and disclosure.strip() else ""
        self.template = parse_template(variant.script.text)
        self.hinted = has_reading_hints(self.template)
        # The voicemail clip: a second script, in this variant's voice, with the same variables and disclosure.
        self.voicemail = parse_template(voicemail_text) if voicemail_text.strip() else None
        self.voicemail_hinted = self.voicemail is not None and has_reading_hints(self.voicemail)
        self.keyer = keyer_for(variant.voice)
        self.parameters = dict(variant.voice.parameters or {})
        self.parameters_json = json.dumps(self.parameters)  # jsonb goes over COPY as its JSON text


def pick_variant(assignment: int | str, phone: str, cumulative: list[int]) -> int:
    """Deterministic weighted choice: the same contact always hears the same variant of a campaign (or of
    every campaign sharing an assignment key). `assignment` is the key, or the campaign id when it has none."""
    digest = hashlib.blake2b(f"{assignment}:{phone}".encode(), digest_size=8).digest()
    point = int.from_bytes(digest, "big") % cumulative[-1]
    return bisect.bisect_right(cumulative, point)


def assignment_of(campaign: Campaign) -> int | str:
    """What a contact's variant is hashed with: the shared assignment key, or the campaign's own id."""
    return campaign.assignment_key or campaign.pk


def variant_order(campaign: Campaign) -> tuple[str, ...]:
    # Campaigns sharing a key line their variants up by name (their ids differ); a campaign alone keeps the
    # order it has always planned in, so contacts added to a running campaign get what the rule gave before.
    return ("name",) if campaign.assignment_key else ("pk",)


def assignment_conflict(campaign: Campaign) -> str | None:
    """Why the campaign cannot share its assignment key (other variants or weights under the same key)."""
    if not campaign.assignment_key:
        return None
    mine = list(campaign.variants.order_by("name").values_list("name", "weight"))
    others = (
        Campaign.objects.filter(assignment_key=campaign.assignment_key)
        .exclude(pk=campaign.pk)
        .exclude(status=Campaign.Status.DRAFT)
        .prefetch_related("variants")
    )
    for other in others:
        theirs = sorted((v.name, v.weight) for v in other.variants.all())
        if theirs != mine:
            shown = ", ".join(f"{name}:{weight}" for name, weight in theirs)
            return (
                f"campaign '{other}' shares assignment key {campaign.assignment_key!r} with variants {shown}: "
                "campaigns sharing a key need the same variant names and weights, or contacts would switch variant"
            )
    return None


def plan_calls(campaign: Campaign) -> PlanResult:
    """Create the campaign's Calls in bulk (idempotent: contacts already planned are left alone)."""
    from synthesis.tasks import enqueue_renders

    result = PlanResult()
    voicemail_text = (
        campaign.voicemail_script.text
        if campaign.machine_action == Campaign.MachineAction.VOICEMAIL and campaign.voicemail_script
        else ""
    )
    prepared = [
        _PreparedVariant(v, campaign.disclosure_text, voicemail_text)
        for v in campaign.variants.select_related("voice", "script").order_by(*variant_order(campaign))
    ]
    cumulative = []
    total = 0
    for p in prepared:
        total += p.variant.weight
        cumulative.append(total)
    start_at = max(campaign.starts_at, timezone.now())
    # The do-not-call check rides along in the contacts query: one round trip per chunk, not two.
    contacts = (
        campaign.contact_list.contacts.order_by("pk")
        .annotate(blocked=Exists(DoNotCall.objects.filter(phone=OuterRef("phone"))))
        .values_list("pk", "phone", "name", "timezone", "fields", "blocked", "consent_basis")
    )
    # PostgreSQL takes the rows by COPY (several times faster, see _CopyWriter); other databases by bulk_create.
    writer = _CopyWriter(campaign, start_at) if connection.vendor == "postgresql" else _BulkWriter(campaign, start_at)
    last_pk = 0
    # Atomic even when called outside a transaction: the COPY staging tables live until commit.
    with transaction.atomic():
        writer.start()
        while True:
            chunk = list(contacts.filter(pk__gt=last_pk)[:PLAN_CHUNK])
            if not chunk:
                break
            last_pk = chunk[-1][0]
            writer.write(
                *_plan_chunk(assignment_of(campaign), chunk, prepared, cumulative, result, campaign.require_consent)
            )
        writer.finish()
        if campaign.fallback_text.strip():
            _plan_fallback(campaign, prepared[0])
    result.planned = Call.objects.filter(campaign=campaign).exclude(state=Call.State.INVALID).exclude(
        outcome=Call.Outcome.DO_NOT_CALL
    ).count()
    # Cache hits: audio rendered earlier (another campaign, a previous launch) makes the call ready at once.
    result.cached = _ready_if_rendered(campaign.pk)
    rendering = Call.objects.filter(campaign=campaign, state=Call.State.RENDERING)
    waiting = Q(render_key__in=rendering.values("audio_id"))
    if voicemail_text:
        waiting |= Q(render_key__in=rendering.exclude(voicemail_audio=None).values("voicemail_audio_id"))
    if campaign.fallback_audio_id:
        waiting |= Q(render_key=campaign.fallback_audio_id)
    pending = RenderedAudio.objects.filter(waiting, state=RenderedAudio.State.PENDING).values_list(
        "render_key", "voice_id"
    )
    # A render that finishes after the cache-hit UPDATE but before this transaction commits marks ready only
    # the calls it can see, not these: look once more after commit, when they are visible to every worker.
    result.render_batches = enqueue_renders(
        pending.iterator(chunk_size=5000), then=lambda: _ready_if_rendered(campaign.pk)
    )
    return result


# A planned call, as the tuple _plan_chunk builds (tuples, not Call instances: a million of those is slow).
_CALL_FIELDS = (
    "contact_id", "variant_id", "phone", "timezone", "text", "audio_id", "voicemail_audio_id", "state", "outcome",
    "error",
)
# A call may be dialled once its clip is ready, and its voicemail clip too when it has one.
_AUDIO_READY = Q(audio__state=RenderedAudio.State.READY) & (
    Q(voicemail_audio=None) | Q(voicemail_audio__state=RenderedAudio.State.READY)
)
_DNC_ERROR = "number is on the do-not-call list"
_NO_CONSENT_ERROR = "no consent record for automated calls, and the campaign requires one"


def _plan_chunk(
    assignment: int | str,
    chunk: list[tuple],
    prepared: list[_PreparedVariant],
    cumulative: list[int],
    result: PlanResult,
    require_consent: bool = False,
) -> tuple[list[tuple], dict[str, tuple[str, _PreparedVariant]]]:
    """Variant, text, render key and state of each contact; returns the call rows and the new audio by key."""
    rendering, invalid, done = Call.State.RENDERING.value, Call.State.INVALID.value, Call.State.DONE.value
    do_not_call, no_consent = Call.Outcome.DO_NOT_CALL.value, Call.Outcome.NO_CONSENT.value
    calls: list[tuple] = []
    audio: dict[str, tuple[str, _PreparedVariant]] = {}
    for pk, phone, name, tz, fields, blocked, consent_basis in chunk:
        p = prepared[pick_variant(assignment, phone, cumulative)]
        if blocked:
            calls.append((pk, p.variant.pk, phone, tz, "", None, None, done, do_not_call, _DNC_ERROR))
            result.do_not_call += 1
            continue
        if require_consent and not consent_basis:
            calls.append((pk, p.variant.pk, phone, tz, "", None, None, done, no_consent, _NO_CONSENT_ERROR))
            result.no_consent += 1
            continue
        variables = dict(fields or {})
        variables["name"] = name
        variables["phone"] = phone
        try:
            if p.hinted:  # reading hints travel with the text (and into the render key) as marks
                spoken = normalise_text(render_marked(p.template, variables))
                text = strip_marks(spoken)
            else:
                spoken = text = normalise_text(render_template(p.template, variables))
        except MissingVariables as exc:
            calls.append((pk, p.variant.pk, phone, tz, "", None, None, invalid, "", str(exc)))
            result.invalid += 1
            continue
        voicemail_key = None
        if p.voicemail is not None:
            try:
                render = render_marked if p.voicemail_hinted else render_template
                said = p.disclosure + normalise_text(render(p.voicemail, variables))
            except MissingVariables as exc:
                calls.append((pk, p.variant.pk, phone, tz, "", None, None, invalid, "", f"voicemail: {exc}"))
                result.invalid += 1
                continue
            voicemail_key = p.keyer.key(said)
            if voicemail_key not in audio:
                audio[voicemail_key] = (said, p)
        if p.disclosure:
            spoken, text = f"{p.disclosure}{spoken}", f"{p.disclosure}{text}"
        key = p.keyer.key(spoken)
        calls.append((pk, p.variant.pk, phone, tz, text, key, voicemail_key, rendering, "", ""))
        if key not in audio:
            audio[key] = (spoken, p)
        result.per_variant[p.variant.name] += 1
    return calls, audio


class _BulkWriter:
    """Any database: model instances through bulk_create, conflicts ignored."""

    def __init__(self, campaign: Campaign, start_at: datetime) -> None:
        self.campaign, self.start_at = campaign, start_at

    def start(self) -> None:
        pass

    def write(self, calls: list[tuple], audio: dict[str, tuple[str, _PreparedVariant]]) -> None:
        renders = [
            RenderedAudio(
                render_key=key, engine=p.variant.voice.engine, engine_version=p.keyer.engine_version,
                voice_id=p.variant.voice_id, text=text, parameters=dict(p.parameters),
            )
            for key, (text, p) in audio.items()
        ]
        RenderedAudio.objects.bulk_create(renders, ignore_conflicts=True, batch_size=2000)
        rows = [dict(zip(_CALL_FIELDS, row, strict=True)) for row in calls]
        Call.objects.bulk_create(
            [Call(campaign=self.campaign, next_attempt_at=self.start_at, **row) for row in rows],
            ignore_conflicts=True, batch_size=2000,
        )

    def finish(self) -> None:
        pass


class _CopyWriter:
    """PostgreSQL (psycopg 3): COPY into staging tables, then INSERT … SELECT … ON CONFLICT DO NOTHING.

    COPY skips the per-row cost of bulk_create (a model instance and sixteen SQL parameters a row), which was
    most of planning's time. But COPY cannot skip conflicts, and both skips matter: a contact already planned
    keeps its call (planning twice changes nothing), and audio that another campaign inserted first is
    shared, not an error. Staging gives COPY's speed with INSERT's ON CONFLICT. Columns the planner does not
    set get the model's defaults, so the rows are the ones bulk_create would write.
    """

    AUDIO_FIELDS = ("render_key", "text", "engine", "engine_version", "voice_id", "parameters")
    STAGING = (("plan_audio", RenderedAudio, AUDIO_FIELDS), ("plan_call", Call, _CALL_FIELDS))

    def __init__(self, campaign: Campaign, start_at: datetime) -> None:
        self.campaign, self.start_at = campaign, start_at

    def start(self) -> None:
        # The real tables' column types; ON COMMIT DROP in case finish() is never reached.
        with connection.cursor() as cursor:
            for staging, model, fields in self.STAGING:
                cursor.execute(
                    f"CREATE TEMP TABLE {staging} ON COMMIT DROP AS "
                    f"SELECT {_columns(model, fields)} FROM {_table(model)} WITH NO DATA"
                )

    def write(self, calls: list[tuple], audio: dict[str, tuple[str, _PreparedVariant]]) -> None:
        audio_rows = [
            (key, text, p.variant.voice.engine, p.keyer.engine_version, p.variant.voice_id, p.parameters_json)
            for key, (text, p) in audio.items()
        ]
        with connection.cursor() as cursor:
            for (staging, model, fields), rows in zip(self.STAGING, (audio_rows, calls), strict=True):
                with cursor.copy(f"COPY {staging} ({_columns(model, fields)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)

    def finish(self) -> None:
        with connection.cursor() as cursor:
            # Audio first only for readability: the calls' foreign key to it is checked at commit. In key order,
            # the unique index takes the new keys in one sweep instead of at random: about a quarter faster.
            _insert_from_staging(
                cursor, RenderedAudio, "plan_audio", self.AUDIO_FIELDS, {},
                conflict="render_key", order="render_key",
            )
            # Calls in contact order, as before: their ids break ties in the order the dialer takes them.
            _insert_from_staging(
                cursor, Call, "plan_call", _CALL_FIELDS, {"campaign_id": self.campaign.pk, "next_attempt_at": self.start_at},
                conflict="campaign_id, contact_id", order="contact_id",
            )
            for staging, _, _ in self.STAGING:
                cursor.execute(f"DROP TABLE {staging}")


def _table(model: type) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _columns(model: type, fields: Iterable[str]) -> str:
    return ", ".join(connection.ops.quote_name(model._meta.get_field(name).column) for name in fields)


def _insert_from_staging(
    cursor: Any,
    model: type,
    staging: str,
    fields: tuple[str, ...],
    constants: dict[str, Any],
    *,
    conflict: str,
    order: str,
) -> None:
    """INSERT the staged rows into the model's table, filling every other column from `constants` or the
    model's field default (a nullable column without one is left NULL); rows that conflict are skipped."""
    columns, values, params = [_columns(model, fields)], [_columns(model, fields)], []
    for f in model._meta.concrete_fields:
        if f.primary_key or f.attname in fields or (f.attname not in constants and f.has_db_default()):
            continue  # the database fills these
        value = f.get_db_prep_save(constants[f.attname] if f.attname in constants else f.get_default(), connection)
        if value is None:
            continue  # left out is NULL
        columns.append(connection.ops.quote_name(f.column))
        values.append(f"CAST(%s AS {f.cast_db_type(connection)})")
        params.append(value)
    cursor.execute(
        f"INSERT INTO {_table(model)} ({', '.join(columns)}) SELECT {', '.join(values)} FROM {staging} "
        f"ORDER BY {order} ON CONFLICT ({conflict}) DO NOTHING",
        params,
    )


def _ready_if_rendered(campaign_id: int) -> int:
    return (
        Call.objects.filter(campaign_id=campaign_id, state=Call.State.RENDERING)
        .filter(_AUDIO_READY)
        .update(state=Call.State.READY, updated_at=timezone.now())
    )


def mark_calls_ready(render_key: str) -> int:
    """Audio for this key exists now: its waiting calls may be dialled (when their other clip is ready too)."""
    now = timezone.now()
    ready = 0
    # Two updates, not one OR: each uses its own index on the render key.
    for waiting in (Q(audio_id=render_key), Q(voicemail_audio_id=render_key)):
        ready += (
            Call.objects.filter(waiting, state=Call.State.RENDERING)
            .filter(_AUDIO_READY)
            .update(state=Call.State.READY, updated_at=now)
        )
    return ready


def _plan_fallback(campaign: Campaign, p: _PreparedVariant) -> None:
    """The campaign's generic clip, in its first variant's voice (with the disclosure, for a cloned voice)."""
    spoken = p.disclosure + normalise_text(render_template(parse_template(campaign.fallback_text.strip()), {}))
    key = p.keyer.key(spoken)
    RenderedAudio.objects.get_or_create(
        render_key=key,
        defaults=dict(
            engine=p.variant.voice.engine, engine_version=p.keyer.engine_version, voice_id=p.variant.voice_id,
            text=spoken, parameters=dict(p.parameters),
        ),
    )
    Campaign.objects.filter(pk=campaign.pk).update(fallback_audio_id=key)
    campaign.fallback_audio_id = key


def fail_calls_for_audio(render_key: str, message: str) -> int:
    """Audio for this key cannot be made. Callees of a campaign with a generic clip get that clip instead;
    the others fail with the reason, shown in the report and the waiting page: nobody is skipped silently."""
    now = timezone.now()
    waiting = Call.objects.filter(audio_id=render_key, state=Call.State.RENDERING)
    with transaction.atomic():
        # A voicemail clip that cannot be made costs only the voicemail: machines are hung up on instead.
        without_voicemail = Call.objects.filter(voicemail_audio_id=render_key, state=Call.State.RENDERING)
        dropped = dict(
            voicemail_audio=None,
            error=f"voicemail clip failed ({message[:1500]}); answering machines are hung up on instead",
            updated_at=now,
        )
        without_voicemail.filter(audio__state=RenderedAudio.State.READY).update(state=Call.State.READY, **dropped)
        without_voicemail.update(**dropped)  # the rest still wait for their message clip
        substituted = 0
        fallbacks = (
            waiting.exclude(campaign__fallback_audio_id=None)
            .exclude(campaign__fallback_audio_id=render_key)
            .values_list("campaign_id", "campaign__fallback_audio_id", "campaign__fallback_audio__state")
            .distinct()
        )
        for campaign_id, fallback_key, fallback_state in list(fallbacks):
            ready = fallback_state == RenderedAudio.State.READY
            substituted += waiting.filter(campaign_id=campaign_id).update(
                audio_id=fallback_key,
                used_fallback=True,
                state=Call.State.READY if ready else Call.State.RENDERING,
                error=f"personalised audio failed ({message[:1500]}); the campaign's generic clip plays instead",
                updated_at=now,
            )
        failed = waiting.update(
            state=Call.State.FAILED, outcome=Call.Outcome.FAILED, error=message[:2000], updated_at=now
        )
    if substituted:
        log.warning("%d call(s) fall back to their campaign's generic clip: %s", substituted, message[:200])
    return substituted + failed


# --- status changes --------------------------------------------------------------------------------


def pause_campaign(campaign: Campaign, *, reason: str = "") -> bool:
    """Stop dialling new calls; calls in progress finish normally. `reason`: why, when the system paused it.

    True if this call paused it (a campaign already paused keeps its first reason).
    """
    paused = Campaign.objects.filter(
        pk=campaign.pk, status__in=[Campaign.Status.RUNNING, Campaign.Status.SCHEDULED]
    ).update(status=Campaign.Status.PAUSED, paused_reason=reason[:255])
    campaign.refresh_from_db()
    return paused == 1


def resume_campaign(campaign: Campaign) -> bool:
    """Dial again from the next sweep, whoever paused it (staff or the breaker); True if it was paused."""
    resumed = Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.PAUSED).update(
        status=Campaign.Status.RUNNING, paused_reason=""
    )
    campaign.refresh_from_db()
    return resumed == 1


def cancel_campaign(campaign: Campaign) -> int:
    """Cancel every call not yet dialled; returns how many were cancelled."""
    now = timezone.now()
    with transaction.atomic():
        Campaign.objects.filter(pk=campaign.pk).exclude(
            status__in=[Campaign.Status.COMPLETED, Campaign.Status.CANCELLED]
        ).update(status=Campaign.Status.CANCELLED, finished_at=now)
        cancelled = Call.objects.filter(
            campaign=campaign, state__in=[Call.State.RENDERING, Call.State.READY]
        ).update(state=Call.State.CANCELLED, updated_at=now)
    campaign.refresh_from_db()
    return cancelled


# --- the dialer sweep ------------------------------------------------------------------------------


@dataclass
class SweepResult:
    enqueued: list[int] = field(default_factory=list)
    started: int = 0
    completed: list[int] = field(default_factory=list)


def _rate_budget(calls_per_second: float) -> int:
    return max(1, math.floor(calls_per_second * settings.SWEEP_INTERVAL))


def sweep(now: datetime | None = None) -> SweepResult:
    """Move ready calls whose callee-local window is open to the telephony queue, within rate limits."""
    from telephony.tasks import enqueue_place_call

    now = now or timezone.now()
    result = SweepResult()
    result.started = Campaign.objects.filter(status=Campaign.Status.SCHEDULED, starts_at__lte=now).update(
        status=Campaign.Status.RUNNING
    )
    for campaign in Campaign.objects.filter(status=Campaign.Status.RUNNING, ends_at__lte=now):
        _finish(campaign, now, cancel_remaining=True)
        result.completed.append(campaign.pk)
    active = Counter(
        dict(
            Call.objects.filter(state__in=ACTIVE_STATES)
            .values_list("campaign_id")
            .annotate(n=Count("pk"))
            .values_list("campaign_id", "n")
        )
    )
    account_active: Counter = Counter()
    campaigns = list(Campaign.objects.filter(status=Campaign.Status.RUNNING).select_related("telephony_account"))
    for campaign in campaigns:
        account_active[campaign.telephony_account_id] += active[campaign.pk]
    account_budget: dict[int, int] = {}
    for campaign in campaigns:
        account = campaign.telephony_account
        if account.pk not in account_budget:
            account_budget[account.pk] = min(
                _rate_budget(account.calls_per_second), account.max_concurrent_calls - account_active[account.pk]
            )
        budget = min(
            campaign.max_concurrent_calls - active[campaign.pk],
            _rate_budget(campaign.calls_per_second),
            account_budget[account.pk],
        )
        if budget <= 0:
            continue
        picked = _pick_dialable(campaign, now, budget)
        spacing = 1.0 / min(campaign.calls_per_second, account.calls_per_second)
        for i, pk in enumerate(picked):
            claimed = Call.objects.filter(pk=pk, state=Call.State.READY).update(
                state=Call.State.DIALING, claimed_at=now, updated_at=now
            )
            if claimed == 1:
                enqueue_place_call(pk, delay=i * spacing)
                result.enqueued.append(pk)
                account_budget[account.pk] -= 1
    for campaign in Campaign.objects.filter(status=Campaign.Status.RUNNING).exclude(
        pk__in=Call.objects.filter(state__in=OPEN_STATES).values("campaign_id")
    ):
        _finish(campaign, now, cancel_remaining=False)
        result.completed.append(campaign.pk)
    return result


def _pick_dialable(campaign: Campaign, now: datetime, budget: int) -> list[int]:
    """Up to `budget` ready calls whose callee may be called now, oldest due first."""
    # Only callees whose zone is open now are read (whether a callee may be called depends on its zone and the
    # time alone): closed zones early in the order cannot starve open ones, and no row needs a second look.
    open_zones = calling_window(campaign).open_zones(now)
    if not open_zones:
        return []
    due = Call.objects.filter(
        campaign=campaign, state=Call.State.READY, next_attempt_at__lte=now, timezone__in=open_zones
    )
    return list(due.order_by("next_attempt_at", "pk").values_list("pk", flat=True)[:budget])


def _finish(campaign: Campaign, now: datetime, *, cancel_remaining: bool) -> None:
    with transaction.atomic():
        if cancel_remaining:
            Call.objects.filter(campaign=campaign, state__in=[Call.State.RENDERING, Call.State.READY]).update(
                state=Call.State.CANCELLED, error="campaign ended before this call could be made", updated_at=now
            )
        Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.RUNNING).update(
            status=Campaign.Status.COMPLETED, finished_at=now
        )
    log.info("campaign %s completed", campaign.pk)


def requeue_stale_dialing(now: datetime | None = None) -> int:
    """Calls claimed by a sweep whose telephony task never ran (lost message, dead worker) go back to ready.

    Only calls with no attempt row for the claim are touched: an attempt row means the provider may have been
    asked, and an ambiguous call is never re-dialled automatically.
    """
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.DIAL_STALE_SECONDS)
    return Call.objects.filter(state=Call.State.DIALING, claimed_at__lt=stale).update(
        state=Call.State.READY, claimed_at=None, updated_at=now
    )


# --- do-not-call -----------------------------------------------------------------------------------

# Calls not yet handed to a provider: a DIALING call is claimed, but its attempt row (written before any
# dialling, under the call's lock) would already have moved it on to IN_PROGRESS.
DNC_CANCELLABLE = (Call.State.RENDERING, Call.State.READY, Call.State.DIALING)
DNC_CHUNK = 500  # numbers per IN (…) query: well inside every database's parameter limit


@dataclass
class DoNotCallAdded:
    added: set[str] = field(default_factory=set)  # numbers that were not on the list before
    cancelled: int = 0  # queued calls cancelled, in every campaign


def add_numbers_to_do_not_call(reasons: dict[str, str], *, source: str) -> DoNotCallAdded:
    """Put E.164 numbers (with a reason each) on the DNC list and cancel their queued calls in every campaign.

    One transaction: a number is never on the list while a call to it still waits in a queue. Numbers already
    on the list keep their entry; their queued calls are cancelled all the same.
    """
    now = timezone.now()
    result = DoNotCallAdded()
    phones = list(reasons)
    with transaction.atomic():
        for start in range(0, len(phones), DNC_CHUNK):
            chunk = phones[start : start + DNC_CHUNK]
            present = set(DoNotCall.objects.filter(phone__in=chunk).values_list("phone", flat=True))
            new = [p for p in chunk if p not in present]
            DoNotCall.objects.bulk_create(
                [DoNotCall(phone=p, reason=reasons[p][:200], source=source[:50], created_at=now) for p in new],
                ignore_conflicts=True,  # added by somebody else just now: on the list either way
            )
            result.added.update(new)
            result.cancelled += Call.objects.filter(phone__in=chunk, state__in=DNC_CANCELLABLE).update(
                state=Call.State.CANCELLED,
                outcome=Call.Outcome.DO_NOT_CALL,
                error=f"cancelled: the number was put on the do-not-call list ({source})"[:2000],
                updated_at=now,
            )
    log.info(
        "do-not-call (%s): %d numbers, %d new, %d queued calls cancelled",
        source, len(phones), len(result.added), result.cancelled,
    )
    return result


# --- report facts ----------------------------------------------------------------------------------


def rebuild_call_facts(calls: QuerySet[Call], *, attempt_model: Any = None) -> int:
    """Recompute each call's report facts (answered, human, listened, final keys, talk time) from its attempts.

    One UPDATE with a correlated subquery per fact: the same statement serves one call after a webhook and a
    whole table in a migration or a repair (`manage.py rebuild_call_facts`). Machine means an answering
    machine or fax (telephony.outcomes.is_machine). Returns how many calls were updated.
    """
    from campaigns.models import CallAttempt

    # The migration that added the facts passes its historical model.
    attempts = (attempt_model or CallAttempt).objects.filter(call_id=OuterRef("pk"))
    answered = attempts.filter(status=CallAttempt.Status.COMPLETED)
    human = answered.exclude(answered_by__startswith="machine").exclude(answered_by="fax")

    def per_call(queryset: QuerySet, aggregate: Count | Sum) -> Coalesce:
        rolled = queryset.order_by().values("call_id").annotate(value=aggregate).values("value")
        return Coalesce(Subquery(rolled, output_field=IntegerField()), 0)

    return calls.update(
        answered=Exists(answered),
        human_answered=Exists(human),
        listened_to_end=Exists(human.filter(listened_to_end=True)),
        final_digits=Coalesce(Subquery(attempts.exclude(digits="").order_by("-number").values("digits")[:1]), Value("")),
        timed_attempts=per_call(answered.filter(duration__isnull=False), Count("pk")),
        talk_seconds=per_call(answered, Sum("duration")),
    )


def record_call_facts(call_id: int) -> None:
    """Bring one call's report facts up to date after one of its attempts changed (inside that transaction).

    The call row is locked first, so two attempts of one call changing at once cannot each write facts
    computed without the other's change.
    """
    locked = Call.objects.select_for_update().filter(pk=call_id)
    list(locked.values_list("pk"))
    rebuild_call_facts(Call.objects.filter(pk=call_id))
