"""Bulk planning writes exactly the rows the planning rules say, on SQLite (bulk_create) and on PostgreSQL
(COPY into staging tables, then INSERT … ON CONFLICT DO NOTHING)."""

from __future__ import annotations

from itertools import accumulate

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, ProtectedError
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import lifecycle, planning
from campaigns.launch import launch_campaign
from campaigns.models import Call, Campaign, Contact, DoNotCall, ScriptTemplate
from campaigns.planning import pick_variant, plan_calls
from campaigns.templating import MissingVariables, render_template
from synthesis.actions import keyer_for
from synthesis.engines import engine_version
from synthesis.keys import normalise_text
from synthesis.models import RenderedAudio

pytestmark = pytest.mark.django_db

UNIQUE_TEXTS = "您好{name}，您的订单{order_id}明天送达。"
SHARED_TEXTS = "您好，订单 {order_id}\t明天送达。"  # six order ids: audio shared across chunks; whitespace collapsed

CALL_SET = ("contact_id", "variant_id", "phone", "timezone", "text", "audio_id", "state", "outcome", "error")
AUDIO_SET = ("render_key", "engine", "engine_version", "voice_id", "text", "parameters", "state")


def _fields(i: int) -> dict:
    return {} if i % 9 == 4 else {"order_id": f"SF{i % 6}", "note": i}  # every ninth lacks {order_id}


def expected_calls(campaign: Campaign) -> dict[int, tuple]:
    """The planning rules, stated independently of plan_calls: contact id → CALL_SET values."""
    variants = list(campaign.variants.select_related("voice", "script").order_by("pk"))
    cumulative = list(accumulate(v.weight for v in variants))
    blocked = set(DoNotCall.objects.values_list("phone", flat=True))
    rendered = set(RenderedAudio.objects.filter(state="ready").values_list("render_key", flat=True))
    rows = {}
    for c in Contact.objects.filter(contact_list=campaign.contact_list):
        v = variants[pick_variant(campaign.pk, c.phone, cumulative)]
        if c.phone in blocked:
            rows[c.pk] = (c.pk, v.pk, c.phone, c.timezone, "", None, "done", "do_not_call",
                          "number is on the do-not-call list")
            continue
        try:
            text = normalise_text(render_template(v.script.text, {**c.fields, "name": c.name, "phone": c.phone}))
        except MissingVariables as exc:
            rows[c.pk] = (c.pk, v.pk, c.phone, c.timezone, "", None, "invalid", "", str(exc))
        else:
            key = keyer_for(v.voice).key(text)
            state = "ready" if key in rendered else "rendering"  # audio already there: dial at once
            rows[c.pk] = (c.pk, v.pk, c.phone, c.timezone, text, key, state, "", "")
    return rows


def planned_calls(campaign: Campaign) -> dict[int, tuple]:
    return {row[0]: row for row in Call.objects.filter(campaign=campaign).values_list(*CALL_SET)}


def assert_other_columns_are_model_defaults(model: type, rows: list, set_by_planner: tuple, stamped: str) -> None:
    """Every column the planner does not set holds what an unsaved model instance would (the NOT NULL ones
    included); the timestamp column is filled."""
    blank = model()
    for row in rows:
        for f in model._meta.concrete_fields:
            if f.primary_key or f.attname in set_by_planner:
                continue
            if f.attname == stamped:
                assert getattr(row, f.attname) is not None
            else:
                assert getattr(row, f.attname) == getattr(blank, f.attname), f.attname


def staged_insert_ran(queries: CaptureQueriesContext) -> bool:
    return any('INSERT INTO "campaigns_call"' in q["sql"] and "FROM plan_call" in q["sql"] for q in queries)


def staged_call_insert_skips_conflicts(queries: CaptureQueriesContext) -> bool:
    (insert,) = [q["sql"] for q in queries if 'INSERT INTO "campaigns_call"' in q["sql"]]
    return "ON CONFLICT" in insert


@pytest.mark.parametrize("text", [UNIQUE_TEXTS, SHARED_TEXTS])
def test_planned_rows_follow_the_rules(make_campaign, monkeypatch, django_capture_on_commit_callbacks, text):
    monkeypatch.setattr(planning, "PLAN_CHUNK", 7)  # several chunks, and the same audio in more than one
    campaign = make_campaign(40, text=text, weights=(2, 1), fields=_fields)
    DoNotCall.objects.create(phone="+8613800000003", source="admin")
    DoNotCall.objects.create(phone="+8613800000013", source="keypress")
    before = timezone.now()
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=False):
        planned = launch_campaign(campaign)
    after = timezone.now()

    assert staged_insert_ran(queries) == (connection.vendor == "postgresql")
    if connection.vendor == "postgresql":  # a campaign's first plan meets no planned contact: a plain INSERT
        assert not staged_call_insert_skips_conflicts(queries)
        assert any("FOR NO KEY UPDATE" in q["sql"] for q in queries)
    expected = expected_calls(campaign)
    assert planned_calls(campaign) == expected
    assert planned == sum(1 for row in expected.values() if row[6] == "rendering")
    assert {row[6] for row in expected.values()} == {"rendering", "invalid", "done"}

    calls = list(Call.objects.filter(campaign=campaign))
    assert len({c.next_attempt_at for c in calls}) == 1 and before <= calls[0].next_attempt_at <= after
    assert_other_columns_are_model_defaults(
        Call, calls, (*CALL_SET, "campaign_id", "next_attempt_at"), stamped="updated_at"
    )

    keys = {row[5] for row in expected.values()} - {None}
    renders = list(RenderedAudio.objects.filter(render_key__in=keys))
    assert len(renders) == len(keys)
    for render in renders:
        call = next(c for c in calls if c.audio_id == render.render_key)
        voice = call.variant.voice
        assert [getattr(render, name) for name in AUDIO_SET] == [
            render.render_key, voice.engine, engine_version(voice.engine), voice.pk, call.text, voice.parameters, "pending"
        ]
    assert_other_columns_are_model_defaults(RenderedAudio, renders, AUDIO_SET, stamped="created_at")


def test_fast_path_writes_what_bulk_create_writes(make_campaign, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(planning, "PLAN_CHUNK", 9)
    campaign = make_campaign(30, text=SHARED_TEXTS, fields=_fields)
    DoNotCall.objects.create(phone="+8613800000005", source="admin")

    def snapshot() -> tuple[list, list]:
        calls = Call.objects.filter(campaign=campaign).order_by("contact_id")
        skip_call, skip_audio = {"id", "next_attempt_at", "updated_at"}, {"id", "created_at"}
        call_rows = [
            {f.attname: getattr(c, f.attname) for f in Call._meta.concrete_fields if f.attname not in skip_call}
            for c in calls
        ]
        audio_rows = [
            {f.attname: getattr(r, f.attname) for f in RenderedAudio._meta.concrete_fields
             if f.attname not in skip_audio}
            for r in RenderedAudio.objects.order_by("render_key")
        ]
        return call_rows, audio_rows

    with django_capture_on_commit_callbacks(execute=False):
        with monkeypatch.context() as m:
            m.setattr(planning, "CopyWriter", planning.BulkWriter)  # bulk_create on every database
            plan_calls(campaign)
        by_bulk_create = snapshot()
        Call.objects.filter(campaign=campaign).delete()
        RenderedAudio.objects.all().delete()
        plan_calls(campaign)
    assert snapshot() == by_bulk_create
    audio_keys = {row[5] for row in expected_calls(campaign).values()} - {None}
    assert len(by_bulk_create[0]) == 30 and len(by_bulk_create[1]) == len(audio_keys)


def test_planning_again_keeps_planned_calls_and_shared_audio(make_campaign, django_capture_on_commit_callbacks):
    first = make_campaign(6, text=SHARED_TEXTS, weights=(1,), fields=_fields)  # one voice: keys line up
    with django_capture_on_commit_callbacks(execute=False):
        launch_campaign(first)
    rendered_key = first.calls.exclude(audio=None).values_list("audio_id", flat=True).first()
    RenderedAudio.objects.filter(render_key=rendered_key).update(state="ready", telephony_file="a.wav", attempts=1)

    # A second campaign over the same numbers and voices meets the first one's audio: shared, not rewritten.
    second = make_campaign(6, text=SHARED_TEXTS, weights=(1,), fields=_fields)
    with django_capture_on_commit_callbacks(execute=False):
        launch_campaign(second)
    rendered = RenderedAudio.objects.get(render_key=rendered_key)
    assert (rendered.state, rendered.telephony_file, rendered.attempts) == ("ready", "a.wav", 1)
    assert set(second.calls.filter(audio_id=rendered_key).values_list("state", flat=True)) == {"ready"}

    # New contacts and a new do-not-call entry: only the new contacts get calls; planned ones stay as they are.
    def full_rows() -> dict[int, list]:
        return {c.contact_id: [getattr(c, f.attname) for f in Call._meta.concrete_fields] for c in second.calls.all()}

    before = full_rows()
    planned_phone = second.calls.filter(state="rendering").values_list("phone", flat=True).first()
    DoNotCall.objects.create(phone=planned_phone, source="keypress")
    tz = Contact.objects.filter(contact_list=second.contact_list).first().timezone
    for i in range(6, 9):
        Contact.objects.create(contact_list=second.contact_list, phone=f"+86139{i:08d}", name=f"李{i}", timezone=tz,
                               fields={"order_id": f"SF{i % 6}"})
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=False):
        plan_calls(second)
    assert connection.vendor != "postgresql" or staged_call_insert_skips_conflicts(queries)
    after = full_rows()
    assert {k: after[k] for k in before} == before
    new_contacts = set(after) - set(before)
    assert len(new_contacts) == 3
    expected, planned = expected_calls(second), planned_calls(second)
    assert {k: planned[k] for k in new_contacts} == {k: expected[k] for k in new_contacts}


@pytest.mark.django_db(transaction=True)
def test_planning_outside_a_transaction(make_campaign, monkeypatch):
    """The staging tables live until commit: plan_calls makes its own transaction when there is none."""
    from synthesis import tasks

    sent: list[list[str]] = []
    monkeypatch.setattr(tasks.render_batch, "delay", sent.append)
    campaign = make_campaign(12, text=UNIQUE_TEXTS, fields=_fields)
    result = plan_calls(campaign)
    expected = expected_calls(campaign)
    assert planned_calls(campaign) == expected
    rendering = [row for row in expected.values() if row[6] == "rendering"]
    assert result.planned == len(rendering) == 11 and sum(len(batch) for batch in sent) == 11
    plan_calls(campaign)  # again, in a new transaction: nothing left behind to trip over
    assert planned_calls(campaign) == expected_calls(campaign)


def _first_key(campaign: Campaign) -> str:
    return campaign.calls.exclude(audio=None).order_by("contact_id").values_list("audio_id", flat=True).first()


@pytest.mark.parametrize("case", ["every clip new", "voicemail and generic clip", "clips shared across chunks",
                                  "a clip rendered before", "contacts planned before"])
def test_launch_queues_exactly_the_clips_its_calls_wait_for(
    make_campaign, monkeypatch, django_capture_on_commit_callbacks, case
):
    """Whether planning knows every clip is its own (it wrote them all: no cache-hit UPDATE, no pending query,
    see CopyWriter.fresh_audio) or has to look, the render tasks ask for each pending clip the campaign's
    waiting calls (and its generic clip) need, once, and a call whose clip is already rendered is ready."""
    from synthesis import tasks

    sent: list[list[str]] = []
    monkeypatch.setattr(tasks.render_batch, "delay", sent.append)
    kwargs: dict = {}
    if case == "voicemail and generic clip":
        vm = ScriptTemplate.objects.create(name="vm-queue", text="{name}您好，订单{order_id}待取，请回电。")
        kwargs = dict(machine_action=Campaign.MachineAction.VOICEMAIL, voicemail_script=vm,
                      fallback_text="您好，您的快递明天送达。")
    if case == "clips shared across chunks":
        monkeypatch.setattr(planning, "PLAN_CHUNK", 7)
    text = SHARED_TEXTS if case in ("clips shared across chunks", "a clip rendered before") else UNIQUE_TEXTS
    campaign = make_campaign(20, text=text, weights=(1,), fields=_fields, **kwargs)
    if case == "a clip rendered before":
        earlier = make_campaign(20, text=text, weights=(1,), fields=_fields)
        with django_capture_on_commit_callbacks(execute=False):
            launch_campaign(earlier)
        RenderedAudio.objects.filter(render_key=_first_key(earlier)).update(state="ready", telephony_file="a.wav")
    if case == "contacts planned before":  # a plan of half the list, in an earlier transaction
        half = Contact.objects.filter(contact_list=campaign.contact_list).order_by("pk")[10:]
        kept = list(half)
        Contact.objects.filter(pk__in=[c.pk for c in kept]).delete()
        with django_capture_on_commit_callbacks(execute=False):
            plan_calls(campaign)
        Contact.objects.bulk_create(kept)
    sent.clear()

    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True):
        if case == "contacts planned before":
            plan_calls(campaign)  # the campaign runs already: planning again adds the new contacts
        else:
            launch_campaign(campaign)
    # The cache-hit UPDATE runs after commit either way; before it too only when planning had to look.
    looked = sum(q["sql"].startswith('UPDATE "campaigns_call" SET "state"') for q in queries)
    knew = connection.vendor == "postgresql" and case in ("every clip new", "voicemail and generic clip")
    assert looked == (1 if knew else 2)

    campaign.refresh_from_db()
    waiting = Call.objects.filter(campaign=campaign, state="rendering")
    needed = {*waiting.values_list("audio_id", flat=True), *waiting.values_list("voicemail_audio_id", flat=True),
              campaign.fallback_audio_id} - {None}
    pending = set(
        RenderedAudio.objects.filter(render_key__in=needed, state="pending").values_list("render_key", flat=True)
    )
    queued = [key for batch in sent for key in batch]
    assert sorted(queued) == sorted(pending) and len(pending) >= 5
    ready = Call.objects.filter(campaign=campaign, state="ready")
    assert set(ready.values_list("audio__state", flat=True)) <= {"ready"}
    if case == "a clip rendered before":
        assert ready.filter(audio_id=_first_key(campaign)).exists()
    if case == "voicemail and generic clip":
        assert campaign.fallback_audio_id in queued and waiting.exclude(voicemail_audio=None).count() == waiting.count()


def _calls_without_their_clip(campaign: Campaign) -> list[int]:
    missing = []
    for column in ("audio", "voicemail_audio"):
        clip = RenderedAudio.objects.filter(render_key=OuterRef(f"{column}_id"))
        missing += campaign.calls.exclude(**{column: None}).filter(~Exists(clip)).values_list("pk", flat=True)
    return missing


def test_every_call_points_at_a_clip_that_exists(make_campaign, monkeypatch, django_capture_on_commit_callbacks):
    """Call.audio and Call.voicemail_audio carry no database constraint (planning speed, see Call): planning,
    whichever writer and path it takes, and the generic-clip fallback still never leave a call pointing at a
    clip that does not exist, and the ORM still refuses to delete a clip a call points at."""
    monkeypatch.setattr(planning, "PLAN_CHUNK", 7)
    vm = ScriptTemplate.objects.create(name="vm-exists", text="{name}您好，订单{order_id}待取，请回电。")
    shared = make_campaign(20, text=SHARED_TEXTS, weights=(1,), fields=_fields)
    voicemail = make_campaign(20, text=UNIQUE_TEXTS, fields=_fields, machine_action=Campaign.MachineAction.VOICEMAIL,
                              voicemail_script=vm, fallback_text="您好，您的快递明天送达。")
    with django_capture_on_commit_callbacks(execute=False):
        launch_campaign(shared)
        RenderedAudio.objects.filter(render_key=_first_key(shared)).update(state="ready", telephony_file="a.wav")
        again = make_campaign(20, text=SHARED_TEXTS, weights=(1,), fields=_fields)  # meets shared's clips
        launch_campaign(again)
        launch_campaign(voicemail)
    failed_key = _first_key(voicemail)
    lifecycle.audio_failed(failed_key, "engine error")  # its calls fall back to the campaign's generic clip
    assert voicemail.calls.filter(used_fallback=True).exists()

    for campaign in (shared, again, voicemail):
        assert campaign.calls.exclude(audio=None).count() >= 10
        assert _calls_without_their_clip(campaign) == []
    with pytest.raises(ProtectedError):
        RenderedAudio.objects.get(render_key=_first_key(again)).delete()


def test_a_campaign_cannot_go_while_its_calls_stay(make_campaign, django_capture_on_commit_callbacks):
    """Call.campaign carries no database constraint (planning speed, see Call): every call's variant is one of
    its campaign's, and the database still refuses to drop the variants (and so the campaign) under calls."""
    campaign = make_campaign(10, fields=_fields)
    with django_capture_on_commit_callbacks(execute=False):
        launch_campaign(campaign)
    calls = Call.objects.filter(campaign=campaign)
    assert calls.count() == 10 and not calls.exclude(variant__campaign=F("campaign")).exists()
    for statement in (
        "DELETE FROM campaigns_variant WHERE campaign_id = %s",
        "DELETE FROM campaigns_campaign WHERE id = %s",
    ):
        with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [campaign.pk])
            connection.check_constraints()
    assert calls.count() == 10
