"""Worker heartbeats with real worker processes: what a killed worker held goes to another worker.

These run on the embedded setup's filesystem broker, which never gives a dead consumer's messages back: the
tasks a worker took are gone from the queue folder the moment it took them, so only the heartbeat's record of
them can bring them back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import timezone

from campaigns import workers
from campaigns.launch import launch_campaign
from campaigns.models import Call, Worker
from campaigns.waiting import Waiting
from synthesis.models import RenderedAudio
from tests.conftest import worker_database_url
from tests.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT, DEAD = 0.5, 1.0


@pytest.fixture
def embedded_env(settings, tmp_path) -> dict[str, str]:
    """Production settings on the filesystem broker, with a heartbeat of half a second."""
    settings.WORKER_HEARTBEAT_SECONDS, settings.WORKER_DEAD_SECONDS = HEARTBEAT, DEAD
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "herald.settings",
        "HERALD_VAR_DIR": str(tmp_path),
        "HERALD_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "DATABASE_URL": worker_database_url(),
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "HERALD_WORKER_HEARTBEAT_SECONDS": str(HEARTBEAT),
        "HERALD_WORKER_DEAD_SECONDS": str(DEAD),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("CELERY_BROKER_URL", None)
    return env


def _in_a_process(env: dict[str, str], code: str) -> str:
    """Run `code` in a process of the embedded setup (its tasks go to the filesystem broker); its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup()\n{code}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _worker(env: dict[str, str], name: str, log_dir: Path) -> subprocess.Popen:
    log_path = log_dir / f"worker-{name}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "herald", "worker", "-Q", "synthesis,telephony", "-c", "2",
             "--pool", "threads", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"{name}@%h", "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    proc.log_path = log_path  # type: ignore[attr-defined]
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_the_tasks_a_killed_worker_held_are_finished_by_another(embedded_env, make_campaign, tmp_path):
    campaign = make_campaign(3)
    launch_campaign(campaign)  # its own render tasks go to the test's Redis, which nobody here consumes
    calls = list(campaign.calls.order_by("pk"))
    keys = sorted({c.audio_id for c in calls})
    claimed = calls[0]
    Call.objects.filter(pk=claimed.pk).update(state=Call.State.DIALING, claimed_at=timezone.now())
    # What a busy worker holds: a render batch and a dial, both taken from the queue and not started yet.
    sent = json.loads(_in_a_process(embedded_env, (
        "import json; from synthesis.tasks import render_batch; from telephony.tasks import place_call\n"
        f"r = render_batch.apply_async(({keys!r},), countdown=600)\n"
        f"p = place_call.apply_async(({claimed.pk},), countdown=600)\n"
        "print(json.dumps([r.id, p.id]))"
    )))

    doomed = _worker(embedded_env, "doomed", tmp_path)
    try:
        def holds_both() -> bool:
            if doomed.poll() is not None:
                raise AssertionError(doomed.log_path.read_text()[-3000:])
            row = Worker.objects.filter(name__startswith="doomed@").first()
            return row is not None and {h[0] for h in row.held} >= set(sent)

        wait_until(holds_both, lambda: f"the heartbeat to list {sent}:\n{doomed.log_path.read_text()[-3000:]}",
                   timeout=60)
        queue = tmp_path / "broker" / "queue"
        assert not any(p.name.endswith(".msg") for p in queue.iterdir()), "the worker took both messages"
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
    finally:
        _stop(doomed)
    row = Worker.objects.get(name__startswith="doomed@")
    assert row.stopped_at is None and row.recovered_at is None

    # Silent for the dead limit: the waiting page names the worker for the call it was to dial.
    wait_until(lambda: workers.stalled(), "the worker to be found silent", timeout=10, interval=0.1)
    page = {w.pk: w for w in Waiting(campaign).page()}
    assert page[claimed.pk].reason.code == "stalled_worker"
    assert f"worker {row.name} (pid {row.pid}) was to dial it" in page[claimed.pk].detail
    # The others wait for audio, and their keys are in the batch it held.
    assert {page[c.pk].reason.code for c in calls[1:]} == {"stalled_worker"}
    assert f"worker {row.name} (pid {row.pid}) was to render its audio" in page[calls[1].pk].detail

    # The recovery sweep (beat's task) hands both on; the dial's claim goes back to ready.
    recovery = _in_a_process(embedded_env, "from campaigns.workers import recover_dead_workers\n"
                                           "print(recover_dead_workers())")
    assert "calls_released=1" in recovery and f"renders_requeued={len(keys)}" in recovery, recovery
    assert Call.objects.get(pk=claimed.pk).state == Call.State.READY
    row.refresh_from_db()
    assert row.recovered_at is not None
    again = _in_a_process(embedded_env, "from campaigns.workers import recover_dead_workers\n"
                                        "print(recover_dead_workers())")
    assert "workers=[]" in again  # recovered once

    heir = _worker(embedded_env, "heir", tmp_path)
    try:
        wait_until(
            lambda: RenderedAudio.objects.filter(render_key__in=keys, state="ready").count() == len(keys),
            lambda: f"the re-sent batch to render:\n{heir.log_path.read_text()[-3000:]}", timeout=60,
        )
    finally:
        _stop(heir)
    assert not campaign.calls.filter(state=Call.State.RENDERING).exists()
    heir_row = Worker.objects.get(name__startswith="heir@")
    assert heir_row.stopped_at is not None  # a clean shutdown says so
