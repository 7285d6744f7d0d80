"""Call flows on Twilio, end to end: the real twilio library places the call on the local sandbox, whose
callee walks the flow key by key through signed gather actions; every node's TwiML comes from Herald.

Each clip is its own file, so what the callee heard is read from the audio the sandbox fetched, in order.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.urls import reverse

from campaigns import callflow
from campaigns.models import Call, CallAttempt, CallClip, CallFlow, DoNotCall, VariantClip
from synthesis.models import RenderedAudio
from telephony import flows
from telephony.actions import place_call
from telephony.models import ProviderEvent
from telephony.providers import twilio as twilio_provider
from tests.telephony.conftest import DESK, FORM, delivery_flow, pcm_wav, sign, twilio_params

S = CallAttempt.Status


def make_clip(name: str, media_root: Path) -> RenderedAudio:
    data = pcm_wav(0.2)
    key = hashlib.sha256(data + name.encode()).hexdigest()
    relative = f"flow-tests/{key}.wav"
    (media_root / relative).parent.mkdir(parents=True, exist_ok=True)
    (media_root / relative).write_bytes(data)
    return RenderedAudio.objects.create(
        render_key=key, engine="embedded", text=name, state=RenderedAudio.State.READY, telephony_file=relative,
        sample_rate=8000, duration=0.2,
    )


@pytest.fixture
def flow(db) -> CallFlow:
    return delivery_flow()


@pytest.fixture
def flow_call(make_call, audio, campaign, flow, settings):
    """A claimed call of a campaign with the flow, every clip ready, each its own file."""
    campaign.flow = flow
    campaign.save(update_fields=["flow"])
    call = make_call(state=Call.State.DIALING, attempts_made=0, audio=audio)
    media = Path(settings.MEDIA_ROOT)
    names = {audio.render_key: "message"}
    for name in callflow.clip_names(flow.build()):
        if name in ("message", "2.1", "2.2"):
            continue
        clip = make_clip(name, media)
        VariantClip.objects.create(variant=call.variant, name=name, audio=clip)
        names[clip.render_key] = name
    for name, said in (("2.1", "12月8日上午"), ("2.2", "12月8日下午")):
        clip = make_clip(f"{name} {said}", media)
        CallClip.objects.create(call=call, name=name, audio=clip, said=said)
        names[clip.render_key] = name
    return call, names


def heard(dialled: dict, names: dict[str, str]) -> list[str]:
    """The clips the sandbox's callee heard, by name, in order."""
    return [names[urlsplit(a["url"]).path.rstrip("/").split("/")[-1].removesuffix(".wav")] for a in dialled["audio"]]


def run(flow_call, make_sandbox, live_server, settings, **sandbox):
    settings.PUBLIC_URL = live_server.url
    call, names = flow_call
    box = make_sandbox(answer=1.0, busy=0, no_answer=0, machine=0, **sandbox)
    assert place_call(call.pk) == "placed"
    assert box.wait_idle(20)
    (dialled,) = box.calls()
    call.refresh_from_db()
    return dialled, heard(dialled, names), CallAttempt.objects.get(call=call), call


@pytest.mark.django_db(transaction=True)
def test_confirm(flow_call, make_sandbox, live_server, settings):
    dialled, clips, attempt, call = run(flow_call, make_sandbox, live_server, settings, digits={"1": 1.0})
    assert clips == ["message", "1"]
    assert dialled["gathers"] == ["1"] and dialled["status"] == "completed"
    assert (attempt.path, attempt.action, attempt.digits) == (["message", "1"], "confirmed", "1")
    assert attempt.listened_to_end
    assert (call.final_action, call.outcome, call.state) == ("confirmed", Call.Outcome.ANSWERED, Call.State.DONE)


@pytest.mark.django_db(transaction=True)
def test_reschedule_repeats_the_chosen_slot(flow_call, make_sandbox, live_server, settings):
    # The callee presses 2 at every menu: reschedule, then the second slot.
    dialled, clips, attempt, call = run(flow_call, make_sandbox, live_server, settings, digits={"2": 1.0})
    assert clips == ["message", "2", "2.2"]
    assert (attempt.path, attempt.action, attempt.action_detail) == (["message", "2", "2.2"], "rescheduled", "12月8日下午")
    assert attempt.digits == "22" and call.final_action == "rescheduled"


@pytest.mark.django_db(transaction=True)
def test_opt_out_is_on_the_list_before_the_confirmation(flow_call, make_sandbox, live_server, settings):
    dialled, clips, attempt, call = run(flow_call, make_sandbox, live_server, settings, digits={"9": 1.0})
    assert clips == ["message", "9"]
    assert attempt.action == "opted_out"
    assert DoNotCall.objects.filter(phone=call.phone, source="keypress").exists()
    assert (call.outcome, call.state) == (Call.Outcome.OPTED_OUT, Call.State.DONE)


@pytest.mark.django_db(transaction=True)
def test_invalid_keys_are_said_then_the_menu_again_then_goodbye(flow_call, make_sandbox, live_server, settings):
    dialled, clips, attempt, call = run(flow_call, make_sandbox, live_server, settings, digits={"7": 1.0})
    # max_prompts 2: the message, "invalid" + the menu prompt, "invalid" + goodbye.
    assert clips == ["message", "invalid", "menu", "invalid", "goodbye"]
    assert (attempt.action, attempt.action_detail) == ("no_input", "message")
    assert attempt.path == ["message", "message", "message"] and attempt.digits == "77"
    # No input is not an opt-out and not a failure: answered, done.
    assert (call.outcome, call.final_action) == (Call.Outcome.ANSWERED, "no_input")


@pytest.mark.django_db(transaction=True)
def test_no_input_reprompts_then_goodbye(flow_call, make_sandbox, live_server, settings):
    dialled, clips, attempt, call = run(flow_call, make_sandbox, live_server, settings, digits={})
    assert clips == ["message", "no_input", "menu", "no_input", "goodbye"]
    assert dialled["gathers"] == ["", ""]
    assert attempt.action == "no_input" and attempt.digits == ""


@pytest.mark.django_db(transaction=True)
def test_repeat_replays_the_menu(flow_call, make_sandbox, live_server, settings):
    dialled, clips, attempt, call = run(flow_call, make_sandbox, live_server, settings, digits={"*": 1.0})
    assert clips == ["message", "menu", "goodbye"]
    assert attempt.path == ["message", "*", "*"] and attempt.action == "no_input"


@pytest.mark.django_db(transaction=True)
def test_transfer_connects_the_callee_to_the_desk(flow_call, make_sandbox, live_server, settings):
    dialled, clips, attempt, call = run(
        flow_call, make_sandbox, live_server, settings, digits={"0": 1.0}, transfer_answer=1.0
    )
    assert clips == ["message", "0"]
    assert dialled["transfers"] == [{"to": DESK, "kind": "Number", "status": "completed"}]
    assert attempt.action == "transferred" and call.final_action == "transferred"


@pytest.mark.django_db(transaction=True)
def test_a_refused_transfer_says_the_number_to_call(flow_call, make_sandbox, live_server, settings):
    dialled, clips, attempt, call = run(
        flow_call, make_sandbox, live_server, settings, digits={"0": 1.0}, transfer_answer=0.0
    )
    assert clips == ["message", "0", "0:fallback"]
    assert dialled["transfers"][0]["status"] == "no-answer"
    assert attempt.action == "transfer_refused" and call.final_action == "transfer_refused"


@pytest.mark.django_db(transaction=True)
def test_hanging_up_in_a_menu_is_recorded_with_the_node(flow_call, make_sandbox, live_server, settings):
    """The callee pressed 2 and hung up while the slot menu played: hung up in node 2."""
    call, _ = flow_call
    settings.PUBLIC_URL = live_server.url
    box = make_sandbox(answer=1.0, busy=0, no_answer=0, machine=0, digits={"2": 1.0})
    assert place_call(call.pk) == "placed"
    attempt = CallAttempt.objects.get(call=call)
    # Instead of the slot, the line drops: the attempt ends completed with the callee in the slot menu.
    run_flow = flows.flow_run(call)
    from telephony import outcomes  # noqa: PLC0415  (the attempt state machine, driven directly here)

    assert box.wait_idle(20)
    attempt.refresh_from_db()
    assert attempt.action == "rescheduled"  # the sandbox's callee finished; now one who hangs up:
    attempt2 = CallAttempt.objects.create(call=call, number=2, provider="twilio", status=S.IN_PROGRESS)
    step = outcomes.apply_flow_key(attempt2.pk, run_flow.flow, callflow.ROOT, 1, "2")
    assert step.gather == "2"
    outcomes.apply_status(attempt2.pk, S.COMPLETED, duration=12)
    attempt2.refresh_from_db()
    assert (attempt2.action, attempt2.action_detail, attempt2.path) == ("hung_up", "2", ["message", "2"])


def test_a_forged_node_is_refused(client, flow_call, public_url, token):
    call, _ = flow_call
    attempt = CallAttempt.objects.create(call=call, number=1, provider="twilio", status=S.IN_PROGRESS,
                                         provider_call_id="CA" + "1" * 32)
    path = reverse("telephony:twilio-gather", args=[attempt.pk])
    other = flows.node_token(attempt.pk + 1, "2", 1)  # signed, but for another attempt
    for token_value in (other, "2:1", flows.node_token(attempt.pk, "2", 1) + "x"):
        url = f"{path}?{urlencode({'node': token_value})}"
        params = twilio_params(attempt, CallStatus="in-progress", Digits="1")
        response = client.post(url, urlencode(params), content_type=FORM,
                               headers={"X-Twilio-Signature": sign(token, public_url + url, params)})
        assert response.status_code == 403
    attempt.refresh_from_db()
    assert attempt.path == [] and attempt.action == ""
    assert ProviderEvent.objects.filter(attempt=attempt, note__contains="not signed").count() == 3


def test_a_late_key_never_changes_a_finished_action(flow_call, send_status):
    call, _ = flow_call
    attempt = CallAttempt.objects.create(call=call, number=1, provider="twilio", status=S.IN_PROGRESS)
    run_flow = flows.flow_run(call)
    from telephony import outcomes  # noqa: PLC0415  (the attempt state machine, driven directly here)

    outcomes.apply_flow_key(attempt.pk, run_flow.flow, callflow.ROOT, 1, "1")
    assert outcomes.apply_flow_key(attempt.pk, run_flow.flow, callflow.ROOT, 1, "9") is None
    attempt.refresh_from_db()
    assert attempt.action == "confirmed" and attempt.digits == "1"
    # …but an opt-out is honoured however late: the number goes on the list.
    assert DoNotCall.objects.filter(phone=call.phone).exists()


def test_first_twiml_gathers_with_the_signed_root_node(flow_call, account, token, monkeypatch, public_url):
    """What place_call sends Twilio: the message inside a gather whose action carries the signed root node."""
    call, _ = flow_call
    sent = {}
    monkeypatch.setattr(twilio_provider.TwilioProvider, "_create", lambda self, client, dial: sent.setdefault("dial", dial) and "CA" + "2" * 32)
    monkeypatch.setattr(twilio_provider.TwilioProvider, "_client", lambda self: None)
    assert place_call(call.pk) == "placed"
    twiml = twilio_provider.twiml_for(sent["dial"])
    action = twiml.split('action="')[1].split('"')[0].replace("&amp;", "&")
    token_value = parse_qs(urlsplit(action).query)["node"][0]
    attempt = CallAttempt.objects.get(call=call)
    assert flows.read_node_token(attempt.pk, token_value) == (callflow.ROOT, 1)
    assert 'timeout="5"' in twiml and 'numDigits="1"' in twiml


@pytest.mark.django_db(transaction=True)
def test_gather_actions_delivered_twice_are_recorded_once(flow_call, make_sandbox, live_server, settings):
    """Twilio may deliver a webhook twice; the second delivery's TwiML is the one that runs. The callee still
    hears the slot menu and the slot once each, and the attempt records each key once."""
    dialled, clips, attempt, call = run(
        flow_call, make_sandbox, live_server, settings, digits={"2": 1.0}, duplicate_callbacks=1.0
    )
    assert clips == ["message", "2", "2.2"]
    assert attempt.path == ["message", "2", "2.2"] and attempt.digits == "22"
    assert attempt.action == "rescheduled"
    gathers = ProviderEvent.objects.filter(attempt=attempt, kind=ProviderEvent.Kind.GATHER)
    assert gathers.count() == 4  # two key waits, each delivered twice, each stored
