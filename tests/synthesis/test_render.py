"""The render pipeline with the real embedded engine: cache, files, claims, failures, signed URLs."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
import soundfile as sf
from django.conf import settings
from django.utils import timezone

from campaigns.launch import launch_campaign
from campaigns.models import Call
from synthesis import actions
from synthesis.models import RenderedAudio
from synthesis.signing import signed_audio_url
from voices.models import Voice

pytestmark = pytest.mark.django_db


@pytest.fixture
def launched(make_campaign, django_capture_on_commit_callbacks):
    campaign = make_campaign(3)
    with django_capture_on_commit_callbacks(execute=False):
        launch_campaign(campaign)
    return campaign


def test_render_writes_telephony_and_original_files_and_readies_calls(launched):
    keys = list(launched.calls.values_list("audio_id", flat=True))
    summary = actions.render(keys)
    assert sorted(summary.rendered) == sorted(keys) and not summary.failed
    for row in RenderedAudio.objects.filter(render_key__in=keys):
        assert row.state == "ready" and row.sample_rate == 8000 and row.duration > 1.0
        info = sf.info(Path(settings.MEDIA_ROOT) / row.telephony_file)
        assert (info.samplerate, info.channels, info.subtype, info.format) == (8000, 1, "ULAW", "WAV")
        original = sf.info(Path(settings.MEDIA_ROOT) / row.original_file)
        assert original.samplerate == row.original_sample_rate > 8000
        samples, _ = sf.read(Path(settings.MEDIA_ROOT) / row.telephony_file)
        assert abs(samples).max() < 0.95  # loudness-normalised without clipping
    assert set(launched.calls.values_list("state", flat=True)) == {Call.State.READY}


def test_a_cache_hit_does_no_work(launched):
    keys = list(launched.calls.values_list("audio_id", flat=True))
    actions.render(keys)
    before = {
        r.render_key: (r.rendered_at, r.sha256) for r in RenderedAudio.objects.filter(render_key__in=keys)
    }
    again = actions.render(keys)
    assert again.rendered == [] and sorted(again.skipped) == sorted(keys)
    after = {
        r.render_key: (r.rendered_at, r.sha256) for r in RenderedAudio.objects.filter(render_key__in=keys)
    }
    assert after == before


def test_same_key_means_same_bytes(launched):
    key = launched.calls.first().audio_id
    actions.render([key])
    row = RenderedAudio.objects.get(render_key=key)
    first = (Path(settings.MEDIA_ROOT) / row.telephony_file).read_bytes()
    RenderedAudio.objects.filter(pk=row.pk).update(state="pending")
    actions.render([key])
    assert (Path(settings.MEDIA_ROOT) / row.telephony_file).read_bytes() == first


def test_a_claim_held_by_a_live_worker_is_respected_and_a_dead_one_is_taken_over(launched, settings):
    key = launched.calls.first().audio_id
    RenderedAudio.objects.filter(render_key=key).update(state="rendering", claimed_at=timezone.now())
    assert actions.render([key]).skipped == [key]
    long_ago = timezone.now() - timedelta(seconds=settings.RENDER_STALE_SECONDS + 1)
    RenderedAudio.objects.filter(render_key=key).update(claimed_at=long_ago)
    assert actions.render([key]).rendered == [key]


def test_a_permanent_engine_error_fails_the_calls_with_the_reason(launched):
    call = launched.calls.first()
    Voice.objects.filter(pk=call.variant.voice_id).update(parameters={"voice": "cmn", "pitch": 500})
    actions.render([call.audio_id])
    row = RenderedAudio.objects.get(render_key=call.audio_id)
    call.refresh_from_db()
    assert row.state == "failed" and "pitch" in row.error
    assert call.state == Call.State.FAILED and "pitch" in call.error


def test_signed_audio_url_serves_the_file_and_refuses_tampering(launched, client):
    key = launched.calls.first().audio_id
    actions.render([key])
    url = signed_audio_url(key)
    path = url[len(settings.PUBLIC_URL) :]
    response = client.get(path)
    assert response.status_code == 200 and response["Content-Type"] == "audio/wav"
    assert b"".join(response.streaming_content)[:4] == b"RIFF"
    assert client.get(path.replace("sig=", "sig=0")).status_code == 403
    assert client.get(path.split("?")[0]).status_code == 403
    expired = signed_audio_url(key, ttl=-10)[len(settings.PUBLIC_URL) :]
    assert client.get(expired).status_code == 403
    other = "0" * 64
    forged = path.replace(key, other)
    assert client.get(forged).status_code == 403


def test_signed_url_expires(launched):
    key = launched.calls.first().audio_id
    from synthesis.signing import check_signature

    url = signed_audio_url(key, ttl=60, now=time.time())
    query = dict(part.split("=") for part in url.split("?")[1].split("&"))
    assert check_signature(key, query["expires"], query["sig"]) is None
    assert check_signature(key, query["expires"], query["sig"], now=time.time() + 61) == "expired"


def test_a_redelivered_task_takes_over_its_own_claim_at_once(launched):
    key = launched.calls.first().audio_id
    # The worker running task "t-1" died after claiming: the claim is fresh, not stale.
    RenderedAudio.objects.filter(render_key=key).update(state="rendering", claimed_at=timezone.now(), claimed_by="t-1")
    assert actions.render([key], claim_token="t-2").skipped == [key]  # another task waits
    assert actions.render([key], claim_token="t-1").rendered == [key]  # the redelivery resumes
