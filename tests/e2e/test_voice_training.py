"""A voice from uploaded audio to a rendered campaign clip, trained by a real `-Q training` worker process;
and a worker killed mid-epoch, whose job another worker resumes without ever leaving half a voice."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Permission

from synthesis.gptsovits.loading import load_gpt, load_sovits
from tests.conftest import ROOT, worker_database_url
from tests.voices.studio_support import SENTENCES, speaker_speech, training_base, wav_bytes
from tests.wait import wait_until
from voices import studio
from voices.models import TrainingJob, Voice, VoiceDraft
from voices.tasks import train_voice

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return training_base(tmp_path_factory.mktemp("pretrained_models"))


@pytest.fixture
def trainer_env(base, settings, tmp_path, monkeypatch):
    monkeypatch.setenv("HERALD_GPTSOVITS_BASE_DIR", str(base))
    monkeypatch.setenv("HERALD_BERT_DIR", str(base / "chinese-roberta-wwm-ext-large"))
    monkeypatch.setenv("HERALD_HUBERT_DIR", str(base / "chinese-hubert-base"))
    settings.TRAINING_DIR = str(tmp_path / "training")
    settings.TRAINING_STALE_SECONDS = 10
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": worker_database_url(),
        "HERALD_TEST_BROKER_URL": settings.CELERY_BROKER_URL,
        "HERALD_VAR_DIR": str(settings.VAR_DIR),
        "HERALD_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "HERALD_TRAINING_DIR": settings.TRAINING_DIR,
        "HERALD_TRAINING_DEVICE": "cpu",
        "HERALD_TRAINING_STALE_SECONDS": "10",
        "PYTHONUNBUFFERED": "1",
    }


class TrainingWorker:
    """One `celery worker -Q training --pool solo` process: the training runs in the process itself, so
    killing it kills the training mid-step."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "herald", "worker", "-Q", "training", "--pool", "solo",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"train-{secrets.token_hex(3)}@%h",
             "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, lambda: f"the training worker to start:\n{self.tail()}", timeout=60, interval=0.2)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"training worker exited:\n{self.tail()}")
        return "ready." in self.log_path.read_text(errors="replace")

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


def _approved_draft(admin_user, django_user_model, seconds: float = 30) -> VoiceDraft:
    """Uploaded audio → clips → typed transcripts → consent (two recordings, similarity checked) → approved."""
    draft = VoiceDraft.objects.create(name=f"trained-{secrets.token_hex(3)}", language="zh", speaker_name="李娜",
                                      company="顺达快递", purpose="送货通知电话", created_by=admin_user)
    recording = studio.add_recording(draft, wav_bytes(speaker_speech(seconds, seed=3)), name="agent.wav",
                                     by=admin_user)
    assert not recording.problem
    usable = list(draft.usable_clips())
    studio.set_transcripts(draft, {c.pk: SENTENCES[i % len(SENTENCES)] for i, c in enumerate(usable)})
    consent = studio.new_consent(draft)
    consent = studio.record_consent(consent, wav_bytes(speaker_speech(12, seed=11)), by=admin_user)
    assert consent.speaker_ok, consent.speaker_detail
    approver = django_user_model.objects.create_user(f"approver-{secrets.token_hex(2)}", is_staff=True)
    approver.user_permissions.add(Permission.objects.get(codename="approve_consent"))
    studio.approve_consent(consent, by=approver, listened=True)
    return VoiceDraft.objects.get(pk=draft.pk)


def _wait_job(job: TrainingJob, predicate, what: str, worker: TrainingWorker, timeout: float = 300) -> TrainingJob:
    def check() -> bool:
        job.refresh_from_db()
        return predicate(job)

    wait_until(check, lambda: f"{what}; job: {job.state} {job.stage} {job.message} {job.error}\n{worker.tail()}",
               timeout=timeout, interval=0.5)
    return job


def test_uploaded_audio_becomes_a_trained_voice_that_renders_a_campaign_clip(
    transactional_db, trainer_env, admin_user, django_user_model, make_campaign, tmp_path
):
    draft = _approved_draft(admin_user, django_user_model)
    job = studio.start_training(draft, by=admin_user, sovits_epochs=2, gpt_epochs=2, batch_size=4)
    worker = TrainingWorker(trainer_env, tmp_path / "worker.log")
    try:
        train_voice.delay(job.pk)
        job = _wait_job(job, lambda j: not j.is_active, "the training job to finish", worker)
    finally:
        worker.stop()
    assert job.state == TrainingJob.State.SUCCEEDED, (job.error, worker.tail())
    assert job.progress == 1.0 and job.attempts == 1
    stages = [(row["stage"], row["epoch"]) for row in job.history]
    assert stages == [("sovits", 1), ("sovits", 2), ("gpt", 1), ("gpt", 2)]
    draft.refresh_from_db()
    voice = draft.voice
    assert voice.source == Voice.Source.TRAINED and voice.is_usable() and voice.weights_digest
    assert voice.active_consent().document.name.endswith(".wav")  # the spoken consent is the record
    assert job.artefacts["sovits"] in voice.sovits_weights.name and job.artefacts["gpt"] in voice.gpt_weights.name
    load_sovits(voice.sovits_weights.path), load_gpt(voice.gpt_weights.path)  # strict loaders accept both
    assert draft.instant_voice is not None and draft.instant_voice.is_instant  # the A/B twin of the same clip
    assert not Path(settings.TRAINING_DIR, f"draft-{draft.pk}-{job.training_digest[:16]}").exists()

    # The trained voice speaks a campaign.
    from campaigns.launch import launch_campaign
    from campaigns.models import Call, Variant
    from synthesis import actions

    voice.parameters = {"max_steps": 40}
    voice.save()
    campaign = make_campaign(2, text="您好{name}，您的订单明天下午送达。")
    Variant.objects.filter(campaign=campaign).update(voice=voice)
    launch_campaign(campaign)
    keys = list(campaign.calls.values_list("audio_id", flat=True))
    summary = actions.render(keys)
    assert sorted(summary.rendered) == sorted(set(keys)), summary
    assert set(Call.objects.filter(audio_id__in=keys).values_list("state", flat=True)) == {Call.State.READY}


def test_a_worker_killed_mid_epoch_is_resumed_by_another_and_no_half_voice_exists(
    transactional_db, trainer_env, admin_user, django_user_model, tmp_path
):
    draft = _approved_draft(admin_user, django_user_model, seconds=40)
    job = studio.start_training(draft, by=admin_user, sovits_epochs=3, gpt_epochs=1, batch_size=2)
    first = TrainingWorker(trainer_env, tmp_path / "first.log")
    try:
        train_voice.delay(job.pk)
        # Past the first epoch's save and into the second: a kill now loses only part of an epoch.
        _wait_job(job, lambda j: j.message.startswith("sovits epoch 2/3, batch "), "the job to be mid-epoch", first)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(timeout=30)
    finally:
        first.stop()
    job.refresh_from_db()
    assert job.state == TrainingJob.State.RUNNING and not Voice.objects.filter(name=draft.name).exists()
    # The watchdog (beat, every minute) sees the silent job and puts it back in the queue.
    wait_until(lambda: studio.stale_jobs() == [job.pk], "the stale job to be requeued", timeout=60, interval=1)
    job.refresh_from_db()
    assert job.state == TrainingJob.State.QUEUED and "stopped reporting" in job.message
    second = TrainingWorker(trainer_env, tmp_path / "second.log")
    try:
        train_voice.delay(job.pk)
        job = _wait_job(job, lambda j: not j.is_active, "the resumed job to finish", second)
    finally:
        second.stop()
    assert job.state == TrainingJob.State.SUCCEEDED, (job.error, second.tail())
    assert job.attempts == 2
    # Resumed from the saved state: each epoch appears once, the first was not trained again.
    assert [(r["stage"], r["epoch"]) for r in job.history] == [("sovits", 1), ("sovits", 2), ("sovits", 3),
                                                               ("gpt", 1)]
    voice = Voice.objects.get(name=draft.name)
    load_sovits(voice.sovits_weights.path)
