"""Voice uploads that cannot hurt the web process: size caps before anything is read, clip headers before decoding."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from tests.voices.test_validation import messages, speech_like, write_clip
from tests.voices.test_voice_admin import cloned_voice_form, stored_files
from voices.models import Voice
from voices.validation import check_checkpoint, check_reference_clip

MB = 1024 * 1024
RATE = 24000


def flac_declaring(path: Path, total_samples: int) -> Path:
    """A real 5-second mono FLAC whose STREAMINFO claims `total_samples` (0: length unknown)."""
    write_clip(path, speech_like(5.0, RATE))
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO is the first metadata block
    # STREAMINFO bytes 10..17 (file offset 18): rate (20 bits), channels-1 (3), bits-1 (5), total samples (36).
    packed = int.from_bytes(data[18:26], "big")
    packed = (packed & ~((1 << 36) - 1)) | total_samples
    data[18:26] = packed.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


class UnreadableUpload(SimpleUploadedFile):
    """An upload whose size is known but whose content must not be touched."""

    def open(self, mode=None):
        raise AssertionError("the upload was opened")

    def read(self, *args):
        raise AssertionError("the upload was read")

    def chunks(self, chunk_size=None):
        raise AssertionError("the upload was read")

    def seek(self, *args):
        raise AssertionError("the upload was read")


def test_flac_declaring_hours_is_refused_from_its_header_without_allocating_them(tmp_path):
    hours = 3 * 3600 * RATE  # decoded whole, 1 GB of float32
    crafted = flac_declaring(tmp_path / "crafted.flac", hours)
    assert sf.info(crafted).frames == hours and crafted.stat().st_size < 300_000
    tracemalloc.start()
    try:
        report = check_reference_clip(crafted)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * MB, f"{peak / MB:.0f} MB allocated while checking a clip"  # 989 MB when it was decoded
    assert "is 10800.0 seconds long; GPT-SoVITS accepts at most 10 seconds" in messages(report.problems)
    assert [p.field for p in report.problems] == ["reference_audio"]


def test_flac_without_a_length_is_refused(tmp_path):
    problems = check_reference_clip(flac_declaring(tmp_path / "streamed.flac", 0)).problems
    assert "“streamed.flac” does not say how long it is" in messages(problems)


def test_more_than_two_channels_is_refused(tmp_path):
    surround = np.stack([speech_like(5.0, seed=seed) for seed in range(6)], axis=1)
    report = check_reference_clip(write_clip(tmp_path / "surround.wav", surround))
    assert messages(report.problems) == (
        "The reference clip “surround.wav” has 6 channels; at most 2 (mono or stereo) are accepted. "
        "Export it again as mono."
    )


def test_absurd_sample_rate_is_refused(tmp_path):
    problems = check_reference_clip(write_clip(tmp_path / "fast.wav", speech_like(4.0, 384000), 384000)).problems
    assert "sampled at 384000 Hz; at most 192000 Hz is accepted" in messages(problems)


def test_clip_upload_over_the_cap_is_refused_before_it_is_read(settings):
    settings.MAX_REFERENCE_UPLOAD_BYTES = 2 * MB
    report = check_reference_clip(UnreadableUpload("long.wav", b"\0" * (3 * MB)))
    assert messages(report.problems) == (
        "The reference clip “long.wav” is 3.0 MB; at most 2 MB is accepted, and 3 to 10 seconds of speech is far "
        "less (10 seconds of 48 kHz stereo WAV is under 4 MB). Upload only the clip, as WAV or FLAC."
    )
    assert report.duration is None


def test_clip_file_over_the_cap_is_refused(settings, tmp_path):
    clip = write_clip(tmp_path / "ok.wav", speech_like(5.0))
    settings.MAX_REFERENCE_UPLOAD_BYTES = clip.stat().st_size - 1
    assert "at most" in messages(check_reference_clip(clip).problems)


@pytest.mark.parametrize(("kind", "field"), [("gpt", "gpt_weights"), ("sovits", "sovits_weights")])
def test_checkpoint_upload_over_the_cap_is_refused_before_it_is_read(settings, kind, field):
    settings.MAX_CHECKPOINT_UPLOAD_BYTES = 2 * MB
    problems = check_checkpoint(UnreadableUpload("voice.bin", b"\0" * (3 * MB)), kind=kind)
    assert [p.field for p in problems] == [field]
    assert "“voice.bin” is 3.0 MB; at most 2 MB is accepted" in messages(problems)
    assert "HERALD_MAX_CHECKPOINT_UPLOAD_MB" in messages(problems)


def test_good_clip_upload_still_passes(tmp_path):
    clip = write_clip(tmp_path / "ok.wav", speech_like(5.0))
    report = check_reference_clip(SimpleUploadedFile("ok.wav", clip.read_bytes()))
    assert report.problems == []
    assert report.duration == pytest.approx(5.0)


@pytest.mark.django_db
def test_admin_shows_the_cap_on_the_clip_field(admin_client, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MAX_REFERENCE_UPLOAD_BYTES = 100_000  # the 5-second clip of the form is 240 KB
    response = admin_client.post(reverse("admin:voices_voice_add"), cloned_voice_form(tmp_path))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "at most 0.09537 MB is accepted" in " ".join(errors["reference_audio"])
    assert not Voice.objects.exists() and stored_files(settings.MEDIA_ROOT) == []
