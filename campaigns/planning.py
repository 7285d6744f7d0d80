"""Plan a campaign's calls in bulk: one Call per contact with its sticky variant, text and render keys.

Do-not-call, consent and script errors are accounted for per contact (one bad row fails only itself). Audio
already rendered makes a call ready at once; the rest is queued for synthesis, grouped by voice.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from campaigns import lifecycle
from campaigns.bulkcopy import BulkWriter, CopyWriter
from campaigns.models import Call, Campaign, DoNotCall, Variant
from campaigns.templating import (
    MissingVariables,
    has_reading_hints,
    parse_template,
    render_marked,
    render_template,
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


def plan_calls(campaign: Campaign) -> PlanResult:
    """Create the campaign's Calls in bulk (idempotent: contacts already planned are left alone)."""
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
    # PostgreSQL takes the rows by COPY (several times faster, see campaigns.bulkcopy); other databases by bulk_create.
    writer = CopyWriter(campaign, start_at) if connection.vendor == "postgresql" else BulkWriter(campaign, start_at)
    last_pk = 0
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
            writer.write(
                *_plan_chunk(assignment_of(campaign), chunk, prepared, cumulative, result, campaign.require_consent)
            )
        writer.finish()
        if campaign.fallback_text.strip():
            _plan_fallback(campaign, prepared[0])
    result.planned = Call.objects.filter(campaign=campaign).exclude(state=Call.State.INVALID).exclude(
        outcome=Call.Outcome.DO_NOT_CALL
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
        pending = RenderedAudio.objects.filter(waiting, state=RenderedAudio.State.PENDING).values_list(
            "render_key", "voice_id"
        ).iterator(chunk_size=5000)
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


