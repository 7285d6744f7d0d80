"""The voice studio in the admin: recordings → clips → transcripts → spoken consent → approval → training."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from tests.voices.studio_support import SENTENCES, speaker_speech, training_base, wav_bytes
from voices import studio
from voices.models import SpokenConsent, TrainingJob, VoiceDraft


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return training_base(tmp_path_factory.mktemp("pretrained_models"))


@pytest.fixture
def studio_env(base, settings, tmp_path, monkeypatch):
    monkeypatch.setenv("HERALD_GPTSOVITS_BASE_DIR", str(base))
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TRAINING_DIR = str(tmp_path / "training")
    return base


def _studio(draft):
    return reverse("admin:voices_voicedraft_change", args=[draft.pk])


def _new_draft(client) -> VoiceDraft:
    response = client.post(reverse("admin:voices_voicedraft_add"), {
        "name": "客服李娜", "language": "zh", "speaker_name": "李娜", "company": "顺达快递",
        "purpose": "送货通知电话",
    })
    draft = VoiceDraft.objects.get(name="客服李娜")
    assert response.status_code == 302 and response["Location"] == _studio(draft)
    return draft


def _upload(client, draft, name: str, data: bytes):
    return client.post(reverse("admin:voices_voicedraft_upload", args=[draft.pk]),
                       {"audio": [_file(name, data)]}, follow=True)


def _file(name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="audio/wav")


def _type_transcripts(client, draft) -> None:
    usable = list(draft.usable_clips())
    form = {f"transcript-{clip.pk}": SENTENCES[i % len(SENTENCES)] for i, clip in enumerate(usable)}
    response = client.post(reverse("admin:voices_voicedraft_transcripts", args=[draft.pk]), form, follow=True)
    assert response.status_code == 200
    assert all(c.transcript and c.transcript_source == "typed" for c in draft.usable_clips())


def _record_consent(client, draft, audio) -> SpokenConsent:
    client.post(reverse("admin:voices_voicedraft_consent", args=[draft.pk]))
    consent = draft.spoken_consents.get()
    page = client.get(_studio(draft)).content.decode()
    assert consent.statement in page and consent.challenge in page  # shown to the speaker at recording time
    client.post(reverse("admin:voices_voicedraft_record_consent", args=[draft.pk, consent.pk]),
                {"audio": _file("consent.wav", wav_bytes(audio))}, follow=True)
    consent.refresh_from_db()
    return consent


def _second_staff(django_user_model):
    user = django_user_model.objects.create_user("approver", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["approve_consent", "change_voicedraft", "view_voicedraft"]))
    return user


@pytest.mark.django_db
def test_staff_take_recordings_to_an_approved_spoken_consent(admin_client, admin_user, django_user_model,
                                                             studio_env, client):
    draft = _new_draft(admin_client)
    page = _upload(admin_client, draft, "agent.wav", wav_bytes(speaker_speech(45, seed=1))).content.decode()
    usable = list(draft.usable_clips())
    assert len(usable) >= 5, page
    assert all(clip.duration_s >= 3.0 for clip in usable)
    assert 3.0 <= draft.__class__.objects.get(pk=draft.pk).reference_clip.duration_s <= 10.0
    assert "has no transcript" in page  # without an ASR model, staff type them
    # One unreadable file fails alone, with its reason; the draft's clips stay.
    page = _upload(admin_client, draft, "notes.wav", b"this is not audio at all" * 10).content.decode()
    assert "notes.wav" in page and draft.recordings.filter(problem__gt="").count() == 1
    assert draft.usable_clips().count() == len(usable)
    # No consent, no training.
    with pytest.raises(studio.StudioError, match="consent"):
        _type_transcripts(admin_client, draft)
        studio.start_training(VoiceDraft.objects.get(pk=draft.pk))
    consent = _record_consent(admin_client, draft, speaker_speech(8, seed=7))
    assert consent.speaker_ok is True and consent.similarity >= 0.5, consent.speaker_detail
    assert consent.words_ok is None and "approver must listen" in consent.words_detail
    assert consent.training_digest == studio.training_digest(draft)
    # Whoever recorded it cannot approve it.
    page = admin_client.post(reverse("admin:voices_voicedraft_approve", args=[draft.pk, consent.pk]),
                             {"listened": "1"}, follow=True).content.decode()
    assert "second staff member" in page
    client.force_login(_second_staff(django_user_model))
    page = client.post(reverse("admin:voices_voicedraft_approve", args=[draft.pk, consent.pk]),
                       follow=True).content.decode()
    assert "confirm that you listened" in page
    client.post(reverse("admin:voices_voicedraft_approve", args=[draft.pk, consent.pk]), {"listened": "1"})
    consent.refresh_from_db()
    assert consent.approved_at is not None and VoiceDraft.objects.get(pk=draft.pk).stage == "ready"
    assert studio.approved_consent(draft) == consent
    # A transcript changed after the consent makes it stale: training is refused again.
    clip = draft.usable_clips().first()
    admin_client.post(reverse("admin:voices_voicedraft_transcripts", args=[draft.pk]),
                      {f"transcript-{clip.pk}": "改过的文字。"})
    assert studio.approved_consent(draft) is None
    response = admin_client.post(reverse("admin:voices_voicedraft_train", args=[draft.pk]), {
        "sovits_epochs": 1, "gpt_epochs": 0, "batch_size": 4, "time_limit_minutes": 10}, follow=True)
    assert "approved spoken consent" in response.content.decode()
    assert not TrainingJob.objects.exists()


@pytest.mark.django_db
def test_a_consent_read_by_someone_else_is_refused(admin_client, studio_env, settings, django_user_model):
    draft = _new_draft(admin_client)
    _upload(admin_client, draft, "agent.wav", wav_bytes(speaker_speech(40, seed=2)))
    _type_transcripts(admin_client, draft)
    same = studio._speaker_similarity(speaker_speech(8, seed=9), list(draft.usable_clips()))[0]
    other = studio._speaker_similarity(
        speaker_speech(8, f0=105.0, brightness=0.85, seed=9), list(draft.usable_clips()))[0]
    assert other < same  # the embedding tells the two synthetic speakers apart
    settings.CONSENT_MIN_SIMILARITY = (same + other) / 2
    consent = _record_consent(admin_client, draft, speaker_speech(8, f0=105.0, brightness=0.85, seed=9))
    assert consent.speaker_ok is False
    assert re.search(r"similarity -?\d\.\d\d .*below the required", consent.speaker_detail)
    page = admin_client.get(_studio(draft)).content.decode()
    assert "Approve" not in page
    with pytest.raises(studio.StudioError, match="speaker check failed"):
        studio.approve_consent(consent, by=_second_staff(django_user_model), listened=True)


@pytest.mark.django_db
def test_a_recording_without_usable_speech_says_why(admin_client, studio_env):
    import numpy as np

    draft = _new_draft(admin_client)
    page = _upload(admin_client, draft, "silence.wav", wav_bytes(np.zeros(32000 * 8, np.float32))).content.decode()
    recording = draft.recordings.get()
    assert recording.problem and recording.problem in page
    assert not draft.usable_clips().exists()


@pytest.mark.django_db
def test_a_job_whose_worker_keeps_dying_fails_with_the_reason_and_a_queued_one_cancels_at_once(settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.TRAINING_STALE_SECONDS = 30
    draft = VoiceDraft.objects.create(name="d", speaker_name="李娜", company="顺达")
    long_ago = timezone.now() - timedelta(minutes=5)
    dying = TrainingJob.objects.create(draft=draft, training_digest="x" * 64, state=TrainingJob.State.RUNNING,
                                       attempts=studio.MAX_TRAINING_ATTEMPTS, heartbeat_at=long_ago, worker="w:1")
    assert studio.stale_jobs() == []
    dying.refresh_from_db()
    assert dying.state == TrainingJob.State.FAILED
    assert "stopped reporting 3 times" in dying.error and dying.finished_at is not None

    other = VoiceDraft.objects.create(name="e", speaker_name="李娜", company="顺达")
    alive = TrainingJob.objects.create(draft=other, training_digest="y" * 64, state=TrainingJob.State.RUNNING,
                                       attempts=1, heartbeat_at=timezone.now(), worker="w:2")
    assert studio.stale_jobs() == []  # still reporting: left alone
    assert studio.claim(alive.pk) is None  # and nobody else can take it
    TrainingJob.objects.filter(pk=alive.pk).update(heartbeat_at=long_ago)
    assert studio.stale_jobs() == [alive.pk]
    alive.refresh_from_db()
    assert alive.state == TrainingJob.State.QUEUED and "w:2 stopped reporting" in alive.message

    studio.cancel_training(alive)
    alive.refresh_from_db()
    assert alive.state == TrainingJob.State.CANCELLED and studio.claim(alive.pk) is None


@pytest.mark.django_db
def test_a_worker_given_up_on_stops_and_cannot_write_over_its_successor():
    from datetime import timedelta

    from django.utils import timezone

    draft = VoiceDraft.objects.create(name="d", speaker_name="李娜", company="顺达")
    job = TrainingJob.objects.create(draft=draft, training_digest="x" * 64, state=TrainingJob.State.RUNNING,
                                     attempts=1, heartbeat_at=timezone.now(), worker="old:1")
    control = studio._JobControl(job, deadline=timezone.now() + timedelta(hours=1))
    assert control.stop_reason() is None
    control.report("sovits", 1, 8, 1, {"loss_mel": 1.0}, 0.1)
    job.refresh_from_db()
    assert job.message == "sovits epoch 1/8, batch 1" and job.losses == {"loss_mel": 1.0}
    TrainingJob.objects.filter(pk=job.pk).update(worker="new:2")  # the watchdog requeued it; another claimed it
    assert control.stop_reason() == "taken over by another worker"
    control.report("sovits", 2, 8, 1, {"loss_mel": 9.0}, 0.2)
    job.refresh_from_db()
    assert job.losses == {"loss_mel": 1.0} and job.progress == 0.1
    TrainingJob.objects.filter(pk=job.pk).update(worker="old:1", cancel_requested=True)
    assert control.stop_reason() == "cancelled"
    TrainingJob.objects.filter(pk=job.pk).update(cancel_requested=False)
    job.refresh_from_db()
    assert studio._JobControl(job, deadline=timezone.now()).stop_reason().startswith("the time limit of 180 min")
