"""Plan a campaign's calls in bulk: one Call per contact with its sticky variant, text and render keys.

Do-not-call, consent and script errors are accounted for per contact (one bad row fails only itself). Audio
already rendered makes a call ready at once; the rest is queued for synthesis, grouped by voice.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import zoneinfo
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from campaigns import lifecycle
from campaigns.bulkcopy import BulkWriter, CopyWriter
from campaigns.models import Call, CallClip, CallFlow, Campaign, DoNotCall, FlowNode, Variant, VariantClip
from campaigns.templating import (
    MissingVariables,
    has_reading_hints,
    parse_template,
    render_marked,
    render_template,
    template_variables,
)
from synthesis.actions import keyer_for
from synthesis.frontend.marks import strip_marks
from synthesis.keys import normalise_text
from synthesis.models import RenderedAudio
from synthesis.tasks import enqueue_renders

PLAN_CHUNK = 20000  # contacts per read-plan-write round; bounds memory on million-contact lists


@dataclass
class PlanResult:
    planned: int = 0
    invalid: int = 0
    do_not_call: int = 0
    no_consent: int = 0
    cached: int = 0
    render_batches: int = 0
    per_variant: Counter = field(default_factory=Counter)


@dataclass
class _FlowClips:
    """A flow's clip templates, split into those said the same to everyone (rendered once per variant) and
    those with the callee's variables or slot date (rendered per callee)."""

    fixed: dict[str, list]
    personal: dict[str, list]
    slots: dict[str, FlowNode]  # slot clips by name: their {slot} is the date as said to each callee


def _flow_clips(flow: CallFlow | None) -> _FlowClips | None:
    if flow is None:
        return None
    slots = {n.path: n for n in flow.nodes.select_related("parent") if n.action == FlowNode.Action.SLOT}
    fixed, personal = {}, {}
    for name, text in flow.clip_texts().items():
        template = parse_template(text)
        (personal if name in slots or template_variables(template) else fixed)[name] = template
    return _FlowClips(fixed=fixed, personal=personal, slots=slots)


def slot_said(node: FlowNode, timezone_name: str, first_day: datetime, fields: dict) -> str:
    """A slot as said to one callee: its date (a contact field, or days after the campaign's first calling day
    in the callee's time zone) and its label, e.g. 12月8日上午9点到12点."""
    if node.slot_field:
        day = str(fields.get(node.slot_field) or "").strip()
        if not day:
            raise MissingVariables([node.slot_field])
    else:
        local = first_day.astimezone(zoneinfo.ZoneInfo(timezone_name)).date() + timedelta(days=node.slot_days or 0)
        day = f"{local.month}月{local.day}日"
    return f"{day}{node.slot_label}"


class _PreparedVariant:
    def __init__(self, variant: Variant, disclosure: str = "", voicemail_text: str = "") -> None:
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


def _voicemail_text(campaign: Campaign) -> str:
    if campaign.machine_action == Campaign.MachineAction.VOICEMAIL and campaign.voicemail_script:
        return campaign.voicemail_script.text
    return ""


def _prepare(campaign: Campaign) -> tuple[list[_PreparedVariant], list[int]]:
    """The campaign's variants, parsed, in assignment order, with their cumulative weights."""
    voicemail_text = _voicemail_text(campaign)
    prepared = [
        _PreparedVariant(v, campaign.disclosure_text, voicemail_text)
        for v in campaign.variants.select_related("voice", "script").order_by(*variant_order(campaign))
    ]
    cumulative = []
    total = 0
    for p in prepared:
        total += p.variant.weight
        cumulative.append(total)
    return prepared, cumulative


def _contact_rows(campaign: Campaign, contact_ids: list[int] | None = None) -> Any:
    # The do-not-call check rides along in the contacts query: one round trip per chunk, not two.
    contacts = campaign.contact_list.contacts.all()
    if contact_ids is not None:
        contacts = contacts.filter(pk__in=contact_ids)
    return (
        contacts.order_by("pk")
        .annotate(blocked=Exists(DoNotCall.objects.filter(phone=OuterRef("phone"))))
        .values_list("pk", "phone", "name", "timezone", "fields", "blocked", "consent_basis")
    )


@dataclass
class PlannedRow:
    """What planning would make of one contact, without writing anything (see dry_run)."""

    contact_id: int
    variant: Variant
    state: str
    outcome: str
    error: str
    text: str
    render_key: str | None
    spoken: str = ""  # the text the voice renders (with reading marks), for a render of its own


def dry_run(
    campaign: Campaign, contact_ids: list[int] | None = None, *, variant: Variant | None = None
) -> Iterator[PlannedRow]:
    """Each contact's call as plan_calls would plan it (the same rules, nothing written), in contact order;
    `variant`: as if every contact were given that variant."""
    prepared, cumulative = _prepare(campaign)
    if variant is not None:
        prepared, cumulative = [p for p in prepared if p.variant.pk == variant.pk], [1]
    if not prepared:
        return
    variants = {p.variant.pk: p.variant for p in prepared}
    flow = _flow_clips(campaign.flow)
    start_at = max(campaign.starts_at, timezone.now())
    contacts = _contact_rows(campaign, contact_ids)
    last_pk = 0
    while True:
        chunk = list(contacts.filter(pk__gt=last_pk)[:PLAN_CHUNK])
        if not chunk:
            return
        last_pk = chunk[-1][0]
        calls, audio = _plan_chunk(
            assignment_of(campaign), chunk, prepared, cumulative, PlanResult(), campaign.require_consent,
            flow=flow, first_day=start_at, clip_rows=[],
        )
        for pk, variant_id, _phone, _tz, text, key, _vm, state, outcome, error in calls:
            spoken = audio[key][0] if key in audio else ""
            yield PlannedRow(pk, variants[variant_id], state, outcome, error, text, key, spoken)


def plan_calls(campaign: Campaign, contact_ids: list[int] | None = None) -> PlanResult:
    """Create the campaign's Calls in bulk (idempotent: contacts already planned are left alone).

    contact_ids: plan only these contacts of the list (contacts added to a running campaign), not every one."""
    result = PlanResult()
    voicemail_text = _voicemail_text(campaign)
    prepared, cumulative = _prepare(campaign)
    start_at = max(campaign.starts_at, timezone.now())
    contacts = _contact_rows(campaign, contact_ids)
    # PostgreSQL takes the rows by COPY (several times faster, see campaigns.bulkcopy); other databases by bulk_create.
    writer = CopyWriter(campaign, start_at) if connection.vendor == "postgresql" else BulkWriter(campaign, start_at)
    last_pk = 0
    flow = _flow_clips(campaign.flow)
    # Atomic even when called outside a transaction: the COPY staging tables live until commit.
    with transaction.atomic():
        # One planner per campaign at a time (launch holds this lock already): a first plan can then know that
        # no call exists for any of its contacts.
        Campaign.objects.select_for_update(no_key=True).filter(pk=campaign.pk).values_list("pk").first()
        writer.start(first_plan=not Call.objects.filter(campaign=campaign).exists())
        while True:
            chunk = list(contacts.filter(pk__gt=last_pk)[:PLAN_CHUNK])
            if not chunk:
                break
            last_pk = chunk[-1][0]
            clip_rows: list[tuple[int, str, str, str]] = []  # per-callee flow clips: (contact id, name, key, said)
            calls, audio = _plan_chunk(
                assignment_of(campaign), chunk, prepared, cumulative, result, campaign.require_consent,
                flow=flow, first_day=start_at, clip_rows=clip_rows,
            )
            writer.write(calls, audio, clip_rows)
        writer.finish()
        fixed_pending: list[tuple[str, int | None]] = []
        if flow is not None:
            fixed_pending = _plan_flow_clips(prepared, flow)
        if campaign.fallback_text.strip():
            _plan_fallback(campaign, prepared[0])
    # Planned = will be called: contacts on the do-not-call list or without a required consent are not.
    result.planned = Call.objects.filter(campaign=campaign).exclude(state=Call.State.INVALID).exclude(
        outcome__in=[Call.Outcome.DO_NOT_CALL, Call.Outcome.NO_CONSENT]
    ).count()
    fresh = writer.fresh_audio()
    if fresh is not None:
        # Every call and clip is this plan's own (see CopyWriter.fresh_audio): nothing cached, all pending.
        pending: Iterable[tuple[str, int | None]] = fresh
        fallback = campaign.fallback_audio_id
        if fallback and fallback not in {key for key, _ in fresh}:
            pending = [*fresh, *RenderedAudio.objects.filter(
                render_key=fallback, state=RenderedAudio.State.PENDING
            ).values_list("render_key", "voice_id")]
    else:
        # Cache hits: audio rendered earlier (another campaign, a previous launch) makes the call ready at once.
        result.cached = lifecycle.ready_if_rendered(campaign.pk)
        rendering = Call.objects.filter(campaign=campaign, state=Call.State.RENDERING)
        waiting = Q(render_key__in=rendering.values("audio_id"))
        if voicemail_text:
            waiting |= Q(render_key__in=rendering.exclude(voicemail_audio=None).values("voicemail_audio_id"))
        if campaign.fallback_audio_id:
            waiting |= Q(render_key=campaign.fallback_audio_id)
        if flow is not None and flow.personal:
            waiting |= Q(render_key__in=CallClip.objects.filter(call__in=rendering).values("audio_id"))
        pending = RenderedAudio.objects.filter(waiting, state=RenderedAudio.State.PENDING).values_list(
            "render_key", "voice_id"
        ).iterator(chunk_size=5000)
    if fixed_pending:
        pending = [*pending, *fixed_pending]
    # A render that finishes after the cache-hit UPDATE but before this transaction commits marks ready only
    # the calls it can see, not these: look once more after commit, when they are visible to every worker.
    result.render_batches = enqueue_renders(pending, then=lambda: lifecycle.ready_if_rendered(campaign.pk))
    return result


_DNC_ERROR = "number is on the do-not-call list"
_NO_CONSENT_ERROR = "no consent record for automated calls, and the campaign requires one"


def _plan_chunk(
    assignment: int | str,
    chunk: list[tuple],
    prepared: list[_PreparedVariant],
    cumulative: list[int],
    result: PlanResult,
    require_consent: bool = False,
    *,
    flow: _FlowClips | None = None,
    first_day: datetime | None = None,
    clip_rows: list[tuple[int, str, str, str]] | None = None,
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
        if flow is not None and flow.personal:
            try:
                personal = _personal_clips(flow, p, variables, tz, first_day)
            except MissingVariables as exc:
                calls.append((pk, p.variant.pk, phone, tz, "", None, None, invalid, "", f"call flow: {exc}"))
                result.invalid += 1
                continue
            for name, said_text, said in personal:
                clip_key = p.keyer.key(said_text)
                clip_rows.append((pk, name, clip_key, said))
                if clip_key not in audio:
                    audio[clip_key] = (said_text, p)
        if p.disclosure:
            spoken, text = f"{p.disclosure}{spoken}", f"{p.disclosure}{text}"
        key = p.keyer.key(spoken)
        calls.append((pk, p.variant.pk, phone, tz, text, key, voicemail_key, rendering, "", ""))
        if key not in audio:
            audio[key] = (spoken, p)
        result.per_variant[p.variant.name] += 1
    return calls, audio


def _speak(template: list, variables: dict) -> str:
    render = render_marked if has_reading_hints(template) else render_template
    return normalise_text(render(template, variables))


def _personal_clips(
    flow: _FlowClips, p: _PreparedVariant, variables: dict, tz: str, first_day: datetime
) -> list[tuple[str, str, str]]:
    """(name, text to render, slot as said) of each per-callee flow clip; MissingVariables names the clip."""
    clips = []
    for name, template in flow.personal.items():
        slot = flow.slots.get(name)
        said = slot_said(slot, tz, first_day, variables) if slot is not None else ""
        try:
            clips.append((name, _speak(template, {**variables, "slot": said} if slot else variables), said))
        except MissingVariables as exc:
            raise MissingVariables([f"{n} (in clip {name})" for n in exc.names]) from exc
    return clips


def _plan_flow_clips(prepared: list[_PreparedVariant], flow: _FlowClips) -> list[tuple[str, int | None]]:
    """The flow's clips said the same to everyone, once per variant; returns those still to render (each
    callee's own went in with the calls, see campaigns.bulkcopy)."""
    pending = []
    for p in prepared:
        for name, template in flow.fixed.items():
            spoken = _speak(template, {})
            key = p.keyer.key(spoken)
            audio, _ = RenderedAudio.objects.get_or_create(
                render_key=key,
                defaults=dict(
                    engine=p.variant.voice.engine, engine_version=p.keyer.engine_version, voice_id=p.variant.voice_id,
                    text=spoken, parameters=dict(p.parameters),
                ),
            )
            VariantClip.objects.update_or_create(variant=p.variant, name=name, defaults={"audio_id": key})
            if audio.state == RenderedAudio.State.PENDING:
                pending.append((key, p.variant.voice_id))
    return pending


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


