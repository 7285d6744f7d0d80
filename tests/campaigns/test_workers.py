"""The recovery sweep over worker rows: who counts as dead, what is handed on, what is left alone.

Real worker processes are killed in tests/e2e/test_worker_recovery.py and test_dialing_faults.py; here the
rows a heartbeat writes are set up directly, to reach every branch.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.launch import launch_campaign
from campaigns.models import Call, CallAttempt, Worker
from campaigns.workers import SIP_CALL, Heartbeat, dead_workers, recover_dead_workers, stalled
from synthesis.models import RenderedAudio

pytestmark = pytest.mark.django_db
PLACE, RENDER = "telephony.tasks.place_call", "synthesis.tasks.render_batch"


def _worker(name: str, held: list, *, silent: float = 0, stopped: bool = False, queues: str = "") -> Worker:
    seen = timezone.now() - timedelta(seconds=silent)
    return Worker.objects.create(
        instance=uuid.uuid4().hex, name=name, pid=1234, seen_at=seen, held=held, queues=queues,
        stopped_at=seen if stopped else None,
    )


@pytest.fixture
def calls(make_campaign, settings) -> list[Call]:
    settings.WORKER_DEAD_SECONDS = 30
    campaign = make_campaign(6)
    launch_campaign(campaign)
    return list(campaign.calls.order_by("pk"))


def test_only_silent_or_stopped_workers_are_dead(calls):
    _worker("live@h", [], silent=5)
    silent = _worker("silent@h", [], silent=31)
    stopped = _worker("stopped@h", [], stopped=True)
    assert set(dead_workers()) == {silent, stopped}
    assert stalled() == [silent]  # a clean stop is not a stall


def test_a_dead_workers_claims_go_back_and_its_batches_are_sent_again(calls, django_capture_on_commit_callbacks):
    held_dial, later_claim, on_the_line = calls[0], calls[1], calls[2]
    worker = _worker("telephony@h", [
        ["t1", PLACE, [held_dial.pk], {}],
        ["t2", PLACE, [later_claim.pk], {}],
        ["t3", PLACE, [on_the_line.pk], {}],
        ["t4", RENDER, [[calls[3].audio_id, calls[4].audio_id]], {}],
        ["t5", "voices.tasks.train_voice", [7], {}],
    ], silent=40)
    long_ago = worker.seen_at - timedelta(seconds=5)
    Call.objects.filter(pk=held_dial.pk).update(state=Call.State.DIALING, claimed_at=long_ago)
    # Claimed again by a sweep after the worker went silent: a live worker's claim now.
    Call.objects.filter(pk=later_claim.pk).update(state=Call.State.DIALING, claimed_at=timezone.now())
    Call.objects.filter(pk=on_the_line.pk).update(state=Call.State.IN_PROGRESS, claimed_at=long_ago)
    RenderedAudio.objects.filter(render_key=calls[3].audio_id).update(state="rendering", claimed_by="t4")

    with django_capture_on_commit_callbacks() as sent:
        recovery = recover_dead_workers()

    assert recovery.workers == [str(worker)] and recovery.calls_released == 1 and recovery.tasks_dropped == 1
    assert Call.objects.get(pk=held_dial.pk).state == Call.State.READY
    assert Call.objects.get(pk=later_claim.pk).state == Call.State.DIALING
    assert Call.objects.get(pk=on_the_line.pk).state == Call.State.IN_PROGRESS  # never re-dialled
    assert RenderedAudio.objects.get(render_key=calls[3].audio_id).state == "pending"
    assert recovery.renders_requeued == len({calls[3].audio_id, calls[4].audio_id})
    assert len(sent) == 1  # the batch goes out once the release has committed
    worker.refresh_from_db()
    assert worker.recovered_at is not None
    assert recover_dead_workers().workers == []  # recovered once


def test_a_render_claimed_by_a_live_task_is_left_alone(calls):
    key = calls[0].audio_id
    RenderedAudio.objects.filter(render_key=key).update(state="rendering", claimed_by="someone-else")
    _worker("synthesis@h", [["t9", RENDER, [[key]], {}]], silent=60)
    recover_dead_workers()
    assert RenderedAudio.objects.get(render_key=key).state == "rendering"


def test_rows_of_workers_long_gone_are_deleted(calls):
    old = _worker("old@h", [], stopped=True)
    Worker.objects.filter(pk=old.pk).update(recovered_at=timezone.now() - timedelta(days=8))
    recent = _worker("recent@h", [], stopped=True)
    recover_dead_workers()
    assert list(Worker.objects.all()) == [recent]


def test_work_no_live_worker_holds_is_handed_on_when_a_worker_dies(calls, django_capture_on_commit_callbacks):
    """Killed between taking a message and recording it: its heartbeat names nothing, the orphans are found."""
    dead = _worker("telephony@h", [], silent=40, queues="synthesis,telephony")
    _worker("live@h", [["t1", PLACE, [calls[1].pk], {}], ["t2", RENDER, [[calls[3].audio_id]], {}]],
            queues="synthesis,telephony")
    before = dead.seen_at - timedelta(seconds=5)
    Call.objects.filter(pk__in=[calls[0].pk, calls[1].pk]).update(state=Call.State.DIALING, claimed_at=before)
    Call.objects.filter(pk=calls[2].pk).update(state=Call.State.DIALING, claimed_at=timezone.now())
    RenderedAudio.objects.update(created_at=before)

    with django_capture_on_commit_callbacks() as sent:
        recovery = recover_dead_workers()

    states = dict(Call.objects.values_list("pk", "state"))
    assert states[calls[0].pk] == Call.State.READY  # claimed before the death, held by nobody alive
    assert states[calls[1].pk] == Call.State.DIALING  # a live worker holds its dial
    assert states[calls[2].pk] == Call.State.DIALING  # claimed after the death: a live sweep's
    assert recovery.calls_released == 1
    # Pending renders of the calls still waiting for audio, but for the one a live worker holds.
    assert recovery.renders_requeued == len({c.audio_id for c in calls[4:]}) and len(sent) == 1


def test_a_dial_the_dead_worker_took_after_its_last_heartbeat_is_handed_on(calls, settings):
    """Killed after taking a message claimed later than its last write, before recording it: the claim is
    older than one heartbeat by the time the worker is found dead, and no live worker holds it."""
    settings.WORKER_HEARTBEAT_SECONDS = 10
    dead = _worker("telephony@dead", [], silent=40, queues="telephony")
    _worker("telephony@live", [["t1", PLACE, [calls[1].pk], {}]], queues="telephony")
    after_its_last_write = dead.seen_at + timedelta(seconds=8)
    within_a_heartbeat = timezone.now() - timedelta(seconds=5)
    for call, at in ((calls[0], after_its_last_write), (calls[1], after_its_last_write), (calls[2], within_a_heartbeat)):
        Call.objects.filter(pk=call.pk).update(state=Call.State.DIALING, claimed_at=at)

    assert recover_dead_workers().calls_released == 1

    states = dict(Call.objects.values_list("pk", "state"))
    assert states[calls[0].pk] == Call.State.READY  # taken by the dead worker after its last write
    assert states[calls[1].pk] == Call.State.DIALING  # a live worker holds it
    assert states[calls[2].pk] == Call.State.DIALING  # a sweep's claim of the last heartbeat: maybe still in flight


def test_a_render_queued_after_the_dead_workers_last_heartbeat_is_queued_again(calls, settings,
                                                                              django_capture_on_commit_callbacks):
    """Killed after taking a render message queued later than its last write, before claiming it: the render
    is older than one heartbeat by the time the worker is found dead, and no live worker holds it."""
    settings.WORKER_HEARTBEAT_SECONDS = 10
    dead = _worker("synthesis@dead", [], silent=40, queues="synthesis")
    _worker("synthesis@live", [["t1", RENDER, [[calls[1].audio_id]], {}]], queues="synthesis")
    after_its_last_write = dead.seen_at + timedelta(seconds=8)
    within_a_heartbeat = timezone.now() - timedelta(seconds=5)
    RenderedAudio.objects.filter(render_key__in=[calls[0].audio_id, calls[1].audio_id]).update(
        created_at=after_its_last_write
    )
    RenderedAudio.objects.exclude(render_key__in=[calls[0].audio_id, calls[1].audio_id]).update(
        created_at=within_a_heartbeat
    )

    with django_capture_on_commit_callbacks() as sent:
        recovery = recover_dead_workers()

    # Only the render the dead worker may have taken: a live worker holds the other, and the rest were queued
    # in the last heartbeat (their messages may well be in flight).
    assert recovery.renders_requeued == 1 and len(sent) == 1


def _sip_call_on_the_line(call: Call) -> CallAttempt:
    Call.objects.filter(pk=call.pk).update(state=Call.State.IN_PROGRESS, attempts_made=1)
    return CallAttempt.objects.create(
        call=call, number=1, provider="sip", provider_call_id=f"sip-{call.pk}", status=CallAttempt.Status.IN_PROGRESS
    )


def test_a_sip_call_dies_with_its_worker_and_is_closed_at_once_without_a_redial(calls):
    dead_call, stopped_call = calls[0], calls[1]
    dead, stopped = _sip_call_on_the_line(dead_call), _sip_call_on_the_line(stopped_call)
    _worker("telephony@dead", [[dead.provider_call_id, SIP_CALL, [dead.pk], {}]], silent=40)
    # A worker that stops cleanly hangs its calls up and writes their ends itself.
    _worker("telephony@stopped", [[stopped.provider_call_id, SIP_CALL, [stopped.pk], {}]], stopped=True)

    assert recover_dead_workers().attempts_settled == 1

    dead.refresh_from_db()
    assert (dead.status, dead.error_code) == (CallAttempt.Status.FAILED, "worker-died")
    assert "telephony@dead" in dead.error_message and "not re-dialled" in dead.error_message
    dead_call.refresh_from_db()
    assert dead_call.state == Call.State.FAILED and dead_call.attempts_made == 1
    stopped.refresh_from_db()
    assert stopped.status == CallAttempt.Status.IN_PROGRESS


def test_the_heartbeat_names_the_sip_calls_in_flight_in_its_process(monkeypatch):
    from telephony.providers import sip as sip_provider

    monkeypatch.setitem(sip_provider.RUNTIME._held, "abc123", sip_provider._Held(77, CallAttempt.Status.RINGING))
    beat = Heartbeat("telephony@h", "telephony", 1.0)
    assert ["abc123", SIP_CALL, [77], {}] in beat.held()
