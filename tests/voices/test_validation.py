"""Voice checks against real files: the tiny random-weight v2 checkpoints and clips generated here."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voices.validation import (
    check_checkpoint,
    check_parameters,
    check_reference_clip,
    check_transcript,
    check_voice,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "gptsovits"
GPT, SOVITS = SHARED / "gpt.ckpt", SHARED / "sovits.pth"


def speech_like(seconds: float, rate: int = 24000, seed: int = 0) -> np.ndarray:
    """Noise shaped by a 4 Hz syllable envelope: loud enough, never clipped, rarely silent."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).standard_normal(len(t))
    return np.clip(0.15 * noise * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)), -0.9, 0.9).astype(np.float32)


def write_clip(path: Path, samples: np.ndarray, rate: int = 24000) -> Path:
    sf.write(path, samples, rate, subtype="PCM_16")
    return path


def messages(problems) -> str:
    return "\n".join(p.message for p in problems)


def test_valid_checkpoint_pair_passes():
    assert check_checkpoint(GPT, kind="gpt") == []
    assert check_checkpoint(SOVITS, kind="sovits") == []


def test_swapped_checkpoints_are_named_as_swapped():
    gpt_slot = check_checkpoint(SOVITS, kind="gpt")
    sovits_slot = check_checkpoint(GPT, kind="sovits")
    assert [p.field for p in gpt_slot] == ["gpt_weights"]
    assert [p.field for p in sovits_slot] == ["sovits_weights"]
    assert "is a SoVITS (.pth) file" in messages(gpt_slot)
    assert "swapped" in messages(gpt_slot) and "swapped" in messages(sovits_slot)


def test_v3_file_is_refused_with_its_version(tmp_path):
    v3 = tmp_path / "v3.ckpt"
    v3.write_bytes(b"02" + GPT.read_bytes()[2:])
    text = messages(check_checkpoint(v3, kind="gpt"))
    assert "v3" in text and "v2" in text and "“v3.ckpt”" in text


def test_truncated_file_asks_for_a_new_upload(tmp_path):
    truncated = tmp_path / "voice.pth"
    truncated.write_bytes(SOVITS.read_bytes()[: 1_000_000])
    text = messages(check_checkpoint(truncated, kind="sovits"))
    assert "truncated or corrupted" in text and "upload the file again" in text


def test_html_page_renamed_pth_is_not_a_checkpoint(tmp_path):
    page = tmp_path / "voice.pth"
    page.write_text("<!DOCTYPE html><html><head><title>404</title></head><body>Not Found</body></html>")
    problems = check_checkpoint(page, kind="sovits")
    assert [p.field for p in problems] == ["sovits_weights"]
    assert "not a PyTorch checkpoint" in messages(problems)


def test_missing_checkpoint_is_an_error():
    assert "missing" in messages(check_checkpoint(None, kind="gpt"))


def test_without_torch_the_server_says_it_cannot_check(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "synthesis.gptsovits.loading", None)  # import now raises ImportError
    text = messages(check_checkpoint(GPT, kind="gpt"))
    assert "cannot check GPT-SoVITS files: install the synthesis extra" in text


def test_valid_speech_like_clip_passes(tmp_path):
    report = check_reference_clip(write_clip(tmp_path / "ok.wav", speech_like(5.0)))
    assert report.problems == []
    assert report.duration == pytest.approx(5.0)


def test_stereo_clip_is_fine(tmp_path):
    stereo = np.stack([speech_like(5.0, seed=1), speech_like(5.0, seed=2)], axis=1)
    assert check_reference_clip(write_clip(tmp_path / "stereo.flac", stereo)).problems == []


@pytest.mark.parametrize(
    ("samples", "rate", "expected"),
    [
        (speech_like(2.0), 24000, "is 2.0 seconds long; GPT-SoVITS needs 3 to 10 seconds"),
        (speech_like(12.0), 24000, "is 12.0 seconds long; GPT-SoVITS accepts at most 10 seconds"),
        (speech_like(5.0, rate=8000), 8000, "sampled at 8000 Hz"),
        (
            np.sign(np.sin(2 * np.pi * 200 * np.arange(5 * 24000) / 24000)).astype(np.float32),
            24000,
            "clipped (distorted)",
        ),
        (np.zeros(5 * 24000, dtype=np.float32), 24000, "is silent"),
        (speech_like(5.0) * 0.02, 24000, "almost silent"),
        (np.concatenate([speech_like(1.5), np.zeros(int(3.5 * 24000), np.float32)]), 24000, "mostly silence"),
    ],
    ids=["too-short", "too-long", "8khz", "clipped", "silence", "too-quiet", "mostly-silence"],
)
def test_bad_clips_say_what_is_wrong(tmp_path, samples, rate, expected):
    problems = check_reference_clip(write_clip(tmp_path / "clip.wav", samples, rate)).problems
    assert expected in messages(problems)
    assert all(p.field == "reference_audio" and p.blocking for p in problems)


def test_clip_that_is_not_audio(tmp_path):
    fake = tmp_path / "clip.wav"
    fake.write_text("hello")
    assert "cannot be read as audio" in messages(check_reference_clip(fake).problems)


def test_transcript_checks():
    assert "is empty" in messages(check_transcript("  ", duration=5.0))
    assert "only 1 character" in messages(check_transcript("嗯", duration=5.0))
    assert check_transcript("您好，您的包裹明天上午送达。", duration=5.0) == []
    fast = check_transcript("您好" * 40, duration=5.0, language="zh")
    assert "80 characters for a 5.0-second clip" in messages(fast) and not fast[0].blocking
    english = "Hello, your parcel will arrive tomorrow morning."
    assert check_transcript(english, duration=3.5, language="en") == []


def test_embedded_parameters_are_checked_by_the_engine():
    assert check_parameters("embedded", language="en", parameters={"rate": 170}) == []
    problems = check_parameters("embedded", language="en", parameters={"rate": 1000})
    assert "'rate' must be between 80 and 450, got 1000" in messages(problems)
    assert "unknown eSpeak parameter" in messages(check_parameters("embedded", language="en", parameters={"x": 1}))
    assert "JSON object" in messages(check_parameters("embedded", language="en", parameters=[1]))


def test_whole_gpt_sovits_voice(tmp_path):
    clip = write_clip(tmp_path / "ok.wav", speech_like(5.0))
    good = dict(engine="gpt-sovits", language="zh", parameters={}, reference_audio=clip,
                reference_text="您好，您的包裹明天上午送达。", gpt_weights=GPT, sovits_weights=SOVITS)
    assert check_voice(**good) == []
    renamed = tmp_path / "renamed.ckpt"
    shutil.copy(SOVITS, renamed)
    bad = check_voice(**{**good, "gpt_weights": renamed, "reference_text": ""})
    assert {p.field for p in bad} == {"gpt_weights", "reference_text"}
