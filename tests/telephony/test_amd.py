"""Answering machines: async detection through the real twilio library against the sandbox; per campaign the
machine is hung up on, or hears the voicemail clip after its beep. Planning renders the voicemail clips too."""

# ruff: noqa: F811  (fixtures imported from another test module are redefined as arguments)
from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.urls import reverse

from campaigns.launch import LaunchError, check_compliance
from campaigns.lifecycle import audio_failed, audio_ready
from campaigns.models import Call, CallAttempt, Campaign, ScriptTemplate
from campaigns.planning import plan_calls
from synthesis.models import RenderedAudio
from telephony.actions import place_call
from telephony.models import ProviderEvent
from tests.telephony.conftest import FORM, pcm_wav, twilio_params

S = CallAttempt.Status


def amd_path(attempt_id: int) -> str:
    return reverse("telephony:twilio-amd", args=[attempt_id])


@pytest.fixture
def voicemail_audio(audio, settings) -> RenderedAudio:
    """A second ready clip, next to the message clip."""
    data = pcm_wav(0.3)
    key = hashlib.sha256(data + b"voicemail-tests").hexdigest()
    relative = f"telephony-tests/{key}.wav"
    (Path(settings.MEDIA_ROOT) / relative).write_bytes(data)
    return RenderedAudio.objects.create(
        render_key=key, engine="embedded", text="请回电", state=RenderedAudio.State.READY, telephony_file=relative,
        sample_rate=8000, duration=0.3,
    )


@pytest.fixture
def machine_call(make_call, audio, campaign) -> Call:
    return make_call(state=Call.State.DIALING, attempts_made=0, audio=audio)


def _amd_events(attempt: CallAttempt) -> list[ProviderEvent]:
    return [e for e in ProviderEvent.objects.filter(attempt=attempt) if e.note.startswith("async AMD")]


@pytest.mark.django_db(transaction=True)
def test_a_machine_is_hung_up_on(machine_call, make_sandbox, live_server, settings):
    settings.PUBLIC_URL = live_server.url
    sandbox = make_sandbox(answer=0, busy=0, no_answer=0, machine=1.0)

    assert place_call(machine_call.pk) == "placed"
    assert sandbox.wait_idle(10)

    (dialled,) = sandbox.calls()
    # Hanging up needs no beep: detection reports the machine as soon as it knows (machine_start).
    assert dialled["machine_detection"] == "Enable" and dialled["async_amd"]
    assert [status for _, _, status in dialled["amd_callbacks"]] == [204]
    assert [u["status"] for u in dialled["updates"]] == ["completed"]
    attempt = CallAttempt.objects.get(call=machine_call)
    machine_call.refresh_from_db()
    assert attempt.status == S.COMPLETED and attempt.answered_by == "machine_start"
    assert "amd:machine_start" in [mark for mark, _ in attempt.timeline]
    # Retrying after a machine is opt-in (telephony.outcomes): the call is done.
    assert (machine_call.state, machine_call.outcome) == (Call.State.DONE, Call.Outcome.MACHINE)
    (event,) = _amd_events(attempt)
    assert event.signature_valid and event.applied and event.note.endswith("hung up")


@pytest.mark.django_db(transaction=True)
def test_a_machine_hears_the_voicemail_after_the_beep(machine_call, voicemail_audio, campaign, make_sandbox,
                                                      live_server, settings):
    settings.PUBLIC_URL = live_server.url
    Campaign.objects.filter(pk=campaign.pk).update(machine_action=Campaign.MachineAction.VOICEMAIL)
    Call.objects.filter(pk=machine_call.pk).update(voicemail_audio=voicemail_audio)
    sandbox = make_sandbox(answer=0, busy=0, no_answer=0, machine=1.0)

    assert place_call(machine_call.pk) == "placed"
    assert sandbox.wait_idle(10)

    (dialled,) = sandbox.calls()
    assert dialled["machine_detection"] == "DetectMessageEnd" and dialled["async_amd"]
    (update,) = dialled["updates"]
    assert "<Play>" in update["twiml"] and voicemail_audio.render_key in update["twiml"]
    assert "<Hangup" in update["twiml"] and update["call_status"] == "in-progress"
    played = [a for a in dialled["audio"] if voicemail_audio.render_key in a["url"]]
    assert len(played) == 1 and played[0]["ok"]  # fetched with its signed URL and played
    attempt = CallAttempt.objects.get(call=machine_call)
    machine_call.refresh_from_db()
    assert attempt.status == S.COMPLETED and attempt.answered_by == "machine_end_beep"
    assert (machine_call.state, machine_call.outcome) == (Call.State.DONE, Call.Outcome.MACHINE)
    (event,) = _amd_events(attempt)
    assert event.applied and event.note.endswith("voicemail")


@pytest.mark.django_db(transaction=True)
def test_a_person_is_left_alone(machine_call, make_sandbox, live_server, settings):
    settings.PUBLIC_URL = live_server.url
    sandbox = make_sandbox(answer=1.0, busy=0, no_answer=0, machine=0, digits={})

    assert place_call(machine_call.pk) == "placed"
    assert sandbox.wait_idle(10)

    (dialled,) = sandbox.calls()
    assert dialled["updates"] == [] and dialled["listened_to_end"]
    attempt = CallAttempt.objects.get(call=machine_call)
    machine_call.refresh_from_db()
    assert attempt.answered_by == "human" and machine_call.outcome == Call.Outcome.ANSWERED


@pytest.mark.django_db(transaction=True)
def test_duplicate_amd_callbacks_act_once(machine_call, voicemail_audio, campaign, make_sandbox, live_server,
                                          settings):
    settings.PUBLIC_URL = live_server.url
    Campaign.objects.filter(pk=campaign.pk).update(machine_action=Campaign.MachineAction.VOICEMAIL)
    Call.objects.filter(pk=machine_call.pk).update(voicemail_audio=voicemail_audio)
    sandbox = make_sandbox(answer=0, busy=0, no_answer=0, machine=1.0, duplicate_callbacks=1.0)

    assert place_call(machine_call.pk) == "placed"
    assert sandbox.wait_idle(10)

    (dialled,) = sandbox.calls()
    assert [status for _, _, status in dialled["amd_callbacks"]] == [204, 204]
    assert len(dialled["updates"]) == 1  # the voicemail started once
    attempt = CallAttempt.objects.get(call=machine_call)
    first, second = _amd_events(attempt)
    assert first.applied and not second.applied and second.note.endswith("duplicate")
    machine_call.refresh_from_db()
    assert (machine_call.state, machine_call.outcome) == (Call.State.DONE, Call.Outcome.MACHINE)


@pytest.mark.django_db
def test_unsigned_amd_callback_is_refused(client, attempt, public_url):
    params = twilio_params(attempt, CallStatus="in-progress", AnsweredBy="machine_end_beep")

    response = client.post(amd_path(attempt.pk), urlencode(params), content_type=FORM)

    assert response.status_code == 403
    assert not ProviderEvent.objects.exists()
    attempt.refresh_from_db()
    assert attempt.answered_by == "" and attempt.timeline == []


@pytest.mark.django_db
def test_signed_amd_callback_for_a_finished_call_is_only_recorded(post_signed, attempt):
    CallAttempt.objects.filter(pk=attempt.pk).update(status=S.COMPLETED)
    params = twilio_params(attempt, CallStatus="completed", AnsweredBy="machine_end_beep")

    assert post_signed(amd_path(attempt.pk), params).status_code == 204
    assert post_signed(amd_path(attempt.pk), params).status_code == 204

    attempt.refresh_from_db()
    assert attempt.answered_by == "machine_end_beep"
    first, second = ProviderEvent.objects.filter(attempt=attempt)
    assert first.note.endswith("call already over") and second.note.endswith("duplicate")


@pytest.mark.django_db
def test_launch_refuses_voicemail_without_a_script(make_campaign):
    campaign = make_campaign(2, machine_action=Campaign.MachineAction.VOICEMAIL)
    with pytest.raises(LaunchError, match="voicemail script"):
        check_compliance(campaign)
    campaign.voicemail_script = ScriptTemplate.objects.create(name="vm-bad", text="请回电{name")
    with pytest.raises(LaunchError, match="voicemail script 'vm-bad'"):
        check_compliance(campaign)
    campaign.voicemail_script = ScriptTemplate.objects.create(name="vm", text="{name}您好，请回电。")
    check_compliance(campaign)


def _voicemail_campaign(make_campaign, n: int = 4) -> Campaign:
    script = ScriptTemplate.objects.create(name="vm-plan", text="{name}您好，您的订单{order_id}待取，请回电。")
    return make_campaign(n, machine_action=Campaign.MachineAction.VOICEMAIL, voicemail_script=script)


@pytest.mark.django_db
def test_planning_renders_a_voicemail_clip_per_call(make_campaign):
    campaign = _voicemail_campaign(make_campaign)

    plan_calls(campaign)

    calls = list(Call.objects.filter(campaign=campaign).select_related("contact", "voicemail_audio", "variant"))
    assert len(calls) == 4
    for call in calls:
        assert call.state == Call.State.RENDERING and call.voicemail_audio is not None
        assert call.voicemail_audio_id != call.audio_id
        assert call.voicemail_audio.state == RenderedAudio.State.PENDING  # queued with the message clips
        assert call.contact.name in call.voicemail_audio.text and "请回电" in call.voicemail_audio.text
        assert call.voicemail_audio.voice_id == call.variant.voice_id  # the variant's voice


@pytest.mark.django_db
def test_a_campaign_that_hangs_up_renders_no_voicemail(make_campaign):
    campaign = _voicemail_campaign(make_campaign)
    Campaign.objects.filter(pk=campaign.pk).update(machine_action=Campaign.MachineAction.HANGUP)
    campaign.refresh_from_db()

    plan_calls(campaign)

    assert not Call.objects.filter(campaign=campaign).exclude(voicemail_audio=None).exists()


@pytest.mark.django_db
def test_a_call_is_ready_only_when_both_clips_are(make_campaign):
    campaign = _voicemail_campaign(make_campaign, n=1)
    plan_calls(campaign)
    call = Call.objects.get(campaign=campaign)

    RenderedAudio.objects.filter(render_key=call.audio_id).update(state=RenderedAudio.State.READY)
    audio_ready(call.audio_id)
    call.refresh_from_db()
    assert call.state == Call.State.RENDERING  # the voicemail clip is still rendering

    RenderedAudio.objects.filter(render_key=call.voicemail_audio_id).update(state=RenderedAudio.State.READY)
    audio_ready(call.voicemail_audio_id)
    call.refresh_from_db()
    assert call.state == Call.State.READY


@pytest.mark.django_db
def test_a_failed_voicemail_clip_costs_only_the_voicemail(make_campaign):
    campaign = _voicemail_campaign(make_campaign, n=1)
    plan_calls(campaign)
    call = Call.objects.get(campaign=campaign)
    RenderedAudio.objects.filter(render_key=call.audio_id).update(state=RenderedAudio.State.READY)

    audio_failed(call.voicemail_audio_id, "engine crashed")

    call.refresh_from_db()
    assert call.state == Call.State.READY and call.voicemail_audio is None
    assert "voicemail clip failed" in call.error
