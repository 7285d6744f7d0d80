"""A call's last two clips finishing in two workers at once still make it ready (issue 17: the order system's
evening left 2 of 1,000 calls "rendering" for good on PostgreSQL).

Each worker used to wake the key's calls inside the transaction that stored its clip, so each missed the other's
uncommitted clip. The interleaving is forced here: the second worker's wake-up waits until the first worker's
has run. The spy around lifecycle.audio_ready is the one seam of ours touched; it calls the real function.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from campaigns import lifecycle, tasks
from campaigns.launch import launch_campaign
from campaigns.models import Call, CallFlow, FlowNode
from synthesis import actions
from synthesis.models import RenderedAudio

pytestmark = pytest.mark.django_db(transaction=True)
WAIT = 60  # seconds; only reached when the code under test is wrong


@pytest.fixture
def waiting_on_two_clips(make_campaign, django_capture_on_commit_callbacks):
    """One call whose message and confirmation clip (both personal) are the only clips not yet rendered."""
    flow = CallFlow.objects.create(name="confirm only", max_prompts=1)
    FlowNode.objects.create(flow=flow, key="1", action=FlowNode.Action.CONFIRM, text="感谢{name}的确认。")
    FlowNode.objects.create(flow=flow, key="9", action=FlowNode.Action.OPT_OUT, text="您将不会再接到我们的电话。")
    campaign = make_campaign(1, weights=(1, 0), flow=flow)
    with django_capture_on_commit_callbacks(execute=False):
        launch_campaign(campaign)
    call = campaign.calls.get()
    message, confirmation = call.audio_id, call.clips.get(name="1").audio_id
    others = RenderedAudio.objects.exclude(render_key__in=[message, confirmation])
    assert others.exists()  # the variant's fixed clips, rendered already here
    others.update(state=RenderedAudio.State.READY, telephony_file="fixed.wav")
    return call, message, confirmation


def test_two_workers_finishing_a_calls_last_clips_together_leave_it_ready(waiting_on_two_clips, monkeypatch):
    call, message, confirmation = waiting_on_two_clips
    real = lifecycle.audio_ready
    message_woke, confirmation_done = threading.Event(), threading.Event()

    def audio_ready(render_key: str) -> int:
        woken = real(render_key)
        if render_key == message:  # the first worker's wake-up found the call still waiting…
            message_woke.set()
            assert confirmation_done.wait(WAIT)  # …and its worker pauses while the other worker stores its clip
        return woken

    monkeypatch.setattr(lifecycle, "audio_ready", audio_ready)
    failures: list[BaseException] = []

    def first_worker() -> None:
        try:
            assert actions.render([message], claim_token="worker-1").rendered == [message]
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=first_worker)
    worker.start()
    try:
        assert message_woke.wait(WAIT), failures
        call.refresh_from_db()
        assert call.state == Call.State.RENDERING  # one clip is still missing
        assert actions.render([confirmation], claim_token="worker-2").rendered == [confirmation]
    finally:
        confirmation_done.set()
        worker.join(WAIT)
    assert not failures, failures
    call.refresh_from_db()
    assert call.state == Call.State.READY


def test_housekeeping_readies_calls_whose_wake_up_was_lost(waiting_on_two_clips):
    call, message, confirmation = waiting_on_two_clips
    # What a worker that died between storing the last clip and waking its calls leaves behind.
    RenderedAudio.objects.filter(render_key__in=[message, confirmation]).update(
        state=RenderedAudio.State.READY, telephony_file="x.wav"
    )
    call.refresh_from_db()
    assert call.state == Call.State.RENDERING
    assert tasks.housekeeping()["calls_woken"] == 1
    call.refresh_from_db()
    assert call.state == Call.State.READY
    assert tasks.housekeeping()["calls_woken"] == 0


def test_a_batch_sent_again_wakes_the_calls_of_clips_made_already(waiting_on_two_clips):
    call, message, confirmation = waiting_on_two_clips
    # A worker killed after storing both clips and before waking the call: recovery sends its batch again.
    RenderedAudio.objects.filter(render_key__in=[message, confirmation]).update(
        state=RenderedAudio.State.READY, telephony_file="x.wav"
    )
    summary = actions.render([confirmation], claim_token="worker-2")
    assert summary.skipped == [confirmation] and summary.rendered == []  # nothing rendered twice
    call.refresh_from_db()
    assert call.state == Call.State.READY
