"""Worker heartbeats, and what happens to the work of a worker that died.

Every Celery worker process keeps one `Worker` row: a thread writes `seen_at` every
HERALD_WORKER_HEARTBEAT_SECONDS and, each time the worker takes a task from the broker and before the task
can start, the list of tasks it holds (waiting for their countdown, queued in the process, or running). A worker killed
outright (kill -9, the machine gone) stops writing; one that shuts down says so.

`recover_dead_workers` (on beat, every heartbeat) takes each worker that has been silent for
HERALD_WORKER_DEAD_SECONDS, or has stopped, and hands on what it held:
- a call it was to dial goes back to ready (lifecycle.release_claims), and the next sweep claims it again;
- a render batch has its claimed renders released and is sent again, so another synthesis worker renders it.
A worker killed in the instant between taking a message and recording it leaves work no heartbeat names: the
sweep also hands on claimed calls and pending renders that no live worker holds (see recover_dead_workers).
Neither broker has to give the messages back first: the filesystem broker (embedded) never would, Redis only
after its visibility timeout (an hour). When Redis does, the copies find their calls and renders taken and do
nothing: a call's attempt number is written once, under the call's lock, and a render is claimed once.

Other tasks are not sent again: beat's sweeps come back on their own, and training jobs have their own
watchdog (voices.tasks). The dials it had begun are settled at once (telephony.actions.worker_died): an attempt
without a call id from the provider is looked up within seconds, and a SIP call, which lived in the dead process
(the heartbeat names each one), has its attempt closed without a re-dial.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery.signals import task_received, worker_ready, worker_shutdown
from celery.worker import state as worker_state
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Q
from django.utils import timezone

from campaigns import lifecycle
from campaigns.models import Call, Worker
from synthesis import actions as synthesis_actions
from synthesis.models import RenderedAudio
from synthesis.tasks import render_batch
from telephony import actions as telephony_actions
from telephony.providers.sip import RUNTIME as SIP_RUNTIME
from telephony.tasks import place_call

log = logging.getLogger(__name__)
KEEP_RECOVERED = timedelta(days=7)  # rows of workers long gone are deleted after this
SIP_CALL = "sip-call"  # `held` entries of SIP calls in flight: [call id, SIP_CALL, [attempt id], {}]


# --- in the worker process ------------------------------------------------------------------------


class Heartbeat:
    """The heartbeat of one worker process: a daemon thread, and the record of the tasks it holds."""

    def __init__(self, name: str, queues: str, interval: float) -> None:
        self.instance = uuid.uuid4().hex
        self.name, self.queues, self.interval = name, queues, interval
        self._held: dict[str, object] = {}  # task id → celery.worker.request.Request
        self._lock = threading.Lock()  # one writer at a time: a later list never lands before an earlier one
        self._retry = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="herald-heartbeat", daemon=True)

    def start(self) -> None:
        Worker.objects.create(
            instance=self.instance, name=self.name[:200], queues=self.queues[:200], pid=os.getpid()
        )
        self._thread.start()
        log.info("worker %s: heartbeat every %.1f s (instance %s)", self.name, self.interval, self.instance)

    def received(self, request) -> None:  # celery.worker.request.Request, in the consumer's thread
        """Written before the task can start: a worker killed from now on is known to have held it."""
        with self._lock:
            self._held[request.id] = request
            try:
                self._write()
            except Exception:  # the database away for a moment: the heartbeat thread writes it soon
                log.exception("worker %s: task %s not recorded yet", self.name, request.id)
                connection.close()
                self._retry.set()

    def held(self) -> list[list]:
        """[id, task name, args, kwargs] of each task taken and not finished; forgets the finished ones.
        Call with the lock held."""
        done = [i for i, r in self._held.items() if r.acknowledged and r not in worker_state.active_requests]
        for task_id in done:
            del self._held[task_id]
        tasks = [[i, r.name, list(r.args or ()), dict(r.kwargs or {})] for i, r in self._held.items()]
        # A SIP call outlives the task that placed it: it lives in this process's runtime until its end is written.
        calls = [[call_id, SIP_CALL, [attempt_id], {}] for call_id, attempt_id in SIP_RUNTIME.attempts().items()]
        return tasks + calls

    def _write(self, **extra: object) -> None:
        Worker.objects.filter(instance=self.instance).update(seen_at=timezone.now(), held=self.held(), **extra)

    def beat(self) -> None:
        with self._lock:
            self._write()

    def stop(self) -> None:
        """Say that this worker stopped, with what it still holds (its reserved tasks are nobody's now)."""
        self._stopping.set()
        self._retry.set()
        self._thread.join(timeout=5)
        with self._lock:
            self._write(stopped_at=timezone.now())

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._retry.wait(self.interval)
            self._retry.clear()
            if self._stopping.is_set():
                break
            try:
                self.beat()
            except Exception:  # the database away for a moment: the next beat tries again on a new connection
                log.exception("worker %s: heartbeat not written", self.name)
                connection.close()
                self._stopping.wait(min(1.0, self.interval))
                self._retry.set()
        close_old_connections()


_heartbeat: Heartbeat | None = None


@worker_ready.connect
def start_heartbeat(sender=None, **_: object) -> None:
    """In each worker's main process once it consumes (sender: its consumer)."""
    global _heartbeat
    queues = ",".join(sorted(sender.app.amqp.queues.consume_from)) if sender is not None else ""
    _heartbeat = Heartbeat(getattr(sender, "hostname", "") or "worker", queues, settings.WORKER_HEARTBEAT_SECONDS)
    _heartbeat.start()


@task_received.connect
def note_task(request=None, **_: object) -> None:
    if _heartbeat is not None and request is not None:
        _heartbeat.received(request)


@worker_shutdown.connect
def stop_heartbeat(**_: object) -> None:
    global _heartbeat
    if _heartbeat is not None:
        try:
            _heartbeat.stop()
        except Exception:  # shutting down with the database gone: it is found dead instead, a little later
            log.exception("worker %s: could not record the shutdown", _heartbeat.name)
        _heartbeat = None


# --- on beat: the recovery sweep ------------------------------------------------------------------


@dataclass
class Recovery:
    workers: list[str] = field(default_factory=list)  # "name (pid N)" of each worker recovered
    calls_released: int = 0
    attempts_settled: int = 0  # attempts it was placing: ambiguous creates to look up, SIP calls that died with it
    renders_requeued: int = 0
    tasks_dropped: int = 0  # held tasks of other kinds, left to their own mechanisms


def held_work(held: list) -> tuple[set[int], dict[str, None]]:
    """The call ids of the dials and the render keys of the batches in one worker's `held` list."""
    calls: set[int] = set()
    keys: dict[str, None] = {}
    for _task_id, name, args, _kwargs in held:
        if name == place_call.name and args:
            calls.add(args[0])
        elif name == render_batch.name and args:
            keys.update(dict.fromkeys(args[0]))
    return calls, keys


def silent_since(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.WORKER_DEAD_SECONDS)


def dead_workers(now: datetime | None = None):
    """Workers not yet recovered that stopped, or whose heartbeat is older than the dead limit."""
    now = now or timezone.now()
    return Worker.objects.filter(recovered_at=None).filter(
        Q(stopped_at__isnull=False) | Q(seen_at__lt=silent_since(now))
    )


def recover_dead_workers(now: datetime | None = None) -> Recovery:
    """Hand on what each dead or stopped worker held; each worker is recovered once, by one sweep.

    Then the orphans: a worker killed in the instant between taking a message and recording it leaves work
    that no heartbeat names. Calls claimed, and pending renders of waiting calls queued, before its last
    heartbeat or before one heartbeat ago, that are still claimed or pending and that no live worker holds, are
    handed on as well. A pending render still in the broker's queue behind others is sent a second time; the
    copy that comes second claims nothing and does nothing.
    """
    now = now or timezone.now()
    result = Recovery()
    last_seen: dict[str, datetime] = {}  # queue → the latest heartbeat of a worker of it recovered here
    sent: set[str] = set()  # render keys queued again here
    for worker in dead_workers(now).order_by("seen_at"):
        with transaction.atomic():
            if Worker.objects.filter(pk=worker.pk, recovered_at=None).update(recovered_at=now) != 1:
                continue  # another sweep took it
            calls, sip_attempts, render_tasks, batch_keys, others = [], [], [], {}, 0
            for task_id, name, args, _kwargs in worker.held:
                if name == place_call.name and args:
                    calls.append(args[0])
                elif name == SIP_CALL and args:
                    if not worker.stopped_at:  # a worker that stops hangs its calls up and writes their ends itself
                        sip_attempts.append(args[0])
                elif name == render_batch.name:
                    render_tasks.append(task_id)
                    batch_keys.update(dict.fromkeys(args[0] if args else ()))
                else:
                    others += 1
            released = lifecycle.release_claims(calls, claimed_by=worker.seen_at, now=now) if calls else 0
            # The dials it had begun: asked about now, not when they turn stale.
            attempts = (
                telephony_actions.worker_died(placing=calls, sip_attempts=sip_attempts, worker=str(worker))
                if calls or sip_attempts
                else 0
            )
            # The renders it had claimed, and the keys of batches it had not started (pending, claimed by
            # nobody): all are queued again; keys finished meanwhile are skipped by the new batch.
            released_keys = synthesis_actions.release_renders(render_tasks) if render_tasks else []
            keys = list({**dict.fromkeys(released_keys), **batch_keys})
            _send_renders(keys)
            sent.update(keys)
        for queue in worker.queues.split(","):
            last_seen[queue] = max(last_seen.get(queue, worker.seen_at), worker.seen_at)
        how = "stopped" if worker.stopped_at else f"silent since {worker.seen_at:%H:%M:%S}"
        if worker.held or not worker.stopped_at:
            log.warning(
                "worker %s (pid %s) %s: %d call claim(s) back to ready, %d attempt(s) it was placing settled or "
                "looked up, %d render(s) queued again, %d other task(s) left",
                worker.name, worker.pid, how, released, attempts, len(keys), others,
            )
        result.workers.append(str(worker))
        result.calls_released += released
        result.attempts_settled += attempts
        result.renders_requeued += len(keys)
        result.tasks_dropped += others
    if last_seen:
        _hand_on_orphans(last_seen, now, result, already_sent=sent)
    Worker.objects.filter(recovered_at__lt=now - KEEP_RECOVERED).delete()
    return result


def _send_renders(keys: list[str]) -> None:
    if keys:
        size = settings.RENDER_BATCH_SIZE
        batches = [keys[i : i + size] for i in range(0, len(keys), size)]
        transaction.on_commit(lambda: [render_batch.delay(b) for b in batches])


def _hand_on_orphans(last_seen: dict[str, datetime], now: datetime, result: Recovery, *, already_sent: set[str]) -> None:
    live_calls, live_keys = set(), set(already_sent)
    for held in Worker.objects.filter(recovered_at=None, stopped_at=None, seen_at__gte=silent_since(now)).values_list(
        "held", flat=True
    ):
        calls, keys = held_work(held)
        live_calls |= calls
        live_keys.update(keys)
    one_heartbeat_ago = now - timedelta(seconds=settings.WORKER_HEARTBEAT_SECONDS)
    with transaction.atomic():
        if "telephony" in last_seen:
            # Claimed before its last heartbeat, or before one heartbeat ago: a live worker records a dial it
            # receives at once, and the dead worker took no message later than one interval after its last
            # write. A claim whose message still waits in the broker is released too; its copy then finds the
            # call claimed again, or dialled, and does nothing.
            before = max(last_seen["telephony"], one_heartbeat_ago)
            orphans = set(
                Call.objects.filter(state=Call.State.DIALING, claimed_at__lte=before).values_list("pk", flat=True)
            )
            if orphans - live_calls:
                released = lifecycle.release_claims(sorted(orphans - live_calls), claimed_by=before, now=now)
                log.warning("%d claimed call(s) no live worker holds: back to ready", released)
                result.calls_released += released
        if "synthesis" in last_seen:
            waiting = (
                Q(calls__state=Call.State.RENDERING)
                | Q(voicemail_calls__state=Call.State.RENDERING)
                | Q(call_clips__call__state=Call.State.RENDERING)
                | Q(variant_clips__variant__calls__state=Call.State.RENDERING)
            )
            # Queued before its last heartbeat, or before one heartbeat ago, by the same reasoning as the claims
            # above: the dead worker may have taken the message in its last interval. A render still waiting in
            # the broker's queue is sent a second time; the copy that comes second claims nothing and renders
            # nothing (one no-op task per batch of keys).
            before = max(last_seen["synthesis"], one_heartbeat_ago)
            pending = RenderedAudio.objects.filter(waiting, state=RenderedAudio.State.PENDING, created_at__lte=before)
            keys = [k for k in dict.fromkeys(pending.values_list("render_key", flat=True)) if k not in live_keys]
            if keys:
                log.warning("%d pending render(s) no live worker holds: queued again", len(keys))
                _send_renders(keys)
                result.renders_requeued += len(keys)


def stalled(now: datetime | None = None) -> list[Worker]:
    """Workers found silent and not recovered yet (for the waiting page)."""
    return list(dead_workers(now).filter(stopped_at=None))
