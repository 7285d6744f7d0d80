"""The GPT-SoVITS engine adapter on the shared small checkpoints (CPU, fp32)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from synthesis.engines import engine_problem
from synthesis.engines.base import EngineError, VoiceSpec
from synthesis.engines.gptsovits import GptSovitsEngine, TextFeatures, VoicePrompt
from synthesis.gptsovits.sovits import spectrogram

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "gptsovits"


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    with np.load(SHARED / "vectors.npz") as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def prompt(vectors) -> VoicePrompt:
    return VoicePrompt(
        phones=torch.from_numpy(vectors["prompt_phones"]),
        bert=torch.from_numpy(vectors["prompt_bert"]),
        semantic=torch.from_numpy(vectors["prompt_semantic"]),
        refer_specs=[spectrogram(torch.from_numpy(vectors["ref_wav_32k"]))],
    )


@pytest.fixture(scope="module")
def items(vectors) -> list[TextFeatures]:
    return [
        TextFeatures(torch.from_numpy(vectors[f"text_phones_{i}"]), torch.from_numpy(vectors[f"text_bert_{i}"]))
        for i in range(3)
    ]


def voice(folder: Path = SHARED, voice_id: int = 1, **parameters) -> VoiceSpec:
    return VoiceSpec(
        voice_id=voice_id, language="zh", parameters={"max_steps": 60, **parameters},
        weights={"gpt": str(folder / "gpt.ckpt"), "sovits": str(folder / "sovits.pth")},
    )


def test_a_batch_renders_what_each_text_renders_alone(prompt, items):
    engine = GptSovitsEngine(device="cpu")
    spec = voice(top_k=1, noise_scale=0.0)
    together = engine.synthesize_phones(spec, prompt, items)
    for item, wave in zip(items, together, strict=True):
        [alone] = engine.synthesize_phones(spec, prompt, [item])
        assert wave.sample_rate == 32000 and len(wave.samples) == len(alone.samples) > 0
        assert np.max(np.abs(wave.samples - alone.samples)) < 1e-5
    assert engine.models.loads == 1  # the models stayed resident across the four calls


def test_a_sampled_text_renders_the_same_in_any_batch(prompt, items):
    engine = GptSovitsEngine(device="cpu")
    spec = voice(top_k=15, temperature=0.8, noise_scale=0.5)
    together = engine.synthesize_phones(spec, prompt, [items[2], items[0]])
    [alone] = engine.synthesize_phones(spec, prompt, [items[0]])
    assert np.max(np.abs(together[1].samples - alone.samples)) < 1e-5


def test_the_same_input_renders_the_same_bytes(prompt, items):
    engine = GptSovitsEngine(device="cpu")
    spec = voice(noise_scale=0.5)
    first = engine.synthesize_phones(spec, prompt, items[:2])
    again = engine.synthesize_phones(spec, prompt, items[:2])
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(first, again, strict=True))


def _two_voices(tmp_path: Path, *, identical: bool) -> tuple[VoiceSpec, VoiceSpec]:
    """Voices a and b: byte-identical copies of the shared pair, or the same weights saved with another info."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for f in ("gpt.ckpt", "sovits.pth"):
            shutil.copy(SHARED / f, tmp_path / name / f)
    if not identical:
        data = torch.load(SHARED / "sovits.pth", weights_only=True)
        torch.save({**data, "info": "saved again"}, tmp_path / "b" / "sovits.pth")
    return voice(tmp_path / "a", 1), voice(tmp_path / "b", 2)


def test_voices_with_byte_identical_files_share_one_resident_copy(tmp_path):
    a, b = _two_voices(tmp_path, identical=True)
    engine = GptSovitsEngine(device="cpu")
    assert engine.models.get(a) is engine.models.get(b)
    assert engine.models.loads == 1


def test_voices_beyond_the_memory_budget_leave_least_recently_used_first(tmp_path, prompt, items):
    a, b = _two_voices(tmp_path, identical=False)
    engine = GptSovitsEngine(device="cpu", budget_mb=1)  # room for one voice only
    engine.models.get(a)
    engine.models.get(a)
    assert engine.models.loads == 1
    engine.models.get(b)
    engine.models.get(a)
    assert engine.models.loads == 3
    roomy = GptSovitsEngine(device="cpu", budget_mb=1024)
    for spec in (a, b, a, b):
        roomy.models.get(spec)
    assert roomy.models.loads == 2


def test_bad_files_and_parameters_are_permanent_errors(tmp_path, prompt, items):
    engine = GptSovitsEngine(device="cpu")
    (tmp_path / "gpt.ckpt").write_bytes(b"02" + (SHARED / "gpt.ckpt").read_bytes()[2:])
    shutil.copy(SHARED / "sovits.pth", tmp_path / "sovits.pth")
    with pytest.raises(EngineError, match="v3") as err:
        engine.synthesize_phones(voice(tmp_path), prompt, items[:1])
    assert err.value.permanent
    with pytest.raises(EngineError, match="unknown GPT-SoVITS parameters: pitch") as err:
        engine.synthesize_phones(voice(pitch=3), prompt, items[:1])
    assert err.value.permanent


def test_texts_need_the_frontend_and_launch_says_so(monkeypatch):
    monkeypatch.delenv("HERALD_BERT_DIR", raising=False)
    monkeypatch.delenv("HERALD_HUBERT_DIR", raising=False)
    engine = GptSovitsEngine(device="cpu")
    with pytest.raises(EngineError, match="text frontend is not configured") as err:
        engine.synthesize(voice(), ["您好"])
    assert err.value.permanent
    assert "text frontend" in engine_problem("gpt-sovits")
    assert engine_problem("embedded") is None


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_bf16_and_int8_modes_render_close_to_fp32(prompt, items, precision):
    spec = voice(top_k=1, noise_scale=0.0)
    [exact] = GptSovitsEngine(device="cpu").synthesize_phones(spec, prompt, items[1:2])
    engine = GptSovitsEngine(device="cpu", precision=precision)
    [low] = engine.synthesize_phones(spec, prompt, items[1:2])
    assert abs(len(low.samples) - len(exact.samples)) <= 1280 * 2  # a token or two more or less at most
    packed = "packed" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "linear"
    assert engine.models.get(spec).gpt.step_kind() == ("int8" if precision == "int8" else packed)
    with pytest.raises(EngineError, match="fp32, bf16, int8"):
        GptSovitsEngine(device="cpu", precision="fp16")
