"""Planning a campaign with a call flow: every clip rendered ahead (once per voice where it says the same to
everyone, per callee where it has their variables or slot date), and a call is ready only when all its clips are."""

from __future__ import annotations

import zoneinfo
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import lifecycle
from campaigns.launch import LaunchError, check_launchable, launch_campaign
from campaigns.models import Call, CallClip, CallFlow, FlowNode, VariantClip
from campaigns.planning import plan_calls
from synthesis.models import RenderedAudio

pytestmark = pytest.mark.django_db
A = FlowNode.Action


@pytest.fixture
def flow() -> CallFlow:
    flow = CallFlow.objects.create(name="Delivery flow", max_prompts=2)
    FlowNode.objects.create(flow=flow, key="1", action=A.CONFIRM, text="感谢{name}的确认。")  # personal
    reschedule = FlowNode.objects.create(flow=flow, key="2", action=A.RESCHEDULE, text="明天上午请按1，下午请按2。")
    FlowNode.objects.create(flow=flow, parent=reschedule, key="1", action=A.SLOT, text="已改到{slot}。", slot_days=1,
                            slot_label="上午")
    FlowNode.objects.create(flow=flow, parent=reschedule, key="2", action=A.SLOT, text="已改到{slot}。",
                            slot_field="改期日期", slot_label="下午")
    FlowNode.objects.create(flow=flow, key="9", action=A.OPT_OUT, text="您将不会再接到我们的电话。")
    FlowNode.objects.create(flow=flow, key="*", action=A.REPEAT)
    return flow


@pytest.fixture
def campaign(make_campaign, flow):
    return make_campaign(6, fields=lambda i: {"order_id": f"SF{i:010d}", "改期日期": "12月9日"}, flow=flow)


def render(key: str) -> None:
    RenderedAudio.objects.filter(render_key=key).update(state=RenderedAudio.State.READY, telephony_file=f"{key}.wav")
    lifecycle.audio_ready(key)


def test_fixed_clips_once_per_variant_personal_ones_per_callee(campaign):
    launch_campaign(campaign)
    fixed = {"invalid", "no_input", "goodbye", "2", "9"}
    for variant in campaign.variants.all():
        assert set(variant.clips.values_list("name", flat=True)) == fixed
    # The two variants speak in different voices: the same text is two renders.
    assert VariantClip.objects.filter(variant__campaign=campaign).values("audio_id").distinct().count() == 10
    calls = list(campaign.calls.all())
    for call in calls:
        clips = {c.name: c for c in call.clips.select_related("audio")}
        assert set(clips) == {"1", "2.1", "2.2"}
        assert clips["1"].audio.text.startswith("感谢张")
        local = (timezone.now().astimezone(zoneinfo.ZoneInfo(call.timezone)) + timedelta(days=1)).date()
        assert clips["2.1"].said == f"{local.month}月{local.day}日上午"
        assert clips["2.2"].said == "12月9日下午"  # from the contact's own field
        assert "12月9日下午" in clips["2.2"].audio.text
    # The slot clips are the same for everyone in one time zone and voice: rendered once per voice that has calls.
    slot_keys = set(CallClip.objects.filter(call__campaign=campaign, name="2.1").values_list("audio_id", flat=True))
    assert len(slot_keys) == campaign.calls.values("variant_id").distinct().count()


def test_a_call_is_ready_only_when_every_clip_is(campaign):
    launch_campaign(campaign)
    call = campaign.calls.first()
    keys = [call.audio_id, *call.clips.values_list("audio_id", flat=True),
            *VariantClip.objects.filter(variant=call.variant).values_list("audio_id", flat=True)]
    for key in keys[:-1]:
        render(key)
        call.refresh_from_db()
        assert call.state == Call.State.RENDERING, key
    render(keys[-1])
    call.refresh_from_db()
    assert call.state == Call.State.READY


def test_a_clip_already_rendered_is_not_rendered_again(make_campaign, flow):
    def fields(i):
        return {"order_id": f"SF{i:010d}", "改期日期": "12月9日"}

    # One assignment key: each number hears the same variant (voice) in both campaigns.
    campaign = make_campaign(6, fields=fields, flow=flow, assignment_key="reminders")
    launch_campaign(campaign)
    for key in RenderedAudio.objects.values_list("render_key", flat=True):
        render(key)
    assert not campaign.calls.exclude(state=Call.State.READY).exists()
    again = make_campaign(6, fields=fields, flow=flow, assignment_key="reminders")
    before = RenderedAudio.objects.count()
    launch_campaign(again)
    # Same voices, same texts: every clip is a cache hit, every call ready at once.
    assert RenderedAudio.objects.count() == before
    assert set(again.calls.values_list("state", flat=True)) == {Call.State.READY}


def test_a_failed_flow_clip_fails_only_the_calls_that_would_play_it(campaign):
    launch_campaign(campaign)
    # The variant of the first call (the split is a hash of the campaign and number: either may have them all).
    variant = campaign.calls.order_by("pk").first().variant
    goodbye = VariantClip.objects.get(variant=variant, name="goodbye").audio_id
    lifecycle.audio_failed(goodbye, "engine said no")
    failed = campaign.calls.filter(state=Call.State.FAILED)
    assert set(failed.values_list("variant_id", flat=True)) == {variant.pk}
    assert failed.count() == campaign.calls.filter(variant=variant).count()
    assert all("call flow failed: engine said no" in e for e in failed.values_list("error", flat=True))
    others = campaign.calls.exclude(variant=variant)
    assert others.filter(state=Call.State.RENDERING).count() == others.count()


def test_a_missing_slot_field_makes_only_that_call_invalid(make_campaign, flow):
    campaign = make_campaign(3, fields=lambda i: {"order_id": "SF1", **({"改期日期": "12月9日"} if i else {})}, flow=flow)
    launch_campaign(campaign)
    (invalid,) = campaign.calls.filter(state=Call.State.INVALID)
    assert invalid.error == "call flow: missing variables: 改期日期"
    assert campaign.calls.filter(state=Call.State.RENDERING).count() == 2


def test_planning_twice_changes_nothing(campaign):
    launch_campaign(campaign)
    clips = sorted(CallClip.objects.values_list("call_id", "name", "audio_id"))
    plan_calls(campaign)
    assert sorted(CallClip.objects.values_list("call_id", "name", "audio_id")) == clips


def test_launch_names_every_flow_problem(campaign, flow):
    FlowNode.objects.filter(flow=flow, key="9").delete()
    FlowNode.objects.create(flow=flow, key="0", action=A.TRANSFER, text="正在转接。", transfer_to="4008001234")
    with pytest.raises(LaunchError) as caught:
        check_launchable(campaign)
    message = str(caught.value)
    assert message.startswith("call flow 'Delivery flow': ")
    assert "key 0: '4008001234' is not in E.164 form" in message or "key 0: '4008001234':" in message
    assert "no opt-out on key 9" in message


def test_launch_names_an_empty_clip_and_a_bad_template(campaign, flow):
    FlowNode.objects.filter(flow=flow, key="1").update(text="")
    FlowNode.objects.filter(flow=flow, key="2").update(text="明天{上午")
    with pytest.raises(LaunchError) as caught:
        check_launchable(campaign)
    assert "key 1 (Confirm (thank-you clip, end)) says nothing" in str(caught.value)
    assert "2: position 2: unclosed '{'" in str(caught.value)
