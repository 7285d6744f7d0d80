"""Faults with real worker processes: a render interrupted by a dead worker, the embedded broker."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from campaigns.launch import launch_campaign
from campaigns.models import Call
from campaigns.tasks import housekeeping
from synthesis.actions import audio_paths
from synthesis.models import RenderedAudio
from tests.conftest import worker_database_url
from tests.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def _wait(predicate, timeout: float, what: str, worker=None) -> None:
    def described() -> str:
        return f"{what}\n{worker.log_path.read_text()[-3000:] if worker is not None else ''}"

    wait_until(predicate, described, timeout=timeout, interval=0.2)


def test_a_render_left_behind_by_a_dead_worker_is_finished_by_another(celery_worker, make_campaign):
    campaign = make_campaign(3)
    launch_campaign(campaign)
    _wait(lambda: not campaign.calls.filter(state=Call.State.RENDERING).exists(), 60, "first renders", celery_worker)

    # What a worker killed mid-render leaves: a claimed row, a half-written temp file, no finished file,
    # its broker message gone (acknowledged late, then lost).
    call = campaign.calls.first()
    row = RenderedAudio.objects.get(render_key=call.audio_id)
    final = Path(settings.MEDIA_ROOT) / audio_paths(row.render_key)[0]
    final.unlink()
    orphan = final.with_name(final.name + ".partial-crash.tmp")
    orphan.write_bytes(b"RIFF\x00\x00")
    long_ago = timezone.now() - timedelta(seconds=settings.RENDER_STALE_SECONDS + 5)
    RenderedAudio.objects.filter(pk=row.pk).update(state="rendering", claimed_at=long_ago, telephony_file="")
    Call.objects.filter(pk=call.pk).update(state=Call.State.RENDERING)

    housekeeping.delay()  # beat sends this every minute; the worker finds the stale claim and re-renders
    _wait(lambda: Call.objects.get(pk=call.pk).state == Call.State.READY, 60, "re-render", celery_worker)
    row.refresh_from_db()
    assert row.state == "ready" and row.attempts == 2
    data = final.read_bytes()
    assert data[:4] == b"RIFF" and len(data) == row.size_bytes


def test_embedded_filesystem_broker_runs_a_real_worker(transactional_db, make_campaign, tmp_path):
    """The default setup (no Redis): a worker on kombu's filesystem transport renders a campaign."""
    campaign = make_campaign(2)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "herald.settings",  # production settings: filesystem broker by default
        "HERALD_VAR_DIR": str(tmp_path),
        "HERALD_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "DATABASE_URL": worker_database_url(),
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
    }
    env.pop("CELERY_BROKER_URL", None)
    launch_campaign(campaign)  # its render tasks go to the test broker (Redis); nobody consumes them here
    keys = list(campaign.calls.values_list("audio_id", flat=True))
    # A separate process publishes through the default, filesystem transport, as the web process would.
    publish = (
        "import django, sys; django.setup(); from synthesis.tasks import render_batch; "
        "render_batch.delay(sys.argv[1:])"
    )
    subprocess.run([sys.executable, "-c", publish, *keys], cwd=ROOT, env=env, check=True, timeout=60)
    assert any((tmp_path / "broker" / "queue").iterdir()), "the task should be queued on disk"
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "herald", "worker", "-Q", "synthesis", "-c", "1",
             "--pool", "solo", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            _wait(lambda: not campaign.calls.filter(state=Call.State.RENDERING).exists(), 60,
                  "renders over the filesystem broker")
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    assert set(campaign.calls.values_list("state", flat=True)) == {Call.State.READY}
